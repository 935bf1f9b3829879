//! The walk of a copy: directories in name order, depth first, each
//! reached through its parent's descriptor; hardlinks recreated by source
//! inode; every entry shown to the caller's check first.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use super::meta::{Node, SetMode, ident, modified, nlink, same_inode};
use super::{Copier, CopyError, changed, io_err, lossy};
use crate::fs::dir::names;
use crate::fs::root::open_dir_beneath;
use crate::path::ByteSlice;

/// A directory being copied.
pub(super) struct Frame {
    pub(super) src: OwnedFd,
    pub(super) dst: OwnedFd,
    /// The path relative to the roots, as bytes (`""` for the root).
    pub(super) rel: Vec<u8>,
    pub(super) st: Stat,
    pub(super) names: std::vec::IntoIter<CString>,
}

impl Copier<'_> {
    /// Copy one entry of the directory `dir`; a directory is created and
    /// returned for the caller to descend into.
    pub(super) fn entry(&mut self, dir: &Frame, name: &CStr) -> Result<Option<Frame>, CopyError> {
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
        let parent = open_dir_beneath(&self.dst_root, parent)
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
        let names = names(src.as_fd()).map_err(io_err(path, "readdir"))?;
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
    pub(super) fn finish_dir(&mut self, f: &Frame) -> Result<(), CopyError> {
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
}
