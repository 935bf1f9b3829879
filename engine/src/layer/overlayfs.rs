//! overlayfs form: layers extracted alone, each into its own directory,
//! with whiteouts as overlayfs reads them (a character device 0:0 for a
//! deleted entry, the `opaque` xattr on a directory that hides what lower
//! layers have beneath it).
//!
//! [`Lower`] looks entries up through the lower layers of a chain as
//! overlayfs would (topmost first, stopping at whiteouts, non-directories
//! and opaque directories), for what a layer needs from beneath it: the
//! metadata of parent directories it does not carry itself, and the data of
//! hardlink targets (copy-up).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::path::{self, BStr, BString, ByteSlice};

/// The xattr prefix overlayfs uses when mounted by root.
pub const TRUSTED_PREFIX: &str = "trusted.overlay.";
/// The xattr prefix overlayfs uses with `userxattr` (rootless mounts).
pub const USER_PREFIX: &str = "user.overlay.";

/// Whether an xattr belongs to overlayfs (either prefix): such xattrs are
/// never taken from a layer nor written into one.
pub fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with(TRUSTED_PREFIX) || name.starts_with(USER_PREFIX)
}

/// Whether `st` is an overlayfs whiteout (a character device 0:0).
pub fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Whether the directory `fd` (opened for reading) carries
/// `<prefix>opaque=y`.
pub fn is_opaque<Fd: AsFd>(fd: Fd, prefix: &str) -> Result<bool, Errno> {
    use crate::fs::xattr;
    let name = format!("{prefix}opaque");
    Ok(xattr::get(xattr::Node::Fd(fd.as_fd()), name.as_bytes())?.is_some_and(|v| v == b"y"))
}

/// Mark the directory `fd` (opened for reading) opaque.
pub fn set_opaque<Fd: AsFd>(fd: Fd, prefix: &str) -> Result<(), Errno> {
    rustix::fs::fsetxattr(
        fd,
        format!("{prefix}opaque").as_str(),
        b"y",
        XattrFlags::empty(),
    )
}

/// What a lookup through the lower layers found.
#[derive(Debug)]
pub enum Found {
    /// The entry: its parent directory (opened for reading), its name, its
    /// status, and the index of the layer it is in (0 = topmost).
    Entry {
        /// The parent directory.
        parent: OwnedFd,
        /// The entry's name.
        name: BString,
        /// Its status (not following symlinks).
        stat: Stat,
        /// Index of the layer holding it.
        layer: usize,
    },
    /// No lower layer shows an entry at this path.
    Absent,
    /// A lower layer has a symlink at this ancestor of the path: an entry
    /// beneath it cannot be put in overlayfs form (overlayfs does not
    /// resolve symlinks between layers).
    BehindSymlink(BString),
}

/// The lower layers of a chain, topmost first.
#[derive(Debug)]
pub struct Lower {
    dirs: Vec<OwnedFd>,
    prefix: String,
    /// Per layer, built on first use: the names of every inode with more
    /// than one link.
    links: std::cell::RefCell<BTreeMap<usize, BTreeMap<u64, Vec<BString>>>>,
}

/// Open the directory `name` in `dir` for reading, never through a symlink.
pub fn open_dir_at<Fd: AsFd, P: rustix::path::Arg>(dir: Fd, name: P) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

