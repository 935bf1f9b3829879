//! The layer cache proper: records in `db.json` and one directory per
//! snapshot, over a plain root path so it can be tested natively.
//!
//! Layout beneath the root (the plugin's store directory):
//!
//! * `db.json`: every record, written atomically (`db.json.tmp-*` + rename);
//! * `snapshots/<id>/fs/`: the snapshot's complete tree (filled by the host);
//! * `snapshots/<id>/meta`: the host's own record of the snapshot; never read
//!   here, only handed out and deleted with the snapshot.
//!
//! Paths are built only from numeric ids, never from names.

use std::path::Path;

use rumoci_driver_sdk::snapshot_store::{Record, RecordPart, StoreLayout};
use rumoci_driver_sdk::store_db::Kind;
use rumoci_driver_sdk::store_util::{
    RecordFile, check_commit, check_prepare, io_err, uncommitted, walk_usage,
};
use rumoci_driver_sdk::{
    Commit, DriverInfo, Error, Level, Mount, Prepare, Prepared, RecordStore, Result, SnapshotInfo,
    SnapshotStore, config, store_dir,
};
use serde::{Deserialize, Serialize};

/// The record file.
pub const DB_FILE: &str = "db.json";
static LAYOUT: StoreLayout = StoreLayout {
    file: RecordFile {
        name: DB_FILE,
        tmp_prefix: "db.json.tmp-",
    },
    dirs: "snapshots",
    version: 1,
    store: "the layer cache",
    empty: "cache",
};
pub use rumoci_driver_sdk::store_util::{MAX_NAME, parse_size};

// ---------------------------------------------------------------------------
// Options

/// Driver options (`--driver layer-cache.wasm,opt.max-size=2G` arrives as
/// `max-size=2G`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Evict least-recently-used committed snapshots beyond this many bytes.
    pub max_size: Option<u64>,
}

impl Options {
    /// Parse the `key=value` pairs from the host; unknown keys and malformed
    /// values are `invalid-argument` naming the key.
    pub fn parse(pairs: &[(String, String)]) -> Result<Options> {
        let mut o = Options::default();
        for (k, v) in pairs {
            match k.as_str() {
                "max-size" => {
                    o.max_size = Some(parse_size(v).ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "option max-size={v:?}: expected bytes with an optional K, M, G or T suffix (powers of 1024), e.g. 2G"
                        ))
                    })?)
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown option {k:?} (known: max-size)"
                    )));
                }
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------
// Records

/// The cache's own fields of a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cached {
    /// Directory number: `snapshots/<id>`. Views have none.
    id: Option<u64>,
    /// Bytes of regular files in `fs/`, computed at commit.
    size: u64,
    /// Entries in `fs/` (itself included), computed at commit.
    inodes: u64,
    /// Logical clock of the last use (higher = more recent).
    last_used: u64,
}

impl RecordPart for Cached {
    type Dir = u64;
    fn dir(&self) -> Option<&u64> {
        self.id.as_ref()
    }
}

/// The fields of `db.json` beside the SDK's envelope.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counters {
    /// Logical clock: the last `last_used` handed out.
    clock: u64,
}

type Records = RecordStore<Cached, Counters>;

/// The next value of the logical clock.
fn tick(rs: &mut Records) -> u64 {
    rs.db.extra.clock += 1;
    rs.db.extra.clock
}

/// Mark snapshot `name` as used now.
fn touch(rs: &mut Records, name: &str) {
    let now = tick(rs);
    if let Some(r) = rs.db.snapshots.get_mut(name) {
        r.own.last_used = now;
    }
}

/// A view's or an active snapshot's fields: used now, nothing measured.
fn unmeasured(id: Option<u64>, rs: &mut Records) -> Cached {
    Cached {
        id,
        size: 0,
        inodes: 0,
        last_used: tick(rs),
    }
}

/// The mount that shows committed snapshot `name`'s whole tree: a copy of
/// it (`what` names it in the error if it is not committed).
fn copy_mount(rs: &Records, what: &str, name: &str) -> Result<Mount> {
    Ok(Mount::Copy(rs.fs_rel(rs.committed_dir(what, name)?)))
}

