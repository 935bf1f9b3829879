//! Building blocks for layer stores that keep their records in one file
//! (e.g. `db.json`) and their trees in directories beneath the store
//! directory: name and label checks, option values, an atomically replaced
//! record file, tree walks and removals, garbage collection, the checks of
//! the `layer-store` operations on a name-keyed record map
//! ([`SnapshotRecord`]) and paging.
//!
//! Everything works on plain paths, so a store built on it can be tested
//! natively (outside the sandbox).
//!
//! Trees in a layer store hold fifos and device nodes from images, and the
//! host refuses to let a plugin open one. std's `fs::remove_dir_all` opens
//! every entry over WASI, so the walks here ([`walk_usage`],
//! [`remove_tree`], [`remove_any`]) open directories only, and only `stat`,
//! unlink or rename anything else.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::ops::Bound;
use std::path::Path;

use crate::{DiskUsage, Error, Labels, Level, Result, SnapshotInfo, SnapshotKind, SnapshotPage};

/// Longest accepted snapshot name or key, in bytes.
pub const MAX_NAME: usize = 512;
/// Largest accepted label set (keys plus values), in bytes.
pub const MAX_LABEL_BYTES: usize = 64 << 10;
/// Page size of [`page`] when the caller asks for `limit = 0`.
pub const DEFAULT_PAGE: usize = 256;
/// Largest page [`page`] answers.
pub const MAX_PAGE: usize = 4096;

/// Log messages a store gathers during a call, forwarded to the host
/// afterwards (see [`crate::SnapshotStore::take_notes`]).
pub type Notes = Vec<(Level, String)>;

/// An `io` error with context, whatever the error's kind (unlike
/// [`Error::io`], a missing file is not `not-found`).
pub fn io_err(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    Error::Io(format!("{what}: {e}"))
}

/// Check a snapshot name, key, parent or cursor (`what` names it in the
/// error): not empty, at most [`MAX_NAME`] bytes, no control characters.
/// Errors are `invalid-argument`. Such names are never used as paths.
pub fn check_name(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} is empty")));
    }
    if s.len() > MAX_NAME {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes long (at most {MAX_NAME})",
            s.len()
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} {s:?} contains a control character"
        )));
    }
    Ok(())
}

/// Check that a label set is at most [`MAX_LABEL_BYTES`] (keys plus
/// values); else `invalid-argument`.
pub fn check_labels(labels: &Labels) -> Result<()> {
    let total: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_LABEL_BYTES {
        return Err(Error::InvalidArgument(format!(
            "labels total {total} bytes (at most {MAX_LABEL_BYTES})"
        )));
    }
    Ok(())
}

/// Apply `extra` on top of `base`: a key already in `base` takes the later
/// value at its earlier position, new keys are appended in order.
pub fn merge_labels(base: &mut Labels, extra: Labels) {
    for (k, v) in extra {
        match base.iter_mut().find(|(bk, _)| *bk == k) {
            Some(slot) => slot.1 = v,
            None => base.push((k, v)),
        }
    }
}

