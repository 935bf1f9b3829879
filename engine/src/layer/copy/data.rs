//! The content of what a copy creates: regular files (reflinked, else
//! `copy_file_range`, else read and write; holes kept), symlink targets,
//! devices and fifos. Every source is opened `O_PATH` first and checked to
//! be the inode that was checked.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags, SeekFrom, Stat};
use rustix::io::Errno;

use super::meta::{Node, SetMode, blocks, modified, same_inode, size};
use super::walk::Frame;
use super::{BUF_SIZE, Copier, CopyError, changed, io_err};
use crate::fs::dir::proc_path;

impl Copier<'_> {
    /// Open a source entry relative to its directory, without updating its
    /// atime when allowed.
    pub(super) fn open_src(
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

    pub(super) fn file(
        &mut self,
        dir: &Frame,
        name: &CStr,
        path: &str,
        st: &Stat,
    ) -> Result<(), CopyError> {
        // nothing is opened for reading until the inode is known to be the
        // regular file that was checked
        let pfd = pinned(dir, name, st, path)?;
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

    pub(super) fn symlink(
        &mut self,
        dir: &Frame,
        name: &CStr,
        path: &str,
        st: &Stat,
    ) -> Result<(), CopyError> {
        // the target of the checked inode
        let pfd = pinned(dir, name, st, path)?;
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
    pub(super) fn node(
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
}

/// An `O_PATH` descriptor of the source entry `name` of `dir`, not
/// followed, checked to be the inode that was `lstat`ed as `st`.
fn pinned(dir: &Frame, name: &CStr, st: &Stat, path: &str) -> Result<OwnedFd, CopyError> {
    let pfd = rustix::fs::openat(
        &dir.src,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(path, "open"))?;
    same_inode(pfd.as_fd(), st, path)?;
    Ok(pfd)
}