/// Whether a snapshot's record counts as using its parent: an active
/// snapshot or a view (committed snapshots hold their whole tree).
fn open_child(r: &Record<Cached>) -> bool {
    r.kind != Kind::Committed
}

// ---------------------------------------------------------------------------
// The store

/// The cache, loaded from `db.json` beneath its root. Every mutating call
/// saves the records before it returns.
pub struct Store {
    rs: Records,
    opts: Options,
}

impl Store {
    /// Load the records (an absent `db.json` is an empty cache), then remove
    /// garbage: `snapshots/<id>` directories without a record (left by a
    /// crash, or by a removal whose directory deletion failed) and stray
    /// `db.json.tmp-*` files. Garbage removal is best-effort (failures
    /// become warnings). A corrupt `db.json` is an `integrity` error naming
    /// the file; nothing is deleted then.
    pub fn open(root: &Path, opts: Options) -> Result<Store> {
        Ok(Store {
            rs: RecordStore::open(&LAYOUT, root)?,
            opts,
        })
    }

    /// Committed snapshots to evict, least recently used first, until the
    /// committed total fits `max-size`. Never `keep` (just committed) nor a
    /// parent of an active snapshot or view.
    fn select_evictions(&mut self, keep: &str) -> Vec<(String, u64)> {
        let Some(max) = self.opts.max_size else {
            return Vec::new();
        };
        let committed = || {
            self.rs
                .db
                .snapshots
                .iter()
                .filter(|(_, r)| r.kind == Kind::Committed)
        };
        let mut total: u64 = committed().map(|(_, r)| r.own.size).sum();
        if total <= max {
            return Vec::new();
        }
        let mut candidates: Vec<(u64, &String, u64)> = committed()
            .filter(|(n, _)| n.as_str() != keep && !self.rs.has_child(n, open_child))
            .map(|(n, r)| (r.own.last_used, n, r.own.size))
            .collect();
        candidates.sort();
        let mut out = Vec::new();
        for (_, n, size) in candidates {
            if total <= max {
                break;
            }
            total -= size;
            out.push((n.clone(), size));
        }
        if total > max {
            self.rs.notes.push((
                Level::Warn,
                format!(
                    "committed snapshots use {total} bytes, above max-size={max}, but the rest are in use or just committed"
                ),
            ));
        }
        out
    }
}

/// `take_notes`, `stat`, `usage` (a walk of the tree now, 0 for a view)
/// and `list` (by name) are the [`RecordStore`]'s.
impl SnapshotStore for Store {
    rumoci_driver_sdk::record_store_operations!(rs);

    fn info() -> DriverInfo {
        DriverInfo::new(
            "layer-cache",
            env!("CARGO_PKG_VERSION"),
            &["layer-store", "layer-store.copy"],
        )
    }

    /// Parse the options, then [`Store::open`] the store directory.
    fn open_from_host() -> Result<Store> {
        let opts = Options::parse(&config())?;
        Store::open(&store_dir()?, opts)
    }

    /// `layer-store.prepare`: `cached` (and used now) for a committed
    /// `target`, else a fresh `snapshots/<id>/fs` over a copy of the
    /// parent's tree.
    fn prepare(&mut self, req: Prepare) -> Result<Prepared> {
        let parent = req.parent.as_deref();
        let records = &self.rs.db.snapshots;
        if let Some(t) = check_prepare(
            records,
            &req.key,
            parent,
            req.target.as_deref(),
            &req.labels,
        )? {
            touch(&mut self.rs, t);
            self.rs.save()?;
            return self.rs.cached(t);
        }
        let mounts = match parent {
            Some(p) => vec![copy_mount(&self.rs, "parent", p)?],
            None => Vec::new(),
        };
        let id = self.rs.allocate(|id| id.to_string())?;
        if let Some(p) = parent {
            touch(&mut self.rs, p);
        }
        let own = unmeasured(Some(id), &mut self.rs);
        self.rs.insert_active(req, own, mounts)
    }