/// Parse a size option: `N`, `NK`, `NM`, `NG` or `NT` (case-insensitive
/// suffix, powers of 1024). `None` if malformed or too large for a `u64`.
pub fn parse_size(v: &str) -> Option<u64> {
    let (num, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        b'T' | b't' => (&v[..v.len() - 1], 40),
        _ => (v, 0),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// Sixteen random hex digits, for temporary file names. `RandomState` is
/// seeded from the OS (`wasi:random` inside the sandbox).
pub fn random_suffix() -> String {
    format!("{:016x}", RandomState::new().build_hasher().finish())
}

/// A record file directly beneath a store root, replaced atomically: the
/// new contents go to `<tmp_prefix><random>` (synced), which is then
/// renamed over `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFile {
    /// The file's name, e.g. `db.json`; also the context of its errors.
    pub name: &'static str,
    /// Prefix of its temporaries, e.g. `db.json.tmp-`.
    pub tmp_prefix: &'static str,
}

impl RecordFile {
    /// The file's contents, `None` if it does not exist; any other failure
    /// is an `io` error naming the file.
    pub fn read(&self, root: &Path) -> Result<Option<Vec<u8>>> {
        match fs::read(root.join(self.name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(self.name, e)),
        }
    }

    /// `integrity` (naming the file) unless the version `found` in the
    /// decoded file is the one this driver reads, `supported`.
    pub fn check_version(&self, found: u32, supported: u32) -> Result<()> {
        if found != supported {
            return Err(Error::Integrity(format!(
                "{} has version {found} (this driver reads version {supported})",
                self.name
            )));
        }
        Ok(())
    }

    /// Replace the file with `bytes` atomically (a failure removes the
    /// temporary and is an `io` error naming the file).
    pub fn write(&self, root: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = root.join(format!("{}{}", self.tmp_prefix, random_suffix()));
        let dest = root.join(self.name);
        let res = (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(|e| io_err(self.name, e))
    }

    /// Remove stray temporaries (left by a crash) beneath `root`; best
    /// effort.
    pub fn remove_temporaries(&self, root: &Path) {
        if let Ok(rd) = fs::read_dir(root) {
            for entry in rd.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with(self.tmp_prefix)
                {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// `p` relative to the store directory, for the host's tree operations.
#[cfg(target_family = "wasm")]
fn store_relative(p: &Path) -> std::io::Result<String> {
    let root = crate::store_dir().map_err(|e| std::io::Error::other(e.to_string()))?;
    let rel = p.strip_prefix(&root).map_err(|_| {
        std::io::Error::other(format!("{} is outside the store directory", p.display()))
    })?;
    rel.to_str()
        .map(str::to_string)
        .ok_or_else(|| std::io::Error::other(format!("{} is not UTF-8", p.display())))
}

/// Bytes of regular files and number of entries (the root included) of the
/// tree at `dir`, without following symlinks. Hard links are counted once
/// per name.
///
/// In the sandbox the host measures the tree (`host.measure-tree`): trees
/// the host extracted hold names that are not UTF-8 and directories
/// without search permission, which WASI cannot list. Natively (a store's
/// own tests) it is an iterative walk opening only directories.
pub fn walk_usage(dir: &Path) -> std::io::Result<DiskUsage> {
    #[cfg(target_family = "wasm")]
    {
        let t = crate::bindings::rumoci::driver::host::measure_tree(&store_relative(dir)?)
            .map_err(std::io::Error::other)?;
        Ok(DiskUsage {
            size: t.size,
            inodes: t.inodes,
        })
    }
    #[cfg(not(target_family = "wasm"))]
    walk_usage_native(dir)
}

#[cfg(not(target_family = "wasm"))]
fn walk_usage_native(dir: &Path) -> std::io::Result<DiskUsage> {
    let mut u = DiskUsage { size: 0, inodes: 1 };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            let p = entry.path();
            let m = fs::symlink_metadata(&p)?;
            u.inodes += 1;
            if m.is_dir() {
                stack.push(p);
            } else if m.is_file() {
                u.size += m.len();
            }
        }
    }
    Ok(u)
}

/// Remove the directory tree at `p`.
///
/// In the sandbox the host removes it (`host.remove-tree`), whatever names
/// (not UTF-8), modes (mode-000 directories of rootless trees) or special
/// files it holds. Natively it is an iterative walk that opens nothing but
/// directories (std's `remove_dir_all` opens entries, and the host refuses
/// to let a plugin open a fifo or a device node).
pub fn remove_tree(p: &Path) -> std::io::Result<()> {
    #[cfg(target_family = "wasm")]
    {
        crate::bindings::rumoci::driver::host::remove_tree(&store_relative(p)?)
            .map_err(std::io::Error::other)
    }
    #[cfg(not(target_family = "wasm"))]
    remove_tree_native(p)
}

#[cfg(not(target_family = "wasm"))]
fn remove_tree_native(p: &Path) -> std::io::Result<()> {
    // directories in the order found; removed deepest first
    let mut dirs = vec![p.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        let d = dirs[i].clone();
        for e in fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            } else {
                fs::remove_file(e.path())?;
            }
        }
        i += 1;
    }
    for d in dirs.iter().rev() {
        fs::remove_dir(d)?;
    }
    Ok(())
}

/// Remove a path whatever it is (a directory with [`remove_tree`]); a
/// missing path is fine.
pub fn remove_any(p: &Path) -> std::io::Result<()> {
    let res = match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => remove_tree(p),
        Ok(_) => fs::remove_file(p),
        Err(e) => Err(e),
    };
    match res {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Remove every entry of `root/<dir>` whose name is not in `live` (left by
/// a crash, or by a removal whose deletion failed), best effort: each
/// removal or failure becomes a note (`info` or `warn`) naming
/// `<dir>/<name>` and the record file `db_file`. A missing `root/<dir>` is
/// fine.
pub fn remove_unrecorded(
    root: &Path,
    dir: &str,
    live: &HashSet<String>,
    db_file: &str,
    notes: &mut Notes,
) {
    if let Ok(rd) = fs::read_dir(root.join(dir)) {
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if live.contains(&name) {
                continue;
            }
            match remove_any(&entry.path()) {
                Ok(()) => notes.push((
                    Level::Info,
                    format!("removed {dir}/{name}: no record in {db_file} (left by an interrupted operation)"),
                )),
                Err(e) => notes.push((
                    Level::Warn,
                    format!("cannot remove unrecorded {dir}/{name}: {e}"),
                )),
            }
        }
    }
}

/// Delete `root/<dir>/<name>` of a record already removed (and saved); a
/// failure becomes a `warn` note and leaves garbage for
/// [`remove_unrecorded`] to retry on the next load.
pub fn delete_unrecorded(root: &Path, dir: &str, name: &str, notes: &mut Notes) {
    if let Err(e) = remove_any(&root.join(dir).join(name)) {
        notes.push((
            Level::Warn,
            format!("cannot delete {dir}/{name} (retried on next use): {e}"),
        ));
    }
}

/// A store's record of one snapshot, as the checks below see it. Records
/// are kept in a `BTreeMap` keyed by name (committed snapshots) or key
/// (active snapshots and views): one namespace.
pub trait SnapshotRecord {
    /// What names the record's directory in the store (an id, a directory
    /// name).
    type Dir;
    /// The snapshot's kind.
    fn kind(&self) -> SnapshotKind;
    /// The record's directory; views have none.
    fn dir(&self) -> Option<&Self::Dir>;
}

/// A kind as the error messages name it: `Active`, `View` or `Committed`.
fn kind_name(kind: SnapshotKind) -> &'static str {
    match kind {
        SnapshotKind::Active => "Active",
        SnapshotKind::View => "View",
        SnapshotKind::Committed => "Committed",
    }
}

/// The record of snapshot `name` (checked with [`check_name`] as `what`),
/// else `not-found`.
pub fn existing<'a, R>(records: &'a BTreeMap<String, R>, what: &str, name: &str) -> Result<&'a R> {
    check_name(what, name)?;
    records
        .get(name)
        .ok_or_else(|| Error::NotFound(format!("snapshot {name:?} does not exist")))
}

