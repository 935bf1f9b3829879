//! `--driver SPEC` (global, repeatable) and `rumoci driver info PATH.wasm`,
//! `driver snapshots`, `driver rm NAME…`.
//!
//! The parsed specs live in a process-wide slot set once by `run`, so that
//! [`open_layout`] and [`create_layout`] (which every command uses) pick the
//! content-store driver without threading it through each command.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use rumoci::cas::{Cas, DirCas};
use rumoci::driver::{DriverSource, DriverSpec, WasmCas, WasmLayerStore, plugin_info};
use rumoci::layer_store::LayerStore;

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

/// The drivers given, sorted by role: the content store (`None` = the
/// built-in directory driver) and the layer store (`None` = extract in
/// place).
type Roles = (Option<(PathBuf, DriverSpec)>, Option<(PathBuf, DriverSpec)>);

fn roles() -> Result<Roles> {
    let specs = SPECS.get().map(Vec::as_slice).unwrap_or_default();
    let mut cas = Vec::new();
    let mut layers = Vec::new();
    for spec in specs {
        match &spec.source {
            DriverSource::Builtin(_) => cas.push(None),
            DriverSource::Wasm(path) => {
                let caps = plugin_info(path, spec)?.capabilities;
                let has = |c: &str| caps.iter().any(|x| x == c);
                if !has("cas") && !has("layer-store") {
                    anyhow::bail!(
                        "--driver {}: provides neither \"cas\" nor \"layer-store\" (it provides {caps:?})",
                        rumoci::show::name(&path)
                    );
                }
                if has("cas") {
                    cas.push(Some((path.clone(), spec.clone())));
                }
                if has("layer-store") {
                    layers.push((path.clone(), spec.clone()));
                }
            }
        }
    }
    if cas.len() > 1 {
        anyhow::bail!("--driver: more than one content-store (cas) driver given");
    }
    if layers.len() > 1 {
        anyhow::bail!("--driver: more than one layer-store driver given");
    }
    Ok((cas.pop().flatten(), layers.pop()))
}

/// The content-store driver to use: `None` = the built-in directory driver.
fn cas_spec() -> Result<Option<(PathBuf, DriverSpec)>> {
    Ok(roles()?.0)
}

/// The layer store selected with `--driver` (`None`: extract in place).
pub fn open_layer_store() -> Result<Option<Box<dyn LayerStore>>> {
    let Some((_, spec)) = roles()?.1 else {
        return Ok(None);
    };
    let dir = spec.store_dir()?;
    let store = WasmLayerStore::open(&spec)
        .with_context(|| format!("open layer store {}", rumoci::show::name(&dir)))?;
    Ok(Some(Box::new(store)))
}

/// The store directory of a content-store plugin used on layout `path`,
/// and the spec to load it with. Normally `dir=` or `path` itself; with
/// `url=` the path names a repository (passed as `repo` unless `repo=` is
/// given) and the store directory is `dir=` or the default one, created if
/// missing.
fn cas_store(spec: &DriverSpec, path: &Path) -> Result<(PathBuf, DriverSpec)> {
    if spec.url.is_none() {
        let dir = spec.dir.clone().unwrap_or_else(|| path.to_path_buf());
        if !same_place(&dir, path) {
            tracing::warn!(
                "{} is not used: the store is the driver's dir={}",
                rumoci::show::name(&path),
                rumoci::show::name(&dir)
            );
        }
        return Ok((dir, spec.clone()));
    }
    let mut spec = spec.clone();
    if spec.repo.is_none() {
        spec.repo = Some(path.to_string_lossy().into_owned());
    }
    let dir = spec.store_dir()?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("create store directory {}", rumoci::show::name(&dir)))?;
    Ok((dir, spec))
}

