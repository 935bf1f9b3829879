//! Sandboxed WebAssembly storage drivers.
//!
//! A driver is a WebAssembly component implementing the
//! `rumoci:driver@0.2.0` contract (the repository's `wit/` directory; write
//! one with the `rumoci-driver-sdk` crate). This module runs them:
//!
//! * one wasmtime [`Engine`](wasmtime::Engine) per process, with epoch
//!   interruption driven by a background ticker thread;
//! * compiled components cached on disk (`$XDG_CACHE_HOME/rumoci/wasm` or
//!   `~/.cache/rumoci/wasm`), keyed by the wasm file's sha256 and the
//!   engine's precompile-compatibility hash;
//! * per instance: a deadline per call, a memory limit, a WASI context with
//!   exactly one preopened directory (the store directory), no environment,
//!   no stdio, no sockets (with `url=`, `wasi:http` requests to that one
//!   origin, sent by the host: [`net`]), and no
//!   opening of fifos or devices in the store (`fsguard`); an instance that
//!   trapped is dropped and re-created on the next call;
//! * [`WasmCas`]: the [`Cas`](crate::cas::Cas) trait over a plugin. The
//!   host computes and checks every digest: bytes written pass through a
//!   hasher on the host side, reads are verified by the callers
//!   ([`crate::cas::ext::open_verified`]).

mod cas;
pub mod contract;
mod engine;
mod fsguard;
mod layer;
mod link;
pub mod net;
mod plugin;
mod spec;
mod state;

pub use cas::{SharedPlugin, WasmCas, lock as lock_plugin, stream_reader};
pub use contract::CONTRACT_VERSION;
pub use engine::cache_dir;
pub use layer::WasmLayerStore;
pub use link::{Linked, link};
pub use plugin::{Plugin, PluginInfo, World, linked_info, plugin_info};
pub use spec::{BUILTIN_DRIVERS, DEFAULT_MEMORY, DEFAULT_TIMEOUT, DriverSource, DriverSpec};
pub use state::HostState;

/// Every capability a driver may declare in `meta.info`, and what the host
/// does differently when it is declared. Any other name is warned about and
/// ignored.
pub const CAPABILITIES: &[(&str, &str)] = &[
    (
        "cas",
        "the driver is a content store: --driver selects it for the layout of every image command",
    ),
    (
        "cas.init",
        "`rumoci init` (and `driver test`) create a store through `cas.init`; without it, only existing stores are opened",
    ),
    (
        "cas.open-stream",
        "blob reads use `cas.open-stream` (the host reads the plugin's file stream itself) instead of `blob-reader.read-at` chunks",
    ),
    (
        "cas.tags-only",
        "the store keeps tagged index.json entries only (a registry): referrers are written there by the referrers tag schema (an index tagged sha256-<hex> of the subject)",
    ),
    (
        "net.aws-sigv4",
        "with url=, the host signs the plugin's requests with AWS Signature V4 (credentials from creds=, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE and ~/.aws/credentials; sign=none turns it off) instead of answering registry challenges",
    ),
    (
        "layer-store",
        "the driver is a layer store: unpack, repack and `driver snapshots`/`driver rm` go through it",
    ),
    (
        "layer-store.copy",
        "informational: the driver answers `copy` mounts (the host copies the parent's tree); the host acts on the mounts answered, not on this",
    ),
    (
        "layer-store.overlay",
        "informational: the driver answers `overlay` mounts (the host extracts each layer alone in overlayfs form and mounts the chain `view` returns as the bundle's rootfs); the host acts on the mounts answered, not on this",
    ),
];

/// Generated host bindings of the `rumoci:driver/cas-driver` world.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "cas-driver",
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:filesystem": wasmtime_wasi::p2::bindings::sync::filesystem,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
        require_store_data_send: true,
    });
}

/// Generated host bindings of the `rumoci:driver/layer-driver` world. The
/// imports and shared types are those of [`bindings`].
#[allow(missing_docs, clippy::all)]
pub mod layer_bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "layer-driver",
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:filesystem": wasmtime_wasi::p2::bindings::sync::filesystem,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
            "rumoci:driver/types": super::bindings::rumoci::driver::types,
            "rumoci:driver/host": super::bindings::rumoci::driver::host,
        },
        require_store_data_send: true,
    });
}

