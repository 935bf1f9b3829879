//! rumoci's own record of a tree kept in a layer store.
//!
//! Written right after a layer is extracted into a store's snapshot, kept in
//! the file the store names (`unpack-target.meta`), and read back when the
//! snapshot is reused. It holds:
//!
//! * the sha256 of every regular file, so that the bundle's mtree manifest
//!   is written without reading the files again;
//! * the inode and change time (ctime) of every entry, so that a tree
//!   changed after it was recorded — by anyone, including the store's
//!   plugin, which can write to its directory — is refused instead of
//!   becoming a bundle. Nothing can set a ctime back, and replacing an entry
//!   changes its inode.
//!
//! Paths are relative, `/`-separated, `""` for the root, as bytes (see
//! [`crate::path`]); in the file (version 2) they are keys in go-mtree's
//! `vis` encoding, so names that are not UTF-8 survive. Version 1 records
//! (plain UTF-8 keys) are still read.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use std::ffi::CStr;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::path::{self, BStr, BString, ByteSlice};

/// Largest record accepted (a tree of several million entries).
const MAX_RECORD: u64 = 1 << 30;

/// Errors of records.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Reading or writing the record or walking the tree failed.
    #[error("{}: {source}", crate::show::name(path))]
    Io {
        /// The file or tree.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The record file is not a record.
    #[error("{}: not a rumoci tree record: {reason}", crate::show::name(path))]
    Invalid {
        /// The record file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One entry: inode, ctime seconds and nanoseconds, sha256 (regular files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry(u64, i64, i64, Option<String>);

#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    entries: BTreeMap<String, Entry>,
    /// Directories kept open for an unprivileged owner, with their real
    /// modes (vis-encoded paths).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    restricted: BTreeMap<String, u32>,
}

/// The version of the record file written.
const VERSION: u32 = 2;

/// What rumoci recorded about a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    entries: BTreeMap<BString, Entry>,
    /// Directories of the tree kept open (`u+rwx`) for an unprivileged
    /// owner, with their real modes, to set on a copy (see
    /// `fs::unpriv`).
    restricted: BTreeMap<BString, u32>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Walk the tree at `root` depth first, descriptor by descriptor (trees
/// from images can be deeper than `PATH_MAX` allows a path to reach):
/// `visit(dir, name, rel, stat)` sees every entry (`dir` its parent
/// directory, `None` for the root; `rel` relative, `/`-separated, `""` for
/// the root; `stat` not following symlinks). Directories are descended
/// into. Errors name the entry (relative path) or the root.
fn walk<E>(
    root: &Path,
    io_err: impl Fn(&str, std::io::Error) -> E,
    mut visit: impl FnMut(Option<&OwnedFd>, &CStr, &BStr, &Stat) -> Result<(), E>,
) -> Result<(), E> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let at = |rel: &BStr| crate::show::name(&path::join(path::bytes(root.as_os_str()), rel));
    let top = rustix::fs::open(root, flags, Mode::empty())
        .map_err(|e| io_err(&root.display().to_string(), e.into()))?;
    let st = rustix::fs::fstat(&top).map_err(|e| io_err(&root.display().to_string(), e.into()))?;
    visit(None, c".", b"".as_bstr(), &st)?;
    // Pending directories hold their parent's descriptor (shared) and
    // their name, and are opened only when visited: a directory with
    // thousands of subdirectories costs one descriptor, not thousands.
    let mut stack: Vec<(std::rc::Rc<OwnedFd>, std::ffi::CString, BString)> = Vec::new();
    let mut dirs = vec![(top, BString::from(""))];
    loop {
        let (dir, rel) = match dirs.pop() {
            Some(d) => d,
            None => match stack.pop() {
                Some((parent, name, rel)) => {
                    let fd = rustix::fs::openat(&*parent, name.as_c_str(), flags, Mode::empty())
                        .map_err(|e| io_err(&at(rel.as_ref()), e.into()))?;
                    (fd, rel)
                }
                None => break,
            },
        };
        let dir = std::rc::Rc::new(dir);
        let mut names = Vec::new();
        let mut d =
            rustix::fs::Dir::read_from(&*dir).map_err(|e| io_err(&at(rel.as_ref()), e.into()))?;
        while let Some(e) = d.read() {
            let e = e.map_err(|e| io_err(&at(rel.as_ref()), e.into()))?;
            let n = e.file_name();
            if n != c"." && n != c".." {
                names.push(n.to_owned());
            }
        }
        for n in names {
            let child = path::join(&rel, n.to_bytes());
            let st = rustix::fs::statat(&*dir, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err(&at(child.as_ref()), e.into()))?;
            visit(Some(&dir), n.as_c_str(), child.as_ref(), &st)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                stack.push((dir.clone(), n, child));
            }
        }
    }
    Ok(())
}

