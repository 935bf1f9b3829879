//! `--driver NAME|PATH.wasm[,key=value…]` parsing.

use std::path::PathBuf;
use std::time::Duration;

use super::DriverError;
use super::net::{Credentials, NetSpec, Origin, Sign};

/// Default deadline of one plugin call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default memory limit of a plugin instance (linear memories and tables).
pub const DEFAULT_MEMORY: u64 = 256 << 20;

/// Where a driver comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverSource {
    /// A driver built into rumoci, by name (`dir`: the directory driver).
    Builtin(String),
    /// A WebAssembly component file.
    Wasm(PathBuf),
}

/// A parsed `--driver` specification.
///
/// Keys understood by the host: `dir=PATH` (the directory to preopen as the
/// plugin's store directory; default: the layout path of the command),
/// `timeout=SECONDS` (deadline per call, fractions allowed), `memory=SIZE`
/// (bytes, with an optional `K`/`M`/`G` suffix), `url=http[s]://HOST[:PORT]`
/// (network grant: the plugin may send `wasi:http` requests to exactly
/// that origin and nothing else — it has no sockets; the host does TLS,
/// authentication and redirects, see [`super::net`]; the URL is passed to
/// the plugin as its `url` option, and the command's layout path becomes a
/// repository name rather than a directory: the store directory is then
/// `dir=` or `$XDG_DATA_HOME/rumoci/drivers/NAME`), with `url=` only:
/// `ca=PATH` (PEM certificates trusted besides the system's),
/// `tls-verify=false` and `creds=USER:PASSWORD` (otherwise read from the
/// auth files; never passed to the plugin),
/// `repo=NAME` (passed to the plugin as `repo`; with `url=` and no `repo=`
/// the command's layout path is passed). With `url=`, for an object store
/// (`s3.wasm`): `bucket=NAME`, `prefix=PATH`, `region=NAME` and
/// `path-style=true|false`, passed to the plugin under those names (the
/// host also uses `region` to sign and, with path-style addressing, keeps
/// the plugin's requests inside `bucket`), and `sign=aws-sigv4|none`
/// (whether the host signs requests with AWS Signature V4; by default
/// when the plugin declares `net.aws-sigv4`). Keys starting with `opt.`
/// are handed to the plugin (without the prefix) through its `config`
/// import. Any other key is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverSpec {
    /// The driver.
    pub source: DriverSource,
    /// `dir=`: the store directory, if given.
    pub dir: Option<PathBuf>,
    /// `timeout=`: deadline per call.
    pub timeout: Duration,
    /// `memory=`: memory limit in bytes.
    pub memory: u64,
    /// `opt.KEY=VALUE` options for the plugin, in order.
    pub options: Vec<(String, String)>,
    /// `url=`: the URL the plugin may send requests to (passed as option
    /// `url`).
    pub url: Option<String>,
    /// The network `url=` (with `ca=`, `tls-verify=`, `creds=`) grants.
    pub net: Option<NetSpec>,
    /// `repo=`: passed to the plugin as option `repo`.
    pub repo: Option<String>,
    /// `bucket=`, `prefix=`, `region=`, `path-style=` (object stores, with
    /// `url=`), in order: passed to the plugin under those names.
    pub store_options: Vec<(String, String)>,
}

/// Names of the built-in drivers.
pub const BUILTIN_DRIVERS: &[&str] = &["dir"];

impl DriverSpec {
    /// A spec for a wasm file with default settings.
    pub fn wasm(path: impl Into<PathBuf>) -> DriverSpec {
        DriverSpec {
            source: DriverSource::Wasm(path.into()),
            dir: None,
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            options: Vec::new(),
            url: None,
            net: None,
            repo: None,
            store_options: Vec::new(),
        }
    }

    /// The options the plugin's `config` import returns: the `opt.*` ones,
    /// then `url` and `repo` when given, then `bucket`, `prefix`,
    /// `region`, `path-style` as given.
    pub fn plugin_options(&self) -> Vec<(String, String)> {
        let mut out = self.options.clone();
        if let Some(u) = &self.url {
            out.push(("url".into(), u.clone()));
        }
        if let Some(r) = &self.repo {
            out.push(("repo".into(), r.clone()));
        }
        out.extend(self.store_options.iter().cloned());
        out
    }

