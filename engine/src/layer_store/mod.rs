//! Layer stores: where unpacked layers live before they become a bundle's
//! root filesystem.
//!
//! The model is containerd's snapshotter, with "already cached" folded into
//! [`LayerStore::prepare`]. A store does bookkeeping and layout; rumoci
//! itself extracts the tars, copies trees and verifies everything, because a
//! store may be a sandboxed plugin that can do none of that (see the
//! `layer-store` interface in the repository's `wit/driver.wit`).
//!
//! Unpacking an image with layers `L1..Ln` whose chain ids are `C1..Cn`
//! ([`chain_ids`]):
//!
//! 1. the deepest `Ci` the store has committed is the starting point;
//! 2. each later layer is [`prepare`](LayerStore::prepare)d on top of its
//!    parent: the store answers [`Prepared::Cached`] (skip it) or
//!    [`Prepared::Fresh`] with a directory, the [`Mount`] that shows the
//!    parent there (none, a copy of the parent's tree, or an overlay of the
//!    parent chain's layer directories: the layer is then extracted alone,
//!    in overlayfs form) and a file for rumoci's own [`record`] of the
//!    tree; rumoci extracts the layer and
//!    [`commit`](LayerStore::commit)s it under its chain id;
//! 3. a [`view`](LayerStore::view) of `Cn` gives the mount that makes the
//!    whole chain the bundle's `rootfs` (a copy of its tree, or an overlay
//!    of its layer directories to mount).
//!
//! What rumoci does is decided by these answers alone (see
//! [`crate::rootfs::unpack_chain`]), never by a capability the store
//! declares.
//!
//! [`InPlace`], the built-in store, extracts straight into the bundle's
//! `rootfs` and keeps nothing: it is what `unpack` uses without a layer
//! driver, through the same steps.

pub mod mounted;
pub mod record;

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use crate::limits;
use crate::oci::{Algorithm, Digest};
use crate::show;

/// Errors of a layer store.
#[derive(Debug, thiserror::Error)]
pub enum LayerStoreError {
    /// The store refused or failed an operation.
    #[error("layer store {store}: {op}: {reason}")]
    Store {
        /// The store (driver name).
        store: String,
        /// The operation.
        op: String,
        /// Why.
        reason: String,
    },
    /// The snapshot exists already (a concurrent unpack committed it).
    #[error("layer store {store}: {op}: {name} already exists")]
    AlreadyExists {
        /// The store.
        store: String,
        /// The operation.
        op: String,
        /// The snapshot.
        name: String,
    },
    /// No snapshot of that name or key.
    #[error("layer store {store}: no snapshot \"{name}\"")]
    NotFound {
        /// The store.
        store: String,
        /// The snapshot asked for.
        name: String,
    },
    /// The snapshot is the parent of others (remove those first).
    #[error(
        "layer store {store}: snapshot \"{name}\" is the parent of {children:?}: remove those first"
    )]
    HasChildren {
        /// The store.
        store: String,
        /// The snapshot asked for.
        name: String,
        /// Its children.
        children: Vec<String>,
    },
    /// The snapshot is a lower layer of a mounted overlay (a bundle).
    #[error(
        "layer store {store}: snapshot {name:?} is a lower layer of the overlay mounted at {mount}: `rumoci umount` that bundle first"
    )]
    InUse {
        /// The store.
        store: String,
        /// The snapshot asked for.
        name: String,
        /// Where the overlay using it is mounted.
        mount: String,
    },
    /// The store returned something that breaks the contract.
    #[error("layer store {store}: {op}: protocol violation: {reason}")]
    Protocol {
        /// The store.
        store: String,
        /// The operation.
        op: String,
        /// What was wrong.
        reason: String,
    },
}

/// State of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// Writable, being prepared.
    Active,
    /// Read-only view of a committed chain.
    View,
    /// Immutable; may be a parent.
    Committed,
}

/// What a store knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Key (active/view) or name (committed: a chain id).
    pub name: String,
    /// The parent snapshot's name.
    pub parent: Option<String>,
    /// Its state.
    pub kind: SnapshotKind,
    /// The layer's uncompressed digest, once committed.
    pub diff_id: Option<Digest>,
    /// rumoci's record of the tree (relative to the store directory).
    pub meta: Option<String>,
}

