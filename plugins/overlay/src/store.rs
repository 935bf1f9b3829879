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
use std::path::{Path, PathBuf};

use rumoci_driver_sdk::store_db::{self, Kind};
use rumoci_driver_sdk::store_util::{
    Notes, RecordFile, SnapshotRecord, check_commit, check_key_free, check_name, check_prepare,
    delete_unrecorded, existing, io_err, lookup, merge_labels, page, remove_unrecorded,
    uncommitted, walk_usage,
};
use rumoci_driver_sdk::{
    Digest, DiskUsage, DriverInfo, Error, Labels, Mount, Prepared, Result, SnapshotInfo,
    SnapshotKind, SnapshotPage, SnapshotStore, UnpackTarget, config, store_dir,
};
use serde::{Deserialize, Serialize};

/// The record file.
pub const DB_FILE: &str = "db.json";
const DB: RecordFile = RecordFile {
    name: DB_FILE,
    tmp_prefix: "db.json.tmp-",
};
/// The directory holding one directory per layer.
pub const LAYERS: &str = "layers";
const DB_VERSION: u32 = 1;
pub use rumoci_driver_sdk::store_util::MAX_NAME;
/// Longest chain of layers a view may have (overlayfs stacks at most 500).
pub const MAX_DEPTH: usize = 500;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    /// Directory name beneath `layers/` (views have none).
    dir: Option<String>,
    kind: Kind,
    parent: Option<String>,
    diff_id: Option<String>,
    labels: Labels,
}

impl SnapshotRecord for Record {
    type Dir = String;
    fn kind(&self) -> SnapshotKind {
        self.kind.into()
    }
    fn dir(&self) -> Option<&String> {
        self.dir.as_ref()
    }
}

type Db = store_db::Db<Record>;

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

fn fs_rel(dir: &str) -> String {
    format!("{LAYERS}/{dir}/fs")
}

fn meta_rel(dir: &str) -> String {
    format!("{LAYERS}/{dir}/meta")
}

/// The store, loaded from `db.json` beneath `root`. Every mutating call
/// saves the records before it returns.
pub struct Store {
    root: PathBuf,
    db: Db,
    notes: Notes,
}

impl Store {
    /// Load the records (an absent `db.json` is an empty store), then remove
    /// garbage: `layers/*` directories without a record and stray
    /// `db.json.tmp-*` files (best effort). A corrupt `db.json` is an
    /// `integrity` error naming the file; nothing is deleted then.
    pub fn open(root: &Path) -> Result<Store> {
        let db = Db::load(&DB, root, DB_VERSION, "the overlay store", "store")?;
        let mut s = Store {
            root: root.to_path_buf(),
            db,
            notes: Vec::new(),
        };
        s.collect_garbage();
        Ok(s)
    }

    fn collect_garbage(&mut self) {
        let live: std::collections::HashSet<String> = self
            .db
            .snapshots
            .values()
            .filter_map(|r| r.dir.clone())
            .collect();
        remove_unrecorded(&self.root, LAYERS, &live, DB_FILE, &mut self.notes);
        DB.remove_temporaries(&self.root);
    }

    fn save(&self) -> Result<()> {
        self.db.save(&DB, &self.root)
    }

    fn record_info(name: &str, r: &Record) -> SnapshotInfo {
        SnapshotInfo {
            name: name.to_string(),
            parent: r.parent.clone(),
            kind: r.kind.into(),
            diff_id: r.diff_id.clone(),
            labels: r.labels.clone(),
            meta: match (r.kind, &r.dir) {
                (Kind::Committed, Some(d)) => Some(meta_rel(d)),
                _ => None,
            },
        }
    }

    /// The directory of committed snapshot `name`, else `not-found`.
    fn committed_dir(&self, what: &str, name: &str) -> Result<&str> {
        rumoci_driver_sdk::store_util::committed_dir(&self.db.snapshots, what, name)
            .map(String::as_str)
    }

    /// Whether any snapshot (committed ones too: each layer directory holds
    /// only its own layer, so children need their parents) has `name` as
    /// its parent.
    fn has_child(&self, name: &str) -> bool {
        self.db
            .snapshots
            .values()
            .any(|r| r.parent.as_deref() == Some(name))
    }