/// The sha256 of the regular file `name` in `dir` (never through a
/// symlink).
fn hash_at(dir: &OwnedFd, name: &CStr) -> std::io::Result<[u8; 32]> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    crate::mtree::sha256_reader(std::fs::File::from(fd))
}

impl Record {
    /// Record the tree at `root` as it is now; `digests` are the sha256 of
    /// its regular files (files missing there are hashed).
    pub fn capture(
        root: &Path,
        digests: &BTreeMap<BString, [u8; 32]>,
    ) -> Result<Record, RecordError> {
        let mut entries = BTreeMap::new();
        let err = |p: &str, source| RecordError::Io {
            path: p.to_string(),
            source,
        };
        walk(root, err, |dir, name, rel, st| {
            let sum = match (FileType::from_raw_mode(st.st_mode), dir) {
                (FileType::RegularFile, Some(dir)) => Some(match digests.get(rel) {
                    Some(d) => hex::encode(d),
                    None => hex::encode(
                        hash_at(dir, name).map_err(|e| err(&crate::show::name(rel), e))?,
                    ),
                }),
                _ => None,
            };
            entries.insert(
                rel.to_owned(),
                Entry(st.st_ino, st.st_ctime, st.st_ctime_nsec as i64, sum),
            );
            Ok(())
        })?;
        Ok(Record {
            entries,
            restricted: BTreeMap::new(),
        })
    }

    /// The directories kept open for an unprivileged owner (their real
    /// modes).
    pub fn restricted(&self) -> &BTreeMap<BString, u32> {
        &self.restricted
    }

