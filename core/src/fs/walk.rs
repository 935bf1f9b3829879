//! The one tree walk: depth first, names sorted by bytes, descriptor by
//! descriptor, never following a symlink.
//!
//! Trees from images can be deeper than `PATH_MAX` lets a path reach, and
//! wider than the descriptor limit: a directory is opened only when it is
//! visited, through its parent's descriptor, and pending entries hold only
//! their parent's descriptor (shared) and their name. A directory with
//! thousands of subdirectories costs one descriptor, not thousands.

use std::ffi::{CStr, CString};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

use bstr::{BStr, BString, ByteSlice};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::path;

/// One entry met by [`walk`].
pub struct Entry<'a> {
    /// The open parent directory; `None` for the root.
    pub dir: Option<&'a OwnedFd>,
    /// The name in `dir` (`.` for the root).
    pub name: &'a CStr,
    /// The path relative to the root, `/`-separated; `""` for the root.
    pub rel: &'a BStr,
    /// Its status, not following a symlink.
    pub stat: &'a Stat,
}

impl Entry<'_> {
    /// The kind of file.
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// What the walk does after visiting a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Visit what it holds (ignored for anything but a directory).
    Descend,
    /// Leave what it holds out.
    Prune,
}

/// Visit every entry of the tree at `root` in tree order: an entry, then
/// (if it is a directory and `visit` answers [`Step::Descend`]) all that
/// lies beneath it, siblings sorted by bytes. `io_err(path, error)` builds
/// the caller's error for a failed open, listing or stat, `path` naming the
/// entry in full.
pub fn walk<E>(
    root: &Path,
    io_err: impl Fn(&str, std::io::Error) -> E,
    mut visit: impl FnMut(&Entry<'_>) -> Result<Step, E>,
) -> Result<(), E> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let at = |rel: &BStr| crate::show::name(&path::join(path::bytes(root.as_os_str()), rel));
    let root_err = |e: rustix::io::Errno| io_err(&root.display().to_string(), e.into());
    let top = rustix::fs::open(root, flags, Mode::empty()).map_err(root_err)?;
    let st = rustix::fs::fstat(&top).map_err(root_err)?;
    let root_entry = Entry {
        dir: None,
        name: c".",
        rel: b"".as_bstr(),
        stat: &st,
    };
    if visit(&root_entry)? == Step::Prune {
        return Ok(());
    }
    // Entries still to visit, the next on top: (parent, name, relative path).
    let mut stack: Vec<(Rc<OwnedFd>, CString, BString)> = Vec::new();
    let list = |dir: OwnedFd, rel: &BStr, stack: &mut Vec<_>| -> Result<(), E> {
        let names = crate::fs::dir::names(&dir).map_err(|e| io_err(&at(rel), e.into()))?;
        let dir = Rc::new(dir);
        for n in names.into_iter().rev() {
            let child = path::join(rel, n.to_bytes());
            stack.push((dir.clone(), n, child));
        }
        Ok(())
    };
    list(top, b"".as_bstr(), &mut stack)?;
    while let Some((dir, name, rel)) = stack.pop() {
        let st = rustix::fs::statat(&*dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&at(rel.as_ref()), e.into()))?;
        let entry = Entry {
            dir: Some(&dir),
            name: &name,
            rel: rel.as_ref(),
            stat: &st,
        };
        let step = visit(&entry)?;
        if step == Step::Descend && entry.file_type() == FileType::Directory {
            let fd = rustix::fs::openat(&*dir, name.as_c_str(), flags, Mode::empty())
                .map_err(|e| io_err(&at(rel.as_ref()), e.into()))?;
            list(fd, rel.as_ref(), &mut stack)?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tree_order_sorted_by_bytes_pruned_and_symlinks_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["b", "a", "a/z", "a/y", "skip", "skip/x"] {
            std::fs::create_dir(r.join(d)).unwrap();
        }
        std::fs::write(r.join("a/B"), "").unwrap();
        std::fs::write(r.join("a.txt"), "").unwrap();
        std::os::unix::fs::symlink("a", r.join("l")).unwrap();
        let mut seen = Vec::new();
        walk(
            r,
            |p, e| format!("{p}: {e}"),
            |e| {
                seen.push(e.rel.to_string());
                Ok(if e.rel == "skip" {
                    Step::Prune
                } else {
                    Step::Descend
                })
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            ["", "a", "a/B", "a/y", "a/z", "a.txt", "b", "l", "skip"]
        );
        let err = walk(
            &r.join("missing"),
            |p, e| format!("{p}: {e}"),
            |_| Ok(Step::Descend),
        )
        .unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }
}
