//! Where requests go: scheme, host and port.

use std::fmt;

use http::Uri;

/// An HTTP origin: scheme, host (lowercased) and port (the scheme's
/// default filled in).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `https` (otherwise `http`).
    pub https: bool,
    /// The host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Origin {
    /// The origin of an absolute URI.
    pub fn of(uri: &Uri) -> Result<Origin, super::InvalidInput> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(s) => return Err(format!("the scheme {s:?} is not http or https").into()),
            None => return Err("no scheme".into()),
        };
        let auth = uri.authority().ok_or("no host")?;
        if auth.as_str().contains('@') {
            return Err("user information in the address".into());
        }
        let host = auth.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err("no host".into());
        }
        let port = match auth.port_u16() {
            Some(0) => return Err("port 0".into()),
            Some(p) => p,
            None if https => 443,
            None => 80,
        };
        Ok(Origin {
            https,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Parse `url=`: `http[s]://HOST[:PORT][/]`, nothing more.
    pub fn parse_url(url: &str) -> Result<Origin, super::InvalidInput> {
        let uri: Uri = url
            .parse()
            .map_err(|_| super::InvalidInput::from("not a URL like https://HOST[:PORT]"))?;
        let origin = Origin::of(&uri)?;
        match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => {}
            Some(p) => {
                return Err(format!(
                    "{p:?}: give the registry's address only; the repository is repo= or the layout path"
                )
                .into());
            }
        }
        let valid = origin
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
        if !valid {
            return Err(format!("{:?} is not a host name or address", origin.host).into());
        }
        Ok(origin)
    }

    /// `HOST:PORT` (`[IPv6]:PORT`), as auth files key registries.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the port is the scheme's default.
    pub fn default_port(&self) -> bool {
        self.port == if self.https { 443 } else { 80 }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let o = Origin::parse_url("https://Registry.Example.com").unwrap();
        assert_eq!(o.to_string(), "https://registry.example.com:443");
        assert!(o.default_port());
        let o = Origin::parse_url("http://[::1]:5000/").unwrap();
        assert_eq!(o.authority(), "[::1]:5000");
        for bad in [
            "ftp://x",
            "http://u:p@h:1",
            "http://h:1/v2",
            "http://h:0",
            "h:1",
            "",
        ] {
            assert!(Origin::parse_url(bad).is_err(), "{bad}");
        }
        let a = Origin::of(&"http://127.0.0.1:5000/v2/x".parse().unwrap()).unwrap();
        assert_eq!(a, Origin::parse_url("http://127.0.0.1:5000").unwrap());
    }
}