/// The directory of committed snapshot `name` (`what` names it in the
/// error, e.g. `parent`), else `not-found`.
pub fn committed_dir<'a, R: SnapshotRecord>(
    records: &'a BTreeMap<String, R>,
    what: &str,
    name: &str,
) -> Result<&'a R::Dir> {
    match records.get(name) {
        Some(r) => match (r.kind(), r.dir()) {
            (SnapshotKind::Committed, Some(d)) => Ok(d),
            (k, _) => Err(Error::NotFound(format!(
                "{what} {name:?} is not a committed snapshot (it is {})",
                kind_name(k)
            ))),
        },
        None => Err(Error::NotFound(format!("{what} {name:?} does not exist"))),
    }
}

/// `layer-store.stat`: the information on snapshot `name` (checked with
/// [`check_name`]), made by `info`; `None` if absent.
pub fn lookup<R>(
    records: &BTreeMap<String, R>,
    name: &str,
    info: impl Fn(&str, &R) -> SnapshotInfo,
) -> Result<Option<SnapshotInfo>> {
    check_name("name", name)?;
    Ok(records.get(name).map(|r| info(name, r)))
}

/// `already-exists` if a snapshot has the name or key `key`.
pub fn check_key_free<R>(records: &BTreeMap<String, R>, key: &str) -> Result<()> {
    if records.contains_key(key) {
        return Err(Error::AlreadyExists(format!("snapshot {key:?} exists")));
    }
    Ok(())
}

/// The checks of `layer-store.prepare`: the names and labels; then
/// `Some(target)` when `target` is committed already (answer `cached`);
/// else `None` once `key` is known to be free and `parent` (if any) to be
/// committed.
pub fn check_prepare<'a, R: SnapshotRecord>(
    records: &BTreeMap<String, R>,
    key: &str,
    parent: Option<&str>,
    target: Option<&'a str>,
    labels: &Labels,
) -> Result<Option<&'a str>> {
    check_name("key", key)?;
    if let Some(p) = parent {
        check_name("parent", p)?;
    }
    if let Some(t) = target {
        check_name("target", t)?;
    }
    check_labels(labels)?;
    if let Some(t) = target
        && committed_dir(records, "target", t).is_ok()
    {
        return Ok(Some(t));
    }
    check_key_free(records, key)?;
    if let Some(p) = parent {
        committed_dir(records, "parent", p)?;
    }
    Ok(None)
}

