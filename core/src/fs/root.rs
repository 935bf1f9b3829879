//! A capability on a root filesystem directory: every path is resolved as if
//! the process were chrooted into it (`openat2` with `RESOLVE_IN_ROOT`), and
//! the last component of an entry is only ever touched with `*at` calls
//! relative to its parent's descriptor, never followed.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::path::{BStr, components};

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// The directory `path` beneath the directory `dir`, opened `O_PATH`:
/// relative, never through a symlink or out of `dir` (`openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`).
pub fn open_dir_beneath<Fd: AsFd, P: rustix::path::Arg>(
    dir: Fd,
    path: P,
) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

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

/// Open the directory `name` in `dir` for reading and removing entries,
/// never through a symlink. A directory the caller owns but cannot list,
/// search or write (mode 000 in a rootless tree, say) is given the owner
/// `rwx` first: it is about to be emptied anyway. `None`: nothing there,
/// or not a directory.
fn open_for_removal<Fd: AsFd, P: rustix::path::Arg + Copy>(
    dir: Fd,
    name: P,
) -> Result<Option<OwnedFd>, Errno> {
    let dir = dir.as_fd();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(None),
        Err(Errno::ACCESS) => {
            rustix::fs::chmodat(dir, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
            rustix::fs::openat(dir, name, flags, Mode::empty())?
        }
        Err(e) => return Err(e),
    };
    // unlinking needs write and search permission on the directory
    if rustix::fs::accessat(
        &fd,
        ".",
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        AtFlags::EACCESS,
    )
    .is_err()
    {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))?;
    }
    Ok(Some(fd))
}

/// Remove `name` in `dir` and everything beneath it, never following
/// symlinks, at any depth (iterative), whatever the modes of the
/// directories in it (see `open_for_removal`). A missing name is not an
/// error.
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

/// One directory being emptied by [`empty_dir_at`].
struct Frame {
    fd: OwnedFd,
    /// Entries still to remove.
    names: Vec<CString>,
    /// Its name in the frame below (`None` for the directory being emptied).
    name: Option<CString>,
}

/// Remove the children of directory `name` in `dir` for which `keep`
/// (given the child's name) is false, at any depth (iterative), never
/// following symlinks; unlistable directories are handled as in
/// [`remove_all_at`].
pub fn empty_dir_at<Fd: AsFd, P: rustix::path::Arg + Copy>(
    dir: Fd,
    name: P,
    keep: &mut dyn FnMut(&BStr) -> bool,
) -> Result<(), Errno> {
    let Some(fd) = open_for_removal(dir, name)? else {
        return Ok(());
    };
    let mut names = super::dir::names(&fd)?;
    names.retain(|n| !keep(n.to_bytes().into()));
    names.reverse();
    let mut stack = vec![Frame {
        fd,
        names,
        name: None,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(n) = top.names.pop() else {
            let done = stack.pop();
            if let (Some(parent), Some(Frame { name: Some(n), .. })) = (stack.last(), done) {
                match rustix::fs::unlinkat(&parent.fd, n.as_c_str(), AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(e),
                }
            }
            continue;
        };
        match rustix::fs::unlinkat(&top.fd, n.as_c_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => continue,
            Err(Errno::ISDIR) | Err(Errno::PERM) => {}
            Err(e) => return Err(e),
        }
        let Some(child) = open_for_removal(&top.fd, n.as_c_str())? else {
            continue;
        };
        let mut names = super::dir::names(&child)?;
        names.reverse();
        stack.push(Frame {
            fd: child,
            names,
            name: Some(n),
        });
    }
    Ok(())
}

/// Bytes of regular files and number of entries (the root included) of
/// the tree `name` in `dir`, never following symlinks, at any depth. A
/// directory that cannot be listed counts as one entry (nothing here
/// changes a mode: layer stores check their trees' change times).
pub fn measure_at<Fd: AsFd, P: rustix::path::Arg + Copy>(
    dir: Fd,
    name: P,
) -> Result<(u64, u64), Errno> {
    let dir = dir.as_fd();
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let ft = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if ft != rustix::fs::FileType::Directory {
        let size = if ft == rustix::fs::FileType::RegularFile {
            st.st_size as u64
        } else {
            0
        };
        return Ok((size, 1));
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let (mut size, mut inodes) = (0u64, 1u64);
    // pending directories: their parent's descriptor (shared) and name,
    // opened when visited, so a wide directory costs one descriptor
    let top = std::rc::Rc::new(rustix::fs::openat(dir, name, flags, Mode::empty())?);
    let mut stack: Vec<(std::rc::Rc<OwnedFd>, CString)> = Vec::new();
    let mut next = Some(top);
    loop {
        let fd = match next.take() {
            Some(fd) => fd,
            None => match stack.pop() {
                Some((parent, n)) => {
                    match rustix::fs::openat(&*parent, n.as_c_str(), flags, Mode::empty()) {
                        Ok(child) => std::rc::Rc::new(child),
                        Err(Errno::ACCESS) => continue,
                        Err(e) => return Err(e),
                    }
                }
                None => break,
            },
        };
        for n in super::dir::names(&fd)? {
            let st = rustix::fs::statat(&*fd, n.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
            inodes += 1;
            match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                rustix::fs::FileType::Directory => stack.push((fd.clone(), n)),
                rustix::fs::FileType::RegularFile => size += st.st_size as u64,
                _ => {}
            }
        }
    }
    Ok((size, inodes))
}

/// [`remove_all_at`] for a host path: remove the tree at `path` whatever
/// its depth and modes (a partial rootfs of a failed rootless unpack holds
/// mode-000 directories that `std::fs::remove_dir_all` cannot empty).
pub fn remove_tree(path: &std::path::Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::other(format!("{}: not a removable path", path.display()))
    })?;
    let dir = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(remove_all_at(&dir, name)?)
}