/// Space used by a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes.
    pub size: u64,
    /// Inodes.
    pub inodes: u64,
}

/// How a tree of the store becomes visible at a target (the WIT's
/// `mount`): what rumoci does with a layer's directory (an answer of
/// [`LayerStore::prepare`]) or a bundle's rootfs (of [`LayerStore::view`]).
/// Paths are relative to the store directory and resolved with
/// [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A committed tree: rumoci copies it (checked against its record)
    /// into the target.
    Copy(String),
    /// Layer directories, topmost first (none beneath a base layer): the
    /// target is an overlayfs layer on top of them. A layer is then
    /// extracted in overlayfs form; a view is mounted as the rootfs.
    Overlay(Vec<String>),
}

/// Most directories of one overlay mount shown in a message.
const SHOWN_DIRS: usize = 4;

impl std::fmt::Display for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mount::Copy(src) => write!(f, "copy(\"{}\")", show::name(src)),
            Mount::Overlay(dirs) => {
                let mut shown: Vec<String> = dirs
                    .iter()
                    .take(SHOWN_DIRS)
                    .map(|d| format!("\"{}\"", show::name(d)))
                    .collect();
                if dirs.len() > SHOWN_DIRS {
                    shown.push(format!("… {} in all", dirs.len()));
                }
                write!(f, "overlay([{}])", shown.join(", "))
            }
        }
    }
}