    /// Parse `NAME|PATH.wasm[,key=value…]`.
    pub fn parse(s: &str) -> Result<DriverSpec, DriverError> {
        let bad = |reason: String| DriverError::Spec {
            spec: s.to_string(),
            reason,
        };
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        if head.is_empty() {
            return Err(bad("missing driver name or .wasm path".into()));
        }
        let source = if head.ends_with(".wasm") || head.contains('/') {
            DriverSource::Wasm(PathBuf::from(head))
        } else if BUILTIN_DRIVERS.contains(&head) {
            DriverSource::Builtin(head.to_string())
        } else {
            return Err(bad(format!(
                "unknown driver {head:?} (built-in drivers: {}; plugins are given as PATH.wasm)",
                BUILTIN_DRIVERS.join(", ")
            )));
        };
        let mut spec = DriverSpec {
            source,
            ..DriverSpec::wasm("")
        };
        let (mut ca, mut tls_verify, mut creds) = (None, true, None);
        let (mut sign, mut region, mut bucket, mut path_style) = (Sign::Auto, None, None, true);
        for kv in parts {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad(format!("{kv:?}: expected key=value")))?;
            match k {
                "dir" => {
                    if v.is_empty() {
                        return Err(bad("dir= is empty".into()));
                    }
                    spec.dir = Some(PathBuf::from(v));
                }
                "timeout" => {
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|x: &f64| x.is_finite() && *x > 0.0 && *x < 1e9)
                        .ok_or_else(|| bad(format!("timeout={v}: expected positive seconds")))?;
                    spec.timeout = Duration::from_secs_f64(secs);
                }
                "memory" => {
                    spec.memory = parse_size(v)
                        .ok_or_else(|| bad(format!("memory={v}: expected a size like 64M")))?
                }
                "url" => {
                    let origin =
                        Origin::parse_url(v).map_err(|why| bad(format!("url={v}: {why}")))?;
                    spec.url = Some(v.to_string());
                    spec.net = Some(NetSpec {
                        origin,
                        ca: None,
                        tls_verify: true,
                        creds: None,
                        sign: Sign::Auto,
                        region: None,
                        bucket: None,
                    });
                }
                "ca" if !v.is_empty() => ca = Some(PathBuf::from(v)),
                "tls-verify" => {
                    tls_verify = match v {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(format!("tls-verify={v}: expected true or false"))),
                    }
                }
                "creds" => {
                    creds =
                        Some(Credentials::parse(v).map_err(|why| bad(format!("creds=: {why}")))?)
                }
                "sign" => {
                    sign = match v {
                        "aws-sigv4" => Sign::AwsSigV4,
                        "none" => Sign::None,
                        _ => return Err(bad(format!("sign={v}: expected aws-sigv4 or none"))),
                    }
                }
                "bucket" | "prefix" | "region" | "path-style" => {
                    let ok = match k {
                        "bucket" => {
                            v.len() >= 3
                                && v.len() <= 255
                                && v.bytes().all(|b| {
                                    b.is_ascii_lowercase()
                                        || b.is_ascii_digit()
                                        || b"-._".contains(&b)
                                })
                        }
                        "region" => {
                            !v.is_empty()
                                && v.len() <= 64
                                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        }
                        "path-style" => matches!(v, "true" | "false"),
                        _ => v.len() <= 1024 && !v.chars().any(char::is_control),
                    };
                    if !ok {
                        return Err(bad(format!(
                            "{k}={v}: {}",
                            match k {
                                "bucket" => "not a bucket name (3-255 of a-z 0-9 . - _)",
                                "region" => "not a region name",
                                "path-style" => "expected true or false",
                                _ => "a prefix is at most 1024 characters, no control characters",
                            }
                        )));
                    }
                    match k {
                        "bucket" => bucket = Some(v.to_string()),
                        "region" => region = Some(v.to_string()),
                        "path-style" => path_style = v == "true",
                        _ => {}
                    }
                    spec.store_options.retain(|(old, _)| old != k);
                    spec.store_options.push((k.to_string(), v.to_string()));
                }
                "repo" => {
                    if v.is_empty() {
                        return Err(bad("repo= is empty".into()));
                    }
                    spec.repo = Some(v.to_string());
                }
                _ => match k.strip_prefix("opt.") {
                    Some(name) if !name.is_empty() => {
                        spec.options.push((name.to_string(), v.to_string()))
                    }
                    _ => {
                        return Err(bad(format!(
                            "unknown key {k:?} (known: dir, timeout, memory, url, ca, tls-verify, creds, repo, sign, bucket, prefix, region, path-style; plugin options are opt.NAME=VALUE)"
                        )));
                    }
                },
            }
        }
        match spec.net.as_mut() {
            Some(net) => {
                net.ca = ca;
                net.tls_verify = tls_verify;
                net.creds = creds;
                net.sign = sign;
                net.region = region;
                net.bucket = bucket.filter(|_| path_style);
            }
            None if ca.is_some()
                || !tls_verify
                || creds.is_some()
                || sign != Sign::Auto
                || !spec.store_options.is_empty() =>
            {
                return Err(bad(
                    "ca=, tls-verify=, creds=, sign=, bucket=, prefix=, region= and path-style= go with url="
                        .into(),
                ));
            }
            None => {}
        }
        if matches!(spec.source, DriverSource::Builtin(_))
            && (spec.dir.is_some()
                || !spec.options.is_empty()
                || spec.url.is_some()
                || spec.repo.is_some())
        {
            return Err(bad(
                "built-in drivers take no dir=, url=, repo= or opt.* keys".into(),
            ));
        }
        Ok(spec)
    }
}