/// The record of active snapshot or view `key`, for `layer-store.mounts`:
/// `not-found` if absent, `failed-precondition` if committed.
pub fn uncommitted<'a, R: SnapshotRecord>(
    records: &'a BTreeMap<String, R>,
    key: &str,
) -> Result<&'a R> {
    let r = existing(records, "key", key)?;
    if r.kind() == SnapshotKind::Committed {
        return Err(Error::FailedPrecondition(format!(
            "snapshot {key:?} is committed; mounts exist for active snapshots and views"
        )));
    }
    Ok(r)
}

/// The checks of `layer-store.commit`: the names and labels, `key` is an
/// active snapshot (`not-found`, `failed-precondition`), and `name` is free
/// unless it is `key` itself (`already-exists`). Answers the directory of
/// `key`.
pub fn check_commit<'a, R: SnapshotRecord>(
    records: &'a BTreeMap<String, R>,
    name: &str,
    key: &str,
    labels: &Labels,
) -> Result<&'a R::Dir> {
    check_name("name", name)?;
    check_name("key", key)?;
    check_labels(labels)?;
    let dir = match records.get(key) {
        Some(r) => match (r.kind(), r.dir()) {
            (SnapshotKind::Active, Some(d)) => d,
            (k, _) => {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key:?} is not active (it is {})",
                    kind_name(k)
                )));
            }
        },
        None => {
            return Err(Error::NotFound(format!(
                "active snapshot {key:?} does not exist"
            )));
        }
    };
    if name != key
        && let Some(r) = records.get(name)
    {
        return Err(Error::AlreadyExists(match r.kind() {
            SnapshotKind::Committed => format!("committed snapshot {name:?} exists"),
            k => format!(
                "name {name:?} is taken by a snapshot that is {}",
                kind_name(k)
            ),
        }));
    }
    Ok(dir)
}

