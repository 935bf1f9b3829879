//! The host's side of one plugin instance: its WASI context, resource
//! table, network hooks, limits and options, and the `rumoci:driver/host`
//! calls it answers (logging, configuration, tree operations beneath the
//! store directory).

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::rumoci::driver::host::Level;

/// Longest log message accepted from a plugin.
const MAX_LOG: usize = 4096;

/// Per-store host state (opaque outside the driver module).
#[doc(hidden)]
pub struct HostState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) http: wasmtime_wasi_http::WasiHttpCtx,
    pub(super) hooks: super::net::Hooks,
    pub(super) limits: StoreLimits,
    pub(super) plugin: String,
    pub(super) options: Vec<(String, String)>,
    /// The media type of the blob the current `cas.create` call starts.
    pub(super) create_media_type: Option<String>,
    /// What `host.wanted-refs` answers: the refs of `index.json` the
    /// command reads, when it reads only those and writes no index.
    pub(super) wanted_refs: Option<Vec<String>>,
    /// The store directory (`O_PATH`), for the tree operations the host
    /// does on the plugin's behalf (`host.measure-tree`, `host.remove-tree`).
    pub(super) store: Option<std::os::fd::OwnedFd>,
}

impl HostState {
    /// The parent directory of `path` (relative to the store directory,
    /// resolved beneath it without following any symlink) and the last
    /// component's name.
    fn store_entry(&self, path: &str) -> Result<(std::os::fd::OwnedFd, String), String> {
        use rustix::fs::{Mode, OFlags};
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| "the driver has no store directory".to_string())?;
        let clean: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if clean.contains(&"..") {
            return Err(format!("{path:?}: \"..\" is not allowed"));
        }
        let Some((name, dirs)) = clean.split_last() else {
            return Err(format!("{path:?}: names the store directory itself"));
        };
        let parent = if dirs.is_empty() {
            ".".to_string()
        } else {
            dirs.join("/")
        };
        let fd = crate::fs::root::open_dir_beneath(store, parent.as_str())
            .map_err(|e| format!("{parent}: {e}"))?;
        // O_PATH descriptors cannot be listed or written through: reopen
        let fd = rustix::fs::openat(
            &fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("{parent}: {e}"))?;
        Ok((fd, (*name).to_string()))
    }
}

impl super::fsguard::Guarded for HostState {
    fn table(&self) -> &ResourceTable {
        &self.table
    }
    fn plugin(&self) -> &str {
        &self.plugin
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl super::bindings::rumoci::driver::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let mut m = message;
        if m.len() > MAX_LOG {
            let mut cut = MAX_LOG;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push('…');
        }
        let p = &self.plugin;
        match level {
            Level::Trace => tracing::trace!("driver {p}: {m}"),
            Level::Debug => tracing::debug!("driver {p}: {m}"),
            Level::Info => tracing::info!("driver {p}: {m}"),
            Level::Warn => tracing::warn!("driver {p}: {m}"),
            Level::Error => tracing::error!("driver {p}: {m}"),
        }
    }

    fn config(&mut self) -> Vec<(String, String)> {
        self.options.clone()
    }

    fn create_media_type(&mut self) -> Option<String> {
        self.create_media_type.clone()
    }

    fn wanted_refs(&mut self) -> Option<Vec<String>> {
        self.wanted_refs.clone()
    }

    fn measure_tree(
        &mut self,
        path: String,
    ) -> Result<super::bindings::rumoci::driver::host::TreeSize, String> {
        let (dir, name) = self.store_entry(&path)?;
        let (size, inodes) =
            crate::fs::root::measure_at(&dir, name.as_str()).map_err(|e| format!("{path}: {e}"))?;
        Ok(super::bindings::rumoci::driver::host::TreeSize { size, inodes })
    }

    fn remove_tree(&mut self, path: String) -> Result<(), String> {
        let (dir, name) = self.store_entry(&path)?;
        crate::fs::root::remove_all_at(&dir, name.as_str()).map_err(|e| format!("{path}: {e}"))
    }
}

impl super::bindings::rumoci::driver::types::Host for HostState {}
