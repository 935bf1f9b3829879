//! Options: the registry URL, repository names and tags (the distribution
//! reference grammar).

use crate::http::Endpoint;

/// A parsed `url` option: plain HTTP to one host and port.
pub fn parse_url(url: &str) -> Result<Endpoint, String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(format!(
            "url {url:?}: https is not supported (this driver speaks plain HTTP to a registry on a trusted network, e.g. 127.0.0.1)"
        ));
    } else {
        return Err(format!("url {url:?}: expected http://HOST:PORT"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "url {url:?}: expected http://HOST:PORT (no path, query or user)"
        ));
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or_else(|| format!("url {url:?}: unterminated IPv6 address"))?;
        let (h, rest) = authority.split_at(end + 1);
        match rest.strip_prefix(':') {
            Some(p) => (h, p),
            None if rest.is_empty() => (h, "80"),
            None => return Err(format!("url {url:?}: expected http://HOST:PORT")),
        }
    } else {
        authority.rsplit_once(':').unwrap_or((authority, "80"))
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("url {url:?}: bad port {port:?}"))?;
    let hosts: Vec<String> = if host.eq_ignore_ascii_case("localhost") {
        // The sandbox has no name lookup: localhost is the loopback.
        vec![format!("127.0.0.1:{port}"), format!("[::1]:{port}")]
    } else if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("url {url:?}: bad IPv6 address {v6:?}"))?;
        vec![format!("[{v6}]:{port}")]
    } else if host.parse::<std::net::Ipv4Addr>().is_ok() {
        vec![format!("{host}:{port}")]
    } else {
        return Err(format!(
            "url {url:?}: the host must be an IP address or localhost (the sandbox cannot resolve names)"
        ));
    };
    Ok(Endpoint {
        authority: authority.to_string(),
        connect: hosts,
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
        assert_eq!(e.authority, "127.0.0.1:5000");
        assert_eq!(e.connect, ["127.0.0.1:5000"]);
        assert_eq!(parse_url("http://localhost:5/").unwrap().connect.len(), 2);
        assert_eq!(parse_url("http://[::1]:7").unwrap().connect, ["[::1]:7"]);
        assert_eq!(
            parse_url("http://10.0.0.1").unwrap().connect,
            ["10.0.0.1:80"]
        );
        for bad in [
            "https://127.0.0.1:5000",
            "127.0.0.1:5000",
            "http://example.com:5000",
            "http://127.0.0.1:0",
            "http://127.0.0.1:5000/v2",
            "http://u@127.0.0.1:1",
            "http://",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_url("https://x").unwrap_err().contains("https"));
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
