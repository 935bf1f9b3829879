//! A safe, faithful copy of a directory tree: used to materialise a root
//! filesystem from the layer cache into a bundle, and to seed a snapshot from
//! its parent.
//!
//! The source is not trusted (a sandboxed plugin can write to it), so the
//! copy never follows a symlink, in the source or in the destination,
//! whatever the tree contains or how it changes while it is copied:
//!
//! - every directory is opened relative to its parent's descriptor with
//!   `O_NOFOLLOW | O_DIRECTORY`, every other entry is reached by name in its
//!   parent with `*at` calls that do not follow the last component, and
//!   extended attributes of entries that cannot be opened (symlinks,
//!   devices, fifos) go through `/proc/self/fd/<dir>/<name>` with the `l*`
//!   calls;
//! - a regular file is opened `O_PATH | O_NOFOLLOW`, checked to be the inode
//!   that was `lstat`ed (and shown to `check`), and only then reopened for
//!   reading through its descriptor, so a device renamed into its place is
//!   never opened;
//! - an entry whose inode changes between the `lstat` and the copy, or a
//!   file or directory modified (size, mtime or ctime) while it is copied,
//!   aborts the copy with [`CopyError::Changed`].
//!
//! Names that are not UTF-8 are shown to `check` and in errors lossily
//! converted (as elsewhere in the crate); they are copied byte for byte.

mod data;
mod meta;
impl crate::layer::copy::CopyError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::layer::copy::CopyError as E;
        match self {
            E::Source { .. } | E::Destination { .. } => crate::error::ErrorKind::InvalidInput,
            E::Io { source, .. } => crate::error::ErrorKind::of_io(source),
            E::Rejected { .. } | E::Changed { .. } => crate::error::ErrorKind::Integrity,
        }
    }
}

rumoci_core::wraps!(crate::layer::copy::CopyError);

#[cfg(test)]
mod tests;
mod walk;

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use crate::fs::dir::names;
use crate::path::{BStr, ByteSlice};
use meta::ident;
use walk::Frame;

/// Options of [`copy_tree`].
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Ignore `EPERM`/`EINVAL` from `chown` (rootless: the caller cannot
    /// give files away); the copies keep the caller's ownership.
    pub ignore_chown_errors: bool,
    /// Ignore `EPERM`/`ENOTSUP` when setting an extended attribute (rootless:
    /// `trusted.*` and `security.*` need privileges; or a destination
    /// filesystem without xattr support).
    pub ignore_xattr_errors: bool,
}

/// What [`copy_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Entries created in the destination, the root included (hardlinks
    /// included, skipped sockets not).
    pub entries: u64,
    /// Bytes of regular file data (each inode once).
    pub bytes: u64,
    /// Non-empty regular files whose data was reflinked (`FICLONE`).
    pub reflinked: u64,
    /// Non-empty regular files whose data was copied (`copy_file_range`, or
    /// read and write).
    pub copied: u64,
    /// Entries created as hardlinks to an earlier copy.
    pub hardlinks: u64,
    /// Source entries not copied (sockets).
    pub skipped: u64,
}

