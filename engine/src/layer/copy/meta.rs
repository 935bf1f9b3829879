//! The metadata of what a copy creates: owner, mode, extended attributes
//! and times, set in that order (`chown` clears setuid and setgid and drops
//! `security.capability`), and the checks that an entry did not change
//! while it was copied.

use std::ffi::{CStr, CString};
use std::os::fd::BorrowedFd;

use rustix::fs::{AtFlags, FileType, Gid, Mode, Stat, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::{Copier, CopyError, changed, io_err, lossy};
use crate::fs::dir::proc_path;
use crate::fs::xattr;

// `Stat`'s field types differ between architectures: these helpers convert
// them in one place.
#[allow(clippy::unnecessary_cast)]
pub(super) fn ident(st: &Stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

#[allow(clippy::unnecessary_cast)]
pub(super) fn nlink(st: &Stat) -> u64 {
    st.st_nlink as u64
}

#[allow(clippy::unnecessary_cast)]
pub(super) fn size(st: &Stat) -> u64 {
    (st.st_size as i64).max(0) as u64
}

#[allow(clippy::unnecessary_cast)]
pub(super) fn blocks(st: &Stat) -> u64 {
    (st.st_blocks as i64).max(0) as u64
}

#[allow(clippy::unnecessary_cast)]
pub(super) fn times(st: &Stat) -> Timestamps {
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
pub(super) fn modified(a: &Stat, b: &Stat) -> Option<&'static str> {
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
pub(super) fn same_inode(fd: BorrowedFd<'_>, st: &Stat, path: &str) -> Result<Stat, CopyError> {
    let now = rustix::fs::fstat(fd).map_err(io_err(path, "fstat"))?;
    if ident(&now) != ident(st)
        || FileType::from_raw_mode(now.st_mode) != FileType::from_raw_mode(st.st_mode)
    {
        return Err(changed(path, "replaced by another file"));
    }
    Ok(now)
}

/// How metadata calls reach an entry.
pub(super) enum Node<'a> {
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
    pub(super) fn name(dir: BorrowedFd<'a>, name: &'a CStr) -> Node<'a> {
        Node::Name {
            dir,
            name,
            proc: proc_path(dir, Some(name)),
        }
    }

    /// The entry as the xattr calls reach it.
    fn xattr(&self) -> xattr::Node<'_> {
        match self {
            Node::Fd(fd) => xattr::Node::Fd(*fd),
            Node::Name { proc, .. } => xattr::Node::proc(proc),
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
pub(super) enum SetMode<'a> {
    /// `fchmod` on an open descriptor.
    Fd(BorrowedFd<'a>),
    /// `chmod` through `/proc/self/fd/<fd>` of an `O_PATH` descriptor of the
    /// entry (devices and fifos; `fchmodat` cannot refuse to follow).
    Path(BorrowedFd<'a>),
    /// Symlinks have no mode of their own on Linux.
    Skip,
}

impl Copier<'_> {
    /// Owner, then mode (`chown` clears setuid and setgid), then extended
    /// attributes (`chown` drops `security.capability`), then times.
    pub(super) fn metadata(
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
        let names = xattr::list(src.xattr()).map_err(io_err(path, "listxattr"))?;
        for key in names {
            let v = match xattr::get(src.xattr(), &key) {
                Ok(Some(v)) => v,
                // removed since it was listed
                Ok(None) => continue,
                Err(e) => return Err(io_err(path, format!("getxattr {}", lossy(&key)))(e)),
            };
            match xattr::set(dst.xattr(), &key, &v) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::NOTSUP) if self.opts.ignore_xattr_errors => {
                    tracing::debug!("{path:?}: xattr {} not set", lossy(&key));
                }
                Err(e) => return Err(io_err(path, format!("setxattr {}", lossy(&key)))(e)),
            }
        }
        Ok(())
    }
}