/// Errors of the driver machinery. Every variant names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A `--driver` specification is malformed.
    #[error("--driver {spec:?}: {reason}")]
    Spec {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin could not be loaded, compiled or instantiated.
    #[error("driver {plugin}: {reason}")]
    Load {
        /// The plugin (file name or driver name).
        plugin: String,
        /// What went wrong.
        reason: String,
    },
    /// The plugin trapped (deadline, memory limit, panic, bug).
    #[error("driver {plugin}: {op}: plugin trapped: {reason}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The operation that was running.
        op: String,
        /// Why it stopped.
        reason: String,
    },
    /// The plugin returned an error.
    #[error("driver {plugin}: {op}: {}", describe(error))]
    Plugin {
        /// The plugin.
        plugin: String,
        /// The operation.
        op: String,
        /// The plugin's error.
        error: bindings::rumoci::driver::types::Error,
    },
    /// The plugin returned something that breaks the contract.
    #[error("driver {plugin}: {op}: protocol violation: {reason}")]
    Protocol {
        /// The plugin.
        plugin: String,
        /// The operation.
        op: String,
        /// What was wrong.
        reason: String,
    },
    /// A plugin's store directory cannot be chosen (no `dir=` and no
    /// default location), or the spec names no plugin file.
    #[error("{0}")]
    Store(String),
    /// The plugin does not provide a capability that is needed.
    #[error("driver {plugin}: does not provide {capability:?} (it provides {provided:?})")]
    Capability {
        /// The plugin.
        plugin: String,
        /// The capability needed.
        capability: String,
        /// What it declares.
        provided: Vec<String>,
    },
}

impl DriverSpec {
    /// The plugin file, or an error for a built-in driver.
    pub fn wasm_path(&self) -> Result<&std::path::Path, DriverError> {
        match &self.source {
            DriverSource::Wasm(p) => Ok(p),
            DriverSource::Builtin(n) => Err(DriverError::Store(format!(
                "--driver {n}: a built-in driver, not a plugin (PATH.wasm)"
            ))),
        }
    }

    /// The store directory of a plugin (a layer store, or a content store
    /// given `url=`): `dir=`, else `$XDG_DATA_HOME/rumoci/drivers/NAME`
    /// (`~/.local/share/…`), NAME being the plugin file's stem.
    pub fn store_dir(&self) -> Result<std::path::PathBuf, DriverError> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let wasm = self.wasm_path()?;
        let data = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(d) => std::path::PathBuf::from(d),
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        DriverError::Store(
                            "neither XDG_DATA_HOME nor HOME is set: give the driver a dir=".into(),
                        )
                    })?;
                std::path::PathBuf::from(home).join(".local/share")
            }
        };
        let name = wasm.file_stem().ok_or_else(|| {
            DriverError::Store(format!(
                "--driver {}: no file name",
                crate::show::name(&wasm)
            ))
        })?;
        Ok(data.join("rumoci/drivers").join(name))
    }
}

/// One line for a plugin's error: class and message.
pub(crate) fn describe(e: &bindings::rumoci::driver::types::Error) -> String {
    use bindings::rumoci::driver::types::Error as E;
    let (k, m) = match e {
        E::NotFound(m) => ("not found", m),
        E::AlreadyExists(m) => ("already exists", m),
        E::InvalidArgument(m) => ("invalid argument", m),
        E::FailedPrecondition(m) => ("failed precondition", m),
        E::Unsupported(m) => ("unsupported", m),
        E::Integrity(m) => ("integrity", m),
        E::Io(m) => ("i/o error", m),
        E::Other(m) => ("error", m),
    };
    let m: String = m.chars().take(1024).filter(|c| !c.is_control()).collect();
    format!("{k}: {m}")
}

impl crate::driver::DriverError {
    /// What kind of failure this is: a malformed spec or a missing store
    /// directory is invalid input, everything else the driver's.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::driver::DriverError as E;
        match self {
            E::Spec { .. } | E::Store(_) => crate::error::ErrorKind::InvalidInput,
            E::Capability { .. } => crate::error::ErrorKind::Unsupported,
            _ => crate::error::ErrorKind::Driver,
        }
    }
}

rumoci_core::wraps!(crate::driver::DriverError);
