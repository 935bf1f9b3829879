//! `--driver SPEC` (global, repeatable) and `rumoci driver info PATH.wasm`.
//!
//! The parsed specs live in a process-wide slot set once by `run`, so that
//! [`open_layout`] and [`create_layout`] (which every command uses) pick the
//! content-store driver without threading it through each command.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use rumoci::cas::{Cas, DirCas};
use rumoci::driver::{DriverSource, DriverSpec, Plugin, WasmCas};

static SPECS: OnceLock<Vec<DriverSpec>> = OnceLock::new();

/// Parse and remember the `--driver` flags (call once, before commands run).
pub fn set_specs(raw: &[String]) -> Result<()> {
    let specs = raw
        .iter()
        .map(|s| DriverSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let _ = SPECS.set(specs);
    Ok(())
}

/// The content-store driver to use: `None` = the built-in directory driver.
fn cas_spec() -> Result<Option<(PathBuf, DriverSpec)>> {
    let specs = SPECS.get().map(Vec::as_slice).unwrap_or_default();
    if let [spec] = specs {
        // One driver: it must be the content store (WasmCas checks `cas`).
        return Ok(match &spec.source {
            DriverSource::Builtin(_) => None,
            DriverSource::Wasm(path) => Some((path.clone(), spec.clone())),
        });
    }
    let mut candidates = Vec::new();
    for spec in specs {
        match &spec.source {
            DriverSource::Builtin(_) => candidates.push(None),
            DriverSource::Wasm(path) => {
                // Plugins without `cas` serve other roles (layer-store).
                if Plugin::load(path, spec, None)?.has("cas") {
                    candidates.push(Some((path.clone(), spec.clone())));
                }
            }
        }
    }
    if candidates.len() > 1 {
        anyhow::bail!("--driver: more than one content-store (cas) driver given");
    }
    Ok(candidates.pop().flatten())
}

/// Open an existing layout through the selected driver (default: built-in).
pub fn open_layout(path: &Path) -> Result<Box<dyn Cas>> {
    match cas_spec()? {
        None => {
            let cas =
                DirCas::open(path).with_context(|| format!("open layout {}", path.display()))?;
            Ok(Box::new(cas))
        }
        Some((wasm, spec)) => {
            let dir = spec.dir.clone().unwrap_or_else(|| path.to_path_buf());
            let cas = WasmCas::open(&wasm, &spec, &dir)
                .with_context(|| format!("open layout {}", dir.display()))?;
            Ok(Box::new(cas))
        }
    }
}

/// Create a new, empty layout through the selected driver.
pub fn create_layout(path: &Path) -> Result<()> {
    match cas_spec()? {
        None => {
            DirCas::create(path).with_context(|| format!("create layout {}", path.display()))?;
        }
        Some((wasm, spec)) => {
            let dir = spec.dir.clone().unwrap_or_else(|| path.to_path_buf());
            if std::fs::symlink_metadata(&dir).is_ok() {
                anyhow::bail!("create layout {}: already exists", dir.display());
            }
            let index = rumoci::oci::to_go_json(&rumoci::oci::Index::default())
                .context("serialising index.json")?;
            WasmCas::create(&wasm, &spec, &dir, &index)
                .with_context(|| format!("create layout {}", dir.display()))?;
        }
    }
    Ok(())
}

/// `rumoci driver …`
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print a plugin's name, version and capabilities.
    Info {
        /// The plugin (a wasm32-wasip2 component).
        #[arg(value_name = "PATH.wasm")]
        path: PathBuf,
    },
}

/// Run a `driver` subcommand.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Info { path } => {
            let p = Plugin::load(&path, &DriverSpec::wasm(&path), None)?;
            let i = p.info();
            println!("name: {}", i.name);
            println!("version: {}", i.version);
            println!("capabilities: {}", i.capabilities.join(", "));
            Ok(())
        }
    }
}
