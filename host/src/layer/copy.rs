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

use std::collections::HashMap;
use std::ffi::{CStr, CString};

use crate::path::{BStr, ByteSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, SeekFrom, Stat, Timespec, Timestamps,
    Uid, XattrFlags,
};
use rustix::io::Errno;

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

fn io_err(path: &str, op: impl Into<String>) -> impl FnOnce(Errno) -> CopyError {
    let path = path.to_string();
    let op = op.into();
    move |e| CopyError::Io {
        path,
        op,
        source: e.into(),
    }
}

fn changed(path: &str, what: impl Into<String>) -> CopyError {
    CopyError::Changed {
        path: path.to_string(),
        what: what.into(),
    }
}

// `Stat`'s field types differ between architectures: these helpers convert
// them in one place.
#[allow(clippy::unnecessary_cast)]
fn ident(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

#[allow(clippy::unnecessary_cast)]
fn nlink(st: &Stat) -> u64 {
    st.st_nlink as u64
}

#[allow(clippy::unnecessary_cast)]
fn size(st: &Stat) -> u64 {
    (st.st_size as i64).max(0) as u64
}

#[allow(clippy::unnecessary_cast)]
fn blocks(st: &Stat) -> u64 {
    (st.st_blocks as i64).max(0) as u64
}

#[allow(clippy::unnecessary_cast)]
fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as i64,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as i64,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Whether the content or metadata of an inode changed between two stats.
fn modified(a: &Stat, b: &Stat) -> Option<&'static str> {
    if a.st_size != b.st_size {
        Some("size")
    } else if (a.st_mtime, a.st_mtime_nsec) != (b.st_mtime, b.st_mtime_nsec) {
        Some("mtime")
    } else if (a.st_ctime, a.st_ctime_nsec) != (b.st_ctime, b.st_ctime_nsec) {
        Some("ctime")
    } else {
        None
    }
}

/// `fstat` an opened entry and make sure it is the inode that was `lstat`ed.
fn same_inode(fd: BorrowedFd<'_>, st: &Stat, path: &str) -> Result<Stat, CopyError> {
    let now = rustix::fs::fstat(fd).map_err(io_err(path, "fstat"))?;
    if ident(&now) != ident(st)
        || FileType::from_raw_mode(now.st_mode) != FileType::from_raw_mode(st.st_mode)
    {
        return Err(changed(path, "replaced by another file"));
    }
    Ok(now)
}

/// `/proc/self/fd/<fd>[/<name>]`: the magic link (a descriptor, not a
/// symlink in any tree) is followed, `name` is left to the caller's `l*`
/// call, which does not follow it.
fn proc_path(fd: BorrowedFd<'_>, name: Option<&CStr>) -> CString {
    let mut p = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        p.push(b'/');
        p.extend_from_slice(name.to_bytes());
    }
    // Neither part can hold a NUL byte.
    CString::new(p).unwrap_or_default()
}

/// How metadata calls reach an entry.
enum Node<'a> {
    /// An open descriptor (regular files and directories).
    Fd(BorrowedFd<'a>),
    /// A name in a directory that is never followed (symlinks, devices,
    /// fifos): `*at` calls with `AT_SYMLINK_NOFOLLOW`, `l*xattr` calls on
    /// the `/proc/self/fd/<dir>/<name>` path.
    Name {
        dir: BorrowedFd<'a>,
        name: &'a CStr,
        proc: CString,
    },
}

impl<'a> Node<'a> {
    fn name(dir: BorrowedFd<'a>, name: &'a CStr) -> Node<'a> {
        Node::Name {
            dir,
            name,
            proc: proc_path(dir, Some(name)),
        }
    }

    fn list_xattrs(&self, buf: &mut [u8]) -> Result<usize, Errno> {
        let r = match self {
            Node::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            Node::Name { proc, .. } => rustix::fs::llistxattr(proc.as_c_str(), buf),
        };
        match r {
            Err(Errno::NOTSUP) => Ok(0),
            r => r,
        }
    }

    fn get_xattr(&self, name: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            Node::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            Node::Name { proc, .. } => rustix::fs::lgetxattr(proc.as_c_str(), name, buf),
        }
    }

    fn set_xattr(&self, name: &[u8], value: &[u8]) -> Result<(), Errno> {
        match self {
            Node::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
            Node::Name { proc, .. } => {
                rustix::fs::lsetxattr(proc.as_c_str(), name, value, XattrFlags::empty())
            }
        }
    }

    fn chown(&self, st: &Stat) -> Result<(), Errno> {
        let (u, g) = (
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        );
        match self {
            Node::Fd(fd) => rustix::fs::fchown(fd, u, g),
            Node::Name { dir, name, .. } => {
                rustix::fs::chownat(dir, *name, u, g, AtFlags::SYMLINK_NOFOLLOW)
            }
        }
    }

    fn set_times(&self, st: &Stat) -> Result<(), Errno> {
        let t = times(st);
        match self {
            Node::Fd(fd) => rustix::fs::futimens(fd, &t),
            Node::Name { dir, name, .. } => {
                rustix::fs::utimensat(dir, *name, &t, AtFlags::SYMLINK_NOFOLLOW)
            }
        }
    }
}