/// Errors of [`copy_tree`]. Paths of entries are relative to the source
/// root (`""` is the root itself).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source root cannot be used.
    #[error("copy source {}: {reason}", crate::show::name(path))]
    Source {
        /// The source path given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The destination root cannot be used (missing, not a directory, a
    /// symlink, not empty, inside the source).
    #[error("copy destination {}: {reason}", crate::show::name(path))]
    Destination {
        /// The destination path given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A system call failed on an entry.
    #[error("copy of {}: {op}: {source}", crate::show::name(path))]
    Io {
        /// The entry.
        path: String,
        /// The operation that failed.
        op: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The caller's `check` refused an entry.
    #[error("copy of {} refused: {reason}", crate::show::name(path))]
    Rejected {
        /// The entry.
        path: String,
        /// The reason `check` gave.
        reason: String,
    },
    /// An entry was replaced or modified while it was being copied.
    #[error("{} changed while being copied: {what}", crate::show::name(path))]
    Changed {
        /// The entry.
        path: String,
        /// What changed.
        what: String,
    },
}

pub(super) fn io_err(path: &str, op: impl Into<String>) -> impl FnOnce(Errno) -> CopyError {
    let path = path.to_string();
    let op = op.into();
    move |e| CopyError::Io {
        path,
        op,
        source: e.into(),
    }
}

pub(super) fn changed(path: &str, what: impl Into<String>) -> CopyError {
    CopyError::Changed {
        path: path.to_string(),
        what: what.into(),
    }
}

/// The size of the read/write fallback buffer.
pub(super) const BUF_SIZE: usize = 1 << 20;

/// The state of one [`copy_tree`].
pub(super) struct Copier<'a> {
    pub(super) opts: &'a CopyOptions,
    pub(super) check: &'a mut dyn FnMut(&BStr, &Stat) -> Result<(), crate::Error>,
    pub(super) stats: CopyStats,
    pub(super) dst_root: OwnedFd,
    pub(super) dst_id: (u64, u64),
    /// First copy of each multiply-linked source inode: (dev, ino) → its
    /// path in the destination.
    pub(super) links: HashMap<(u64, u64), Vec<u8>>,
    pub(super) reflink: bool,
    pub(super) copy_range: bool,
    pub(super) noatime: bool,
    pub(super) buf: Vec<u8>,
}

/// Copy the tree at `src` into `dst`, an existing empty directory that also
/// receives the metadata of `src` itself.
///
/// Directories, regular files (reflinked when the filesystem allows it,
/// otherwise copied with `copy_file_range` or read and write, holes kept),
/// symlinks (targets byte for byte, never followed), character and block
/// devices and fifos are copied; sockets are skipped with a warning. Owner,
/// full mode (setuid, setgid, sticky), every extended attribute, atime and
/// mtime (nanoseconds) and hardlinks (by source device and inode) are kept.
/// Entries are visited in name order, depth first.
///
/// `check` is called for every source entry with its path relative to `src`
/// (`""` for the root) and its `lstat`, before the entry is copied; an
/// `Err(reason)` aborts the copy with [`CopyError::Rejected`].
///
/// On error, whatever was copied stays in `dst`: the caller removes it.
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    opts: &CopyOptions,
    check: &mut dyn FnMut(&BStr, &Stat) -> Result<(), crate::Error>,
) -> Result<CopyStats, CopyError> {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR or ELOOP.
    let why = |p: &Path, e: Errno| match e {
        Errno::LOOP | Errno::NOTDIR => {
            match rustix::fs::statat(rustix::fs::CWD, p, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    "is a symlink".to_string()
                }
                _ => "is not a directory".to_string(),
            }
        }
        Errno::NOENT => "does not exist".to_string(),
        e => e.to_string(),
    };
    let src_fd = match rustix::fs::open(src, dir_flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::open(src, dir_flags, Mode::empty()),
        r => r,
    }
    .map_err(|e| CopyError::Source {
        path: src.to_path_buf(),
        reason: why(src, e),
    })?;
    let dst_err = |reason: String| CopyError::Destination {
        path: dst.to_path_buf(),
        reason,
    };
    let dst_fd =
        rustix::fs::open(dst, dir_flags, Mode::empty()).map_err(|e| dst_err(why(dst, e)))?;
    if !names(dst_fd.as_fd())
        .map_err(|e| dst_err(e.to_string()))?
        .is_empty()
    {
        return Err(dst_err("is not empty".to_string()));
    }
    let dst_st = rustix::fs::fstat(&dst_fd).map_err(|e| dst_err(e.to_string()))?;
    let st = rustix::fs::fstat(&src_fd).map_err(io_err("", "fstat"))?;
    if ident(&st) == ident(&dst_st) {
        return Err(dst_err("is the source".to_string()));
    }
    check(b"".as_bstr(), &st).map_err(|reason| CopyError::Rejected {
        path: String::new(),
        reason: reason.to_string(),
    })?;
    let names = names(src_fd.as_fd()).map_err(io_err("", "readdir"))?;
    let dst_copy = dst_fd
        .try_clone()
        .map_err(|e| dst_err(format!("dup: {e}")))?;
    let mut c = Copier {
        opts,
        check,
        stats: CopyStats::default(),
        dst_root: dst_copy,
        dst_id: ident(&dst_st),
        links: HashMap::new(),
        reflink: true,
        copy_range: true,
        noatime: true,
        buf: Vec::new(),
    };
    c.stats.entries += 1;
    let mut stack = vec![Frame {
        src: src_fd,
        dst: dst_fd,
        rel: Vec::new(),
        st,
        names: names.into_iter(),
    }];
    while let Some(top) = stack.last_mut() {
        match top.names.next() {
            Some(name) => {
                if let Some(frame) = c.entry(top, &name)? {
                    stack.push(frame);
                }
            }
            None => {
                if let Some(done) = stack.pop() {
                    c.finish_dir(&done)?;
                }
            }
        }
    }
    Ok(c.stats)
}

pub(super) fn lossy(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}
