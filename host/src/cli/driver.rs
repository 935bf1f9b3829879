//! `--driver SPEC` (global, repeatable) and `rumoci driver info PATH.wasm`,
//! `driver snapshots`, `driver rm NAME…`.
//!
//! The parsed specs live in a process-wide slot set once by `run`, so that
//! [`open_layout`] and [`create_layout`] (which every command uses) pick the
//! content-store driver without threading it through each command.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use rumoci::driver::net::Credentials;
use rumoci::driver::{DriverSpec, plugin_info};
use rumoci::image::{Drivers, Open, Store};
use rumoci::layer_store::LayerStore;

static DRIVERS: OnceLock<Drivers> = OnceLock::new();
static CREDS: OnceLock<Credentials> = OnceLock::new();

/// Remember `--creds USER:PASSWORD` (call once, before any spec is parsed).
pub fn set_creds(raw: &str) -> Result<()> {
    let c = Credentials::parse(raw).map_err(|why| anyhow::anyhow!("--creds: {why}"))?;
    let _ = CREDS.set(c);
    Ok(())
}

/// `--creds` for the registries of `d` given without `creds=`.
fn with_creds(d: Drivers) -> Drivers {
    match CREDS.get() {
        Some(c) => d.with_credentials(c),
        None => d,
    }
}

/// Parse a driver spec; `--creds` fills in a `url=` without `creds=`.
pub fn parse_spec(text: &str) -> Result<DriverSpec> {
    let d = with_creds(Drivers::parse(&[text])?);
    d.specs()
        .first()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("--driver {text}: empty"))
}

/// Parse and remember the `--driver` flags (call once, before commands run).
pub fn set_specs(raw: &[String]) -> Result<()> {
    let _ = DRIVERS.set(with_creds(Drivers::parse(raw)?));
    Ok(())
}

/// The drivers given (none: the built-in directory driver, in place).
fn drivers() -> &'static Drivers {
    static NONE: OnceLock<Drivers> = OnceLock::new();
    DRIVERS
        .get()
        .unwrap_or_else(|| NONE.get_or_init(Drivers::default))
}

/// The layer store selected with `--driver` (`None`: extract in place).
pub fn open_layer_store() -> Result<Option<Box<dyn LayerStore>>> {
    Ok(drivers().layer_store()?)
}

/// How errors name the content-store plugin given with `--driver`
/// (`driver NAME (FILE)`), `None` with the built-in driver.
pub fn cas_label() -> Option<String> {
    drivers().content_label()
}

/// Open an existing layout through the selected driver (default: built-in).
pub fn open_layout(path: &Path) -> Result<Store> {
    Ok(Store::open_with(drivers(), path, Open::Existing)?)
}

/// Create a new, empty layout through the selected driver.
pub fn create_layout(path: &Path) -> Result<()> {
    Store::open_with(drivers(), path, Open::Create)?;
    Ok(())
}

/// Open the layout `path` for one side of `copy`: through `spec` (`dir`
/// or a plugin providing `cas`), else the global `--driver` choice; with
/// `create`, a missing layout is created first.
pub fn open_side(spec: Option<&str>, path: &Path, create: bool) -> Result<Store> {
    let how = if create {
        Open::OrCreate
    } else {
        Open::Existing
    };
    match spec {
        Some(s) => Ok(Store::open_with(
            &with_creds(Drivers::content_only(s)?),
            path,
            how,
        )?),
        None => Ok(Store::open_with(drivers(), path, how)?),
    }
}

/// `rumoci driver …`
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print a plugin's name, version and capabilities.
    Info {
        /// The plugin (a wasm32-wasip2 component).
        #[arg(value_name = "PATH.wasm")]
        path: PathBuf,
        #[command(flatten)]
        json: super::output::JsonArgs,
    },
    /// List the snapshots of the layer store given with `--driver`:
    /// name, kind, parent, and the size and inodes of committed ones.
    Snapshots {
        #[command(flatten)]
        json: super::output::JsonArgs,
    },
    /// Show the drivers the config file defines, its defaults, and where
    /// it was read from.
    List {
        #[command(flatten)]
        json: super::output::JsonArgs,
    },
    /// Check a plugin against the driver contract (conformance runner):
    /// one line per check, exit status 1 if any failed.
    Test(super::driver_test::Args),
    /// Remove snapshots from the layer store given with `--driver`
    /// (children before parents; a snapshot with children left is refused).
    Rm {
        /// Snapshot names (chain ids) or keys, as `driver snapshots` lists them.
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
}

/// The layer store given with `--driver`, or an error saying there is none.
fn required_layer_store(cmd: &str) -> Result<Box<dyn LayerStore>> {
    open_layer_store()?.with_context(|| {
        format!("driver {cmd}: no layer-store driver given (use --driver LAYER.wasm[,dir=STORE])")
    })
}

/// `driver snapshots`: a header line, then one line per snapshot (or
/// JSON: `snapshots`, each with `name`, `kind`, `parent`, `size`,
/// `inodes`; null where unknown).
fn print_snapshots(store: &dyn LayerStore, json: bool) -> Result<()> {
    use rumoci::layer_store::SnapshotKind;
    let list = rumoci::layer_store::snapshots(store)?;
    if json {
        let kind = |k: &SnapshotKind| match k {
            SnapshotKind::Active => "active",
            SnapshotKind::View => "view",
            SnapshotKind::Committed => "committed",
        };
        let snaps: Vec<serde_json::Value> = list
            .iter()
            .map(|(i, u)| {
                serde_json::json!({
                    "name": i.name,
                    "kind": kind(&i.kind),
                    "parent": i.parent,
                    "size": u.as_ref().map(|u| u.size),
                    "inodes": u.as_ref().map(|u| u.inodes),
                })
            })
            .collect();
        return super::output::print_json(&serde_json::json!({ "snapshots": snaps }));
    }
    let rows: Vec<[String; 5]> = list
        .into_iter()
        .map(|(i, u)| {
            let kind = match i.kind {
                SnapshotKind::Active => "active",
                SnapshotKind::View => "view",
                SnapshotKind::Committed => "committed",
            };
            let (size, inodes) = match u {
                Some(u) => (u.size.to_string(), u.inodes.to_string()),
                None => ("-".into(), "-".into()),
            };
            [
                i.name,
                kind.into(),
                i.parent.unwrap_or_else(|| "-".into()),
                size,
                inodes,
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "PARENT", "SIZE", "INODES"].map(String::from);
    let mut width = [0usize; 5];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut text = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    super::output::print_out(&text)
}

/// Run a `driver` subcommand.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Info { path, json } => {
            let i = plugin_info(&path, &DriverSpec::wasm(&path))?;
            if json.json {
                return super::output::print_json(&serde_json::json!({
                    "name": i.name,
                    "version": i.version,
                    "capabilities": i.capabilities,
                }));
            }
            super::output::print_out(&format!(
                "name: {}\nversion: {}\ncapabilities: {}\n",
                i.name,
                i.version,
                i.capabilities.join(", ")
            ))
        }
        Command::Test(a) => super::driver_test::run(a),
        Command::Snapshots { json } => {
            print_snapshots(required_layer_store("snapshots")?.as_ref(), json.json)
        }
        Command::List { json } => super::settings::print_list(json.json),
        Command::Rm { names } => {
            let store = required_layer_store("rm")?;
            rumoci::layer_store::remove_snapshots(store.as_ref(), &names)?;
            Ok(())
        }
    }
}