impl Lower {
    /// Open the layer directories `dirs` (topmost first); `prefix` is the
    /// overlay xattr prefix they were written with.
    pub fn open(dirs: &[&Path], prefix: &str) -> std::io::Result<Lower> {
        let mut fds = Vec::with_capacity(dirs.len());
        for d in dirs {
            fds.push(rustix::fs::open(
                *d,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?);
        }
        Ok(Lower {
            dirs: fds,
            prefix: prefix.to_string(),
            links: Default::default(),
        })
    }

    /// No lower layers.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The topmost layer's root directory.
    pub fn top(&self) -> Option<&OwnedFd> {
        self.dirs.first()
    }

    /// Every name (relative to the layer root) of inode `ino` in layer
    /// `layer`, for a hardlink group that must be copied up whole.
    pub fn names_of(&self, layer: usize, ino: u64) -> Result<Vec<BString>, Errno> {
        let mut cache = self.links.borrow_mut();
        if let std::collections::btree_map::Entry::Vacant(slot) = cache.entry(layer) {
            let Some(top) = self.dirs.get(layer) else {
                return Ok(Vec::new());
            };
            let mut map: BTreeMap<u64, Vec<BString>> = BTreeMap::new();
            let mut stack = vec![(open_dir_at(top, ".")?, BString::from(""))];
            while let Some((fd, rel)) = stack.pop() {
                let mut d = rustix::fs::Dir::read_from(&fd)?;
                let mut names = Vec::new();
                while let Some(e) = d.read() {
                    let e = e?;
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(BString::from(n));
                    }
                }
                for n in names {
                    let st = rustix::fs::statat(&fd, n.as_bytes(), AtFlags::SYMLINK_NOFOLLOW)?;
                    let child = path::join(&rel, &n);
                    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                        stack.push((open_dir_at(&fd, n.as_bytes())?, child));
                    } else if st.st_nlink > 1 {
                        map.entry(st.st_ino).or_default().push(child);
                    }
                }
            }
            slot.insert(map);
        }
        Ok(cache
            .get(&layer)
            .and_then(|m| m.get(&ino))
            .cloned()
            .unwrap_or_default())
    }

    /// Look `path` (cleaned, relative, not `""`) up as overlayfs would.
    pub fn lookup(&self, path: &BStr) -> Result<Found, Errno> {
        let comps: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        if comps.is_empty() {
            return Ok(Found::Absent);
        }
        'layers: for (i, top) in self.dirs.iter().enumerate() {
            let mut cur = open_dir_at(top, ".")?;
            // an opaque ancestor in this layer hides the layers below
            let mut blocked = false;
            for (k, c) in comps.iter().enumerate() {
                let st = match rustix::fs::statat(&cur, *c, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(s) => s,
                    Err(Errno::NOENT) => {
                        if blocked {
                            return Ok(Found::Absent);
                        }
                        continue 'layers;
                    }
                    Err(e) => return Err(e),
                };
                if is_whiteout(&st) {
                    return Ok(Found::Absent);
                }
                if k + 1 == comps.len() {
                    return Ok(Found::Entry {
                        parent: cur,
                        name: BString::from(*c),
                        stat: st,
                        layer: i,
                    });
                }
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => {
                        let d = open_dir_at(&cur, *c)?;
                        if is_opaque(&d, &self.prefix)? {
                            blocked = true;
                        }
                        cur = d;
                    }
                    FileType::Symlink => {
                        return Ok(Found::BehindSymlink(BString::from(comps[..=k].join(&b'/'))));
                    }
                    _ => return Ok(Found::Absent),
                }
            }
        }
        Ok(Found::Absent)
    }
}

/// The xattrs of an open file or directory, overlayfs' own left out.
pub fn list_xattrs<Fd: AsFd>(fd: Fd) -> Result<BTreeMap<String, Vec<u8>>, Errno> {
    use crate::fs::xattr;
    xattr::read_all(xattr::Node::Fd(fd.as_fd()), is_overlay_xattr)
}

/// Give the open `dst` the owner (unless `rootless`: the owner record is an
/// xattr then, copied with the others), mode, xattrs and times of `src`
/// (whose status is `st`). Times are the caller's to set for directories
/// it is about to fill; they are set here too.
pub fn copy_meta<S: AsFd, D: AsFd>(src: S, st: &Stat, dst: D, rootless: bool) -> Result<(), Errno> {
    let dst = dst.as_fd();
    if !rootless {
        rustix::fs::fchown(
            dst,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        )?;
    }
    rustix::fs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    for (k, v) in list_xattrs(src)? {
        match rustix::fs::fsetxattr(dst, k.as_str(), &v, XattrFlags::empty()) {
            Ok(()) | Err(Errno::NOTSUP) => {}
            Err(Errno::PERM) if rootless => {}
            Err(e) => return Err(e),
        }
    }
    rustix::fs::futimens(dst, &stat_times(st))
}

