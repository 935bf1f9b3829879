//! Stores through drivers: `--driver` specs (the same grammar and
//! defaults as the CLI) turned into opened stores. Each plugin a [`Drivers`]
//! value names is read, compiled (or taken from the compiled cache) and
//! linked at most once, its role read from what it exports; each store is
//! one instance of it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::cas::{Cas, DirCas};
use crate::driver::{
    DriverSource, DriverSpec, Linked, PluginInfo, WasmCas, WasmLayerStore, link, linked_info,
};
use crate::error::ResultExt;
use crate::layer_store::LayerStore;
use crate::{Error, Result, show};
use rumoci_engine::image::{Open, StoreOpener};

/// The storage drivers in use, as `--driver` gives them (the same
/// grammar and defaults): at most one content store (default: the
/// built-in directory driver) and at most one layer store (default:
/// extract in place). A plugin's role is what it declares in `meta.info`
/// (the `cas` and `layer-store` capabilities). Each plugin is read,
/// compiled (or taken from the compiled cache) and linked once per
/// `Drivers` value, on first need; asked for its `meta.info` once; and
/// instantiated once per store opened.
#[derive(Debug, Clone, Default)]
pub struct Drivers {
    specs: Vec<DriverSpec>,
    /// Each spec's plugin, linked on first need, and what it says about
    /// itself (unused for built-ins).
    linked: Vec<OnceLock<(Arc<Linked>, PluginInfo)>>,
    /// Set by [`Drivers::content_only`]: the spec is a content store.
    content_only: bool,
    /// How the content-store plugin named itself when its store was opened.
    label: OnceLock<String>,
}

/// Whether `info` declares `capability`.
fn has(info: &PluginInfo, capability: &str) -> bool {
    info.capabilities.iter().any(|c| c == capability)
}

/// The indexes of the content-store and layer-store specs.
type Roles = (Option<usize>, Option<usize>);

impl Drivers {
    fn new(specs: Vec<DriverSpec>, content_only: bool) -> Drivers {
        Drivers {
            linked: specs.iter().map(|_| OnceLock::new()).collect(),
            specs,
            content_only,
            label: OnceLock::new(),
        }
    }

