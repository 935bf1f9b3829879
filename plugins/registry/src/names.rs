//! Options: the registry URL, repository names and tags (the distribution
//! reference grammar).

use crate::http::Endpoint;

/// A parsed `url` option: plain HTTP to one host and port.
pub fn parse_url(url: &str) -> Result<Endpoint, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(format!("url {url:?}: expected http[s]://HOST[:PORT]"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "url {url:?}: expected http[s]://HOST[:PORT] (no path, query or user)"
        ));
    }
    Ok(Endpoint {
        https,
        authority: authority.to_string(),
    })
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
        let e = parse_url("http://127.0.0.1:5000").unwrap();
        assert_eq!((e.https, e.authority.as_str()), (false, "127.0.0.1:5000"));
        let e = parse_url("https://registry.example.com/").unwrap();
        assert_eq!(
            (e.https, e.authority.as_str()),
            (true, "registry.example.com")
        );
        for bad in [
            "ftp://x",
            "127.0.0.1:5000",
            "http://127.0.0.1:5000/v2",
            "http://u@127.0.0.1:1",
            "http://",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
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