    /// Record the directories kept open for an unprivileged owner.
    pub fn with_restricted(mut self, dirs: BTreeMap<BString, u32>) -> Record {
        self.restricted = dirs;
        self
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the record is empty (never true for a captured tree: the
    /// root is an entry).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sha256 of every regular file.
    pub fn digests(&self) -> BTreeMap<BString, [u8; 32]> {
        let mut out = BTreeMap::new();
        for (p, e) in &self.entries {
            if let Some(h) = &e.3 {
                let mut d = [0u8; 32];
                if hex::decode_to_slice(h, &mut d).is_ok() {
                    out.insert(p.clone(), d);
                }
            }
        }
        out
    }

    /// Check one entry of the tree against the record: same inode, same
    /// ctime. `Err` says what differs.
    pub fn check(&self, rel: &BStr, st: &rustix::fs::Stat) -> Result<(), crate::Error> {
        let changed = |m: &str| Err(crate::Error::msg(crate::ErrorKind::Integrity, m));
        match self.entries.get(rel) {
            None => changed("not in the recorded tree (added after it was recorded)"),
            Some(Entry(ino, cs, cn, _)) => {
                if *ino != st.st_ino || *cs != st.st_ctime || *cn != st.st_ctime_nsec as i64 {
                    changed("changed after the tree was recorded")
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Check the whole tree at `root` against the record: every entry
    /// recorded (same inode, same ctime), none added, none missing.
    pub fn verify(&self, root: &Path) -> Result<(), crate::Error> {
        let mut seen = 0usize;
        walk(
            root,
            |p, e| format!("{p}: {e}"),
            |_, _, rel, st| {
                self.check(rel, st).map_err(|e| {
                    if rel.is_empty() {
                        format!("/: {e}")
                    } else {
                        format!("{}: {e}", crate::show::name(rel))
                    }
                })?;
                seen += 1;
                Ok(())
            },
        )
        .map_err(|m| crate::Error::msg(crate::ErrorKind::Integrity, m))?;
        self.check_count(seen)
    }

    /// After a walk of the tree that found every one of its `seen` entries
    /// in the record: `Err` unless that is all of the record.
    pub fn check_count(&self, seen: usize) -> Result<(), crate::Error> {
        if seen != self.entries.len() {
            return Err(crate::Error::msg(
                crate::ErrorKind::Integrity,
                format!(
                    "{} of its {} recorded entries are missing",
                    self.entries.len().saturating_sub(seen),
                    self.entries.len()
                ),
            ));
        }
        Ok(())
    }

    /// Write the record to `path` atomically (temporary file, fsync,
    /// rename).
    pub fn write(&self, path: &Path) -> Result<(), RecordError> {
        let entries = self
            .entries
            .iter()
            .map(|(k, v)| (crate::mtree::vis(k), v.clone()))
            .collect();
        let restricted = self
            .restricted
            .iter()
            .map(|(k, v)| (crate::mtree::vis(k), *v))
            .collect();
        let data = serde_json::to_vec(&File {
            version: VERSION,
            entries,
            restricted,
        })
        .map_err(|e| RecordError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        crate::fs::atomic::write(path, &data).map_err(|e| RecordError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Read the record at `path`.
    pub fn read(path: &Path) -> Result<Record, RecordError> {
        use std::io::Read;
        let f = std::fs::File::open(path).map_err(io(path))?;
        let mut data = Vec::new();
        f.take(MAX_RECORD + 1)
            .read_to_end(&mut data)
            .map_err(io(path))?;
        let invalid = |reason: String| RecordError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        if data.len() as u64 > MAX_RECORD {
            return Err(invalid(format!("larger than {MAX_RECORD} bytes")));
        }
        let f: File = serde_json::from_slice(&data).map_err(|e| invalid(e.to_string()))?;
        let entries: BTreeMap<BString, Entry> = match f.version {
            1 => f
                .entries
                .into_iter()
                .map(|(k, v)| (BString::from(k), v))
                .collect(),
            VERSION => f
                .entries
                .into_iter()
                .map(|(k, v)| {
                    crate::mtree::unvis(&k)
                        .map(|k| (BString::from(k), v))
                        .ok_or_else(|| invalid(format!("bad path encoding {k:?}")))
                })
                .collect::<Result<_, _>>()?,
            v => return Err(invalid(format!("unknown version {v}"))),
        };
        if !entries.contains_key(b"".as_slice()) {
            return Err(invalid("no root entry".into()));
        }
        let restricted = f
            .restricted
            .into_iter()
            .map(|(k, v)| {
                crate::mtree::unvis(&k)
                    .map(|k| (BString::from(k), v & 0o7777))
                    .ok_or_else(|| invalid(format!("bad path encoding {k:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Record {
            entries,
            restricted,
        })
    }
}

impl crate::layer_store::record::RecordError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::layer_store::record::RecordError as E;
        match self {
            E::Io { source, .. } => crate::error::ErrorKind::of_io(source),
            E::Invalid { .. } => crate::error::ErrorKind::Integrity,
        }
    }
}

rumoci_core::wraps!(crate::layer_store::record::RecordError);

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(p: &Path) -> rustix::fs::Stat {
        rustix::fs::lstat(p).expect("lstat")
    }

    #[test]
    fn detects_changes_and_round_trips() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path();
        std::fs::create_dir(root.join("d")).expect("mkdir");
        std::fs::write(root.join("d/f"), "hello").expect("write");
        std::fs::write(root.join("g"), "x").expect("write");
        let rec = Record::capture(root, &BTreeMap::new()).expect("capture");
        assert_eq!(rec.len(), 4);
        // digests were computed for files missing from the map
        let d = rec.digests();
        assert_eq!(
            hex::encode(d[b"d/f".as_slice()]),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let path = root.join("rec");
        rec.write(&path).expect("write");
        let back = Record::read(&path).expect("read");
        assert_eq!(back, rec);
        assert!(back.check("d/f".into(), &stat(&root.join("d/f"))).is_ok());
        // a content change moves ctime
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(root.join("d/f"), "HELLO").expect("write");
        assert!(back.check("d/f".into(), &stat(&root.join("d/f"))).is_err());
        // so does chmod
        std::fs::set_permissions(
            root.join("g"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .expect("chmod");
        assert!(back.check("g".into(), &stat(&root.join("g"))).is_err());
        // an added entry is not in the record
        assert!(back.check("new".into(), &stat(&root.join("g"))).is_err());
    }

    #[test]
    fn refuses_garbage() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = t.path().join("rec");
        std::fs::write(&p, "{\"version\":1,\"entries\":{}}").expect("write");
        assert!(Record::read(&p).is_err());
        std::fs::write(&p, "not json").expect("write");
        let e = Record::read(&p).expect_err("garbage");
        assert!(e.to_string().contains("not a rumoci tree record"), "{e}");
    }
}
