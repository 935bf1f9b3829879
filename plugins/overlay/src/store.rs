//! The overlay layer store proper: records in `db.json` and one directory
//! per layer, over a plain root path so it can be tested natively.
//!
//! Layout beneath the root (the plugin's store directory):
//!
//! * `db.json`: every record, written atomically (`db.json.tmp-*` + rename);
//! * `layers/<dir>/fs/`: one layer's own entries, in overlayfs form (filled
//!   by the host; never a copy of the parent);
//! * `layers/<dir>/meta`: the host's own record of that directory; never
//!   read here, only handed out and deleted with the layer.
//!
//! `<dir>` is `active-<n>` while a layer is being extracted; `commit`
//! renames it after the chain id it is committed as (`sha256:<hex>[+<x>]`
//! becomes `sha256-<hex>[-<x>]`), or `c-<n>` for a name of another form.
//! Directory names are built only from those two forms, never from
//! arbitrary names. The rename moves `layers/<dir>` only: the `fs` tree the
//! host recorded keeps its inode and ctime.

use std::fs;
use std::path::Path;

use rumoci_driver_sdk::snapshot_store::{RecordPart, StoreLayout};
use rumoci_driver_sdk::store_util::{RecordFile, check_commit, check_prepare, io_err, uncommitted};
use rumoci_driver_sdk::{
    Commit, DriverInfo, Error, Mount, Prepare, Prepared, RecordStore, Result, SnapshotInfo,
    SnapshotStore, config, store_dir,
};
use serde::{Deserialize, Serialize};

/// The record file.
pub const DB_FILE: &str = "db.json";
/// The directory holding one directory per layer.
pub const LAYERS: &str = "layers";
static LAYOUT: StoreLayout = StoreLayout {
    file: RecordFile {
        name: DB_FILE,
        tmp_prefix: "db.json.tmp-",
    },
    dirs: LAYERS,
    version: 1,
    store: "the overlay store",
    empty: "store",
};
pub use rumoci_driver_sdk::store_util::MAX_NAME;
/// Longest chain of layers a view may have (overlayfs stacks at most 500).
pub const MAX_DEPTH: usize = 500;

/// The store's own field of a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Layer {
    /// Directory name beneath `layers/` (views have none).
    dir: Option<String>,
}

impl RecordPart for Layer {
    type Dir = String;
    fn dir(&self) -> Option<&String> {
        self.dir.as_ref()
    }
}

