//! [`WasmLayerStore`]: the host [`LayerStore`] trait over a plugin's
//! `layer-store` export.
//!
//! The plugin only answers; everything it returns is checked here: names
//! and digests parsed, paths resolved beneath the store directory by the
//! callers ([`crate::layer_store::resolve`]), mounts that break the
//! contract (several, mixed forms, a chain of the wrong length) refused by
//! the callers.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::bindings::rumoci::driver::types::Error as WitError;
use super::cas::require;
use super::layer_bindings::LayerDriver;
use super::layer_bindings::exports::rumoci::driver::layer_store as wit;
use super::link::Linked;
use super::plugin::{Plugin, PluginInfo};
use super::{DriverError, DriverSpec};
use crate::layer_store::{
    DiskUsage, LayerStore, LayerStoreError, Mount, Prepared, SnapshotInfo, SnapshotKind,
    UnpackTarget,
};
use crate::oci::Digest;

/// Longest snapshot name or path accepted from a plugin.
const MAX_NAME: usize = 4096;
/// Snapshots asked for per `list-snapshots` page.
const PAGE: u32 = 256;
/// Most snapshots accepted from a plugin in all.
const MAX_SNAPSHOTS: usize = crate::limits::MAX_SNAPSHOTS;
/// Most mounts accepted for one snapshot.
const MAX_MOUNTS: usize = 512;
/// Most directories accepted in one overlay mount (overlayfs stacks at
/// most 500 layers; rumoci's own limit on a chain is far above).
const MAX_LOWER: usize = crate::limits::MAX_DOCUMENT_DESCRIPTORS;

/// A layer store provided by a WebAssembly plugin.
#[derive(Debug)]
pub struct WasmLayerStore {
    plugin: Mutex<Plugin<LayerDriver>>,
    dir: PathBuf,
    label: String,
}

impl WasmLayerStore {
    /// Load the plugin `spec` names, with its store in the spec's store
    /// directory ([`DriverSpec::store_dir`]: `dir=` or the default one;
    /// created if missing).
    pub fn open(spec: &DriverSpec) -> Result<WasmLayerStore, DriverError> {
        WasmLayerStore::open_linked(&*super::link(spec.wasm_path()?)?, spec)
    }

    /// [`WasmLayerStore::open`] with the plugin `linked`.
    pub fn open_linked(linked: &Linked, spec: &DriverSpec) -> Result<WasmLayerStore, DriverError> {
        let dir = spec.store_dir()?;
        let dir = dir.as_path();
        std::fs::create_dir_all(dir).map_err(|e| DriverError::Load {
            plugin: linked.label().to_string(),
            reason: format!("create store directory {}: {e}", crate::show::name(&dir)),
        })?;
        let p: Plugin<LayerDriver> = Plugin::with(linked, spec, Some(dir))?;
        require(&p, "layer-store")?;
        Ok(WasmLayerStore {
            label: p.label().to_string(),
            plugin: Mutex::new(p),
            dir: dir.to_path_buf(),
        })
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> PluginInfo {
        self.lock_plugin().info().clone()
    }

    fn lock_plugin(&self) -> MutexGuard<'_, Plugin<LayerDriver>> {
        self.plugin.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, op: &str, e: DriverError) -> LayerStoreError {
        if let DriverError::Plugin {
            error: WitError::AlreadyExists(m),
            ..
        } = &e
        {
            return LayerStoreError::AlreadyExists {
                store: self.label.clone(),
                op: op.into(),
                name: m.chars().take(512).collect(),
            };
        }
        LayerStoreError::Store {
            store: self.label.clone(),
            op: op.into(),
            reason: match e {
                // the message names the plugin already; keep only the rest
                DriverError::Plugin { error, .. } => super::describe(&error),
                other => other.to_string(),
            },
        }
    }

    fn protocol(&self, op: &str, reason: impl Into<String>) -> LayerStoreError {
        LayerStoreError::Protocol {
            store: self.label.clone(),
            op: op.into(),
            reason: reason.into(),
        }
    }

    fn text(&self, op: &str, what: &str, s: String) -> Result<String, LayerStoreError> {
        if s.len() > MAX_NAME || s.chars().any(char::is_control) {
            return Err(self.protocol(op, format!("invalid {what}")));
        }
        Ok(s)
    }

    fn info_from(&self, op: &str, i: wit::SnapshotInfo) -> Result<SnapshotInfo, LayerStoreError> {
        let diff_id = match i.diff_id {
            None => None,
            Some(d) => Some(
                d.parse::<Digest>()
                    .map_err(|e| self.protocol(op, format!("diff-id: {e}")))?,
            ),
        };
        Ok(SnapshotInfo {
            name: self.text(op, "name", i.name)?,
            parent: i.parent.map(|p| self.text(op, "parent", p)).transpose()?,
            kind: match i.kind {
                wit::SnapshotKind::Active => SnapshotKind::Active,
                wit::SnapshotKind::View => SnapshotKind::View,
                wit::SnapshotKind::Committed => SnapshotKind::Committed,
            },
            diff_id,
            meta: i.meta.map(|m| self.text(op, "meta", m)).transpose()?,
        })
    }

    fn mounts_from(&self, op: &str, ms: Vec<wit::Mount>) -> Result<Vec<Mount>, LayerStoreError> {
        if ms.len() > MAX_MOUNTS {
            return Err(self.protocol(op, format!("{} mounts", ms.len())));
        }
        ms.into_iter()
            .map(|m| {
                Ok(match m {
                    wit::Mount::Copy(src) => Mount::Copy(self.text(op, "copy source", src)?),
                    wit::Mount::Overlay(dirs) => {
                        if dirs.len() > MAX_LOWER {
                            return Err(self.protocol(
                                op,
                                format!("an overlay mount of {} directories", dirs.len()),
                            ));
                        }
                        Mount::Overlay(
                            dirs.into_iter()
                                .map(|d| self.text(op, "overlay directory", d))
                                .collect::<Result<_, _>>()?,
                        )
                    }
                })
            })
            .collect()
    }
}