    /// The overlay mount of the committed chain ending at `top` (none: the
    /// empty chain beneath a base layer): the layer directories, topmost
    /// first.
    fn chain_mount(&self, top: Option<&str>) -> Result<Mount> {
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
            dirs.push(fs_rel(self.committed_dir(what, &name)?));
            cur = self.db.snapshots.get(&name).and_then(|r| r.parent.clone());
        }
        Ok(Mount::Overlay(dirs))
    }
}

impl SnapshotStore for Store {
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

    /// Log messages gathered so far.
    fn take_notes(&mut self) -> Notes {
        std::mem::take(&mut self.notes)
    }

    /// `layer-store.stat`.
    fn stat(&self, name: &str) -> Result<Option<SnapshotInfo>> {
        lookup(&self.db.snapshots, name, Store::record_info)
    }

    /// `layer-store.prepare`: `cached` for a committed `target`, else a
    /// fresh, empty `layers/active-<n>/fs` and one overlay mount of the
    /// parent chain's directories (none for a base layer): the host
    /// extracts the layer alone, in overlayfs form, over them.
    fn prepare(
        &mut self,
        key: &str,
        parent: Option<&str>,
        target: Option<&str>,
        labels: Labels,
    ) -> Result<Prepared> {
        if let Some(t) = check_prepare(&self.db.snapshots, key, parent, target, &labels)? {
            let r = &self.db.snapshots[t];
            return Ok(Prepared::Cached(Store::record_info(t, r)));
        }
        let lower = self.chain_mount(parent)?;
        let layers = self.root.join(LAYERS);
        fs::create_dir_all(&layers).map_err(|e| io_err(LAYERS, e))?;
        let used: std::collections::HashSet<String> = self
            .db
            .snapshots
            .values()
            .filter_map(|r| r.dir.clone())
            .collect();
        let id = self.db.allocate_id(|id| {
            let d = format!("active-{id}");
            used.contains(&d) || fs::symlink_metadata(layers.join(&d)).is_ok()
        });
        let dir = format!("active-{id}");
        let record = Record {
            dir: Some(dir.clone()),
            kind: Kind::Active,
            parent: parent.map(str::to_string),
            diff_id: None,
            labels,
        };
        self.db
            .insert_with_dir(&DB, &self.root, key, record, &format!("{LAYERS}/{dir}"))?;
        Ok(Prepared::Fresh(UnpackTarget {
            dir: fs_rel(&dir),
            mounts: vec![lower],
            meta: meta_rel(&dir),
        }))
    }

