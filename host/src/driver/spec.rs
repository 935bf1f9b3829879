//! `--driver NAME|PATH.wasm[,key=value…]` parsing.

use std::path::PathBuf;
use std::time::Duration;

use super::DriverError;

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
/// (bytes, with an optional `K`/`M`/`G` suffix). Keys starting with `opt.`
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
        }
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
                _ => match k.strip_prefix("opt.") {
                    Some(name) if !name.is_empty() => {
                        spec.options.push((name.to_string(), v.to_string()))
                    }
                    _ => {
                        return Err(bad(format!(
                            "unknown key {k:?} (known: dir, timeout, memory; plugin options are opt.NAME=VALUE)"
                        )));
                    }
                },
            }
        }
        if matches!(spec.source, DriverSource::Builtin(_))
            && (spec.dir.is_some() || !spec.options.is_empty())
        {
            return Err(bad("built-in drivers take no dir= or opt.* keys".into()));
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
        let e = DriverSpec::parse("p.wasm,color=red")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key \"color\""), "{e}");
    }
}