fn parse_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&v[..v.len() - 1], 1 << 20),
        b'G' | b'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n >= 1 << 16)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let s = DriverSpec::parse("x/p.wasm,dir=/tmp/a,timeout=0.5,memory=64M,opt.k=v").unwrap();
        assert_eq!(s.source, DriverSource::Wasm("x/p.wasm".into()));
        assert_eq!(s.dir, Some(PathBuf::from("/tmp/a")));
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert_eq!(s.memory, 64 << 20);
        assert_eq!(s.options, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(
            DriverSpec::parse("dir").unwrap().source,
            DriverSource::Builtin("dir".into())
        );
        for bad in [
            "",
            "nope",
            "p.wasm,color=red",
            "p.wasm,timeout=-1",
            "p.wasm,memory=1",
            "p.wasm,x",
            "dir,dir=/x",
        ] {
            let e = DriverSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--driver"), "{bad}: {e}");
        }
        let s = DriverSpec::parse("p.wasm,url=http://127.0.0.1:5000,repo=a/b,opt.k=v").unwrap();
        assert_eq!(
            s.net.as_ref().unwrap().origin,
            Origin::parse_url("http://127.0.0.1:5000").unwrap()
        );
        assert_eq!(
            s.plugin_options(),
            [
                ("k", "v"),
                ("url", "http://127.0.0.1:5000"),
                ("repo", "a/b")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let s = DriverSpec::parse("p.wasm,url=http://[::1]:7/").unwrap();
        assert_eq!(s.net.unwrap().origin.authority(), "[::1]:7");
        let s = DriverSpec::parse(
            "p.wasm,url=https://reg.example,ca=/c.pem,tls-verify=false,creds=u:p:w",
        )
        .unwrap();
        let net = s.net.clone().unwrap();
        assert_eq!(net.origin.to_string(), "https://reg.example:443");
        assert_eq!(net.ca, Some(PathBuf::from("/c.pem")));
        assert!(!net.tls_verify);
        assert_eq!(net.creds.as_ref().unwrap().user(), "u");
        // secrets stay with the host
        assert!(s.plugin_options().iter().all(|(k, _)| k == "url"));
        assert!(!format!("{s:?}").contains("u:p:w"));
        for bad in [
            "p.wasm,url=http://127.0.0.1:0",
            "p.wasm,ca=/x",
            "p.wasm,url=http://h:1,tls-verify=no",
            "p.wasm,url=http://h:1,creds=nopass",
            "p.wasm,url=http://127.0.0.1:5/v2",
            "p.wasm,url=ftp://x",
            "p.wasm,repo=",
            "dir,url=http://127.0.0.1:1",
        ] {
            let e = DriverSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--driver"), "{bad}: {e}");
        }
        let s = DriverSpec::parse(
            "p.wasm,url=http://127.0.0.1:8333,bucket=b-1,prefix=x/y,region=eu-west-1,sign=aws-sigv4",
        )
        .unwrap();
        let net = s.net.clone().unwrap();
        assert_eq!(net.sign, Sign::AwsSigV4);
        assert_eq!(net.bucket.as_deref(), Some("b-1"));
        assert_eq!(net.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            s.plugin_options(),
            [
                ("url", "http://127.0.0.1:8333"),
                ("bucket", "b-1"),
                ("prefix", "x/y"),
                ("region", "eu-west-1")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        let s = DriverSpec::parse("p.wasm,url=http://b.h:1,bucket=bbb,path-style=false").unwrap();
        assert_eq!(s.net.unwrap().bucket, None);
        for bad in [
            "p.wasm,bucket=b",
            "p.wasm,url=http://h:1,bucket=B!",
            "p.wasm,url=http://h:1,sign=v2",
            "p.wasm,url=http://h:1,path-style=yes",
            "p.wasm,url=http://h:1,region=a/b",
        ] {
            let e = DriverSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--driver"), "{bad}: {e}");
        }
        let e = DriverSpec::parse("p.wasm,color=red")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key \"color\""), "{e}");
    }
}