/// [`copy_meta`] from the directory `src` to the directory `dst` (neither
/// followed if a symlink); on failure, the path it concerns.
pub fn copy_dir_meta<'a>(
    src: &'a Path,
    dst: &'a Path,
    rootless: bool,
) -> Result<(), (&'a Path, Errno)> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let s = rustix::fs::open(src, flags, Mode::empty()).map_err(|e| (src, e))?;
    let st = rustix::fs::fstat(&s).map_err(|e| (src, e))?;
    let d = rustix::fs::open(dst, flags, Mode::empty()).map_err(|e| (dst, e))?;
    copy_meta(&s, &st, &d, rootless).map_err(|e| (dst, e))
}

/// The access and modification times of `st`.
pub fn stat_times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(l: &Lower, p: &str) -> Option<(usize, String)> {
        match l.lookup(p.into()).expect("lookup") {
            Found::Entry { layer, name, .. } => Some((layer, name.to_string())),
            Found::Absent => None,
            Found::BehindSymlink(s) => Some((99, s.to_string())),
        }
    }

    /// Lookups as overlayfs resolves them: whiteouts and opaque directories
    /// hide lower layers, a symlink is never followed between layers.
    #[test]
    fn lookup_follows_overlay_rules() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mknod and trusted xattrs need root");
            return;
        }
        let t = tempfile::tempdir().expect("tempdir");
        let (top, mid, base) = (t.path().join("3"), t.path().join("2"), t.path().join("1"));
        for d in [&top, &mid, &base] {
            std::fs::create_dir(d).expect("mkdir");
        }
        std::fs::create_dir_all(base.join("d/sub")).expect("mkdir");
        std::fs::write(base.join("d/sub/f"), "f").expect("w");
        std::fs::write(base.join("d/g"), "g").expect("w");
        std::fs::write(base.join("gone"), "x").expect("w");
        std::os::unix::fs::symlink("d", base.join("link")).expect("symlink");
        // mid: d opaque with its own h; gone whited out
        std::fs::create_dir(mid.join("d")).expect("mkdir");
        std::fs::write(mid.join("d/h"), "h").expect("w");
        set_opaque(
            rustix::fs::open(
                mid.join("d"),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            )
            .expect("open"),
            TRUSTED_PREFIX,
        )
        .expect("opaque");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            mid.join("gone"),
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .expect("whiteout");
        std::fs::write(top.join("new"), "n").expect("w");
        let l = Lower::open(&[&top, &mid, &base], TRUSTED_PREFIX).expect("open");
        assert_eq!(found(&l, "new"), Some((0, "new".into())));
        assert_eq!(found(&l, "d/h"), Some((1, "h".into())));
        assert_eq!(found(&l, "d"), Some((1, "d".into())));
        assert_eq!(found(&l, "d/g"), None, "hidden by the opaque directory");
        assert_eq!(found(&l, "d/sub/f"), None);
        assert_eq!(found(&l, "gone"), None, "whited out");
        assert_eq!(found(&l, "link"), Some((2, "link".into())));
        assert_eq!(found(&l, "link/g"), Some((99, "link".into())));
        assert_eq!(found(&l, "nothing/here"), None);
        // without the opaque layer the base shows through
        let l = Lower::open(&[&top, &base], TRUSTED_PREFIX).expect("open");
        assert_eq!(found(&l, "d/sub/f"), Some((1, "f".into())));
        assert_eq!(found(&l, "gone"), Some((1, "gone".into())));
    }
}