    /// Parse `--driver` spec strings
    /// (`dir` or `PATH.wasm[,dir=…][,timeout=…][,memory=…][,url=…][,repo=…][,opt.K=V…]`).
    pub fn parse<S: AsRef<str>>(specs: &[S]) -> Result<Drivers> {
        let specs = specs
            .iter()
            .map(|s| DriverSpec::parse(s.as_ref()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Drivers::new(specs, false))
    }

    /// One content-store driver (`dir` or a plugin that provides `cas`),
    /// checked now: a side of `copy`.
    pub fn content_only(spec: &str) -> Result<Drivers> {
        let d = Drivers::new(vec![DriverSpec::parse(spec)?], true);
        if let Some((l, info)) = d.linked(0)?
            && !has(info, "cas")
        {
            return Err(Error::invalid(format!(
                "--driver {}: not a content store (it provides {:?})",
                show::name(&l.path()),
                info.capabilities
            )));
        }
        Ok(d)
    }

    /// Use `creds` for every registry (`url=`) given without `creds=`
    /// (the CLI's `--creds`). Only the host uses them.
    pub fn with_credentials(mut self, creds: &crate::driver::net::Credentials) -> Drivers {
        for spec in &mut self.specs {
            if let Some(net) = spec.net.as_mut()
                && net.creds.is_none()
            {
                net.creds = Some(creds.clone());
            }
        }
        self
    }

    /// The specs as parsed.
    pub fn specs(&self) -> &[DriverSpec] {
        &self.specs
    }

    /// The plugin of spec `i` and its `meta.info`, linked and asked now
    /// if it was not yet (`None` for a built-in driver).
    fn linked(&self, i: usize) -> Result<Option<&(Arc<Linked>, PluginInfo)>> {
        let (Some(spec), Some(slot)) = (self.specs.get(i), self.linked.get(i)) else {
            return Ok(None);
        };
        let DriverSource::Wasm(path) = &spec.source else {
            return Ok(None);
        };
        if slot.get().is_none() {
            let linked = link(path)?;
            let info = linked_info(&linked, spec)?;
            let _ = slot.set((linked, info));
        }
        Ok(slot.get())
    }

    /// The plugin of spec `i`, which the roles found to be one.
    fn plugin(&self, i: usize) -> Result<&Arc<Linked>> {
        match self.linked(i)? {
            Some((l, _)) => Ok(l),
            None => Err(Error::invalid(
                "--driver: a built-in driver is not a plugin",
            )),
        }
    }

    fn roles(&self) -> Result<Roles> {
        if self.content_only {
            return Ok((self.linked(0)?.map(|_| 0), None));
        }
        let mut cas = Vec::new();
        let mut layers = Vec::new();
        for i in 0..self.specs.len() {
            let Some((l, info)) = self.linked(i)? else {
                cas.push(None);
                continue;
            };
            if !has(info, "cas") && !has(info, "layer-store") {
                return Err(Error::invalid(format!(
                    "--driver {}: provides neither \"cas\" nor \"layer-store\" (it provides {:?})",
                    show::name(&l.path()),
                    info.capabilities
                )));
            }
            if has(info, "cas") {
                cas.push(Some(i));
            }
            if has(info, "layer-store") {
                layers.push(i);
            }
        }
        if cas.len() > 1 {
            return Err(Error::invalid(
                "--driver: more than one content-store (cas) driver given",
            ));
        }
        if layers.len() > 1 {
            return Err(Error::invalid(
                "--driver: more than one layer-store driver given",
            ));
        }
        Ok((cas.pop().flatten(), layers.pop()))
    }

    /// The content-store plugin (`None`: the built-in directory driver).
    pub fn content_store(&self) -> Result<Option<DriverSpec>> {
        Ok(self.roles()?.0.and_then(|i| self.specs.get(i).cloned()))
    }

    /// Open the layer store the specs name: `None` when no plugin was
    /// given (extract in place); an error when plugins were given and none
    /// of them is a layer store (a content store given where a layer cache
    /// was meant must not silently mean "no cache"). Its directory is
    /// `dir=`, else `$XDG_DATA_HOME/rumoci/drivers/NAME`.
    pub fn layer_store(&self) -> Result<Option<Box<dyn LayerStore>>> {
        let store = self.layer_store_if_any()?;
        if store.is_none()
            && let Some(path) = self.specs.iter().find_map(|s| match &s.source {
                DriverSource::Wasm(p) => Some(p),
                DriverSource::Builtin(_) => None,
            })
        {
            return Err(Error::invalid(format!(
                "--driver {}: not a layer store (it is a content store: give a layer-store plugin such as layer-cache.wasm or overlay.wasm)",
                show::name(path)
            )));
        }
        Ok(store)
    }

    /// Open the layer store if one of the specs is one (`None`: extract in
    /// place), as a command that takes any `--driver` does: the specs may
    /// name only a content store.
    pub fn layer_store_if_any(&self) -> Result<Option<Box<dyn LayerStore>>> {
        let Some(i) = self.roles()?.1 else {
            return Ok(None);
        };
        let spec = &self.specs[i];
        let dir = spec.store_dir()?;
        let store = WasmLayerStore::open_linked(self.plugin(i)?, spec)
            .doing(|| format!("open layer store {}", show::name(&dir)))?;
        Ok(Some(Box::new(store)))
    }

    /// How errors name the content-store plugin (`driver NAME (FILE)` as
    /// it named itself when its store was opened, else `driver FILE`);
    /// `None` with the built-in driver.
    pub fn content_label(&self) -> Option<String> {
        let i = self.roles().ok()?.0?;
        let file = self
            .specs
            .get(i)?
            .wasm_path()
            .ok()?
            .file_name()
            .map(show::name)?;
        Some(match self.label.get() {
            Some(l) => format!("driver {l}"),
            None => format!("driver {file}"),
        })
    }

    /// A content store just opened: remember how it named itself.
    fn opened(&self, cas: WasmCas) -> Box<dyn Cas> {
        let _ = self.label.set(cas.label());
        Box::new(cas)
    }
}

/// The store directory of a content-store plugin used on layout
/// `path`, and the spec to load it with. Normally `dir=` or `path`
/// itself; with `url=` the path names a repository (passed as `repo`
/// unless `repo=` is given) and the store directory is `dir=` or the
/// default one, created if missing.
fn cas_store(spec: &DriverSpec, path: &Path) -> Result<(PathBuf, DriverSpec)> {
    if spec.url.is_none() {
        let dir = spec.dir.clone().unwrap_or_else(|| path.to_path_buf());
        if !same_place(&dir, path) {
            tracing::warn!(
                "{} is not used: the store is the driver's dir={}",
                show::name(&path),
                show::name(&dir)
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
        .doing(|| format!("create store directory {}", show::name(&dir)))?;
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

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// How errors name a plugin's store: the directory, or the repository
/// and URL with `url=`.
fn describe(spec: &DriverSpec, dir: &Path) -> String {
    match (&spec.url, &spec.repo) {
        (Some(u), Some(r)) => format!("{r} at {u}"),
        _ => show::name(&dir),
    }
}

fn empty_index() -> Result<Vec<u8>> {
    crate::oci::to_go_json(&crate::oci::Index::default())
        .map_err(|e| Error::invalid(format!("serialising index.json: {e}")))
}

impl StoreOpener for Drivers {
    /// The content store for the layout (or repository) `path`: the
    /// built-in directory driver, or the content-store plugin these
    /// drivers name.
    fn open_cas(&self, path: &Path, how: Open) -> Result<Box<dyn Cas>> {
        self.open_cas_for(path, how, None)
    }

    /// The existing store `path`, a plugin's told the refs before it is
    /// checked (a registry then need not probe its `/v2/` first).
    fn open_cas_reading(&self, path: &Path, refs: &[String]) -> Result<Box<dyn Cas>> {
        let cas = self.open_cas_for(path, Open::Existing, Some(refs))?;
        // the built-in driver (a plugin's store is told already)
        cas.want_refs(refs);
        Ok(cas)
    }
}

impl Drivers {
    /// [`StoreOpener::open_cas`]; `refs`: those the command alone reads
    /// ([`Cas::want_refs`]), told a plugin before its `check`.
    fn open_cas_for(
        &self,
        path: &Path,
        how: Open,
        refs: Option<&[String]>,
    ) -> Result<Box<dyn Cas>> {
        let drivers = self;
        let create = how != Open::Existing;
        let cas: Box<dyn Cas> = match drivers.roles()?.0 {
            None => {
                if how == Open::Create || (create && std::fs::symlink_metadata(path).is_err()) {
                    DirCas::create(path)
                        .doing(|| format!("create layout {}", show::name(&path)))?;
                }
                Box::new(DirCas::open(path).doing(|| format!("open layout {}", show::name(&path)))?)
            }
            Some(i) => {
                let linked = drivers.plugin(i)?;
                let (dir, spec) = cas_store(&drivers.specs[i], path)?;
                let fresh = std::fs::symlink_metadata(&dir).is_err() || is_empty_dir(&dir);
                // With url= the store directory is only for spooling:
                // the plugin's `init` decides whether the repository
                // exists. An empty directory (a mount point for the
                // store) is the plugin's to fill.
                if how == Open::Create && spec.url.is_none() && !fresh {
                    return Err(Error::msg(
                        crate::ErrorKind::Conflict,
                        format!(
                            "create layout {}: already exists (a store, or another non-empty directory)",
                            show::name(&dir)
                        ),
                    ));
                }
                if how == Open::Create || (create && spec.url.is_none() && fresh) {
                    drivers.opened(
                        WasmCas::create_linked(linked, &spec, &dir, &empty_index()?)
                            .doing(|| format!("create layout {}", describe(&spec, &dir)))?,
                    )
                } else {
                    let opened = match WasmCas::open_linked_reading(linked, &spec, &dir, refs) {
                        // a remote store (an object store's prefix) that
                        // is not there yet, where the command may create
                        Err(crate::driver::DriverError::Plugin {
                            error:
                                crate::driver::bindings::rumoci::driver::types::Error::NotFound(_),
                            ..
                        }) if create && spec.url.is_some() => {
                            WasmCas::create_linked(linked, &spec, &dir, &empty_index()?)
                                .doing(|| format!("create layout {}", describe(&spec, &dir)))?
                        }
                        other => {
                            other.doing(|| format!("open layout {}", describe(&spec, &dir)))?
                        }
                    };
                    drivers.opened(opened)
                }
            }
        };
        Ok(cas)
    }
}
