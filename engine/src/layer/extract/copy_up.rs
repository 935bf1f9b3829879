//! Extraction in overlayfs form (a layer directory of an overlay layer
//! store): what a layer takes from the layers beneath it — directories
//! copied up before an entry goes beneath them, hardlink targets and their
//! groups copied up, whiteouts and opaque directories as overlayfs keeps
//! them.

use std::fs::File;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{
    ExtractError, Extractor, LayerState, copy_hashed, create_file, entry_err, entry_parent,
    mkdir_all, whiteout_path,
};
use crate::fs::root::{Root, remove_all_at};
use crate::layer::overlayfs::{self as ov, Found};
use crate::path::{BStr, ByteSlice, components, split_parent};

/// Whether this layer has an entry at `path` already (never following a
/// symlink).
fn exists(root: &Root, path: &BStr) -> bool {
    let (dir, name) = split_parent(path);
    root.open_dir(dir)
        .is_ok_and(|fd| rustix::fs::statat(&fd, name.as_bytes(), AtFlags::SYMLINK_NOFOLLOW).is_ok())
}

/// overlayfs form: what a layer takes from the layers beneath it.
impl Extractor {
    /// `at` looked up through the lower layers ([`Found::Absent`] with
    /// none); errors name `path`.
    fn lower_lookup(&self, at: &BStr, path: &BStr) -> Result<Found, ExtractError> {
        match &self.lower {
            Some(l) => l.lookup(at).map_err(|e| entry_err(path, e)),
            None => Ok(Found::Absent),
        }
    }

