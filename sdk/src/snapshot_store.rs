//! A layer store as a value: [`SnapshotStore`] is a store loaded for one
//! call, with the `layer-store` operations as methods, and
//! [`SnapshotDriver`] turns it into a whole driver (no content store) for
//! [`register_driver!`](crate::register_driver).
//!
//! ```ignore
//! use rumoci_driver_sdk::{register_driver, SnapshotDriver, SnapshotStore};
//! struct Store { /* records */ }
//! impl SnapshotStore for Store { /* info, open_from_host, stat, prepare, … */ }
//! register_driver!(SnapshotDriver<Store>);
//! ```
//!
//! [`RecordStore`] is what the shipped stores share: the records in one
//! file ([`store_db::Db`] of [`Record`]s) and a directory per snapshot,
//! with the operations every such store answers alike (`stat`, `usage`,
//! `list-snapshots`, garbage collection) and the common steps of the
//! others.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store_db::{self, Kind};
use crate::store_util::{
    Notes, RecordFile, SnapshotRecord, check_key_free, check_name, delete_unrecorded, existing,
    io_err, lookup, merge_labels, page, remove_unrecorded, walk_usage,
};
use crate::{
    Cas, Commit, DiskUsage, Driver, DriverInfo, Error, Labels, LayerStore, Mount, Prepare,
    Prepared, Result, SnapshotInfo, SnapshotKind, SnapshotPage, UnpackTarget, log,
};

/// A layer store loaded for one host call. [`SnapshotDriver`] opens it with
/// [`SnapshotStore::open_from_host`] for every call, runs the operation,
/// then forwards [`SnapshotStore::take_notes`] to the host's log (also
/// when the operation failed). The methods mirror [`LayerStore`]'s, with
/// borrowed arguments.
pub trait SnapshotStore: Sized + 'static {
    /// Name, version and capabilities of the driver.
    fn info() -> DriverInfo;
    /// Load the store from the store directory
    /// ([`store_dir`](crate::store_dir)) with the host's options
    /// ([`config`](crate::config)); malformed options fail every call.
    fn open_from_host() -> Result<Self>;
    /// Log messages gathered so far, to forward to the host.
    fn take_notes(&mut self) -> Notes;
    /// `layer-store.stat`.
    fn stat(&self, name: &str) -> Result<Option<SnapshotInfo>>;
    /// `layer-store.prepare`.
    fn prepare(&mut self, req: Prepare) -> Result<Prepared>;
    /// `layer-store.view`.
    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>>;
    /// `layer-store.mounts`.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// `layer-store.commit`.
    fn commit(&mut self, req: Commit) -> Result<SnapshotInfo>;
    /// `layer-store.remove`.
    fn remove(&mut self, name: &str) -> Result<()>;
    /// `layer-store.usage`.
    fn usage(&self, name: &str) -> Result<DiskUsage>;
    /// `layer-store.list-snapshots`.
    fn list(&self, cursor: Option<&str>, limit: u32) -> Result<SnapshotPage>;
}

/// A driver made of a [`SnapshotStore`]: [`Driver`] answers
/// [`SnapshotStore::info`], [`LayerStore`] runs each call on a freshly
/// opened store, and every [`Cas`] call answers `unsupported`.
pub struct SnapshotDriver<S>(PhantomData<S>);

impl<S: SnapshotStore> SnapshotDriver<S> {
    /// Open the store, run `f`, forward the store's notes to the host.
    fn with_store<T>(f: impl FnOnce(&mut S) -> Result<T>) -> Result<T> {
        let mut s = S::open_from_host()?;
        let r = f(&mut s);
        for (level, message) in s.take_notes() {
            log(level, &message);
        }
        r
    }
}

impl<S: SnapshotStore> Driver for SnapshotDriver<S> {
    fn info() -> DriverInfo {
        S::info()
    }
}

/// No content store: every `cas` call answers `unsupported`.
impl<S: SnapshotStore> Cas for SnapshotDriver<S> {}

