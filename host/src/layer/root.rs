//! A capability on a root filesystem directory: every path is resolved as if
//! the process were chrooted into it (`openat2` with `RESOLVE_IN_ROOT`), and
//! the last component of an entry is only ever touched with `*at` calls
//! relative to its parent's descriptor, never followed.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::path::{BStr, components};

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// An open root filesystem.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Open `path` (which must be a directory) as a root.
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// The root's own descriptor.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Open the directory at the cleaned path `dir` (resolved inside the
    /// root) as an `O_PATH` descriptor.
    pub fn open_dir(&self, dir: &BStr) -> Result<OwnedFd, Errno> {
        let p: &[u8] = if dir.is_empty() { b"." } else { dir };
        rustix::fs::openat2(
            &self.fd,
            p,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
    }

    /// Open any object at `path` (resolved inside the root, the last
    /// component followed if it is a symlink) with `flags`.
    pub fn open_at(&self, path: &BStr, flags: OFlags) -> Result<OwnedFd, Errno> {
        let p: &[u8] = if path.is_empty() { b"." } else { path };
        rustix::fs::openat2(&self.fd, p, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE)
    }

    /// Open the directory `dir`, creating missing components (mode 0755)
    /// and replacing components that exist but are not directories, as umoci
    /// does. `on_create(parent_path)` is called before a directory entry is
    /// added to `parent_path`, so callers can remember its times.
    pub fn mkdir_all(
        &self,
        dir: &BStr,
        on_change: &mut dyn FnMut(&BStr, &OwnedFd),
    ) -> Result<OwnedFd, Errno> {
        match self.open_dir(dir) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => {}
            Err(e) => return Err(e),
        }
        let mut cur = self.open_dir(b"".into())?;
        for (parent_path, comp, prefix) in components(dir) {
            let next = match self.open_dir(prefix.as_ref()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                    on_change(parent_path.as_ref(), &cur);
                    // a non-directory (or dangling symlink) is in the way
                    let comp: &[u8] = comp;
                    match rustix::fs::statat(&cur, comp, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(_) => remove_all_at(&cur, comp)?,
                        Err(Errno::NOENT) => {}
                        Err(e) => return Err(e),
                    }
                    match rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e),
                    }
                    self.open_dir(prefix.as_ref())?
                }
                Err(e) => return Err(e),
            };
            cur = next;
        }
        Ok(cur)
    }
}

/// Remove `name` in `dir` and everything beneath it, never following
/// symlinks. A missing name is not an error.
pub fn remove_all_at<Fd: AsFd, P: rustix::path::Arg + Copy>(dir: Fd, name: P) -> Result<(), Errno> {
    let dir = dir.as_fd();
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    empty_dir_at(dir, name, &mut |_| false)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove the children of directory `name` in `dir` for which `keep`
/// (given the child's name) is false. Recursion never follows symlinks.
pub fn empty_dir_at<Fd: AsFd, P: rustix::path::Arg>(
    dir: Fd,
    name: P,
    keep: &mut dyn FnMut(&BStr) -> bool,
) -> Result<(), Errno> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    let mut d = rustix::fs::Dir::read_from(&fd)?;
    while let Some(entry) = d.read() {
        let entry = entry?;
        let n = entry.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            names.push(n.to_owned());
        }
    }
    for n in names {
        let kept = keep(n.to_bytes().into());
        if !kept {
            remove_all_at(&fd, n.as_c_str())?;
        }
    }
    Ok(())
}
