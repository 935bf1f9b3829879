//! A plugin file read, compiled (or taken from the compiled cache), checked
//! against the contract and linked against the host, once: a [`Linked`]
//! plugin, ready to be instantiated as either world it exports. Which
//! stores it can be (content store, layer store) is read from its exports,
//! so that choosing a plugin's role never needs an instance.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::DriverError;
use super::contract::CONTRACT_VERSION;
use super::engine::{engine, load_component};
use super::state::HostState;

/// A plugin compiled and linked, not yet instantiated (cloning is cheap:
/// the compiled code is shared).
#[derive(Clone)]
pub struct Linked {
    /// The plugin file.
    path: PathBuf,
    /// How errors name it before it has said its name: the file name.
    label: String,
    pre: InstancePre<HostState>,
    exports_cas: bool,
    exports_layer_store: bool,
}

impl std::fmt::Debug for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linked")
            .field("path", &self.path)
            .field("cas", &self.exports_cas)
            .field("layer_store", &self.exports_layer_store)
            .finish_non_exhaustive()
    }
}

pub(crate) fn load_err(plugin: &str, reason: impl std::fmt::Display) -> DriverError {
    DriverError::Load {
        plugin: plugin.to_string(),
        reason: reason.to_string(),
    }
}

/// Read, compile (or take from the cache), check and link the plugin file
/// `wasm`.
pub fn link(wasm: &Path) -> Result<Arc<Linked>, DriverError> {
    let label = wasm
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| crate::show::name(&wasm));
    let bytes = std::fs::read(wasm)
        .map_err(|e| load_err(&label, format!("{}: {e}", crate::show::name(&wasm))))?;
    let engine = engine()?;
    let component = load_component(engine, &label, &bytes)?;
    super::contract::check(engine, &component).map_err(|e| load_err(&label, e))?;
    let linker = linker(&label)?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| load_err(&label, format!("cannot link: {e:#}")))?;
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let exports_iface = |iface: &str| {
        let name = format!("rumoci:driver/{iface}@{CONTRACT_VERSION}");
        exports.contains(&name)
    };
    Ok(Arc::new(Linked {
        path: wasm.to_path_buf(),
        exports_cas: exports_iface("cas"),
        exports_layer_store: exports_iface("layer-store"),
        label,
        pre,
    }))
}

/// The host's side of every plugin: WASI (its filesystem guarded),
/// `wasi:http` through the host's hooks, and `rumoci:driver/host`.
fn linker(label: &str) -> Result<Linker<HostState>, DriverError> {
    let mut linker: Linker<HostState> = Linker::new(engine()?);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| load_err(label, format!("{e:#}")))?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
        .map_err(|e| load_err(label, format!("wasi:http: {e:#}")))?;
    super::fsguard::add_to_linker(&mut linker)
        .map_err(|e| load_err(label, format!("filesystem guard: {e:#}")))?;
    super::bindings::rumoci::driver::host::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(|e| load_err(label, format!("{e:#}")))?;
    Ok(linker)
}

impl Linked {
    /// The plugin file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file name, how errors name the plugin until it has said its name.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether it exports the content-store interface (`cas`).
    pub fn exports_cas(&self) -> bool {
        self.exports_cas
    }

    /// Whether it exports the layer-store interface.
    pub fn exports_layer_store(&self) -> bool {
        self.exports_layer_store
    }

    /// The linked component, to be checked as one world and instantiated.
    pub(crate) fn pre(&self) -> InstancePre<HostState> {
        self.pre.clone()
    }
}