/// The directory name for a committed chain id `alg:hex[+suffix]`
/// (lowercase alphanumeric algorithm, lowercase hex), else `None`.
pub fn chain_dir_name(name: &str) -> Option<String> {
    let (alg, rest) = name.split_once(':')?;
    let (hex, suffix) = match rest.split_once('+') {
        Some((h, s)) => (h, Some(s)),
        None => (rest, None),
    };
    let lower_alnum = |s: &str| {
        !s.is_empty()
            && s.len() <= 16
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let lower_hex = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !lower_alnum(alg) || !lower_hex(hex, 128) || hex.len() < 32 {
        return None;
    }
    match suffix {
        None => Some(format!("{alg}-{hex}")),
        Some(s) if lower_hex(s, 64) => Some(format!("{alg}-{hex}-{s}")),
        Some(_) => None,
    }
}

/// The store, loaded from `db.json` beneath its root. Every mutating call
/// saves the records before it returns.
pub struct Store {
    rs: RecordStore<Layer>,
}

impl Store {
    /// Load the records (an absent `db.json` is an empty store), then remove
    /// garbage: `layers/*` directories without a record and stray
    /// `db.json.tmp-*` files (best effort). A corrupt `db.json` is an
    /// `integrity` error naming the file; nothing is deleted then.
    pub fn open(root: &Path) -> Result<Store> {
        Ok(Store {
            rs: RecordStore::open(&LAYOUT, root)?,
        })
    }

    /// The overlay mount of the committed chain ending at `top` (none: the
    /// empty chain beneath a base layer): the layer directories, topmost
    /// first.
    fn chain_mount(rs: &RecordStore<Layer>, top: Option<&str>) -> Result<Mount> {
        let mut dirs = Vec::new();
        let mut cur = top.map(str::to_string);
        while let Some(name) = cur {
            if dirs.len() >= MAX_DEPTH {
                return Err(Error::FailedPrecondition(format!(
                    "chain of {top:?} is longer than {MAX_DEPTH} layers (the most overlayfs stacks)"
                )));
            }
            let what = if dirs.is_empty() {
                "parent"
            } else {
                "ancestor"
            };
            dirs.push(rs.fs_rel(rs.committed_dir(what, &name)?));
            cur = rs.db.snapshots.get(&name).and_then(|r| r.parent.clone());
        }
        Ok(Mount::Overlay(dirs))
    }
}

/// `take_notes`, `stat`, `usage` (a walk of the tree now, 0 for a view)
/// and `list` (by name) are the [`RecordStore`]'s.
impl SnapshotStore for Store {
    rumoci_driver_sdk::record_store_operations!(rs);

    fn info() -> DriverInfo {
        DriverInfo::new(
            "overlay",
            env!("CARGO_PKG_VERSION"),
            &["layer-store", "layer-store.overlay"],
        )
    }

    /// Refuse options (there are none), then [`Store::open`] the store
    /// directory.
    fn open_from_host() -> Result<Store> {
        if let Some((k, _)) = config().first() {
            return Err(Error::InvalidArgument(format!(
                "unknown option {k:?} (the overlay driver has none)"
            )));
        }
        Store::open(&store_dir()?)
    }

    /// `layer-store.prepare`: `cached` for a committed `target`, else a
    /// fresh, empty `layers/active-<n>/fs` and one overlay mount of the
    /// parent chain's directories (none for a base layer): the host
    /// extracts the layer alone, in overlayfs form, over them.
    fn prepare(&mut self, req: Prepare) -> Result<Prepared> {
        let (key, parent, target) = (&req.key, req.parent.as_deref(), req.target.as_deref());
        if let Some(t) = check_prepare(&self.rs.db.snapshots, key, parent, target, &req.labels)? {
            return self.rs.cached(t);
        }
        let lower = Store::chain_mount(&self.rs, parent)?;
        let id = self.rs.allocate(|id| format!("active-{id}"))?;
        let own = Layer {
            dir: Some(format!("active-{id}")),
        };
        self.rs.insert_active(req, own, vec![lower])
    }

    /// `layer-store.view`: the overlay mount of the chain `parent`.
    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        let m = |rs: &mut RecordStore<Layer>| Ok(vec![Store::chain_mount(rs, Some(parent))?]);
        self.rs.add_view(key, parent, m, |_| Layer { dir: None })
    }

    /// `layer-store.mounts`: the overlay mount of the snapshot's parent
    /// chain (a view's whole chain; an active snapshot's lower layers, as
    /// `prepare` answered).
    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let r = uncommitted(&self.rs.db.snapshots, key)?;
        Ok(vec![Store::chain_mount(&self.rs, r.parent.as_deref())?])
    }

    /// `layer-store.commit`: the active `key` becomes `name`; its directory
    /// is renamed after the chain id.
    fn commit(&mut self, req: Commit) -> Result<SnapshotInfo> {
        let old_dir =
            check_commit(&self.rs.db.snapshots, &req.name, &req.key, &req.labels)?.clone();
        let layers = self.rs.root.join(LAYERS);
        let id = old_dir.trim_start_matches("active-");
        let new_dir = match chain_dir_name(&req.name) {
            Some(d) if fs::symlink_metadata(layers.join(&d)).is_err() => d,
            _ => format!("c-{id}"),
        };
        if new_dir != old_dir {
            fs::rename(layers.join(&old_dir), layers.join(&new_dir))
                .map_err(|e| io_err(format!("{LAYERS}/{old_dir}"), e))?;
        }
        let dir = Some(new_dir.clone());
        let info = self.rs.commit_record(req, |r| r.own.dir = dir)?;
        if let Err(e) = self.rs.save() {
            // put the directory back where the saved records say it is
            let _ = fs::rename(layers.join(&new_dir), layers.join(&old_dir));
            return Err(e);
        }
        Ok(info)
    }

    /// `layer-store.remove`: a committed layer is refused while any
    /// snapshot (committed children included: each layer directory holds
    /// only its own layer, so children need their parents) has it as
    /// parent.
    fn remove(&mut self, name: &str) -> Result<()> {
        self.rs.remove(name, |rs| {
            rs.has_child(name, |_| true).then(|| {
                format!("snapshot {name:?} is the parent of another snapshot (its layer directory is a lower layer of theirs)")
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rumoci_driver_sdk::UnpackTarget;
    use rumoci_driver_sdk::testing::{commit, digest, fresh, is_err, prepare};

    fn chain(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    /// The directories of `m`, which must be one overlay mount.
    fn lowers(m: &[Mount]) -> Vec<String> {
        match m {
            [Mount::Overlay(dirs)] => dirs.clone(),
            other => panic!("not one overlay mount: {other:?}"),
        }
    }

    /// Prepare and commit `name` on `parent` with one file in its tree.
    fn layer(s: &mut Store, root: &Path, name: &str, parent: Option<&str>) -> UnpackTarget {
        let key = format!("k-{name}");
        let t = fresh(
            s.prepare(prepare(&key, parent, Some(name), vec![]))
                .unwrap(),
        );
        fs::write(root.join(&t.dir).join("f"), b"12345").unwrap();
        fs::write(root.join(&t.meta), b"host record").unwrap();
        s.commit(commit(name, &key, digest(1), vec![])).unwrap();
        t
    }

    #[test]
    fn dir_names() {
        let c = chain(0xab);
        assert_eq!(
            chain_dir_name(&c).unwrap(),
            format!("sha256-{}", "ab".repeat(32))
        );
        assert_eq!(
            chain_dir_name(&format!("{c}+0123456789abcdef")).unwrap(),
            format!("sha256-{}-0123456789abcdef", "ab".repeat(32))
        );
        for bad in [
            "x",
            "sha256:",
            "sha256:ABCD",
            "../x:aa",
            "sha256:ab/cd",
            &format!("{c}+x/y"),
        ] {
            assert_eq!(chain_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn layers_alone_views_are_overlay_chains() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut s = Store::open(root).unwrap();
        let (c1, c2, c3) = (chain(1), chain(2), chain(3));
        let t = layer(&mut s, root, &c1, None);
        assert_eq!(t.dir, "layers/active-1/fs");
        // a base layer: an overlayfs layer over nothing
        assert_eq!(lowers(&t.mounts), Vec::<String>::new());
        let d1 = format!("layers/sha256-{}/fs", "01".repeat(32));
        assert!(
            root.join(&d1).join("f").is_file(),
            "renamed after the chain id"
        );
        let info = s.stat(&c1).unwrap().unwrap();
        assert_eq!(
            info.meta.unwrap(),
            format!("layers/sha256-{}/meta", "01".repeat(32))
        );
        // a child is extracted alone over its parent: no copy of it
        let t = fresh(
            s.prepare(prepare("k2", Some(&c1), Some(&c2), vec![]))
                .unwrap(),
        );
        assert_eq!(lowers(&t.mounts), [d1.as_str()]);
        assert_eq!(lowers(&s.mounts("k2").unwrap()), [d1.as_str()]);
        assert_eq!(fs::read_dir(root.join(&t.dir)).unwrap().count(), 0);
        s.commit(commit(&c2, "k2", digest(2), vec![])).unwrap();
        layer(&mut s, root, &c3, Some(&c2));
        // cached
        assert!(matches!(
            s.prepare(prepare("k", Some(&c1), Some(&c2), vec![]))
                .unwrap(),
            Prepared::Cached(_)
        ));
        let m = s.view("v", &c3).unwrap();
        let want = [3u8, 2, 1]
            .iter()
            .map(|n| format!("layers/sha256-{}/fs", format!("{n:02x}").repeat(32)))
            .collect::<Vec<_>>();
        assert_eq!(lowers(&m), want);
        assert_eq!(lowers(&s.mounts("v").unwrap()), want);
        // parents with children cannot go; the view goes, then leaves first
        is_err(s.remove(&c1), "FailedPrecondition");
        is_err(s.remove(&c3), "FailedPrecondition");
        s.remove("v").unwrap();
        s.remove(&c3).unwrap();
        s.remove(&c2).unwrap();
        s.remove(&c1).unwrap();
        assert_eq!(fs::read_dir(root.join(LAYERS)).unwrap().count(), 0);
        // a fresh load sees the same
        drop(s);
        let s = Store::open(root).unwrap();
        assert!(s.list(None, 0).unwrap().items.is_empty());
    }

    #[test]
    fn races_garbage_and_odd_names() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut s = Store::open(root).unwrap();
        let c = chain(9);
        let a = fresh(s.prepare(prepare("ka", None, Some(&c), vec![])).unwrap());
        let b = fresh(s.prepare(prepare("kb", None, Some(&c), vec![])).unwrap());
        assert_ne!(a.dir, b.dir);
        s.commit(commit(&c, "ka", digest(1), vec![])).unwrap();
        is_err(
            s.commit(commit(&c, "kb", digest(1), vec![])),
            "AlreadyExists",
        );
        s.remove("kb").unwrap();
        assert!(!root.join(&b.dir).exists());
        // a name that is no chain id gets a numbered directory
        let t = fresh(
            s.prepare(prepare("k", None, Some("../../x"), vec![]))
                .unwrap(),
        );
        let info = s.commit(commit("../../x", "k", digest(1), vec![])).unwrap();
        assert_eq!(info.meta.unwrap(), "layers/c-3/meta");
        assert!(!root.join(&t.dir).exists());
        // garbage goes at the next load
        fs::create_dir_all(root.join("layers/stray/fs")).unwrap();
        drop(s);
        let mut s = Store::open(root).unwrap();
        assert!(!root.join("layers/stray").exists());
        assert!(!s.take_notes().is_empty());
        // views of missing chains, unknown keys
        is_err(s.view("v", "nope"), "NotFound");
        is_err(
            s.prepare(prepare("k9", Some("nope"), None, vec![])),
            "NotFound",
        );
        is_err(
            s.prepare(prepare("", None, None, vec![])),
            "InvalidArgument",
        );
        fs::write(root.join(DB_FILE), b"{").unwrap();
        assert!(matches!(Store::open(root), Err(Error::Integrity(_))));
    }

    #[test]
    fn paging() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Store::open(tmp.path()).unwrap();
        for i in 0..5 {
            s.prepare(prepare(&format!("n{i}"), None, None, vec![]))
                .unwrap();
        }
        let p = s.list(None, 2).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.next.as_deref(), Some("n1"));
        let p = s.list(Some("n3"), 2).unwrap();
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.next, None);
        assert_eq!(s.usage("n0").unwrap().inodes, 1);
    }
}