impl<S: SnapshotStore> LayerStore for SnapshotDriver<S> {
    fn stat(name: String) -> Result<Option<SnapshotInfo>> {
        Self::with_store(|s| s.stat(&name))
    }
    fn prepare(req: Prepare) -> Result<Prepared> {
        Self::with_store(|s| s.prepare(req))
    }
    fn view(key: String, parent: String) -> Result<Vec<Mount>> {
        Self::with_store(|s| s.view(&key, &parent))
    }
    fn mounts(key: String) -> Result<Vec<Mount>> {
        Self::with_store(|s| s.mounts(&key))
    }
    fn commit(req: Commit) -> Result<SnapshotInfo> {
        Self::with_store(|s| s.commit(req))
    }
    fn remove(name: String) -> Result<()> {
        Self::with_store(|s| s.remove(&name))
    }
    fn usage(name: String) -> Result<DiskUsage> {
        Self::with_store(|s| s.usage(&name))
    }
    fn list_snapshots(cursor: Option<String>, limit: u32) -> Result<SnapshotPage> {
        Self::with_store(|s| s.list(cursor.as_deref(), limit))
    }
}

// ---------------------------------------------------------------------------
// A store of records in one file and a directory per snapshot

/// Where a [`RecordStore`] keeps things beneath its root, and how its
/// errors name it.
#[derive(Debug, Clone, Copy)]
pub struct StoreLayout {
    /// The record file, e.g. `db.json`.
    pub file: RecordFile,
    /// The directory holding a directory per snapshot, e.g. `snapshots`;
    /// each of those holds `fs/` (the tree) and `meta` (the host's record
    /// of it).
    pub dirs: &'static str,
    /// The record file's format version.
    pub version: u32,
    /// The store as an error about its record file names it, e.g. `the
    /// layer cache`.
    pub store: &'static str,
    /// What moving the record file away starts, e.g. `cache`.
    pub empty: &'static str,
}

/// A store's own part of a [`Record`]: at least where the snapshot's
/// directory is.
pub trait RecordPart {
    /// What names the directory beneath [`StoreLayout::dirs`] (a number, a
    /// name).
    type Dir: std::fmt::Display;
    /// The directory; views have none.
    fn dir(&self) -> Option<&Self::Dir>;
}

/// One snapshot's record: the store's own fields `P` (stored beside the
/// others, first), and those every store keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record<P> {
    /// The store's own fields.
    #[serde(flatten)]
    pub own: P,
    /// Active, view or committed.
    pub kind: Kind,
    /// The committed snapshot this one is a child of.
    pub parent: Option<String>,
    /// The layer's diff id, once committed.
    pub diff_id: Option<String>,
    /// The snapshot's labels.
    pub labels: Labels,
}

impl<P: RecordPart> SnapshotRecord for Record<P> {
    type Dir = P::Dir;
    fn kind(&self) -> SnapshotKind {
        self.kind.into()
    }
    fn dir(&self) -> Option<&P::Dir> {
        self.own.dir()
    }
}

/// A layer store of [`Record`]s (own part `P`) in one record file (with
/// the store's own fields `X` beside them, see [`store_db::Db`]) and a
/// directory per active or committed snapshot beneath
/// [`StoreLayout::dirs`], loaded for one call. Every method that changes
/// records saves them before it returns, except where it says otherwise.
pub struct RecordStore<P, X = ()> {
    /// The store directory.
    pub root: PathBuf,
    /// The records.
    pub db: store_db::Db<Record<P>, X>,
    /// Log messages gathered for the host.
    pub notes: Notes,
    layout: &'static StoreLayout,
}

