//! The configuration file: named drivers and default drivers.
//!
//! `$RUMOCI_CONFIG`, else `$XDG_CONFIG_HOME/rumoci/config.toml`, else
//! `~/.config/rumoci/config.toml`; a missing file is no configuration.
//!
//! ```toml
//! [driver.cache]
//! path = "/path/layer_cache.wasm"   # or a built-in name
//! dir = "/var/cache/rumoci"
//! timeout = 60
//! memory = "1G"
//! options = { max-size = "10G" }
//! [defaults]
//! drivers = ["cache"]               # used when no --driver is given
//! [defaults.command.unpack]
//! drivers = ["cache"]
//! ```
//!
//! A named driver becomes a `--driver` spec string (`PATH,dir=…,opt.K=V`),
//! parsed by the same grammar as the flag. Which drivers a command uses:
//! its `--driver` flags, else `RUMOCI_DRIVER` (specs or names separated by
//! `;`), else `[defaults.command.NAME]`, else `[defaults]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One `[driver.NAME]` table.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DriverEntry {
    /// A plugin file (relative: to the config file's directory) or a
    /// built-in driver name.
    pub path: String,
    /// The store directory (`dir=`; relative: to the config file's
    /// directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Seconds per call (`timeout=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// Memory limit, e.g. `"1G"` or a number of bytes (`memory=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// `url=` (registry plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `repo=` (registry plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Plugin options (`opt.KEY=VALUE`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, Scalar>,
}

/// A size: `"64M"` or a number of bytes.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// With a unit, as `memory=` takes it.
    Text(String),
}

/// An option value: a string, number or boolean, passed as text.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Default drivers: `drivers`, and per command `command.NAME.drivers`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Drivers used when no `--driver` is given.
    #[serde(default)]
    pub drivers: Vec<String>,
    /// Per command (its name as typed first: `unpack`, `repack`, `driver`).
    #[serde(default)]
    pub command: BTreeMap<String, CommandDefaults>,
}

/// `[defaults.command.NAME]`.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandDefaults {
    /// Drivers for this command when no `--driver` is given.
    #[serde(default)]
    pub drivers: Vec<String>,
}

/// The file's contents.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Named drivers.
    #[serde(default)]
    pub driver: BTreeMap<String, DriverEntry>,
    /// Default drivers.
    #[serde(default)]
    pub defaults: Defaults,
}

/// The configuration in force and where it was looked for.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The file looked at (`None`: no location could be made, e.g. no
    /// HOME).
    pub path: Option<PathBuf>,
    /// Whether it exists (and was read).
    pub found: bool,
    /// What it says (empty if not found).
    pub file: ConfigFile,
}

static IN_FORCE: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();

/// Keep the settings read at start (for `driver list`).
pub fn remember(s: Settings) {
    let _ = IN_FORCE.set(s);
}

/// The settings read at start (empty if none were).
pub fn in_force() -> Settings {
    IN_FORCE.get().cloned().unwrap_or_default()
}

/// Where the file is: `RUMOCI_CONFIG`, `XDG_CONFIG_HOME`, `HOME`.
fn location() -> Option<PathBuf> {
    let var = |k| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = var("RUMOCI_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = match var("XDG_CONFIG_HOME") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(var("HOME")?).join(".config"),
    };
    Some(base.join("rumoci/config.toml"))
}

/// 1-based line and column of byte `at` in `text`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..at.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

/// Parse a config file's text; an error names the file and the line.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', " ");
        match e.span() {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                anyhow::anyhow!(
                    "config file {} line {line}, column {col}: {msg}",
                    rumoci::show::name(&path)
                )
            }
            None => anyhow::anyhow!("config file {}: {msg}", rumoci::show::name(&path)),
        }
    })
}

/// Read the configuration (a missing file is an empty one).
pub fn load() -> Result<Settings> {
    let Some(path) = location() else {
        return Ok(Settings::default());
    };
    // the default location of a user whose HOME they cannot search (a
    // command run as another user with HOME kept) is no configuration;
    // a file given with RUMOCI_CONFIG must be readable
    let explicit = std::env::var_os("RUMOCI_CONFIG").is_some_and(|v| !v.is_empty());
    if !explicit && std::fs::metadata(&path).is_err() {
        return Ok(Settings {
            path: Some(path),
            ..Settings::default()
        });
    }
    let text = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Settings {
                path: Some(path),
                ..Settings::default()
            });
        }
        Err(e) => {
            return Err(e).with_context(|| format!("config file {}", rumoci::show::name(&path)));
        }
    };
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("config file {}: not UTF-8", rumoci::show::name(&path)))?;
    let file = parse(&path, &text)?;
    Ok(Settings {
        path: Some(path),
        found: true,
        file,
    })
}

impl Settings {
    fn base(&self) -> &Path {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
    }

