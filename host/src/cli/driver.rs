//! `--driver SPEC` (global, repeatable) and `rumoci driver info PATH.wasm`,
//! `driver snapshots`, `driver rm NAME…`.
//!
//! A command's `--driver` and `--creds` choices are one [`Session`], made
//! by `run` and handed to the command: it opens the stores the command
//! asks for, each plugin read, compiled and linked at most once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rumoci::driver::net::Credentials;
use rumoci::driver::{DriverSpec, plugin_info};
use rumoci::image::{Drivers, Open, Store};
use rumoci::layer_store::LayerStore;

/// `creds` for the registries of `d` given without `creds=`.
fn with_creds(creds: &Option<Credentials>, d: Drivers) -> Drivers {
    match creds {
        Some(c) => d.with_credentials(c),
        None => d,
    }
}

/// The drivers one command uses (`--driver`, `--creds`).
#[derive(Debug, Default)]
pub struct Session {
    drivers: Drivers,
    creds: Option<Credentials>,
    /// `--policy FILE`.
    policy: Option<PathBuf>,
}

impl Session {
    /// The session of `--creds USER:PASSWORD` (if given) and the
    /// `--driver` specs `specs`; `--creds` fills in every `url=` given
    /// without `creds=`.
    pub fn new(creds: Option<&str>, specs: &[String]) -> Result<Session> {
        let creds = creds
            .map(|raw| Credentials::parse(raw).map_err(|why| anyhow::anyhow!("--creds: {why}")))
            .transpose()?;
        let drivers = with_creds(&creds, Drivers::parse(specs)?);
        Ok(Session {
            drivers,
            creds,
            policy: None,
        })
    }

    /// The session with `--policy FILE` (see `policy.rs`).
    pub fn with_policy(mut self, policy: Option<PathBuf>) -> Session {
        self.policy = policy;
        self
    }

    /// `--policy FILE`, if given.
    pub fn policy_flag(&self) -> Option<&Path> {
        self.policy.as_deref()
    }

    /// The content-store plugin one side uses: `spec` (as `copy`'s
    /// `--from-driver`), else the global `--driver` choice; `None` for the
    /// built-in driver.
    pub fn content_spec(&self, spec: Option<&str>) -> Result<Option<DriverSpec>> {
        match spec {
            Some(s) => Ok(self.with_creds(Drivers::content_only(s)?).content_store()?),
            None => Ok(self.drivers.content_store()?),
        }
    }

    /// `--creds` for the registries of `d` given without `creds=`.
    fn with_creds(&self, d: Drivers) -> Drivers {
        with_creds(&self.creds, d)
    }

    /// Parse a driver spec; `--creds` fills in a `url=` without `creds=`.
    pub fn parse_spec(&self, text: &str) -> Result<DriverSpec> {
        let d = self.with_creds(Drivers::parse(&[text])?);
        d.specs()
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("--driver {text}: empty"))
    }

    /// The layer store selected with `--driver` (`None`: extract in place).
    pub fn open_layer_store(&self) -> Result<Option<Box<dyn LayerStore>>> {
        Ok(self.drivers.layer_store_if_any()?)
    }

    /// How errors name the content-store plugin given with `--driver`
    /// (`driver NAME (FILE)`), `None` with the built-in driver.
    pub fn cas_label(&self) -> Option<String> {
        self.drivers.content_label()
    }

    /// Open an existing layout through the selected driver (default:
    /// built-in).
    pub fn open_layout(&self, path: &Path) -> Result<Store> {
        Ok(Store::open_with(&self.drivers, path, Open::Existing)?)
    }

    /// Open an existing layout through the selected driver for a command
    /// that reads only the tags `refs` of it and never writes its index
    /// (`policy::tag_only`); `None`: the whole index, as
    /// [`Session::open_layout`].
    pub fn open_layout_reading(&self, path: &Path, refs: Option<&[String]>) -> Result<Store> {
        match refs {
            Some(refs) => Ok(Store::open_reading(&self.drivers, path, refs)?),
            None => self.open_layout(path),
        }
    }

    /// Create a new, empty layout through the selected driver.
    pub fn create_layout(&self, path: &Path) -> Result<()> {
        Store::open_with(&self.drivers, path, Open::Create)?;
        Ok(())
    }

    /// Open the layout `path` for one side of `copy`: through `spec` (`dir`
    /// or a plugin providing `cas`), else the global `--driver` choice;
    /// with `create`, a missing layout is created first.
    pub fn open_side(&self, spec: Option<&str>, path: &Path, create: bool) -> Result<Store> {
        let how = if create {
            Open::OrCreate
        } else {
            Open::Existing
        };
        match spec {
            Some(s) => Ok(Store::open_with(
                &self.with_creds(Drivers::content_only(s)?),
                path,
                how,
            )?),
            None => Ok(Store::open_with(&self.drivers, path, how)?),
        }
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
fn required_layer_store(s: &Session, cmd: &str) -> Result<Box<dyn LayerStore>> {
    s.open_layer_store()?.with_context(|| {
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
pub fn run(cmd: Command, s: &Session) -> Result<()> {
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
        Command::Test(a) => super::driver_test::run(a, s),
        Command::Snapshots { json } => {
            print_snapshots(required_layer_store(s, "snapshots")?.as_ref(), json.json)
        }
        Command::List { json } => super::settings::print_list(json.json),
        Command::Rm { names } => {
            let store = required_layer_store(s, "rm")?;
            rumoci::layer_store::remove_snapshots(store.as_ref(), &names)?;
            Ok(())
        }
    }
}