/// `mounts` as a store answered them, for messages: `[]`, `[copy("a")]`,
/// `[copy("a"), overlay(["b", "c"])]` (names escaped and shortened by
/// [`show::name`]).
pub fn describe_mounts(mounts: &[Mount]) -> String {
    let shown: Vec<String> = mounts
        .iter()
        .take(SHOWN_DIRS)
        .map(Mount::to_string)
        .collect();
    if mounts.len() > SHOWN_DIRS {
        format!("[{}, … {} mounts in all]", shown.join(", "), mounts.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

/// Where to extract a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackTarget {
    /// Directory to extract into, relative to the store directory (`""`:
    /// the store directory itself).
    pub dir: String,
    /// How the parent chain is seen from `dir`: none (a base layer, or
    /// `dir` shows the parent already), a [`Mount::Copy`] of the parent's
    /// tree, or a [`Mount::Overlay`] of the parent chain's directories
    /// (extract in overlayfs form).
    pub mounts: Vec<Mount>,
    /// Where rumoci keeps its [`record`] of the tree (`None`: nowhere; the
    /// snapshot can then not be reused).
    pub meta: Option<String>,
}

/// Answer of [`LayerStore::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The target is committed already: skip the layer.
    Cached(SnapshotInfo),
    /// Extract here, then commit (or remove to abort).
    Fresh(UnpackTarget),
}

/// A layer store (see the module documentation).
pub trait LayerStore {
    /// The store's name, for messages.
    fn name(&self) -> String;
    /// The directory every relative path of the store is resolved beneath.
    fn root(&self) -> &Path;
    /// A snapshot by name or key.
    fn stat(&self, name: &str) -> Result<Option<SnapshotInfo>, LayerStoreError>;
    /// Start active snapshot `key` on `parent`, meant to become `target`.
    fn prepare(
        &self,
        key: &str,
        parent: Option<&str>,
        target: Option<&str>,
    ) -> Result<Prepared, LayerStoreError>;
    /// A read-only view `key` of the committed chain `parent`: the mount
    /// that makes it a root filesystem (one [`Mount::Copy`] or one
    /// [`Mount::Overlay`]; none from the built-in store, whose chain is
    /// the rootfs already).
    fn view(&self, key: &str, parent: &str) -> Result<Vec<Mount>, LayerStoreError>;
    /// Commit active `key` as `name`.
    fn commit(
        &self,
        name: &str,
        key: &str,
        diff_id: &Digest,
    ) -> Result<SnapshotInfo, LayerStoreError>;
    /// Remove a snapshot.
    fn remove(&self, name: &str) -> Result<(), LayerStoreError>;
    /// Every snapshot the store holds, sorted by name (the built-in store
    /// keeps none).
    fn list(&self) -> Result<Vec<SnapshotInfo>, LayerStoreError> {
        Ok(Vec::new())
    }
    /// Space used by a snapshot (`None`: the store does not say).
    fn usage(&self, _name: &str) -> Result<Option<DiskUsage>, LayerStoreError> {
        Ok(None)
    }
    /// Hold the store for the caller's exclusive use until the guard is
    /// dropped (other rumoci processes wait).
    fn lock(&self) -> Result<Option<std::fs::File>, LayerStoreError> {
        Ok(None)
    }
}

/// The built-in store: extract every layer in place into the bundle's
/// `rootfs` (its root directory); nothing is kept or reused.
#[derive(Debug)]
pub struct InPlace {
    root: PathBuf,
}

impl InPlace {
    /// A store whose only tree is `rootfs`.
    pub fn new(rootfs: &Path) -> InPlace {
        InPlace {
            root: rootfs.to_path_buf(),
        }
    }
}

impl LayerStore for InPlace {
    fn name(&self) -> String {
        "extract (built-in)".into()
    }
    fn root(&self) -> &Path {
        &self.root
    }
    fn stat(&self, _name: &str) -> Result<Option<SnapshotInfo>, LayerStoreError> {
        Ok(None)
    }
    fn prepare(
        &self,
        _key: &str,
        _parent: Option<&str>,
        _target: Option<&str>,
    ) -> Result<Prepared, LayerStoreError> {
        // every layer lands on top of the previous one, in the same tree
        Ok(Prepared::Fresh(UnpackTarget {
            dir: String::new(),
            mounts: Vec::new(),
            meta: None,
        }))
    }
    fn view(&self, _key: &str, _parent: &str) -> Result<Vec<Mount>, LayerStoreError> {
        // the chain is the root filesystem already
        Ok(Vec::new())
    }
    fn commit(
        &self,
        name: &str,
        _key: &str,
        diff_id: &Digest,
    ) -> Result<SnapshotInfo, LayerStoreError> {
        Ok(SnapshotInfo {
            name: name.to_string(),
            parent: None,
            kind: SnapshotKind::Committed,
            diff_id: Some(diff_id.clone()),
            meta: None,
        })
    }
    fn remove(&self, _name: &str) -> Result<(), LayerStoreError> {
        Ok(())
    }
}

/// A key for an active snapshot or view, unique to this process and call.
pub fn snapshot_key(what: &str) -> String {
    format!(
        "rumoci-{what}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// Check the parent links of a store's listing: no snapshot may be its own
/// ancestor, and no chain may be longer than
/// [`limits::MAX_DOCUMENT_DESCRIPTORS`] (a chain is one image's layers). A
/// parent missing from the listing ends its chain. Iterative, linear in the
/// number of snapshots.
pub fn check_chains(store: &dyn LayerStore, all: &[SnapshotInfo]) -> Result<(), LayerStoreError> {
    let bad = |reason: String| LayerStoreError::Protocol {
        store: store.name(),
        op: "layer-store.list-snapshots".into(),
        reason,
    };
    let index: HashMap<&str, usize> = all
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // depth of each snapshot's chain, 0 = not known yet
    let mut depth = vec![0usize; all.len()];
    let mut on_path = vec![false; all.len()];
    let mut path: Vec<usize> = Vec::new();
    for start in 0..all.len() {
        let mut at = Some(start);
        // walk up until a known chain, a chain's end, or a cycle
        let mut below = 0;
        while let Some(i) = at {
            if depth[i] != 0 {
                below = depth[i];
                break;
            }
            if on_path[i] {
                return Err(bad(format!(
                    "snapshot parents form a cycle (through {})",
                    show::name(&all[i].name)
                )));
            }
            on_path[i] = true;
            path.push(i);
            at = all[i].parent.as_deref().and_then(|p| index.get(p).copied());
        }
        for i in path.drain(..).rev() {
            below += 1;
            if below > limits::MAX_DOCUMENT_DESCRIPTORS {
                return Err(bad(format!(
                    "snapshot {}: {}",
                    show::name(&all[i].name),
                    limits::Limit::SnapshotChain
                )));
            }
            depth[i] = below;
            on_path[i] = false;
        }
    }
    Ok(())
}

/// Every snapshot of `store` with the space used by the committed ones,
/// under the store's lock (so that no unpack changes it meanwhile). The
/// parent links are checked ([`check_chains`]).
pub fn snapshots(
    store: &dyn LayerStore,
) -> Result<Vec<(SnapshotInfo, Option<DiskUsage>)>, LayerStoreError> {
    let _lock = store.lock()?;
    let all = store.list()?;
    check_chains(store, &all)?;
    let mut out = Vec::new();
    for info in all {
        let usage = match info.kind {
            SnapshotKind::Committed => store.usage(&info.name)?,
            SnapshotKind::Active | SnapshotKind::View => None,
        };
        out.push((info, usage));
    }
    Ok(out)
}

/// Most children named in a [`LayerStoreError::HasChildren`].
const SHOWN_CHILDREN: usize = 8;

/// Remove the snapshots `names` from `store`, under the store's lock (the
/// one unpack holds). Everything is checked before anything is removed:
/// each name must exist ([`LayerStoreError::NotFound`]) and every child of
/// it must be removed too ([`LayerStoreError::HasChildren`]); children go
/// before their parents. The store may still refuse (e.g. a snapshot in
/// use); snapshots removed before that stay removed.
pub fn remove_snapshots(store: &dyn LayerStore, names: &[String]) -> Result<(), LayerStoreError> {
    let _lock = store.lock()?;
    let all = store.list()?;
    check_chains(store, &all)?;
    let known: HashSet<&str> = all.iter().map(|i| i.name.as_str()).collect();
    let mut todo: Vec<&str> = Vec::new();
    let mut in_todo: HashSet<&str> = HashSet::new();
    for name in names {
        if !known.contains(name.as_str()) {
            return Err(LayerStoreError::NotFound {
                store: store.name(),
                name: show::name(name),
            });
        }
        if in_todo.insert(name) {
            todo.push(name);
        }
    }
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for i in &all {
        if let Some(p) = i.parent.as_deref() {
            children.entry(p).or_default().push(&i.name);
        }
    }
    let kids = |n: &str| children.get(n).map(Vec::as_slice).unwrap_or_default();
    for n in &todo {
        let left: Vec<&str> = kids(n)
            .iter()
            .copied()
            .filter(|c| !in_todo.contains(c))
            .collect();
        if !left.is_empty() {
            let mut shown: Vec<String> = left
                .iter()
                .take(SHOWN_CHILDREN)
                .map(|c| show::name(*c))
                .collect();
            if left.len() > SHOWN_CHILDREN {
                shown.push(format!("… {} in all", left.len()));
            }
            return Err(LayerStoreError::HasChildren {
                store: store.name(),
                name: show::name(*n),
                children: shown,
            });
        }
    }
    refuse_mounted(store, &todo)?;
    // children first: a name goes once none of its children is still to go
    let mut waiting: HashMap<&str, usize> = todo
        .iter()
        .map(|n| (*n, kids(n).iter().filter(|c| in_todo.contains(*c)).count()))
        .collect();
    let mut ready: Vec<&str> = todo
        .iter()
        .rev()
        .copied()
        .filter(|n| waiting.get(n) == Some(&0))
        .collect();
    let parent_of: HashMap<&str, &str> = all
        .iter()
        .filter_map(|i| i.parent.as_deref().map(|p| (i.name.as_str(), p)))
        .collect();
    let mut removed = 0;
    while let Some(n) = ready.pop() {
        store.remove(n)?;
        removed += 1;
        if let Some(p) = parent_of.get(n)
            && let Some(w) = waiting.get_mut(p)
        {
            *w -= 1;
            if *w == 0 {
                ready.push(p);
            }
        }
    }
    if removed != todo.len() {
        return Err(LayerStoreError::Protocol {
            store: store.name(),
            op: "layer-store.list-snapshots".into(),
            reason: "snapshot parents form a cycle".into(),
        });
    }
    Ok(())
}

/// Fail if any of `names` is a lower layer of an overlay this process can
/// see mounted (a bundle unpacked through the store and not unmounted).
/// Only overlays reading a directory beneath the store's are considered
/// (none for a store answering copy mounts: nothing is asked then); for
/// those, the snapshot's own directory is the topmost directory of the
/// overlay mount its view answers.
fn refuse_mounted(store: &dyn LayerStore, names: &[&str]) -> Result<(), LayerStoreError> {
    let mounts = mounted::overlay_mounts();
    if mounts.is_empty() {
        return Ok(());
    }
    let bad = |reason: String| LayerStoreError::Protocol {
        store: store.name(),
        op: "layer-store.view".into(),
        reason,
    };
    let root = std::fs::canonicalize(store.root()).map_err(|e| LayerStoreError::Store {
        store: store.name(),
        op: "remove".into(),
        reason: format!("{}: {e}", store.root().display()),
    })?;
    let mounts: Vec<mounted::OverlayMount> = mounts
        .into_iter()
        .filter(|m| m.lowerdirs.iter().any(|l| l.starts_with(&root)))
        .collect();
    if mounts.is_empty() {
        return Ok(());
    }
    for name in names {
        let key = snapshot_key("rm");
        let view = store.view(&key, name);
        if let Err(e) = store.remove(&key) {
            tracing::warn!("{e}");
        }
        let view = view?;
        let top = match view.as_slice() {
            [Mount::Overlay(dirs)] => dirs.first().ok_or_else(|| {
                bad(format!(
                    "view of {}: an overlay mount of no directory",
                    show::name(name)
                ))
            })?,
            // a copy's source is never a lower directory
            [Mount::Copy(_)] => continue,
            other => {
                return Err(bad(format!(
                    "view of {} answered {}: one copy or one overlay mount expected",
                    show::name(name),
                    describe_mounts(other)
                )));
            }
        };
        let dir = resolve(&root, top).map_err(|e| bad(e.to_string()))?;
        if let Some(m) = mounted::user_of(&mounts, &dir) {
            return Err(LayerStoreError::InUse {
                store: store.name(),
                name: (*name).to_string(),
                mount: m.display().to_string(),
            });
        }
    }
    Ok(())
}

/// The OCI chain ids of a layer list: `C1 = D1`, `Ci = sha256(C(i-1) + " "
/// + Di)`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => {
                let mut h = Algorithm::Sha256.hasher();
                h.update(format!("{prev} {d}").as_bytes());
                h.finish()
            }
        };
        out.push(next);
    }
    out
}