/// How the mode of a new entry is set.
enum SetMode<'a> {
    /// `fchmod` on an open descriptor.
    Fd(BorrowedFd<'a>),
    /// `chmod` through `/proc/self/fd/<fd>` of an `O_PATH` descriptor of the
    /// entry (devices and fifos; `fchmodat` cannot refuse to follow).
    Path(BorrowedFd<'a>),
    /// Symlinks have no mode of their own on Linux.
    Skip,
}

/// A directory being copied.
struct Frame {
    src: OwnedFd,
    dst: OwnedFd,
    /// The path relative to the roots, as bytes (`""` for the root).
    rel: Vec<u8>,
    st: Stat,
    names: std::vec::IntoIter<CString>,
}

/// The size of the read/write fallback buffer, and of the xattr buffers
/// (`XATTR_LIST_MAX` and `XATTR_SIZE_MAX` are both 64 KiB).
const BUF_SIZE: usize = 1 << 20;
const XATTR_MAX: usize = 1 << 16;

struct Copier<'a> {
    opts: &'a CopyOptions,
    check: &'a mut dyn FnMut(&BStr, &Stat) -> Result<(), crate::Error>,
    stats: CopyStats,
    dst_root: OwnedFd,
    dst_id: (u64, u64),
    /// First copy of each multiply-linked source inode: (dev, ino) → its
    /// path in the destination.
    links: HashMap<(u64, u64), Vec<u8>>,
    reflink: bool,
    copy_range: bool,
    noatime: bool,
    buf: Vec<u8>,
    xlist: Vec<u8>,
    xval: Vec<u8>,
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
    if !list_dir(dst_fd.as_fd())
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
    let names = list_dir(src_fd.as_fd()).map_err(io_err("", "readdir"))?;
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
        xlist: vec![0; XATTR_MAX],
        xval: vec![0; XATTR_MAX],
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

/// The names in a directory (without `.` and `..`), sorted.
fn list_dir(fd: BorrowedFd<'_>) -> Result<Vec<CString>, Errno> {
    let mut d = Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

fn lossy(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}

impl Copier<'_> {
    /// Copy one entry of the directory `dir`; a directory is created and
    /// returned for the caller to descend into.
    fn entry(&mut self, dir: &Frame, name: &CStr) -> Result<Option<Frame>, CopyError> {
        let mut rel = dir.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(name.to_bytes());
        let path = lossy(&rel);
        let st = rustix::fs::statat(&dir.src, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(&path, "lstat"))?;
        (self.check)(rel.as_bstr(), &st).map_err(|reason| CopyError::Rejected {
            path: path.clone(),
            reason: reason.to_string(),
        })?;
        let ft = FileType::from_raw_mode(st.st_mode);
        let multi = ft != FileType::Directory && nlink(&st) > 1;
        if multi && let Some(first) = self.links.get(&ident(&st)) {
            self.hardlink(first, dir.dst.as_fd(), name, &path)?;
            self.stats.hardlinks += 1;
            self.stats.entries += 1;
            return Ok(None);
        }
        match ft {
            FileType::Directory => return self.directory(dir, name, rel, &path, st).map(Some),
            FileType::RegularFile => self.file(dir, name, &path, &st)?,
            FileType::Symlink => self.symlink(dir, name, &path, &st)?,
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                self.node(dir, name, &path, &st, ft)?
            }
            FileType::Socket => {
                tracing::warn!("{path:?}: skipping a socket (sockets cannot be copied)");
                self.stats.skipped += 1;
                return Ok(None);
            }
            FileType::Unknown => {
                return Err(changed(
                    &path,
                    format!("unknown file type {:o}", st.st_mode),
                ));
            }
        }
        if multi {
            self.links.insert(ident(&st), rel);
        }
        self.stats.entries += 1;
        Ok(None)
    }

    /// Link `name` in `dst_dir` to the earlier copy at `first` (a path in
    /// the destination, resolved without following any symlink).
    fn hardlink(
        &self,
        first: &[u8],
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        path: &str,
    ) -> Result<(), CopyError> {
        let (parent, old) = match first.iter().rposition(|&b| b == b'/') {
            Some(i) => (&first[..i], &first[i + 1..]),
            None => (&b"."[..], first),
        };
        let parent = rustix::fs::openat2(
            &self.dst_root,
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(io_err(path, "open hardlink target directory"))?;
        rustix::fs::linkat(&parent, old, dst_dir, name, AtFlags::empty())
            .map_err(io_err(path, format!("link to {:?}", lossy(first))))
    }

    fn directory(
        &mut self,
        dir: &Frame,
        name: &CStr,
        rel: Vec<u8>,
        path: &str,
        st: Stat,
    ) -> Result<Frame, CopyError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let src = self.open_src(dir.src.as_fd(), name, flags, path)?;
        same_inode(src.as_fd(), &st, path)?;
        if ident(&st) == self.dst_id {
            return Err(CopyError::Io {
                path: path.to_string(),
                op: "descend".to_string(),
                source: std::io::Error::other("the destination is inside the source"),
            });
        }
        // Writable until its content is copied; the mode is set at the end.
        rustix::fs::mkdirat(&dir.dst, name, Mode::from_raw_mode(0o700))
            .map_err(io_err(path, "mkdir"))?;
        let dst = rustix::fs::openat(&dir.dst, name, flags, Mode::empty())
            .map_err(io_err(path, "open"))?;
        let names = list_dir(src.as_fd()).map_err(io_err(path, "readdir"))?;
        self.stats.entries += 1;
        Ok(Frame {
            src,
            dst,
            rel,
            st,
            names: names.into_iter(),
        })
    }

    /// Metadata of a directory, once its content is copied.
    fn finish_dir(&mut self, f: &Frame) -> Result<(), CopyError> {
        let path = lossy(&f.rel);
        let now = rustix::fs::fstat(&f.src).map_err(io_err(&path, "fstat"))?;
        if let Some(what) = modified(&f.st, &now) {
            return Err(changed(&path, what));
        }
        self.metadata(
            &Node::Fd(f.dst.as_fd()),
            &Node::Fd(f.src.as_fd()),
            SetMode::Fd(f.dst.as_fd()),
            &f.st,
            &path,
        )
    }

    /// Open a source entry relative to its directory, without updating its
    /// atime when allowed.
    fn open_src(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        flags: OFlags,
        path: &str,
    ) -> Result<OwnedFd, CopyError> {
        if self.noatime {
            match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
                Err(Errno::PERM) => self.noatime = false,
                r => return r.map_err(io_err(path, "open")),
            }
        }
        rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(io_err(path, "open"))
    }

    fn file(&mut self, dir: &Frame, name: &CStr, path: &str, st: &Stat) -> Result<(), CopyError> {
        // O_PATH first: nothing is opened until the inode is known to be
        // the regular file that was checked.
        let pfd = rustix::fs::openat(
            &dir.src,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(path, "open"))?;
        same_inode(pfd.as_fd(), st, path)?;
        let src = self.open_src(
            rustix::fs::CWD,
            &proc_path(pfd.as_fd(), None),
            OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            path,
        )?;
        drop(pfd);
        same_inode(src.as_fd(), st, path)?;
        let dst = rustix::fs::openat(
            &dir.dst,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err(path, "create"))?;
        let len = size(st);
        if len > 0 {
            let mut done = false;
            if self.reflink {
                match rustix::fs::ioctl_ficlone(&dst, &src) {
                    Ok(()) => done = true,
                    Err(
                        Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::NOSYS,
                    ) => self.reflink = false,
                    Err(e) => return Err(io_err(path, "reflink")(e)),
                }
            }
            if done {
                self.stats.reflinked += 1;
            } else {
                self.copy_data(src.as_fd(), dst.as_fd(), st, path)?;
                self.stats.copied += 1;
            }
            self.stats.bytes += len;
        }
        let now = rustix::fs::fstat(&src).map_err(io_err(path, "fstat"))?;
        if let Some(what) = modified(st, &now) {
            return Err(changed(path, what));
        }
        self.metadata(
            &Node::Fd(dst.as_fd()),
            &Node::Fd(src.as_fd()),
            SetMode::Fd(dst.as_fd()),
            st,
            path,
        )
    }

    /// Copy the data of a regular file of `st`'s size, keeping holes.
    fn copy_data(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        st: &Stat,
        path: &str,
    ) -> Result<(), CopyError> {
        let len = size(st);
        if blocks(st).saturating_mul(512) >= len {
            return self.copy_range(src, dst, 0, len, path);
        }
        // Fewer blocks than bytes: probably sparse, copy the data extents.
        let mut off = 0;
        while off < len {
            let data = match rustix::fs::seek(src, SeekFrom::Data(off)) {
                Ok(d) => d,
                Err(Errno::NXIO) => break,
                Err(Errno::INVAL | Errno::OPNOTSUPP) => off,
                Err(e) => return Err(io_err(path, "lseek")(e)),
            };
            if data >= len {
                break;
            }
            let hole = match rustix::fs::seek(src, SeekFrom::Hole(data)) {
                Ok(h) => h.min(len),
                Err(Errno::INVAL | Errno::OPNOTSUPP) => len,
                Err(e) => return Err(io_err(path, "lseek")(e)),
            };
            if hole <= data {
                return Err(changed(path, "data extents moved"));
            }
            self.copy_range(src, dst, data, hole, path)?;
            off = hole;
        }
        rustix::fs::ftruncate(dst, len).map_err(io_err(path, "truncate"))
    }

    /// Copy bytes `start..end` to the same offsets.
    fn copy_range(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        start: u64,
        end: u64,
        path: &str,
    ) -> Result<(), CopyError> {
        let mut off = start;
        while off < end {
            let want = (end - off).min(1 << 30) as usize;
            if self.copy_range {
                let (mut i, mut o) = (off, off);
                match rustix::fs::copy_file_range(src, Some(&mut i), dst, Some(&mut o), want) {
                    Ok(0) => return Err(changed(path, "file shrank")),
                    Ok(n) => {
                        off += n as u64;
                        continue;
                    }
                    Err(Errno::INTR) => continue,
                    Err(
                        Errno::XDEV | Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS | Errno::BADF,
                    ) => self.copy_range = false,
                    Err(e) => return Err(io_err(path, "copy_file_range")(e)),
                }
            }
            if self.buf.is_empty() {
                self.buf = vec![0; BUF_SIZE];
            }
            let chunk = want.min(self.buf.len());
            let n = match rustix::io::pread(src, &mut self.buf[..chunk], off) {
                Ok(0) => return Err(changed(path, "file shrank")),
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(io_err(path, "read")(e)),
            };
            let mut w = 0;
            while w < n {
                match rustix::io::pwrite(dst, &self.buf[w..n], off + w as u64) {
                    Ok(0) => return Err(io_err(path, "write")(Errno::IO)),
                    Ok(k) => w += k,
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(io_err(path, "write")(e)),
                }
            }
            off += n as u64;
        }
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: &Frame,
        name: &CStr,
        path: &str,
        st: &Stat,
    ) -> Result<(), CopyError> {
        // Read the target through an O_PATH descriptor of the checked inode.
        let pfd = rustix::fs::openat(
            &dir.src,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(path, "open"))?;
        same_inode(pfd.as_fd(), st, path)?;
        let target =
            rustix::fs::readlinkat(&pfd, c"", Vec::new()).map_err(io_err(path, "readlink"))?;
        rustix::fs::symlinkat(&target, &dir.dst, name).map_err(io_err(path, "symlink"))?;
        self.metadata(
            &Node::name(dir.dst.as_fd(), name),
            &Node::name(dir.src.as_fd(), name),
            SetMode::Skip,
            st,
            path,
        )
    }

    /// Devices and fifos.
    fn node(
        &mut self,
        dir: &Frame,
        name: &CStr,
        path: &str,
        st: &Stat,
        ft: FileType,
    ) -> Result<(), CopyError> {
        let path_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let rdev = if ft == FileType::Fifo { 0 } else { st.st_rdev };
        rustix::fs::mknodat(&dir.dst, name, ft, Mode::from_raw_mode(0o600), rdev)
            .map_err(io_err(path, "mknod"))?;
        let pfd = rustix::fs::openat(&dir.dst, name, path_flags, Mode::empty())
            .map_err(io_err(path, "open"))?;
        let made = rustix::fs::fstat(&pfd).map_err(io_err(path, "fstat"))?;
        if FileType::from_raw_mode(made.st_mode) != ft {
            return Err(io_err(path, "mknod")(Errno::EXIST));
        }
        self.metadata(
            &Node::name(dir.dst.as_fd(), name),
            &Node::name(dir.src.as_fd(), name),
            SetMode::Path(pfd.as_fd()),
            st,
            path,
        )
    }

    /// Owner, then mode (`chown` clears setuid and setgid), then extended
    /// attributes (`chown` drops `security.capability`), then times.
    fn metadata(
        &mut self,
        dst: &Node<'_>,
        src: &Node<'_>,
        mode: SetMode<'_>,
        st: &Stat,
        path: &str,
    ) -> Result<(), CopyError> {
        match dst.chown(st) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::INVAL) if self.opts.ignore_chown_errors => {}
            Err(e) => return Err(io_err(path, "chown")(e)),
        }
        let m = Mode::from_raw_mode(st.st_mode & 0o7777);
        match mode {
            SetMode::Fd(fd) => rustix::fs::fchmod(fd, m),
            SetMode::Path(fd) => {
                rustix::fs::chmodat(rustix::fs::CWD, proc_path(fd, None), m, AtFlags::empty())
            }
            SetMode::Skip => Ok(()),
        }
        .map_err(io_err(path, "chmod"))?;
        self.xattrs(dst, src, path)?;
        dst.set_times(st).map_err(io_err(path, "utimensat"))
    }

    fn xattrs(&mut self, dst: &Node<'_>, src: &Node<'_>, path: &str) -> Result<(), CopyError> {
        let n = src
            .list_xattrs(&mut self.xlist)
            .map_err(io_err(path, "listxattr"))?;
        for key in self.xlist[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
            let v = match src.get_xattr(key, &mut self.xval) {
                Ok(v) => v,
                // removed since it was listed
                Err(Errno::NODATA) => continue,
                Err(e) => return Err(io_err(path, format!("getxattr {}", lossy(key)))(e)),
            };
            match dst.set_xattr(key, &self.xval[..v]) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::NOTSUP) if self.opts.ignore_xattr_errors => {
                    tracing::debug!("{path:?}: xattr {} not set", lossy(key));
                }
                Err(e) => return Err(io_err(path, format!("setxattr {}", lossy(key)))(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

    fn set_times(p: &Path, sec: i64, nsec: i64) {
        let t = Timestamps {
            last_access: Timespec {
                tv_sec: sec - 7,
                tv_nsec: nsec / 2,
            },
            last_modification: Timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            },
        };
        rustix::fs::utimensat(rustix::fs::CWD, p, &t, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn write(p: &Path, data: &[u8], mode: u32) {
        std::fs::write(p, data).unwrap();
        chmod(p, mode);
    }

    /// The test tree, described in the module brief.
    fn build_tree(s: &Path) {
        use std::os::unix::fs::{chown, lchown, symlink};
        let d = |p: &str, mode: u32| {
            std::fs::create_dir_all(s.join(p)).unwrap();
            chmod(&s.join(p), mode);
        };
        d("a/b/c", 0o700);
        d("a/b", 0o750);
        d("x", 0o755);
        d("e", 0o755);
        write(&s.join("a/b/c/file"), b"hello world\n", 0o644);
        write(&s.join("empty"), b"", 0o600);
        write(&s.join("suid"), b"#!/bin/sh\necho hi\n", 0o644);
        chown(s.join("suid"), Some(1000), Some(1000)).unwrap();
        chmod(&s.join("suid"), 0o4755);
        write(&s.join("sgid-sticky"), b"x", 0o3711);
        write(&s.join("xattrs"), b"with xattrs", 0o640);
        xattr::set(s.join("xattrs"), "user.test", b"u\xff\x00v").unwrap();
        xattr::set(s.join("xattrs"), "trusted.test", b"t").unwrap();
        xattr::set(s.join("x"), "user.dir", b"on a dir").unwrap();
        // hardlinks: a pair across two directories, and a third link
        write(&s.join("a/h1"), b"linked content", 0o640);
        chown(s.join("a/h1"), Some(7), Some(8)).unwrap();
        std::fs::hard_link(s.join("a/h1"), s.join("x/h2")).unwrap();
        std::fs::hard_link(s.join("a/h1"), s.join("h3")).unwrap();
        symlink("a/b/c/file", s.join("rel")).unwrap();
        symlink("/etc/passwd", s.join("e/passwd")).unwrap();
        symlink("does/not/exist", s.join("dangling")).unwrap();
        symlink("a", s.join("dirlink")).unwrap();
        lchown(s.join("dangling"), Some(33), Some(44)).unwrap();
        xattr::set(s.join("dirlink"), "trusted.link", b"on a symlink").unwrap();
        let node = |p: &str, ft: FileType, mode: u32, dev: u64| {
            rustix::fs::mknodat(rustix::fs::CWD, s.join(p), ft, Mode::from_raw_mode(0), dev)
                .unwrap();
            chmod(&s.join(p), mode);
        };
        node("fifo", FileType::Fifo, 0o640, 0);
        node(
            "null",
            FileType::CharacterDevice,
            0o666,
            rustix::fs::makedev(1, 3),
        );
        node(
            "loop",
            FileType::BlockDevice,
            0o660,
            rustix::fs::makedev(7, 0),
        );
        xattr::set(s.join("fifo"), "trusted.fifo", b"f").unwrap();
        chown(s.join("null"), Some(0), Some(5)).unwrap();
        // a name that is not UTF-8
        write(
            &s.join(std::ffi::OsStr::from_bytes(b"caf\xe9")),
            b"latin-1",
            0o644,
        );
        // a socket: skipped
        let _ = std::os::unix::net::UnixListener::bind(s.join("sock")).unwrap();
        // directories without write (or any) permission, with content
        d("ro", 0o755);
        write(&s.join("ro/inside"), b"read only dir", 0o444);
        chmod(&s.join("ro"), 0o500);
        d("none", 0o755);
        write(&s.join("none/inside"), b"no permission dir", 0o000);
        chmod(&s.join("none"), 0o000);
        // sparse: 4 MiB with 5 bytes of data in the middle
        let f = std::fs::File::create(s.join("sparse")).unwrap();
        f.set_len(4 << 20).unwrap();
        rustix::io::pwrite(&f, b"sparse", 2 << 20).unwrap();
        drop(f);
        // times: pre-1970, nanoseconds, on files, directories and a symlink
        set_times(&s.join("a/b/c/file"), -1_000_000_000, 0);
        set_times(&s.join("empty"), -123_456_789, 987_654_321);
        set_times(&s.join("suid"), 1_600_000_000, 123_456_789);
        set_times(&s.join("rel"), 1_234_567_890, 42);
        set_times(&s.join("a/b/c"), 1_500_000_000, 999_999_999);
        set_times(&s.join("a"), 1_000_000_000, 1);
        set_times(&s.join("ro"), 1_700_000_000, 5);
        // the root's own metadata
        chown(s, Some(1234), Some(5678)).unwrap();
        chmod(s, 0o751);
        xattr::set(s, "user.root", b"r").unwrap();
        set_times(s, 1_111_111_111, 111_111_111);
    }

    #[derive(Debug, PartialEq)]
    struct Meta {
        kind: FileType,
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u64,
        size: u64,
        content: Option<Vec<u8>>,
        target: Option<PathBuf>,
        rdev: u64,
        xattrs: BTreeMap<OsString, Vec<u8>>,
        atime: (i64, i64),
        mtime: (i64, i64),
    }

    #[derive(Default)]
    struct Snap {
        meta: BTreeMap<PathBuf, Meta>,
        ino: BTreeMap<PathBuf, (u64, u64)>,
    }

    /// Every entry's metadata, taken before the entry is read (reads use
    /// `O_NOATIME`, so atimes stay comparable).
    fn snapshot(root: &Path) -> Snap {
        fn walk(root: &Path, rel: &Path, out: &mut Snap) {
            let p = root.join(rel);
            let md = std::fs::symlink_metadata(&p).unwrap();
            let kind = FileType::from_raw_mode(md.mode());
            if kind == FileType::Socket {
                return;
            }
            let mut xattrs = BTreeMap::new();
            for k in xattr::list(&p).unwrap() {
                xattrs.insert(k.clone(), xattr::get(&p, &k).unwrap().unwrap());
            }
            let content = (kind == FileType::RegularFile).then(|| {
                let mut f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(OFlags::NOATIME.bits() as i32)
                    .open(&p)
                    .unwrap();
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut v).unwrap();
                v
            });
            let target = (kind == FileType::Symlink).then(|| std::fs::read_link(&p).unwrap());
            out.meta.insert(
                rel.to_path_buf(),
                Meta {
                    kind,
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    nlink: if kind == FileType::Directory {
                        0
                    } else {
                        md.nlink()
                    },
                    size: if kind == FileType::Directory {
                        0
                    } else {
                        md.size()
                    },
                    content,
                    target,
                    rdev: md.rdev(),
                    xattrs,
                    atime: (md.atime(), md.atime_nsec()),
                    mtime: (md.mtime(), md.mtime_nsec()),
                },
            );
            out.ino.insert(rel.to_path_buf(), (md.dev(), md.ino()));
            if kind == FileType::Directory {
                let mut names: Vec<_> = std::fs::read_dir(&p)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                names.sort();
                for n in names {
                    walk(root, &rel.join(n), out);
                }
            }
        }
        let mut out = Snap::default();
        walk(root, Path::new(""), &mut out);
        out
    }

    /// Paths grouped by inode.
    fn groups(s: &Snap) -> BTreeSet<BTreeSet<PathBuf>> {
        let mut by: BTreeMap<(u64, u64), BTreeSet<PathBuf>> = BTreeMap::new();
        for (p, i) in &s.ino {
            by.entry(*i).or_default().insert(p.clone());
        }
        by.into_values().collect()
    }

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn no_check(_: &BStr, _: &Stat) -> Result<(), crate::Error> {
        Ok(())
    }

    fn copy(src: &Path, dst: &Path) -> Result<CopyStats, CopyError> {
        copy_tree(src, dst, &CopyOptions::default(), &mut no_check)
    }

    /// Build, copy and compare the test tree with the source under `sbase`
    /// and the destination under `dbase`.
    fn round_trip(sbase: &Path, dbase: &Path) -> CopyStats {
        assert!(root(), "needs root (chown, mknod, trusted.* xattrs)");
        let st = tempfile::tempdir_in(sbase).unwrap();
        let dt = tempfile::tempdir_in(dbase).unwrap();
        let (src, dst) = (st.path().join("src"), dt.path().join("dst"));
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&dst).unwrap();
        build_tree(&src);
        let mut seen = Vec::new();
        let mut atimes = BTreeMap::new();
        let stats = copy_tree(&src, &dst, &CopyOptions::default(), &mut |p, st| {
            seen.push((p.to_string(), ident(st)));
            atimes.insert(
                PathBuf::from(crate::path::os(p)),
                (st.st_atime, st.st_atime_nsec as i64),
            );
            Ok(())
        })
        .unwrap();
        let (mut a, b) = (snapshot(&src), snapshot(&dst));
        // Reading a symlink (the copy's readlink, then the snapshot's) may
        // update its atime: the copy has the atime `check` saw.
        for (p, m) in a.meta.iter_mut() {
            let name = p.file_name().map(|n| n.as_bytes().to_vec());
            if name.as_deref() != Some(b"caf\xe9") {
                assert_eq!(b.meta[p].atime, atimes[p], "{}", p.display());
            }
            m.atime = b.meta[p].atime;
        }
        // every entry, sockets aside, was checked once, in name order
        assert_eq!(seen.len(), a.meta.len() + 1);
        assert_eq!(seen[0].0, "");
        assert!(seen.iter().any(|(p, _)| p == "caf\u{fffd}"));
        for (p, i) in &seen {
            if p != "sock" && p != "caf\u{fffd}" {
                assert_eq!(a.ino.get(Path::new(p)), Some(i), "{p}");
            }
        }
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        for (p, m) in &a.meta {
            assert_eq!(Some(m), b.meta.get(p), "{}", p.display());
        }
        assert_eq!(
            a.meta.keys().collect::<Vec<_>>(),
            b.meta.keys().collect::<Vec<_>>()
        );
        assert_eq!(groups(&a), groups(&b));
        let src_inodes: BTreeSet<_> = a.ino.values().collect();
        assert!(b.ino.values().all(|i| !src_inodes.contains(i)));
        // spot checks of what the comparison covers
        let m = &b.meta[Path::new("suid")];
        assert_eq!((m.mode & 0o7777, m.uid, m.gid), (0o4755, 1000, 1000));
        assert_eq!(b.meta[Path::new("a/h1")].nlink, 3);
        assert_eq!(
            b.meta[Path::new("empty")].mtime,
            (-123_456_789, 987_654_321)
        );
        assert_eq!(b.meta[Path::new("rel")].mtime, (1_234_567_890, 42));
        assert_eq!(b.meta[Path::new("")].mode & 0o7777, 0o751);
        assert_eq!(b.meta[Path::new("none")].mode & 0o7777, 0);
        assert_eq!(
            b.meta[Path::new("xattrs")].xattrs[&OsString::from("user.test")],
            b"u\xff\x00v"
        );
        assert_eq!(
            b.meta[Path::new("dirlink")].xattrs[&OsString::from("trusted.link")],
            b"on a symlink"
        );
        let null = &b.meta[Path::new("null")];
        assert_eq!((null.kind, null.rdev), (FileType::CharacterDevice, 0x103));
        assert!(!dst.join("sock").exists());
        // holes kept
        let sparse = std::fs::metadata(dst.join("sparse")).unwrap();
        assert!(sparse.blocks() * 512 < 1 << 20, "{}", sparse.blocks());
        assert_eq!(stats.skipped, 1);
        assert_eq!(stats.hardlinks, 2);
        assert_eq!(stats.entries, a.meta.len() as u64);
        let files: u64 = a
            .meta
            .values()
            .filter(|m| m.kind == FileType::RegularFile && m.nlink == 1)
            .map(|m| m.size)
            .sum();
        assert_eq!(stats.bytes, files + b"linked content".len() as u64);
        // the non-empty files, the hardlinked one once
        assert_eq!(stats.reflinked + stats.copied, 9);
        stats
    }

    #[test]
    fn copies_on_tmpfs() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let s = round_trip(Path::new("/dev/shm"), Path::new("/dev/shm"));
        assert_eq!(s.reflinked, 0);
    }

    #[test]
    fn copies_on_disk() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = std::env::temp_dir();
        round_trip(&tmp, &tmp);
    }

    #[test]
    fn copies_across_filesystems() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        // copy_file_range refuses (EXDEV): read and write
        round_trip(&std::env::temp_dir(), Path::new("/dev/shm"));
    }

    fn pair() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir_in("/dev/shm").unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&dst).unwrap();
        (t, src, dst)
    }

    #[test]
    fn symlinks_are_never_followed() {
        let (t, src, dst) = pair();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        std::fs::create_dir(src.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(&outside, src.join("out")).unwrap();
        std::os::unix::fs::symlink("../..", src.join("etc/up")).unwrap();
        let mut seen = Vec::new();
        let stats = copy_tree(&src, &dst, &CopyOptions::default(), &mut |p, _| {
            seen.push(p.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["", "etc", "etc/passwd", "etc/up", "out"]);
        assert_eq!(stats.bytes, 0);
        assert_eq!(
            std::fs::read_link(dst.join("etc/passwd")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(std::fs::read_link(dst.join("out")).unwrap(), outside);
        assert!(
            std::fs::symlink_metadata(dst.join("etc/passwd"))
                .unwrap()
                .is_symlink()
        );
        assert!(
            std::fs::symlink_metadata(dst.join("out"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn check_refusal_aborts() {
        let (_t, src, dst) = pair();
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::write(src.join("a/b/bad"), b"x").unwrap();
        std::fs::write(src.join("z"), b"x").unwrap();
        let err = copy_tree(&src, &dst, &CopyOptions::default(), &mut |p, st| {
            if p == "a/b/bad" {
                Err(crate::Error::invalid(format!(
                    "inode {} was not cached",
                    st.st_ino
                )))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(
            matches!(&err, CopyError::Rejected { path, reason }
                if path == "a/b/bad" && reason.contains("was not cached")),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("a/b/bad") && msg.contains("was not cached"),
            "{msg}"
        );
        assert!(!dst.join("a/b/bad").exists());
        assert!(!dst.join("z").exists());
        // the root too
        let (_t, src, dst) = pair();
        let err = copy_tree(&src, &dst, &CopyOptions::default(), &mut |_, _| {
            Err(crate::Error::invalid("no"))
        })
        .unwrap_err();
        assert!(matches!(&err, CopyError::Rejected { path, .. } if path.is_empty()));
    }

    #[test]
    fn bad_roots() {
        let (t, src, dst) = pair();
        std::fs::write(src.join("f"), b"x").unwrap();
        let dest = |e: CopyError| match e {
            CopyError::Destination { reason, .. } => reason,
            e => panic!("{e:?}"),
        };
        let missing = t.path().join("missing");
        let e = dest(copy(&src, &missing).unwrap_err());
        assert_eq!(e, "does not exist");
        assert!(!missing.exists());
        std::fs::write(dst.join("x"), b"").unwrap();
        assert_eq!(dest(copy(&src, &dst).unwrap_err()), "is not empty");
        std::fs::remove_file(dst.join("x")).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&dst, &link).unwrap();
        assert_eq!(dest(copy(&src, &link).unwrap_err()), "is a symlink");
        assert_eq!(
            dest(copy(&src, &src.join("f")).unwrap_err()),
            "is not a directory"
        );
        let e = copy(&link, &dst).unwrap_err();
        assert!(
            matches!(&e, CopyError::Source { reason, .. } if reason == "is a symlink"),
            "{e:?}"
        );
        assert!(copy(&t.path().join("missing"), &dst).is_err());
        // the destination is the source, or inside it
        let empty = t.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(dest(copy(&empty, &empty).unwrap_err()), "is the source");
        std::fs::create_dir(src.join("inner")).unwrap();
        let e = copy(&src, &src.join("inner")).unwrap_err();
        assert!(e.to_string().contains("inside the source"), "{e}");
        assert!(std::fs::read_dir(dst).unwrap().next().is_none());
    }

    /// `check` runs between the `lstat` and the copy: it can swap the entry
    /// as an attacker racing the copy would.
    fn race(prepare: impl Fn(&Path), victim: &str, swap: impl Fn(&Path)) -> (CopyError, PathBuf) {
        let (t, src, dst) = pair();
        prepare(&src);
        let err = copy_tree(&src, &dst, &CopyOptions::default(), &mut |p, _| {
            if p == victim {
                swap(&src);
            }
            Ok(())
        })
        .unwrap_err();
        std::mem::forget(t); // inspected by the caller; removed below
        (err, dst)
    }

    #[test]
    fn races_are_detected() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let outside = tempfile::tempdir_in("/dev/shm").unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        let out = outside.path().to_path_buf();
        let cleanup = |dst: &Path| {
            let _ = std::fs::remove_dir_all(dst.parent().unwrap());
        };

        // a file replaced by a symlink to a file outside
        let (e, dst) = race(
            |s| std::fs::write(s.join("f"), b"mine").unwrap(),
            "f",
            |s| {
                std::fs::remove_file(s.join("f")).unwrap();
                std::os::unix::fs::symlink(out.join("secret"), s.join("f")).unwrap();
            },
        );
        assert!(
            matches!(e, CopyError::Changed { ref path, .. } if path == "f"),
            "{e:?}"
        );
        assert!(!dst.join("f").exists());
        cleanup(&dst);

        // a directory replaced by a symlink to a directory outside
        let (e, dst) = race(
            |s| std::fs::create_dir(s.join("d")).unwrap(),
            "d",
            |s| {
                std::fs::remove_dir(s.join("d")).unwrap();
                std::os::unix::fs::symlink(&out, s.join("d")).unwrap();
            },
        );
        assert!(
            matches!(e, CopyError::Io { ref path, .. } if path == "d"),
            "{e:?}"
        );
        assert!(!dst.join("d").exists());
        cleanup(&dst);

        // a file replaced by a device node (never opened)
        let (e, dst) = race(
            |s| {
                std::fs::write(s.join("f"), b"mine").unwrap();
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    s.join("zero"),
                    FileType::CharacterDevice,
                    Mode::from_raw_mode(0o666),
                    rustix::fs::makedev(1, 5),
                )
                .unwrap();
            },
            "f",
            |s| std::fs::rename(s.join("zero"), s.join("f")).unwrap(),
        );
        assert!(
            matches!(e, CopyError::Changed { ref path, .. } if path == "f"),
            "{e:?}"
        );
        cleanup(&dst);

        // a file modified after it was checked
        let (e, dst) = race(
            |s| std::fs::write(s.join("f"), b"mine").unwrap(),
            "f",
            |s| std::fs::write(s.join("f"), b"theirs, longer").unwrap(),
        );
        assert!(
            matches!(e, CopyError::Changed { ref path, .. } if path == "f"),
            "{e:?}"
        );
        cleanup(&dst);

        // a symlink retargeted after it was checked
        let (e, dst) = race(
            |s| std::os::unix::fs::symlink("a", s.join("l")).unwrap(),
            "l",
            |s| {
                std::fs::remove_file(s.join("l")).unwrap();
                std::os::unix::fs::symlink("/etc/shadow", s.join("l")).unwrap();
            },
        );
        assert!(
            matches!(e, CopyError::Changed { ref path, .. } if path == "l"),
            "{e:?}"
        );
        assert!(std::fs::symlink_metadata(dst.join("l")).is_err());
        cleanup(&dst);

        // an entry added to a directory while it is copied
        let (e, dst) = race(
            |s| std::fs::write(s.join("f"), b"mine").unwrap(),
            "f",
            |s| std::fs::write(s.join("new"), b"").unwrap(),
        );
        assert!(
            matches!(e, CopyError::Changed { ref path, .. } if path.is_empty()),
            "{e:?}"
        );
        cleanup(&dst);
    }

    /// By hand: `RUMOCI_COPY_BENCH=/path/to/tree cargo test --release -p
    /// rumoci --lib layer::copy::tests::bench -- --ignored --nocapture`
    /// (default /work/bench-cache/rootfs-base) copies the tree to /dev/shm.
    #[test]
    #[ignore]
    fn bench() {
        let src = std::env::var_os("RUMOCI_COPY_BENCH")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/work/bench-cache/rootfs-base"));
        let t = tempfile::tempdir_in("/dev/shm").unwrap();
        let dst = t.path().join("dst");
        std::fs::create_dir(&dst).unwrap();
        let start = std::time::Instant::now();
        let stats = copy(&src, &dst).unwrap();
        eprintln!(
            "copy_tree {}: {:?} {stats:?}",
            src.display(),
            start.elapsed()
        );
    }
}