    /// A `[driver.NAME]` as a `--driver` spec string.
    pub fn spec_of(&self, name: &str) -> Result<Option<String>> {
        let Some(d) = self.file.driver.get(name) else {
            return Ok(None);
        };
        let in_config = |v: &str| -> Result<String> {
            if v.contains(',') {
                anyhow::bail!(
                    "config file {}: driver {name}: {v:?} contains ',', which a driver spec cannot hold",
                    self.path
                        .as_deref()
                        .map(rumoci::show::name)
                        .unwrap_or_default()
                );
            }
            Ok(v.to_string())
        };
        let resolve = |v: &str| -> String {
            let p = Path::new(v);
            if p.is_relative() {
                self.base().join(p).to_string_lossy().into_owned()
            } else {
                v.to_string()
            }
        };
        let builtin = rumoci::driver::BUILTIN_DRIVERS.contains(&d.path.as_str());
        let mut spec = in_config(&if builtin {
            d.path.clone()
        } else {
            resolve(&d.path)
        })?;
        if let Some(dir) = &d.dir {
            spec.push_str(&format!(",dir={}", in_config(&resolve(dir))?));
        }
        if let Some(t) = d.timeout {
            spec.push_str(&format!(",timeout={t}"));
        }
        match &d.memory {
            Some(Size::Bytes(b)) => spec.push_str(&format!(",memory={b}")),
            Some(Size::Text(m)) => spec.push_str(&format!(",memory={}", in_config(m)?)),
            None => {}
        }
        if let Some(u) = &d.url {
            spec.push_str(&format!(",url={}", in_config(u)?));
        }
        if let Some(r) = &d.repo {
            spec.push_str(&format!(",repo={}", in_config(r)?));
        }
        for (k, v) in &d.options {
            spec.push_str(&format!(
                ",opt.{}={}",
                in_config(k)?,
                in_config(&v.to_string())?
            ));
        }
        Ok(Some(spec))
    }

    /// Expand `--driver NAME[,KEY=VALUE…]` when NAME is a driver of the
    /// file (the keys given after it override the file's); any other spec
    /// is returned as it is.
    pub fn expand(&self, raw: &str) -> Result<String> {
        let (head, rest) = match raw.split_once(',') {
            Some((h, r)) => (h, Some(r)),
            None => (raw, None),
        };
        match self.spec_of(head)? {
            Some(mut spec) => {
                if let Some(r) = rest {
                    spec.push(',');
                    spec.push_str(r);
                }
                Ok(spec)
            }
            None => Ok(raw.to_string()),
        }
    }

    /// The driver specs for `command` (the first word after the global
    /// flags): `flags`, else `RUMOCI_DRIVER`, else the file's defaults.
    pub fn drivers_for(&self, command: Option<&str>, flags: &[String]) -> Result<Vec<String>> {
        let chosen: Vec<String> = if !flags.is_empty() {
            flags.to_vec()
        } else if let Some(env) = std::env::var("RUMOCI_DRIVER")
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            env.split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        } else {
            let per_command = command.and_then(|c| self.file.defaults.command.get(c));
            match per_command {
                Some(c) => c.drivers.clone(),
                None => self.file.defaults.drivers.clone(),
            }
        };
        chosen.iter().map(|s| self.expand(s)).collect()
    }
}

/// `driver list`: where the file is, its drivers (with the spec each
/// expands to) and defaults; as text or JSON (`config`, `found`,
/// `drivers` [`name`, `spec`, and the table's fields], `defaults`).
pub fn print_list(json: bool) -> Result<()> {
    let s = in_force();
    let shown = s.path.as_deref().map(|p| p.display().to_string());
    let mut drivers = Vec::new();
    for (name, d) in &s.file.driver {
        let spec = s.spec_of(name)?.unwrap_or_default();
        drivers.push((name, d, spec));
    }
    if json {
        let list: Vec<serde_json::Value> = drivers
            .iter()
            .map(|(name, d, spec)| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("name".into(), serde_json::json!(name));
                    o.insert("spec".into(), serde_json::json!(spec));
                }
                v
            })
            .collect();
        return super::output::print_json(&serde_json::json!({
            "config": shown,
            "found": s.found,
            "drivers": list,
            "defaults": s.file.defaults,
        }));
    }
    let mut text = match (&shown, s.found) {
        (Some(p), true) => format!("config: {p}\n"),
        (Some(p), false) => format!("config: {p} (not found)\n"),
        (None, _) => "config: none (neither XDG_CONFIG_HOME nor HOME is set)\n".to_string(),
    };
    for (name, _, spec) in &drivers {
        text.push_str(&format!("driver {name}: {spec}\n"));
    }
    if !s.file.defaults.drivers.is_empty() {
        text.push_str(&format!(
            "defaults: {}\n",
            s.file.defaults.drivers.join(", ")
        ));
    }
    for (cmd, c) in &s.file.defaults.command {
        text.push_str(&format!("defaults for {cmd}: {}\n", c.drivers.join(", ")));
    }
    super::output::print_out(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_driver_becomes_a_spec() {
        let text = "[driver.cache]\npath = \"/p/layer_cache.wasm\"\ndir = \"store\"\ntimeout = 60\nmemory = \"1G\"\noptions = { max-size = \"10G\" }\n";
        let file = parse(Path::new("/etc/r/config.toml"), text).expect("parse");
        let s = Settings {
            path: Some("/etc/r/config.toml".into()),
            found: true,
            file,
        };
        assert_eq!(
            s.expand("cache,timeout=5").expect("expand"),
            "/p/layer_cache.wasm,dir=/etc/r/store,timeout=60,memory=1G,opt.max-size=10G,timeout=5"
        );
        assert_eq!(s.expand("dir").expect("expand"), "dir");
    }

    #[test]
    fn a_broken_file_names_the_line() {
        let e = parse(
            Path::new("/c.toml"),
            "[driver.x]\npath = \"a\"\ntimeout = \n",
        )
        .expect_err("broken");
        assert!(e.to_string().contains("/c.toml line 3"), "{e}");
    }
}
