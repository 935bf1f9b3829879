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

use rustix::fs::{FileType, Mode, OFlags};

use crate::fs::walk::{Step, walk};

use crate::path::{BStr, BString};

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
        walk(root, err, |e| {
            let (dir, name, rel, st) = (e.dir, e.name, e.rel, e.stat);
            let sum = match (e.file_type(), dir) {
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
            Ok(Step::Descend)
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
            |entry| {
                let rel = entry.rel;
                self.check(rel, entry.stat).map_err(|e| {
                    if rel.is_empty() {
                        format!("/: {e}")
                    } else {
                        format!("{}: {e}", crate::show::name(rel))
                    }
                })?;
                seen += 1;
                Ok(Step::Descend)
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