/// Whether two paths name the same directory (lexically, or the same
/// inode when both exist).
fn same_place(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a.components().eq(b.components()) {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Whether `dir` is a directory with no entries.
fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// How errors name a plugin's store: the directory, or the repository and
/// URL with `url=`.
fn describe(spec: &DriverSpec, dir: &Path) -> String {
    match (&spec.url, &spec.repo) {
        (Some(u), Some(r)) => format!("{r} at {u}"),
        _ => rumoci::show::name(&dir),
    }
}

/// How errors name the content-store plugin given with `--driver`
/// (`driver NAME (FILE)`), `None` with the built-in driver.
pub fn cas_label() -> Option<String> {
    let (wasm, spec) = cas_spec().ok()??;
    let name = plugin_info(&wasm, &spec).ok()?.name;
    let file = wasm.file_name().map(rumoci::show::name).unwrap_or_default();
    Some(format!("driver {} ({file})", rumoci::show::name(&name)))
}

/// Open an existing layout through the selected driver (default: built-in).
pub fn open_layout(path: &Path) -> Result<Box<dyn Cas>> {
    open_side(None, path, false)
}

/// Create a new, empty layout through the selected driver.
pub fn create_layout(path: &Path) -> Result<()> {
    match cas_spec()? {
        None => {
            DirCas::create(path)
                .with_context(|| format!("create layout {}", rumoci::show::name(&path)))?;
        }
        Some((wasm, spec)) => {
            let (dir, spec) = cas_store(&spec, path)?;
            // With url= the store directory is only for spooling: the
            // plugin's `init` decides whether the repository exists.
            // an empty directory (a mount point for the store) is the
            // plugin's to fill: its init decides
            if spec.url.is_none() && std::fs::symlink_metadata(&dir).is_ok() && !is_empty_dir(&dir)
            {
                anyhow::bail!(
                    "create layout {}: already exists (a store, or another non-empty directory)",
                    rumoci::show::name(&dir)
                );
            }
            let index = rumoci::oci::to_go_json(&rumoci::oci::Index::default())
                .context("serialising index.json")?;
            WasmCas::create(&wasm, &spec, &dir, &index)
                .with_context(|| format!("create layout {}", describe(&spec, &dir)))?;
        }
    }
    Ok(())
}

/// The content-store driver of one side of `copy`: `spec` (`dir` or a
/// plugin providing `cas`), else the global `--driver` choice.
fn side_spec(spec: Option<&str>) -> Result<Option<(PathBuf, DriverSpec)>> {
    let Some(text) = spec else {
        return cas_spec();
    };
    let spec = DriverSpec::parse(text)?;
    match &spec.source {
        DriverSource::Builtin(_) => Ok(None),
        DriverSource::Wasm(path) => {
            let caps = plugin_info(path, &spec)?.capabilities;
            if !caps.iter().any(|c| c == "cas") {
                anyhow::bail!(
                    "--driver {}: not a content store (it provides {caps:?})",
                    rumoci::show::name(&path)
                );
            }
            Ok(Some((path.clone(), spec)))
        }
    }
}

/// Open the layout `path` through `spec` (see [`side_spec`]); with
/// `create`, a missing layout (an empty directory for a plugin) is created
/// first, and a repository behind `url=` is opened as it is.
pub fn open_side(spec: Option<&str>, path: &Path, create: bool) -> Result<Box<dyn Cas>> {
    match side_spec(spec)? {
        None => {
            if create && std::fs::symlink_metadata(path).is_err() {
                DirCas::create(path)
                    .with_context(|| format!("create layout {}", rumoci::show::name(&path)))?;
            }
            let cas = DirCas::open(path)
                .with_context(|| format!("open layout {}", rumoci::show::name(&path)))?;
            Ok(Box::new(cas))
        }
        Some((wasm, spec)) => {
            let (dir, spec) = cas_store(&spec, path)?;
            let fresh = std::fs::symlink_metadata(&dir).is_err() || is_empty_dir(&dir);
            let cas = if create && spec.url.is_none() && fresh {
                let index = rumoci::oci::to_go_json(&rumoci::oci::Index::default())
                    .context("serialising index.json")?;
                WasmCas::create(&wasm, &spec, &dir, &index)
                    .with_context(|| format!("create layout {}", describe(&spec, &dir)))?
            } else {
                WasmCas::open(&wasm, &spec, &dir)
                    .with_context(|| format!("open layout {}", describe(&spec, &dir)))?
            };
            Ok(Box::new(cas))
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
        json: super::util::JsonArgs,
    },
    /// List the snapshots of the layer store given with `--driver`:
    /// name, kind, parent, and the size and inodes of committed ones.
    Snapshots {
        #[command(flatten)]
        json: super::util::JsonArgs,
    },
    /// Show the drivers the config file defines, its defaults, and where
    /// it was read from.
    List {
        #[command(flatten)]
        json: super::util::JsonArgs,
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
        return super::util::print_json(&serde_json::json!({ "snapshots": snaps }));
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
    super::util::print_out(&text)
}

/// Run a `driver` subcommand.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Info { path, json } => {
            let i = plugin_info(&path, &DriverSpec::wasm(&path))?;
            if json.json {
                return super::util::print_json(&serde_json::json!({
                    "name": i.name,
                    "version": i.version,
                    "capabilities": i.capabilities,
                }));
            }
            super::util::print_out(&format!(
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