impl<P, X> RecordStore<P, X>
where
    P: RecordPart + Serialize + DeserializeOwned,
    X: Serialize + DeserializeOwned + Default,
{
    /// Load the records beneath `root` (an absent record file is an empty
    /// store), then remove garbage: directories beneath
    /// [`StoreLayout::dirs`] without a record (left by a crash, or by a
    /// removal whose deletion failed) and stray temporaries of the record
    /// file, best effort (failures become warnings). A corrupt record file
    /// is an `integrity` error naming it; nothing is deleted then.
    pub fn open(layout: &'static StoreLayout, root: &Path) -> Result<Self> {
        let db = store_db::Db::load(
            &layout.file,
            root,
            layout.version,
            layout.store,
            layout.empty,
        )?;
        let mut s = RecordStore {
            root: root.to_path_buf(),
            db,
            notes: Vec::new(),
            layout,
        };
        let live = s.dirs_in_use();
        remove_unrecorded(&s.root, layout.dirs, &live, layout.file.name, &mut s.notes);
        layout.file.remove_temporaries(&s.root);
        Ok(s)
    }

    /// The names of the directories that records name.
    pub fn dirs_in_use(&self) -> HashSet<String> {
        self.db
            .snapshots
            .values()
            .filter_map(|r| r.own.dir().map(ToString::to_string))
            .collect()
    }

    /// Save the records (atomically).
    pub fn save(&self) -> Result<()> {
        self.db.save(&self.layout.file, &self.root)
    }

    /// Log messages gathered so far.
    pub fn take_notes(&mut self) -> Notes {
        std::mem::take(&mut self.notes)
    }

    /// `<dirs>/<dir>/fs`: a snapshot's tree, relative to the root.
    pub fn fs_rel(&self, dir: &P::Dir) -> String {
        format!("{}/{dir}/fs", self.layout.dirs)
    }

    /// `<dirs>/<dir>/meta`: the host's record of a snapshot's tree.
    pub fn meta_rel(&self, dir: &P::Dir) -> String {
        format!("{}/{dir}/meta", self.layout.dirs)
    }

    /// The information on snapshot `name` recorded as `r`; `meta` for a
    /// committed snapshot with a directory.
    pub fn info(&self, name: &str, r: &Record<P>) -> SnapshotInfo {
        SnapshotInfo {
            name: name.to_string(),
            parent: r.parent.clone(),
            kind: r.kind.into(),
            diff_id: r.diff_id.clone(),
            labels: r.labels.clone(),
            meta: match (r.kind, r.own.dir()) {
                (Kind::Committed, Some(d)) => Some(self.meta_rel(d)),
                _ => None,
            },
        }
    }

    /// `layer-store.stat`.
    pub fn stat(&self, name: &str) -> Result<Option<SnapshotInfo>> {
        lookup(&self.db.snapshots, name, |n, r| self.info(n, r))
    }

    /// `layer-store.list-snapshots`: sorted by name; the cursor is the last
    /// name of the previous page.
    pub fn list(&self, cursor: Option<&str>, limit: u32) -> Result<SnapshotPage> {
        page(&self.db.snapshots, cursor, limit, |n, r| self.info(n, r))
    }

    /// `layer-store.usage`: a walk of the snapshot's tree now (0 for a
    /// view).
    pub fn usage(&self, name: &str) -> Result<DiskUsage> {
        let r = existing(&self.db.snapshots, "name", name)?;
        match r.own.dir() {
            Some(d) => {
                let rel = self.fs_rel(d);
                walk_usage(&self.root.join(&rel)).map_err(|e| io_err(rel, e))
            }
            None => Ok(DiskUsage { size: 0, inodes: 0 }),
        }
    }

    /// The directory of committed snapshot `name` (`what` names it in the
    /// error), else `not-found`.
    pub fn committed_dir(&self, what: &str, name: &str) -> Result<&P::Dir> {
        crate::store_util::committed_dir(&self.db.snapshots, what, name)
    }

    /// Whether a snapshot that `counts` has `name` as its parent.
    pub fn has_child(&self, name: &str, counts: impl Fn(&Record<P>) -> bool) -> bool {
        self.db
            .snapshots
            .values()
            .any(|r| r.parent.as_deref() == Some(name) && counts(r))
    }

    /// For `prepare` answering `cached`: the information on committed
    /// `target`.
    pub fn cached(&self, target: &str) -> Result<Prepared> {
        match self.db.snapshots.get(target) {
            Some(r) => Ok(Prepared::Cached(self.info(target, r))),
            None => Err(Error::Other(format!("snapshot {target:?} vanished"))),
        }
    }

    /// A number for a new snapshot directory `name(n)`, made sure to be
    /// neither recorded nor on disk (undeletable garbage, or records that
    /// were reset); creates [`StoreLayout::dirs`] if missing. The records
    /// are not saved.
    pub fn allocate(&mut self, name: impl Fn(u64) -> String) -> Result<u64> {
        let dirs = self.root.join(self.layout.dirs);
        std::fs::create_dir_all(&dirs).map_err(|e| io_err(self.layout.dirs, e))?;
        let used = self.dirs_in_use();
        Ok(self.db.allocate_id(|id| {
            let d = name(id);
            used.contains(&d) || std::fs::symlink_metadata(dirs.join(&d)).is_ok()
        }))
    }

    /// Record the active snapshot `req.key` (a child of `req.parent`) with
    /// the store's fields `own`, which name its directory, save, and make
    /// the directory; answer the fresh target over `mounts`.
    pub fn insert_active(&mut self, req: Prepare, own: P, mounts: Vec<Mount>) -> Result<Prepared> {
        let Some(dir) = own
            .dir()
            .map(|d| (d.to_string(), self.fs_rel(d), self.meta_rel(d)))
        else {
            return Err(Error::Other(format!(
                "active snapshot {:?} has no directory",
                req.key
            )));
        };
        let record = Record {
            own,
            kind: Kind::Active,
            parent: req.parent,
            diff_id: None,
            labels: req.labels,
        };
        let (name, fs, meta) = dir;
        let rel = format!("{}/{name}", self.layout.dirs);
        self.db
            .insert_with_dir(&self.layout.file, &self.root, &req.key, record, &rel)?;
        Ok(Prepared::Fresh(UnpackTarget {
            dir: fs,
            mounts,
            meta,
        }))
    }

    /// `layer-store.view`: check the names, answer `mounts` (which checks
    /// `parent`), check that `key` is free, then record the view `key` of
    /// `parent` with the store's fields `own` and save.
    pub fn add_view(
        &mut self,
        key: &str,
        parent: &str,
        mounts: impl FnOnce(&mut Self) -> Result<Vec<Mount>>,
        own: impl FnOnce(&mut Self) -> P,
    ) -> Result<Vec<Mount>> {
        check_name("key", key)?;
        check_name("parent", parent)?;
        let m = mounts(self)?;
        check_key_free(&self.db.snapshots, key)?;
        let own = own(self);
        self.db.snapshots.insert(
            key.to_string(),
            Record {
                own,
                kind: Kind::View,
                parent: Some(parent.to_string()),
                diff_id: None,
                labels: Vec::new(),
            },
        );
        self.save()?;
        Ok(m)
    }

    /// The record of active snapshot `req.key` becomes committed
    /// `req.name` (with the diff id, the labels merged in, then `update`
    /// applied); answers its information. The records are not saved.
    pub fn commit_record(
        &mut self,
        req: Commit,
        update: impl FnOnce(&mut Record<P>),
    ) -> Result<SnapshotInfo> {
        let Some(mut r) = self.db.snapshots.remove(&req.key) else {
            return Err(Error::Other(format!("snapshot {:?} vanished", req.key)));
        };
        r.kind = Kind::Committed;
        r.diff_id = Some(req.diff_id.to_string());
        merge_labels(&mut r.labels, req.labels);
        update(&mut r);
        let info = self.info(&req.name, &r);
        self.db.snapshots.insert(req.name, r);
        Ok(info)
    }

    /// `layer-store.remove`: a committed snapshot is refused
    /// (`failed-precondition`) with the message `refuse` answers, if any;
    /// else the record goes (saved), then its directory.
    pub fn remove(
        &mut self,
        name: &str,
        refuse: impl FnOnce(&Self) -> Option<String>,
    ) -> Result<()> {
        let r = existing(&self.db.snapshots, "name", name)?;
        if r.kind == Kind::Committed
            && let Some(why) = refuse(self)
        {
            return Err(Error::FailedPrecondition(why));
        }
        let dir = r.own.dir().map(ToString::to_string);
        self.db.snapshots.remove(name);
        self.save()?;
        if let Some(d) = dir {
            self.delete_dir(&d);
        }
        Ok(())
    }

    /// Delete the directory `name` of a record already removed (and saved);
    /// a failure leaves garbage for the next load to retry.
    pub fn delete_dir(&mut self, name: &str) {
        delete_unrecorded(&self.root, self.layout.dirs, name, &mut self.notes);
    }
}

/// Inside `impl SnapshotStore for S`, where `S` keeps a [`RecordStore`] in
/// its field `$field`: the operations every record store answers alike
/// (`take_notes`, `stat`, `usage`, `list`), forwarded to that field.
///
/// ```ignore
/// impl SnapshotStore for Store {
///     rumoci_driver_sdk::record_store_operations!(records);
///     fn info() -> DriverInfo { /* … */ }
///     /* open_from_host, prepare, view, mounts, commit, remove */
/// }
/// ```
#[macro_export]
macro_rules! record_store_operations {
    ($field:ident) => {
        fn take_notes(&mut self) -> $crate::store_util::Notes {
            self.$field.take_notes()
        }
        fn stat(&self, name: &str) -> $crate::Result<Option<$crate::SnapshotInfo>> {
            self.$field.stat(name)
        }
        fn usage(&self, name: &str) -> $crate::Result<$crate::DiskUsage> {
            self.$field.usage(name)
        }
        fn list(&self, cursor: Option<&str>, limit: u32) -> $crate::Result<$crate::SnapshotPage> {
            self.$field.list(cursor, limit)
        }
    };
}