    /// Make every component of `dir` exist in this layer before an entry
    /// is put beneath it: a directory the layer does not carry is copied up
    /// (owner, mode, xattrs, times) from the topmost lower layer that shows
    /// it, so the merged view keeps its metadata; where no lower layer
    /// shows a directory, [`Root::mkdir_all`] creates it as usual. A
    /// whiteout of this layer in the way becomes an opaque directory.
    pub(super) fn copy_up_parents(
        &mut self,
        root: &Root,
        dir: &BStr,
        st: &mut LayerState,
    ) -> Result<(), ExtractError> {
        let Some(prefix) = self.overlay_prefix() else {
            return Ok(());
        };
        if dir.is_empty() {
            return Ok(());
        }
        let rootless = self.opts.rootless;
        let mut cur = root
            .open_at(b"".into(), OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| entry_err(dir, e))?;
        for (parent_path, comp, at) in components(dir) {
            let comp: &[u8] = comp;
            let open = |fd: &OwnedFd| ov::open_dir_at(fd, comp).map_err(|e| entry_err(&at, e));
            match rustix::fs::statat(&cur, comp, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) if FileType::from_raw_mode(s.st_mode) == FileType::Directory => {
                    cur = open(&cur)?;
                    continue;
                }
                Ok(s) if ov::is_whiteout(&s) => {
                    st.remember(parent_path.as_ref(), &cur);
                    rustix::fs::unlinkat(&cur, comp, AtFlags::empty())
                        .map_err(|e| entry_err(&at, e))?;
                    rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755))
                        .map_err(|e| entry_err(&at, e))?;
                    let d = open(&cur)?;
                    ov::set_opaque(&d, prefix)
                        .map_err(|e| entry_err(&at, format!("set {prefix}opaque: {e}")))?;
                    cur = d;
                    continue;
                }
                // another non-directory of this layer: replaced as usual
                Ok(_) => return Ok(()),
                Err(Errno::NOENT) => {}
                Err(e) => return Err(entry_err(&at, e)),
            }
            match self.lower_lookup(at.as_ref(), at.as_ref())? {
                Found::Entry {
                    parent, name, stat, ..
                } if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                    st.remember(parent_path.as_ref(), &cur);
                    rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o700))
                        .map_err(|e| entry_err(&at, e))?;
                    let d = open(&cur)?;
                    let src =
                        ov::open_dir_at(&parent, name.as_bytes()).map_err(|e| entry_err(&at, e))?;
                    ov::copy_meta(&src, &stat, &d, rootless)
                        .map_err(|e| entry_err(&at, format!("copy-up from a lower layer: {e}")))?;
                    // restored after this layer's entries are in
                    st.dir_times.insert(at.clone(), ov::stat_times(&stat));
                    cur = d;
                }
                Found::Entry { stat, .. }
                    if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink =>
                {
                    return Err(behind_symlink(dir, at.as_ref()));
                }
                Found::BehindSymlink(p) => return Err(behind_symlink(dir, p.as_ref())),
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// A hardlink to `target`, which this layer does not carry: copy the
    /// target up from the lower layers first (data, owner, mode, xattrs,
    /// times), so the link and the target share an inode as in one tree.
    pub(super) fn copy_up_link_target(
        &mut self,
        root: &Root,
        target: &BStr,
        st: &mut LayerState,
    ) -> Result<(), ExtractError> {
        if exists(root, target) {
            return Ok(());
        }
        let (tdir, tname) = split_parent(target);
        let (sparent, sname, sst, slayer) = match self.lower_lookup(target, target)? {
            Found::Entry {
                parent,
                name,
                stat,
                layer,
            } if FileType::from_raw_mode(stat.st_mode) != FileType::Directory => {
                (parent, name, stat, layer)
            }
            Found::BehindSymlink(p) => return Err(behind_symlink(target, p.as_ref())),
            // the link fails below with a clear error
            _ => return Ok(()),
        };
        self.copy_up_parents(root, tdir, st)?;
        let tparent = entry_parent(root, tdir, st).map_err(|e| entry_err(target, e))?;
        let copy_err = |e: Errno| entry_err(target, format!("copy-up from a lower layer: {e}"));
        let uid = Some(rustix::fs::Uid::from_raw(sst.st_uid));
        let gid = Some(rustix::fs::Gid::from_raw(sst.st_gid));
        match FileType::from_raw_mode(sst.st_mode) {
            FileType::RegularFile => {
                let src = rustix::fs::openat(
                    &sparent,
                    sname.as_bytes(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(copy_err)?;
                let dst =
                    create_file(&tparent, tname, Mode::from_raw_mode(0o600)).map_err(copy_err)?;
                let mut from = File::from(src);
                let mut to = File::from(dst);
                let (_, digest) = copy_hashed(
                    &mut from,
                    &mut to,
                    1 << 20,
                    |e| entry_err(target, e),
                    |e| entry_err(target, e),
                )?;
                ov::copy_meta(&from, &sst, &to, self.opts.rootless).map_err(copy_err)?;
                self.digests.insert(target.to_owned(), digest);
            }
            ft => {
                let mode = Mode::from_raw_mode(sst.st_mode & 0o7777);
                if ft == FileType::Symlink {
                    let link = rustix::fs::readlinkat(&sparent, sname.as_bytes(), Vec::new())
                        .map_err(copy_err)?;
                    rustix::fs::symlinkat(link.as_c_str(), &tparent, tname.as_bytes())
                        .map_err(copy_err)?;
                } else {
                    rustix::fs::mknodat(&tparent, tname.as_bytes(), ft, mode, sst.st_rdev)
                        .map_err(copy_err)?;
                }
                if !self.opts.rootless {
                    rustix::fs::chownat(
                        &tparent,
                        tname.as_bytes(),
                        uid,
                        gid,
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(copy_err)?;
                }
                if ft != FileType::Symlink {
                    rustix::fs::chmodat(&tparent, tname.as_bytes(), mode, AtFlags::empty())
                        .map_err(copy_err)?;
                }
                rustix::fs::utimensat(
                    &tparent,
                    tname.as_bytes(),
                    &ov::stat_times(&sst),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(copy_err)?;
            }
        }
        if sst.st_nlink > 1 {
            self.copy_up_link_group(root, target, slayer, &sst, st)?;
        }
        Ok(())
    }

    /// After `target` was copied up from lower layer `layer`: the other
    /// names of its inode there that the merged view still shows become
    /// hardlinks to the copy, so the whole group keeps sharing one inode
    /// (as it does when the layers share one tree).
    fn copy_up_link_group(
        &mut self,
        root: &Root,
        target: &BStr,
        layer: usize,
        sst: &rustix::fs::Stat,
        st: &mut LayerState,
    ) -> Result<(), ExtractError> {
        let names = match &self.lower {
            Some(l) => l
                .names_of(layer, sst.st_ino)
                .map_err(|e| entry_err(target, e))?,
            None => return Ok(()),
        };
        let (tdir, tname) = split_parent(target);
        let tparent = root.open_dir(tdir).map_err(|e| entry_err(target, e))?;
        for other in names.into_iter().filter(|n| n != target) {
            let visible = matches!(
                self.lower_lookup(other.as_ref(), other.as_ref())?,
                Found::Entry { layer: ly, stat, .. } if ly == layer && stat.st_ino == sst.st_ino
            );
            if !visible || exists(root, other.as_ref()) {
                continue;
            }
            let (odir, oname) = split_parent(other.as_ref());
            self.copy_up_parents(root, odir, st)?;
            let oparent = entry_parent(root, odir, st).map_err(|e| entry_err(&other, e))?;
            rustix::fs::linkat(
                &tparent,
                tname.as_bytes(),
                &oparent,
                oname.as_bytes(),
                AtFlags::empty(),
            )
            .map_err(|e| entry_err(&other, format!("copy-up of a hardlink: {e}")))?;
            if let Some(d) = self.digests.get(target).copied() {
                self.digests.insert(other.clone(), d);
            }
        }
        Ok(())
    }

    /// A whiteout in overlayfs form.
    pub(super) fn overlay_whiteout(
        &mut self,
        root: &Root,
        dir: &BStr,
        target: &BStr,
        path: &BStr,
        st: &mut LayerState,
        prefix: &str,
    ) -> Result<(), ExtractError> {
        let opaque_err = |e: Errno| entry_err(path, format!("set {prefix}opaque: {e}"));
        if target == ".wh..opq" {
            self.copy_up_parents(root, dir, st)?;
            mkdir_all(root, dir, st).map_err(|e| entry_err(path, e))?;
            let fd = root
                .open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| entry_err(path, e))?;
            return ov::set_opaque(&fd, prefix).map_err(opaque_err);
        }
        let full = whiteout_path(dir, target, path)?;
        if st.in_upper(full.as_ref()) {
            // this layer wrote it: only what lower layers had beneath it goes
            if let Ok(parent) = root.open_dir(dir)
                && let Ok(fd) = ov::open_dir_at(&parent, target.as_bytes())
            {
                ov::set_opaque(&fd, prefix).map_err(opaque_err)?;
            }
            return Ok(());
        }
        match self.lower_lookup(full.as_ref(), path)? {
            Found::Entry { .. } => {}
            Found::BehindSymlink(p) => return Err(behind_symlink(path, p.as_ref())),
            // nothing beneath to hide
            Found::Absent => return Ok(()),
        }
        self.copy_up_parents(root, dir, st)?;
        let parent = entry_parent(root, dir, st).map_err(|e| entry_err(path, e))?;
        remove_all_at(&parent, target.as_bytes()).map_err(|e| entry_err(path, e))?;
        rustix::fs::mknodat(
            &parent,
            target.as_bytes(),
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| {
            entry_err(
                path,
                format!("create the whiteout (character device 0:0): {e}"),
            )
        })?;
        self.forget(full.as_ref());
        Ok(())
    }
}

fn behind_symlink(path: &BStr, link: &BStr) -> ExtractError {
    entry_err(
        path,
        format!(
            "lies beneath {link:?}, a symlink in a lower layer: not representable in overlayfs form (overlayfs does not follow symlinks between layers)"
        ),
    )
}