    /// `layer-store.view`: a copy of the parent's tree.
    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>> {
        self.rs.add_view(
            key,
            parent,
            |rs| Ok(vec![copy_mount(rs, "parent", parent)?]),
            |rs| {
                touch(rs, parent);
                unmeasured(None, rs)
            },
        )
    }

    /// `layer-store.mounts`.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let r = uncommitted(&self.rs.db.snapshots, key)?;
        match r.parent.as_deref() {
            Some(p) => Ok(vec![copy_mount(&self.rs, "parent", p)?]),
            None => Ok(Vec::new()),
        }
    }

    /// `layer-store.commit`: measures the tree; then evicts beyond
    /// `max-size`.
    fn commit(&mut self, req: Commit) -> Result<SnapshotInfo> {
        let id = *check_commit(&self.rs.db.snapshots, &req.name, &req.key, &req.labels)?;
        let rel = self.rs.fs_rel(&id);
        let usage = walk_usage(&self.rs.root.join(&rel)).map_err(|e| io_err(rel, e))?;
        let now = tick(&mut self.rs);
        let name = req.name.clone();
        let info = self.rs.commit_record(req, |r| {
            r.own.size = usage.size;
            r.own.inodes = usage.inodes;
            r.own.last_used = now;
        })?;
        let evicted = self.select_evictions(&name);
        let mut ids = Vec::new();
        for (victim, size) in &evicted {
            if let Some(v) = self.rs.db.snapshots.remove(victim) {
                ids.extend(v.own.id);
            }
            self.rs.notes.push((
                Level::Info,
                format!(
                    "evicted {victim:?} ({size} bytes, least recently used) to stay within max-size={}",
                    self.opts.max_size.unwrap_or(0)
                ),
            ));
        }
        self.rs.save()?;
        for id in ids {
            self.rs.delete_dir(&id.to_string());
        }
        Ok(info)
    }

    /// `layer-store.remove`: a committed snapshot is refused while an
    /// active snapshot or a view has it as parent.
    fn remove(&mut self, name: &str) -> Result<()> {
        self.rs.remove(name, |rs| {
            rs.has_child(name, open_child)
                .then(|| format!("snapshot {name:?} is the parent of an active snapshot or view"))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rumoci_driver_sdk::SnapshotKind;
    use rumoci_driver_sdk::testing::{commit, digest, fresh, is_err, prepare};
    use std::fs;

    fn open(root: &Path) -> Store {
        Store::open(root, Options::default()).unwrap()
    }

    fn open_max(root: &Path, max: u64) -> Store {
        Store::open(
            root,
            Options {
                max_size: Some(max),
            },
        )
        .unwrap()
    }

    /// Prepare `key` on `parent`, write `bytes` bytes into the tree (as the
    /// host would), commit as `name`.
    fn layer(s: &mut Store, root: &Path, name: &str, parent: Option<&str>, bytes: usize) {
        let key = format!("extract-{name}");
        let t = fresh(
            s.prepare(prepare(&key, parent, Some(name), vec![]))
                .unwrap(),
        );
        fs::write(root.join(&t.dir).join("f"), vec![0u8; bytes]).unwrap();
        fs::write(root.join(&t.meta), b"host record").unwrap();
        s.commit(commit(name, &key, digest(1), vec![])).unwrap();
    }

    /// A store in a fresh temporary directory.
    fn setup() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path());
        (tmp, s)
    }

    /// Committed `c1` and its child `c2`, one byte each.
    fn chain(s: &mut Store, root: &Path) {
        layer(s, root, "c1", None, 1);
        layer(s, root, "c2", Some("c1"), 1);
    }

    /// Names of every snapshot, in list order.
    fn names(s: &Store) -> Vec<String> {
        s.list(None, 0)
            .unwrap()
            .items
            .into_iter()
            .map(|i| i.name)
            .collect()
    }

    /// The mounts as comparable strings (`copy SOURCE`, `overlay A:B`).
    fn ms(m: &[Mount]) -> Vec<String> {
        m.iter()
            .map(|m| match m {
                Mount::Copy(src) => format!("copy {src}"),
                Mount::Overlay(dirs) => format!("overlay {}", dirs.join(":")),
            })
            .collect()
    }

    #[test]
    fn options() {
        let kv = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
        assert_eq!(
            Options::parse(&kv("max-size", "2G")).unwrap().max_size,
            Some(2 << 30)
        );
        assert_eq!(
            Options::parse(&kv("max-size", "1t")).unwrap().max_size,
            Some(1 << 40)
        );
        assert_eq!(
            Options::parse(&kv("max-size", "123")).unwrap().max_size,
            Some(123)
        );
        for bad in ["", "G", "-1", "1.5G", "2GB", "99999999999T", " 1"] {
            let e = is_err(Options::parse(&kv("max-size", bad)), "InvalidArgument");
            assert!(e.contains("max-size"), "{e}");
        }
        let e = is_err(Options::parse(&kv("maxsize", "1")), "InvalidArgument");
        assert!(e.contains("maxsize"), "{e}");
    }

    #[test]
    fn prepare_commit_cached() {
        let (tmp, mut s) = setup();
        let root = tmp.path();
        let t = fresh(
            s.prepare(prepare(
                "k1",
                None,
                Some("c1"),
                vec![("a".into(), "1".into())],
            ))
            .unwrap(),
        );
        assert_eq!(t.dir, "snapshots/1/fs");
        assert_eq!(t.meta, "snapshots/1/meta");
        assert!(t.mounts.is_empty());
        assert!(root.join(&t.dir).is_dir());
        let st = s.stat("k1").unwrap().unwrap();
        assert_eq!(st.kind, SnapshotKind::Active);
        assert_eq!(st.meta, None);

        fs::write(root.join(&t.dir).join("x"), b"12345").unwrap();
        fs::create_dir(root.join(&t.dir).join("d")).unwrap();
        fs::write(root.join(&t.dir).join("d/y"), b"123").unwrap();
        let info = s
            .commit(commit(
                "c1",
                "k1",
                digest(7),
                vec![("a".into(), "2".into()), ("b".into(), "3".into())],
            ))
            .unwrap();
        assert_eq!(info.kind, SnapshotKind::Committed);
        assert_eq!(info.diff_id, Some(digest(7).to_string()));
        assert_eq!(
            info.labels,
            vec![("a".into(), "2".into()), ("b".into(), "3".into())]
        );
        assert_eq!(info.meta.as_deref(), Some("snapshots/1/meta"));
        assert!(s.stat("k1").unwrap().is_none());
        let u = s.usage("c1").unwrap();
        assert_eq!((u.size, u.inodes), (8, 4));

        // A fresh load sees the same; the target is now cached.
        drop(s);
        let mut s = open(root);
        match s.prepare(prepare("k2", None, Some("c1"), vec![])).unwrap() {
            Prepared::Cached(i) => {
                assert_eq!(i.name, "c1");
                assert_eq!(i.meta.as_deref(), Some("snapshots/1/meta"));
            }
            Prepared::Fresh(_) => panic!("expected cached"),
        }
        assert!(s.stat("k2").unwrap().is_none(), "cached creates no record");

        // A child: copy mount of the parent's tree.
        let t = fresh(
            s.prepare(prepare("k3", Some("c1"), Some("c2"), vec![]))
                .unwrap(),
        );
        assert_eq!(t.dir, "snapshots/2/fs");
        assert_eq!(ms(&t.mounts), ["copy snapshots/1/fs"]);
        assert_eq!(ms(&s.mounts("k3").unwrap()), ms(&t.mounts));
        let info = s.commit(commit("c2", "k3", digest(8), vec![])).unwrap();
        assert_eq!(info.parent.as_deref(), Some("c1"));

        // Parent must be committed and exist; key must be new.
        is_err(
            s.prepare(prepare("k4", Some("nope"), None, vec![])),
            "NotFound",
        );
        s.prepare(prepare("k4", None, None, vec![])).unwrap();
        is_err(
            s.prepare(prepare("k5", Some("k4"), None, vec![])),
            "NotFound",
        );
        is_err(
            s.prepare(prepare("k4", None, None, vec![])),
            "AlreadyExists",
        );
        is_err(
            s.prepare(prepare("c1", None, None, vec![])),
            "AlreadyExists",
        );
        // Committing something that is not active.
        is_err(
            s.commit(commit("c9", "c1", digest(1), vec![])),
            "FailedPrecondition",
        );
        is_err(
            s.commit(commit("c9", "nope", digest(1), vec![])),
            "NotFound",
        );
        // Committing under its own key is fine.
        s.commit(commit("k4", "k4", digest(1), vec![])).unwrap();
    }

    #[test]
    fn double_commit_already_exists() {
        let (tmp, mut s) = setup();
        let root = tmp.path();
        // Two unpacks race for the same chain id (both prepared before either
        // committed).
        let a = fresh(s.prepare(prepare("ka", None, Some("c"), vec![])).unwrap());
        let b = fresh(s.prepare(prepare("kb", None, Some("c"), vec![])).unwrap());
        assert_ne!(a.dir, b.dir);
        s.commit(commit("c", "ka", digest(1), vec![])).unwrap();
        is_err(
            s.commit(commit("c", "kb", digest(1), vec![])),
            "AlreadyExists",
        );
        // The host then removes its active snapshot.
        s.remove("kb").unwrap();
        assert!(!root.join("snapshots/2").exists());
        assert!(root.join("snapshots/1/fs").is_dir());
        // A name taken by an active snapshot is also taken.
        s.prepare(prepare("kc", None, None, vec![])).unwrap();
        s.prepare(prepare("kd", None, None, vec![])).unwrap();
        is_err(
            s.commit(commit("kc", "kd", digest(1), vec![])),
            "AlreadyExists",
        );
    }

    #[test]
    fn views_and_mounts() {
        let (tmp, mut s) = setup();
        let root = tmp.path();
        layer(&mut s, root, "base", None, 10);
        let m = s.view("v", "base").unwrap();
        assert_eq!(ms(&m), ["copy snapshots/1/fs"]);
        assert_eq!(ms(&s.mounts("v").unwrap()), ms(&m));
        assert_eq!(s.stat("v").unwrap().unwrap().kind, SnapshotKind::View);
        let u = s.usage("v").unwrap();
        assert_eq!((u.size, u.inodes), (0, 0));
        is_err(s.view("v", "base"), "AlreadyExists");
        is_err(s.view("w", "nope"), "NotFound");
        is_err(s.view("w", "v"), "NotFound");
        is_err(s.mounts("base"), "FailedPrecondition");
        is_err(s.mounts("nope"), "NotFound");
        s.prepare(prepare("a", None, None, vec![])).unwrap();
        assert!(s.mounts("a").unwrap().is_empty());
        // Views have no directory.
        assert_eq!(fs::read_dir(root.join("snapshots")).unwrap().count(), 2);
    }

    #[test]
    fn remove_rules() {
        let (tmp, mut s) = setup();
        let root = tmp.path();
        chain(&mut s, root);
        s.view("v", "c2").unwrap();
        s.prepare(prepare("a", Some("c1"), None, vec![])).unwrap();
        is_err(s.remove("c1"), "FailedPrecondition");
        is_err(s.remove("c2"), "FailedPrecondition");
        s.remove("v").unwrap();
        // c2 has a committed parent only: complete trees, removable.
        s.remove("c2").unwrap();
        assert!(!root.join("snapshots/2").exists());
        s.remove("a").unwrap();
        assert!(!root.join("snapshots/3").exists());
        s.remove("c1").unwrap();
        assert!(!root.join("snapshots/1").exists(), "meta goes too");
        is_err(s.remove("c1"), "NotFound");
        assert!(s.list(None, 0).unwrap().items.is_empty());
    }

    #[test]
    fn removing_a_parent_with_committed_children() {
        let (tmp, mut s) = setup();
        let root = tmp.path();
        chain(&mut s, root);
        s.remove("c1").unwrap();
        assert_eq!(s.stat("c2").unwrap().unwrap().parent.as_deref(), Some("c1"));
        assert!(root.join("snapshots/2/fs/f").is_file());
        // The dangling informational parent does not stop new children.
        let t = fresh(s.prepare(prepare("k", Some("c2"), None, vec![])).unwrap());
        assert_eq!(ms(&t.mounts), ["copy snapshots/2/fs"]);
        // Nor a view of c2's mounts.
        s.view("v", "c2").unwrap();
        assert_eq!(ms(&s.mounts("v").unwrap()), ["copy snapshots/2/fs"]);
    }

    #[test]
    fn eviction_by_last_use() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut s = open_max(root, 250);
        layer(&mut s, root, "a", None, 100);
        layer(&mut s, root, "b", None, 100);
        // Use a (cached hit) so that b is the least recently used.
        assert!(matches!(
            s.prepare(prepare("x", None, Some("a"), vec![])).unwrap(),
            Prepared::Cached(_)
        ));
        layer(&mut s, root, "c", None, 100);
        assert!(s.stat("b").unwrap().is_none(), "b evicted");
        assert!(s.stat("a").unwrap().is_some());
        assert!(s.stat("c").unwrap().is_some());
        assert!(!root.join("snapshots/2").exists());
        let notes = s.take_notes();
        assert!(
            notes.iter().any(|(_, m)| m.contains("evicted \"b\"")),
            "{notes:?}"
        );

        // A parent of an active snapshot or a view is kept, as is the one
        // just committed (even when alone it exceeds max-size).
        s.view("va", "a").unwrap();
        s.prepare(prepare("kc", Some("c"), None, vec![])).unwrap();
        layer(&mut s, root, "big", None, 1000);
        assert!(s.stat("a").unwrap().is_some());
        assert!(s.stat("c").unwrap().is_some());
        assert!(s.stat("big").unwrap().is_some());
        let notes = s.take_notes();
        assert!(notes.iter().any(|(l, _)| *l == Level::Warn), "{notes:?}");
        s.remove("va").unwrap();
        s.remove("kc").unwrap();
        // Next commit: evicts a then c then big (oldest first) until it fits.
        layer(&mut s, root, "d", None, 100);
        let left = names(&s);
        assert_eq!(left, vec!["d".to_string()]);
    }

    #[test]
    fn eviction_stops_when_it_fits() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut s = open_max(root, 300);
        for n in ["a", "b", "c"] {
            layer(&mut s, root, n, None, 100);
        }
        s.prepare(prepare("y", None, Some("a"), vec![])).unwrap(); // use a
        layer(&mut s, root, "d", None, 100);
        let left = names(&s);
        assert_eq!(left, vec!["a", "c", "d"]);
        // Without max-size nothing is evicted.
        drop(s);
        let mut s = open(root);
        layer(&mut s, root, "e", None, 1000);
        assert_eq!(s.list(None, 0).unwrap().items.len(), 4);
    }

    #[test]
    fn garbage_and_crash_leftovers() {
        let (tmp, mut s) = setup();
        let root = tmp.path();
        layer(&mut s, root, "c", None, 1);
        // A killed unpack: an active record with a half-filled tree.
        let t = fresh(
            s.prepare(prepare("dead", Some("c"), Some("c2"), vec![]))
                .unwrap(),
        );
        fs::write(root.join(&t.dir).join("half"), b"x").unwrap();
        drop(s);
        // Garbage: a directory without a record, a stray temporary.
        fs::create_dir_all(root.join("snapshots/77/fs/sub")).unwrap();
        fs::write(root.join("snapshots/77/fs/sub/f"), b"x").unwrap();
        fs::write(root.join("db.json.tmp-123"), b"{").unwrap();
        let mut s = open(root);
        assert!(!root.join("snapshots/77").exists());
        assert!(!root.join("db.json.tmp-123").exists());
        assert!(root.join("snapshots/2/fs/half").exists(), "recorded: kept");
        assert!(!s.take_notes().is_empty());
        // A new key works regardless of the dead one; the dead one is removable.
        let t2 = fresh(
            s.prepare(prepare("retry", Some("c"), Some("c2"), vec![]))
                .unwrap(),
        );
        assert_ne!(t.dir, t2.dir);
        s.commit(commit("c2", "retry", digest(2), vec![])).unwrap();
        s.remove("dead").unwrap();
        assert!(!root.join(&t.dir).exists());
        // A leftover directory never has its id reused.
        let mut db: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join(DB_FILE)).unwrap()).unwrap();
        db["next_id"] = 1.into();
        fs::write(root.join(DB_FILE), serde_json::to_vec(&db).unwrap()).unwrap();
        let mut s = open(root);
        let t3 = fresh(s.prepare(prepare("k", None, None, vec![])).unwrap());
        assert_eq!(t3.dir, "snapshots/2/fs", "1 and 3 are taken, 2 is free");
        let t4 = fresh(s.prepare(prepare("k2", None, None, vec![])).unwrap());
        assert_eq!(t4.dir, "snapshots/4/fs");
    }

    #[test]
    fn corrupt_db_is_reported_not_wiped() {
        let (tmp, mut s) = setup();
        let root = tmp.path();
        layer(&mut s, root, "c", None, 1);
        drop(s);
        fs::write(root.join(DB_FILE), b"{\"version\":1,\"next").unwrap();
        let e = is_err(
            Store::open(root, Options::default()).map(|_| ()),
            "Integrity",
        );
        assert!(e.contains("db.json"), "{e}");
        assert!(root.join("snapshots/1/fs/f").exists());
        fs::write(
            root.join(DB_FILE),
            b"{\"version\":9,\"next_id\":1,\"clock\":0,\"snapshots\":{}}",
        )
        .unwrap();
        is_err(
            Store::open(root, Options::default()).map(|_| ()),
            "Integrity",
        );
        assert!(root.join("snapshots/1/fs/f").exists());
    }

    #[test]
    fn paging() {
        let (_tmp, mut s) = setup();
        let mut names: Vec<String> = (0..25).map(|i| format!("n{i:02}")).collect();
        names.reverse();
        for n in &names {
            s.prepare(prepare(n, None, None, vec![])).unwrap();
        }
        names.sort();
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let p = s.list(cursor.as_deref(), 10).unwrap();
            assert!(p.items.len() <= 10);
            got.extend(p.items.into_iter().map(|i| i.name));
            match p.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(got, names);
        // An exact multiple ends with next = None on the last full page.
        let p = s.list(Some("n14"), 10).unwrap();
        assert_eq!(p.items.len(), 10);
        assert_eq!(p.next, None);
        let p = s.list(None, 0).unwrap();
        assert_eq!(p.items.len(), 25);
        assert_eq!(p.next, None);
        // A cursor that no longer exists still works.
        s.remove("n05").unwrap();
        let p = s.list(Some("n05"), 2).unwrap();
        assert_eq!(p.items[0].name, "n06");
        assert_eq!(p.next.as_deref(), Some("n07"));
    }

    #[test]
    fn names_are_checked_and_never_paths() {
        let (tmp, mut s) = setup();
        let root = tmp.path();
        is_err(
            s.prepare(prepare("", None, None, vec![])),
            "InvalidArgument",
        );
        is_err(
            s.prepare(prepare("a\nb", None, None, vec![])),
            "InvalidArgument",
        );
        is_err(
            s.prepare(prepare(&"x".repeat(513), None, None, vec![])),
            "InvalidArgument",
        );
        is_err(
            s.prepare(prepare("k", Some("a\0"), None, vec![])),
            "InvalidArgument",
        );
        is_err(s.stat("\u{7f}"), "InvalidArgument");
        let t = fresh(s.prepare(prepare("../../etc", None, None, vec![])).unwrap());
        assert_eq!(t.dir, "snapshots/1/fs");
        s.prepare(prepare(&"x".repeat(512), None, None, vec![]))
            .unwrap();
        let names: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, vec!["db.json", "snapshots"]);
    }
}