/// Resolve `rel`, a path a store returned, beneath `root`: relative,
/// without `..`, absolute or empty components (`""` is `root` itself).
/// Symlinks are not followed by the callers (they open paths with
/// `O_NOFOLLOW` beneath `root`).
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, crate::Error> {
    if rel.len() > 4096 || rel.contains('\0') {
        return Err(crate::Error::invalid(format!("invalid path {rel:?}")));
    }
    let mut out = root.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(crate::Error::invalid(format!(
                    "path {rel:?} leaves the store directory"
                )));
            }
        }
    }
    Ok(out)
}

impl crate::layer_store::LayerStoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::layer_store::LayerStoreError as E;
        match self {
            E::Store { .. } => crate::error::ErrorKind::Driver,
            E::AlreadyExists { .. } | E::HasChildren { .. } | E::InUse { .. } => {
                crate::error::ErrorKind::Conflict
            }
            E::NotFound { .. } => crate::error::ErrorKind::NotFound,
            E::Protocol { .. } => crate::error::ErrorKind::Driver,
        }
    }
}

rumoci_core::wraps!(crate::layer_store::LayerStoreError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let d1: Digest = format!("sha256:{}", "1".repeat(64))
            .parse()
            .expect("digest");
        let d2: Digest = format!("sha256:{}", "2".repeat(64))
            .parse()
            .expect("digest");
        let c = chain_ids(&[d1.clone(), d2.clone()]);
        assert_eq!(c[0], d1);
        // known answer: printf 'sha256:1…1 sha256:2…2' | sha256sum
        assert_eq!(
            c[1].to_string(),
            "sha256:9932074217c35353d2e03a3f5a86549f7c67bfeb0ba53e23d69f4d4c8f7958f5"
        );
    }

    #[test]
    fn resolve_stays_beneath_the_root() {
        let r = Path::new("/s");
        assert_eq!(resolve(r, "a/b").expect("ok"), Path::new("/s/a/b"));
        assert_eq!(resolve(r, "").expect("ok"), Path::new("/s"));
        assert!(resolve(r, "../x").is_err());
        assert!(resolve(r, "a/../../x").is_err());
        assert!(resolve(r, "/etc").is_err());
    }
}
