//! Options: the registry URL, repository names and tags (the distribution
//! reference grammar).

use rumoci_driver_sdk::http::Endpoint;

/// A parsed `url` option: `http[s]://HOST[:PORT]`, requests sent as
/// `rumoci-registry/VERSION`.
pub fn parse_url(url: &str) -> Result<Endpoint, String> {
    let ua = concat!("rumoci-registry/", env!("CARGO_PKG_VERSION"));
    Endpoint::parse(url, "").map(|e| e.with_user_agent(ua))
}

/// Validate a repository name against the distribution grammar:
/// `path-component ('/' path-component)*`, each component
/// `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`, at most 255 characters.
pub fn check_repo(name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "repository name {name:?}: {why} (distribution allows lowercase letters, digits and separators . _ __ - between them, components joined by /)"
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 255 {
        return bad("longer than 255 characters");
    }
    for comp in name.split('/') {
        let b = comp.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return bad("a component must start and end with a lowercase letter or digit");
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
            if !ok {
                return bad(&format!("invalid separator {sep:?}"));
            }
        }
    }
    Ok(())
}

/// Whether `tag` matches `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(&b[0])
        && b[1..].iter().all(|c| word(c) || *c == b'.' || *c == b'-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        // the SDK's Endpoint::parse has the cases; this plugin names itself
        let e = parse_url("https://registry.example.com/").unwrap();
        assert!(e.https && e.user_agent.starts_with("rumoci-registry/"));
        let e = parse_url("http://127.0.0.1:5000/v2").unwrap_err();
        assert!(e.ends_with("(no path, query or user)"), "{e}");
    }

    #[test]
    fn repos_and_tags() {
        for ok in ["a", "library/busybox", "a.b_c__d---e/f0", "x/y/z"] {
            assert!(check_repo(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "/a", "a/", "a//b", "a..b", "a___b", "-a", "a-", "/tmp/x", "a:b",
        ] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
        assert!(valid_tag("v1.0-rc_2"));
        assert!(!valid_tag(".x") && !valid_tag("") && !valid_tag("a/b"));
        assert!(!valid_tag(&"a".repeat(129)));
    }
}