    /// `layer-store.view`: the overlay mount of the chain `parent`.
    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        check_name("key", key)?;
        check_name("parent", parent)?;
        let m = self.chain_mount(Some(parent))?;
        check_key_free(&self.db.snapshots, key)?;
        self.db.snapshots.insert(
            key.to_string(),
            Record {
                dir: None,
                kind: Kind::View,
                parent: Some(parent.to_string()),
                diff_id: None,
                labels: Vec::new(),
            },
        );
        self.save()?;
        Ok(vec![m])
    }

    /// `layer-store.mounts`: the overlay mount of the snapshot's parent
    /// chain (a view's whole chain; an active snapshot's lower layers, as
    /// `prepare` answered).
    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let r = uncommitted(&self.db.snapshots, key)?;
        Ok(vec![self.chain_mount(r.parent.as_deref())?])
    }

    /// `layer-store.commit`: the active `key` becomes `name`; its directory
    /// is renamed after the chain id.
    fn commit(
        &mut self,
        name: &str,
        key: &str,
        diff_id: &Digest,
        labels: Labels,
    ) -> Result<SnapshotInfo> {
        let old_dir = check_commit(&self.db.snapshots, name, key, &labels)?.clone();
        let layers = self.root.join(LAYERS);
        let id = old_dir.trim_start_matches("active-");
        let new_dir = match chain_dir_name(name) {
            Some(d) if fs::symlink_metadata(layers.join(&d)).is_err() => d,
            _ => format!("c-{id}"),
        };
        if new_dir != old_dir {
            fs::rename(layers.join(&old_dir), layers.join(&new_dir))
                .map_err(|e| io_err(format!("{LAYERS}/{old_dir}"), e))?;
        }
        let Some(mut r) = self.db.snapshots.remove(key) else {
            return Err(Error::Other(format!("snapshot {key:?} vanished")));
        };
        r.kind = Kind::Committed;
        r.dir = Some(new_dir.clone());
        r.diff_id = Some(diff_id.to_string());
        merge_labels(&mut r.labels, labels);
        let info = Store::record_info(name, &r);
        self.db.snapshots.insert(name.to_string(), r);
        if let Err(e) = self.save() {
            // put the directory back where the saved records say it is
            let _ = fs::rename(layers.join(&new_dir), layers.join(&old_dir));
            return Err(e);
        }
        Ok(info)
    }

    /// `layer-store.remove`: a committed layer is refused while any
    /// snapshot (committed children included) has it as parent.
    fn remove(&mut self, name: &str) -> Result<()> {
        let r = existing(&self.db.snapshots, "name", name)?;
        if r.kind == Kind::Committed && self.has_child(name) {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {name:?} is the parent of another snapshot (its layer directory is a lower layer of theirs)"
            )));
        }
        let dir = r.dir.clone();
        self.db.snapshots.remove(name);
        self.save()?;
        if let Some(d) = dir {
            delete_unrecorded(&self.root, LAYERS, &d, &mut self.notes);
        }
        Ok(())
    }

    /// `layer-store.usage`: this layer's own directory (0 for a view).
    fn usage(&self, name: &str) -> Result<DiskUsage> {
        let r = existing(&self.db.snapshots, "name", name)?;
        match &r.dir {
            Some(d) => walk_usage(&self.root.join(fs_rel(d))).map_err(|e| io_err(fs_rel(d), e)),
            None => Ok(DiskUsage { size: 0, inodes: 0 }),
        }
    }

    /// `layer-store.list-snapshots`: sorted by name; the cursor is the last
    /// name of the previous page.
    fn list(&self, cursor: Option<&str>, limit: u32) -> Result<SnapshotPage> {
        page(&self.db.snapshots, cursor, limit, Store::record_info)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rumoci_driver_sdk::testing::{digest, fresh, is_err};

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
        let t = fresh(s.prepare(&key, parent, Some(name), vec![]).unwrap());
        fs::write(root.join(&t.dir).join("f"), b"12345").unwrap();
        fs::write(root.join(&t.meta), b"host record").unwrap();
        s.commit(name, &key, &digest(1), vec![]).unwrap();
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
        let t = fresh(s.prepare("k2", Some(&c1), Some(&c2), vec![]).unwrap());
        assert_eq!(lowers(&t.mounts), [d1.as_str()]);
        assert_eq!(lowers(&s.mounts("k2").unwrap()), [d1.as_str()]);
        assert_eq!(fs::read_dir(root.join(&t.dir)).unwrap().count(), 0);
        s.commit(&c2, "k2", &digest(2), vec![]).unwrap();
        layer(&mut s, root, &c3, Some(&c2));
        // cached
        assert!(matches!(
            s.prepare("k", Some(&c1), Some(&c2), vec![]).unwrap(),
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
        let a = fresh(s.prepare("ka", None, Some(&c), vec![]).unwrap());
        let b = fresh(s.prepare("kb", None, Some(&c), vec![]).unwrap());
        assert_ne!(a.dir, b.dir);
        s.commit(&c, "ka", &digest(1), vec![]).unwrap();
        is_err(s.commit(&c, "kb", &digest(1), vec![]), "AlreadyExists");
        s.remove("kb").unwrap();
        assert!(!root.join(&b.dir).exists());
        // a name that is no chain id gets a numbered directory
        let t = fresh(s.prepare("k", None, Some("../../x"), vec![]).unwrap());
        let info = s.commit("../../x", "k", &digest(1), vec![]).unwrap();
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
        is_err(s.prepare("k9", Some("nope"), None, vec![]), "NotFound");
        is_err(s.prepare("", None, None, vec![]), "InvalidArgument");
        fs::write(root.join(DB_FILE), b"{").unwrap();
        assert!(matches!(Store::open(root), Err(Error::Integrity(_))));
    }

    #[test]
    fn paging() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Store::open(tmp.path()).unwrap();
        for i in 0..5 {
            s.prepare(&format!("n{i}"), None, None, vec![]).unwrap();
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