/// One page of `records` (sorted by name) for `layer-store.list-snapshots`:
/// at most `limit` items ([`DEFAULT_PAGE`] for 0, at most [`MAX_PAGE`])
/// after the name `cursor` (which need not exist any more), each made by
/// `info`; `next` is the last name of the page when more follow.
pub fn page<R>(
    records: &BTreeMap<String, R>,
    cursor: Option<&str>,
    limit: u32,
    info: impl Fn(&str, &R) -> SnapshotInfo,
) -> Result<SnapshotPage> {
    let limit = match limit as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let lower = match cursor {
        Some(c) => {
            check_name("cursor", c)?;
            Bound::Excluded(c)
        }
        None => Bound::Unbounded,
    };
    let mut it = records
        .range::<str, _>((lower, Bound::Unbounded))
        .peekable();
    let items: Vec<SnapshotInfo> = it.by_ref().take(limit).map(|(n, r)| info(n, r)).collect();
    let next = match (it.peek(), items.last()) {
        (Some(_), Some(last)) => Some(last.name.clone()),
        _ => None,
    };
    Ok(SnapshotPage { items, next })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory beneath the system's temporary directory, removed
    /// on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let p = std::env::temp_dir().join(format!("rumoci-sdk-test-{}", random_suffix()));
            fs::create_dir(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = remove_any(&self.0);
        }
    }

    #[test]
    fn names_labels_sizes() {
        assert!(check_name("key", "a").is_ok());
        assert!(check_name("key", "").is_err());
        assert!(check_name("key", "a\nb").is_err());
        assert!(check_name("key", &"x".repeat(MAX_NAME)).is_ok());
        assert!(check_name("key", &"x".repeat(MAX_NAME + 1)).is_err());
        assert!(check_labels(&vec![("k".into(), "x".repeat(MAX_LABEL_BYTES))]).is_err());
        let mut l: Labels = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        merge_labels(
            &mut l,
            vec![("c".into(), "3".into()), ("a".into(), "4".into())],
        );
        assert_eq!(
            l,
            vec![
                ("a".to_string(), "4".to_string()),
                ("b".into(), "2".into()),
                ("c".into(), "3".into())
            ]
        );
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("7"), Some(7));
        for bad in ["", "G", "-1", "1.5G", "2GB", "99999999999T", " 1"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn record_file_and_trees() {
        let tmp = TempDir::new();
        let root = &tmp.0;
        let db = RecordFile {
            name: "db.json",
            tmp_prefix: "db.json.tmp-",
        };
        assert_eq!(db.read(root).unwrap(), None);
        db.write(root, b"one").unwrap();
        db.write(root, b"two").unwrap();
        db.check_version(1, 1).unwrap();
        let e = format!("{:?}", db.check_version(2, 1).unwrap_err());
        assert!(
            e.contains("Integrity") && e.contains("has version 2"),
            "{e}"
        );
        assert_eq!(db.read(root).unwrap().as_deref(), Some(&b"two"[..]));
        fs::write(root.join("db.json.tmp-x"), b"").unwrap();
        db.remove_temporaries(root);
        assert!(!root.join("db.json.tmp-x").exists());

        fs::create_dir_all(root.join("d/1/fs/sub")).unwrap();
        fs::write(root.join("d/1/fs/a"), b"123").unwrap();
        fs::write(root.join("d/1/fs/sub/b"), b"45").unwrap();
        let u = walk_usage(&root.join("d/1/fs")).unwrap();
        assert_eq!((u.size, u.inodes), (5, 4));
        fs::create_dir_all(root.join("d/2/x")).unwrap();
        fs::write(root.join("d/3"), b"").unwrap();
        let live: HashSet<String> = ["1".to_string()].into();
        let mut notes = Notes::new();
        remove_unrecorded(root, "d", &live, "db.json", &mut notes);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(root.join("d/1/fs/a").exists());
        assert!(!root.join("d/2").exists() && !root.join("d/3").exists());
        delete_unrecorded(root, "d", "1", &mut notes);
        assert!(!root.join("d/1").exists());
        assert_eq!(notes.len(), 2, "{notes:?}");
        remove_any(&root.join("d/missing")).unwrap();
    }

    #[derive(Debug)]
    struct Rec(SnapshotKind, Option<u64>);

    impl SnapshotRecord for Rec {
        type Dir = u64;
        fn kind(&self) -> SnapshotKind {
            self.0
        }
        fn dir(&self) -> Option<&u64> {
            self.1.as_ref()
        }
    }

    fn msg<T: std::fmt::Debug>(r: Result<T>) -> String {
        format!("{:?}", r.unwrap_err())
    }

    #[test]
    fn record_checks() {
        let m: BTreeMap<String, Rec> = [
            ("c".to_string(), Rec(SnapshotKind::Committed, Some(1))),
            ("a".to_string(), Rec(SnapshotKind::Active, Some(2))),
            ("v".to_string(), Rec(SnapshotKind::View, None)),
        ]
        .into();
        assert_eq!(*committed_dir(&m, "parent", "c").unwrap(), 1);
        let e = msg(committed_dir(&m, "parent", "a"));
        assert!(
            e.contains("is not a committed snapshot (it is Active)"),
            "{e}"
        );
        assert!(msg(committed_dir(&m, "parent", "x")).contains("does not exist"));
        assert!(existing(&m, "name", "v").is_ok());
        assert!(msg(existing(&m, "name", "x")).contains("NotFound"));
        assert!(msg(existing(&m, "name", "")).contains("InvalidArgument"));
        // prepare: a committed target is cached, whatever the key
        assert_eq!(
            check_prepare(&m, "a", None, Some("c"), &vec![]).unwrap(),
            Some("c")
        );
        assert_eq!(
            check_prepare(&m, "k", Some("c"), Some("n"), &vec![]).unwrap(),
            None
        );
        assert!(msg(check_prepare(&m, "a", None, None, &vec![])).contains("AlreadyExists"));
        assert!(msg(check_prepare(&m, "k", Some("v"), None, &vec![])).contains("NotFound"));
        assert!(uncommitted(&m, "v").is_ok());
        assert!(msg(uncommitted(&m, "c")).contains("FailedPrecondition"));
        // commit
        assert_eq!(*check_commit(&m, "n", "a", &vec![]).unwrap(), 2);
        assert_eq!(*check_commit(&m, "a", "a", &vec![]).unwrap(), 2);
        let e = msg(check_commit(&m, "n", "v", &vec![]));
        assert!(
            e.contains("FailedPrecondition") && e.contains("(it is View)"),
            "{e}"
        );
        assert!(msg(check_commit(&m, "n", "x", &vec![])).contains("NotFound"));
        let e = msg(check_commit(&m, "c", "a", &vec![]));
        assert!(e.contains("AlreadyExists(\"committed snapshot"), "{e}");
        let e = msg(check_commit(&m, "v", "a", &vec![]));
        assert!(e.contains("taken by a snapshot that is View"), "{e}");
    }

    #[test]
    fn pages() {
        let info = |n: &str, _: &()| SnapshotInfo {
            name: n.to_string(),
            parent: None,
            kind: crate::SnapshotKind::Committed,
            diff_id: None,
            labels: Vec::new(),
            meta: None,
        };
        let m: BTreeMap<String, ()> = (0..5).map(|i| (format!("n{i}"), ())).collect();
        let p = page(&m, None, 2, info).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.next.as_deref(), Some("n1"));
        let p = page(&m, Some("n2x"), 0, info).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.next, None);
        assert!(page(&m, Some(""), 0, info).is_err());
    }
}