impl WasmLayerStore {
    /// One raw `list-snapshots` page (the conformance runner's paging
    /// checks): the names and the next cursor.
    pub fn page(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<String>), LayerStoreError> {
        const OP: &str = "layer-store.list-snapshots";
        let page = self
            .lock_plugin()
            .call(OP, |s, b| {
                b.rumoci_driver_layer_store()
                    .call_list_snapshots(s, cursor, limit)
            })
            .map_err(|e| self.err(OP, e))?;
        Ok((page.items.into_iter().map(|i| i.name).collect(), page.next))
    }

    /// Drop the instance as a killed process would (see [`Plugin::kill`]).
    pub fn kill(&self) {
        self.lock_plugin().kill();
    }
}

impl LayerStore for WasmLayerStore {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn root(&self) -> &Path {
        &self.dir
    }

    fn stat(&self, name: &str) -> Result<Option<SnapshotInfo>, LayerStoreError> {
        const OP: &str = "layer-store.stat";
        let r = self
            .lock_plugin()
            .call(OP, |s, b| b.rumoci_driver_layer_store().call_stat(s, name))
            .map_err(|e| self.err(OP, e))?;
        r.map(|i| self.info_from(OP, i)).transpose()
    }

    fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        target: Option<&str>,
    ) -> Result<Prepared, LayerStoreError> {
        const OP: &str = "layer-store.prepare";
        let r = self
            .lock_plugin()
            .call(OP, |s, b| {
                b.rumoci_driver_layer_store()
                    .call_prepare(s, key, parent, target, &Vec::new())
            })
            .map_err(|e| self.err(OP, e))?;
        Ok(match r {
            wit::Prepared::Cached(i) => {
                let i = self.info_from(OP, i)?;
                if Some(i.name.as_str()) != target || i.kind != SnapshotKind::Committed {
                    return Err(self.protocol(OP, "cached snapshot is not the committed target"));
                }
                Prepared::Cached(i)
            }
            wit::Prepared::Fresh(t) => Prepared::Fresh(UnpackTarget {
                dir: self.text(OP, "dir", t.dir)?,
                mounts: self.mounts_from(OP, t.mounts)?,
                meta: Some(self.text(OP, "meta", t.meta)?),
            }),
        })
    }

    fn view(&self, key: &str, parent: &str) -> Result<Vec<Mount>, LayerStoreError> {
        const OP: &str = "layer-store.view";
        let r = self
            .lock_plugin()
            .call(OP, |s, b| {
                b.rumoci_driver_layer_store().call_view(s, key, parent)
            })
            .map_err(|e| self.err(OP, e))?;
        self.mounts_from(OP, r)
    }

    fn commit(
        &self,
        name: &str,
        key: &str,
        diff_id: &Digest,
    ) -> Result<SnapshotInfo, LayerStoreError> {
        const OP: &str = "layer-store.commit";
        let d = diff_id.to_string();
        let r = self
            .lock_plugin()
            .call(OP, |s, b| {
                b.rumoci_driver_layer_store()
                    .call_commit(s, name, key, &d, &Vec::new())
            })
            .map_err(|e| self.err(OP, e))?;
        self.info_from(OP, r)
    }

    fn remove(&self, name: &str) -> Result<(), LayerStoreError> {
        const OP: &str = "layer-store.remove";
        self.lock_plugin()
            .call(OP, |s, b| {
                b.rumoci_driver_layer_store().call_remove(s, name)
            })
            .map_err(|e| self.err(OP, e))
    }

    fn list(&self) -> Result<Vec<SnapshotInfo>, LayerStoreError> {
        const OP: &str = "layer-store.list-snapshots";
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.clone();
            let page = self
                .lock_plugin()
                .call(OP, |s, b| {
                    b.rumoci_driver_layer_store()
                        .call_list_snapshots(s, c.as_deref(), PAGE)
                })
                .map_err(|e| self.err(OP, e))?;
            if page.items.len() > PAGE as usize {
                return Err(self.protocol(OP, "page larger than asked for"));
            }
            let empty = page.items.is_empty();
            for i in page.items {
                out.push(self.info_from(OP, i)?);
            }
            if out.len() > MAX_SNAPSHOTS {
                return Err(self.protocol(OP, crate::limits::Limit::Snapshots.to_string()));
            }
            match page.next {
                None => break,
                Some(n) if Some(&n) == cursor.as_ref() || empty => {
                    return Err(self.protocol(OP, "paging does not advance"));
                }
                Some(n) => cursor = Some(n),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    fn usage(&self, name: &str) -> Result<Option<DiskUsage>, LayerStoreError> {
        const OP: &str = "layer-store.usage";
        let u = self
            .lock_plugin()
            .call(OP, |s, b| b.rumoci_driver_layer_store().call_usage(s, name))
            .map_err(|e| self.err(OP, e))?;
        Ok(Some(DiskUsage {
            size: u.size,
            inodes: u.inodes,
        }))
    }

    fn lock(&self) -> Result<Option<std::fs::File>, LayerStoreError> {
        // the store directory itself, as a layout is locked
        crate::cas::dir::lock(&self.dir, rustix::fs::FlockOperation::LockExclusive)
            .map(Some)
            .map_err(|e| LayerStoreError::Store {
                store: self.label.clone(),
                op: "lock".into(),
                reason: e.to_string(),
            })
    }
}
