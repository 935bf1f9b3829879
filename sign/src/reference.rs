//! Docker references as containers/image reads them
//! (`reference.ParseNormalizedNamed` of distribution): `[DOMAIN/]PATH[:TAG][@DIGEST]`,
//! normalised (`busybox` → `docker.io/library/busybox`).

use std::fmt;

/// Errors of reference parsing.
#[derive(Debug, thiserror::Error)]
#[error("reference {reference:?}: {why}")]
pub struct ReferenceError {
    /// The text given.
    pub reference: String,
    /// What is wrong with it.
    pub why: String,
}

/// A normalised Docker reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRef {
    /// The registry (`docker.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// The repository path within it (`library/busybox`).
    pub path: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

fn path_component_ok(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let ch = b[i];
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn domain_ok(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.starts_with('[') || h.ends_with(']') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') {
        return host.ends_with(']');
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn tag_ok(t: &str) -> bool {
    // [\w][\w.-]{0,127}
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}

fn digest_ok(d: &str) -> bool {
    match d.split_once(':') {
        Some((alg, hex)) => {
            !alg.is_empty()
                && alg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
                && (alg != "sha256"
                    || (hex.len() == 64 && hex.bytes().all(|b| !b.is_ascii_uppercase())))
        }
        None => false,
    }
}

impl DockerRef {
    /// Parse and normalise, as `reference.ParseNormalizedNamed`.
    pub fn parse(s: &str) -> Result<DockerRef, ReferenceError> {
        let bad = |why: &str| ReferenceError {
            reference: s.to_string(),
            why: why.to_string(),
        };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !digest_ok(d) {
                    return Err(bad("invalid digest"));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !tag_ok(t) {
                    return Err(bad("invalid tag"));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(bad("no repository name"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" {
            "docker.io".to_string()
        } else {
            domain
        };
        let path = if domain == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("repository name must be lowercase"));
        }
        if !domain_ok(&domain) {
            return Err(bad("invalid registry name"));
        }
        if !path.split('/').all(path_component_ok) {
            return Err(bad("invalid repository name"));
        }
        if domain.len() + 1 + path.len() > 255 {
            return Err(bad("repository name longer than 255 characters"));
        }
        Ok(DockerRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `DOMAIN/PATH`, the repository (`reference.Named.Name()`).
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// Whether it has neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The policy namespaces of a Docker reference, most specific first
/// (containers/image's `DockerReferenceNamespaces`): the repository, each
/// parent path, the registry, then `*.DOMAIN` wildcards (port stripped).
pub fn namespaces(r: &DockerRef) -> Vec<String> {
    let mut name = r.name();
    let mut out = vec![name.clone()];
    while let Some(i) = name.rfind('/') {
        name.truncate(i);
        out.push(name.clone());
    }
    if let Some(i) = name.find(':') {
        name.truncate(i);
    }
    while let Some(i) = name.find('.') {
        name = name[i + 1..].to_string();
        out.push(format!("*.{name}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let r = DockerRef::parse("busybox").expect("parse");
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert!(r.is_name_only());
        let r = DockerRef::parse("127.0.0.1:5000/a/b:t").expect("parse");
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("t"))
        );
        assert_eq!(
            namespaces(&r),
            [
                "127.0.0.1:5000/a/b",
                "127.0.0.1:5000/a",
                "127.0.0.1:5000",
                "*.0.0.1",
                "*.0.1",
                "*.1"
            ]
        );
        let r = DockerRef::parse("quay.io/ns/app@sha256:0123456789012345678901234567890123456789012345678901234567890123").expect("parse");
        assert_eq!(
            namespaces(&r),
            ["quay.io/ns/app", "quay.io/ns", "quay.io", "*.io"]
        );
        assert!(DockerRef::parse("Upper/case").is_ok());
        assert!(DockerRef::parse("docker.io/Upper").is_err());
        assert!(DockerRef::parse("a:b:c").is_err());
    }
}
