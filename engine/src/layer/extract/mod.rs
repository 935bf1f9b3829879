//! Tar → filesystem: apply one layer to a root filesystem with umoci's
//! semantics, every path resolved inside the root (see [`crate::fs::root`]).

mod copy_up;
mod meta;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use sha2::Digest as _;

use super::idmap::IdMapping;
use super::overlayfs::{self as ov, Lower};
use super::tarread::{self, Header, Kind, TarError};
use crate::fs::root::{Root, empty_dir_at, remove_all_at};
use crate::path::{self, BStr, BString, ByteSlice, ByteVec, components, split_parent};

/// Errors while extracting a layer; each names the entry.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The tar stream itself is broken.
    #[error("corrupt layer: {0}")]
    Tar(#[source] TarError),
    /// An entry could not be applied.
    #[error("entry {}: {reason}", crate::show::name(path))]
    Entry {
        /// The entry's (cleaned) path.
        path: BString,
        /// Why.
        reason: String,
    },
}

fn entry_err(path: impl AsRef<[u8]>, reason: impl std::fmt::Display) -> ExtractError {
    ExtractError::Entry {
        path: BString::from(path.as_ref()),
        reason: reason.to_string(),
    }
}

/// Options of the extractor.
#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
    /// uid mappings (container → host).
    pub uid_map: Vec<IdMapping>,
    /// gid mappings.
    pub gid_map: Vec<IdMapping>,
    /// No chown; the owner goes into `user.rootlesscontainers`; devices
    /// become empty files.
    pub rootless: bool,
    /// A directory entry landing on a symlink to a directory keeps the link.
    pub keep_dirlinks: bool,
    /// How whiteouts are written.
    pub whiteout: WhiteoutMode,
}

impl ExtractOptions {
    /// Extract as root (owners, devices and xattrs as the layers say); the
    /// same as `ExtractOptions::default()`.
    pub fn privileged() -> ExtractOptions {
        ExtractOptions::default()
    }

    /// Extract as an unprivileged user (umoci's `--rootless`): no chown,
    /// owners kept in the `user.rootlesscontainers` xattr, devices as empty
    /// files; container root is the invoking user unless id maps are set
    /// with [`ExtractOptions::uid_map`] and [`ExtractOptions::gid_map`].
    pub fn rootless() -> ExtractOptions {
        let me = |host_id| {
            vec![IdMapping {
                container_id: 0,
                host_id,
                size: 1,
            }]
        };
        ExtractOptions {
            uid_map: me(rustix::process::geteuid().as_raw()),
            gid_map: me(rustix::process::getegid().as_raw()),
            rootless: true,
            ..ExtractOptions::default()
        }
    }

    /// Map container uids to host uids (`--uid-map`), replacing the maps
    /// set so far.
    pub fn uid_map(mut self, map: Vec<IdMapping>) -> ExtractOptions {
        self.uid_map = map;
        self
    }

    /// Map container gids to host gids (`--gid-map`), replacing the maps
    /// set so far.
    pub fn gid_map(mut self, map: Vec<IdMapping>) -> ExtractOptions {
        self.gid_map = map;
        self
    }

    /// A directory entry landing on a symlink to a directory keeps the
    /// link (`--keep-dirlinks`).
    pub fn keep_dirlinks(mut self, keep: bool) -> ExtractOptions {
        self.keep_dirlinks = keep;
        self
    }
}

/// How the extractor writes whiteouts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// OCI: the layers share one tree; a whiteout removes what lower layers
    /// put there.
    #[default]
    Apply,
    /// overlayfs form: each layer is extracted alone into an empty
    /// directory (the lower layers given with [`Extractor::set_lower`]); a
    /// whiteout becomes a character device 0:0, an opaque whiteout the
    /// xattr `<xattr_prefix>opaque=y` on its directory; parent directories
    /// and hardlink targets the layer does not carry are copied up from the
    /// lower layers.
    Overlay {
        /// `trusted.overlay.` (root) or `user.overlay.` (rootless).
        xattr_prefix: &'static str,
    },
}

/// State kept across the layers of one unpack.
#[derive(Debug, Default)]
pub struct Extractor {
    opts: ExtractOptions,
    /// sha256 of every regular file written (path → digest), kept current
    /// through whiteouts and overwrites, so a manifest of the tree can be
    /// made without re-reading the files.
    pub digests: BTreeMap<BString, [u8; 32]>,
    warned_enotsup: bool,
    /// overlayfs form: the lower layers of the layer being extracted.
    lower: Option<Lower>,
    /// Unprivileged (see [`crate::fs::unpriv`]): directories whose mode keeps
    /// their owner out (`0o000`, `0o500`, …) with that mode (and, with
    /// [`Self::keep_open`], unreadable files). While a layer is applied
    /// they are kept open (`u+rwx`, files `u+r`), so entries can still be
    /// put beneath them; each layer ends with their real modes.
    restricted: BTreeMap<BString, u32>,
    /// Whether [`Self::restricted`] is kept (not root).
    unpriv: bool,
    /// Leave restricted directories open at the end of a layer (a layer
    /// store's snapshot, which rumoci must read again to copy; the real
    /// modes travel in its record and are set on the copy).
    keep_open: bool,
}

/// Per-layer bookkeeping.
struct LayerState {
    /// The layer is applied (whiteouts carried out) onto an empty tree:
    /// everything in the tree is then this layer's, so [`Self::upper`] is
    /// not kept (at a million files it would be the largest thing held)
    /// and every path counts as written by this layer.
    fresh: bool,
    /// Paths this layer wrote, and all their ancestors (unless
    /// [`Self::fresh`]).
    upper: HashSet<BString>,
    /// Directories whose content changed: their times before the change.
    dir_times: BTreeMap<BString, Timestamps>,
    /// Directories this layer has a header for: the header's times.
    dir_headers: BTreeMap<BString, Timestamps>,
    /// Unprivileged: directories found usable (searchable and writable)
    /// in this layer. They stay so until the layer ends (a mode this layer
    /// sets keeps `u+rwx`), so each is checked once, not once per entry.
    usable: HashSet<BString>,
    /// The directory the last entry went in, still open: entries of a
    /// layer come directory by directory, so the next one's parent is
    /// usually the same. Dropped whenever anything is removed from the tree
    /// (a whiteout, an entry replaced), since a removal can change what a
    /// path resolves to; a different parent replaces it.
    parent: Option<(BString, Rc<OwnedFd>)>,
}

/// What [`Extractor::clear_way`] left.
enum Way {
    /// The name is free (or an existing directory stays, for a directory
    /// entry); in overlayfs form, whether the new directory is opaque.
    Clear { make_opaque: bool },
    /// A symlink to a directory stays in place of a directory entry.
    KeptDirlink,
}

/// An entry on its way into the tree: its header, cleaned path and name,
/// the directory it goes in, and the metadata the header gives it.
struct Put<'a> {
    hdr: &'a Header,
    path: &'a BStr,
    name: &'a BStr,
    parent: &'a OwnedFd,
    xattrs: &'a BTreeMap<String, Vec<u8>>,
    times: &'a Timestamps,
}

fn ts(secs: i64, nanos: u32) -> Timespec {
    Timespec {
        tv_sec: secs,
        tv_nsec: i64::from(nanos),
    }
}

/// Whether the open directory `fd` has no entries.
fn is_empty_dir(fd: OwnedFd) -> bool {
    let Ok(mut d) = rustix::fs::Dir::read_from(&fd) else {
        return false;
    };
    while let Some(e) = d.read() {
        match e {
            Ok(e) if e.file_name() == c"." || e.file_name() == c".." => {}
            _ => return false,
        }
    }
    true
}

/// Record `path` and its ancestors (up to the root, `""`) as written by
/// this layer; stops at the first one already there.
pub(crate) fn add_upper(upper: &mut HashSet<BString>, path: &BStr) {
    let mut p = path;
    loop {
        if !upper.insert(p.to_owned()) {
            break;
        }
        match p.rfind_byte(b'/') {
            Some(i) => p = p[..i].as_bstr(),
            None => {
                upper.insert(BString::from(""));
                break;
            }
        }
    }
}

impl LayerState {
    /// Record `path` and its ancestors as written by this layer.
    fn add_upper(&mut self, path: &BStr) {
        if !self.fresh {
            add_upper(&mut self.upper, path);
        }
    }

    /// Whether this layer wrote `path` (or something beneath it).
    fn in_upper(&self, path: &BStr) -> bool {
        self.fresh || self.upper.contains(path)
    }

    /// Remember the times of the directory `path` (open as `fd`) before
    /// this layer first changes its content, to restore them at the end.
    fn remember(&mut self, path: &BStr, fd: &OwnedFd) {
        if !self.dir_times.contains_key(path)
            && let Ok(s) = rustix::fs::fstat(fd)
        {
            self.dir_times.insert(path.to_owned(), ov::stat_times(&s));
        }
    }
}

/// [`Root::mkdir_all`], remembering the times of every directory it adds
/// an entry to.
fn mkdir_all(root: &Root, dir: &BStr, st: &mut LayerState) -> Result<OwnedFd, Errno> {
    root.mkdir_all(dir, &mut |p, fd| st.remember(p, fd))
}

/// The directory `dir` an entry is about to be put in: created as needed
/// ([`mkdir_all`]), its own times remembered too.
fn entry_parent(root: &Root, dir: &BStr, st: &mut LayerState) -> Result<OwnedFd, Errno> {
    let parent = mkdir_all(root, dir, st)?;
    st.remember(dir, &parent);
    Ok(parent)
}

/// [`entry_parent`] through the directory kept open in
/// [`LayerState::parent`]: the same directory as the last entry's is not
/// resolved again.
fn cached_parent(root: &Root, dir: &BStr, st: &mut LayerState) -> Result<Rc<OwnedFd>, Errno> {
    if let Some((d, fd)) = &st.parent
        && d == dir
    {
        return Ok(fd.clone());
    }
    let fd = Rc::new(entry_parent(root, dir, st)?);
    st.parent = Some((dir.to_owned(), fd.clone()));
    Ok(fd)
}

/// Create the regular file `name` in `parent` (it must not exist; never
/// through a symlink), open for writing.
fn create_file(parent: &OwnedFd, name: &BStr, mode: Mode) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name.as_bytes(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        mode,
    )
}

/// Copy `from` to `to` to the end, hashing what passes; returns the bytes
/// copied and their sha256. Errors go through `read_err` and `write_err`.
fn copy_hashed(
    from: &mut impl Read,
    to: &mut impl Write,
    buf_len: usize,
    read_err: impl Fn(std::io::Error) -> ExtractError,
    write_err: impl Fn(std::io::Error) -> ExtractError,
) -> Result<(u64, [u8; 32]), ExtractError> {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; buf_len];
    let mut copied = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(&write_err)?;
        copied += n as u64;
    }
    Ok((copied, hasher.finalize().into()))
}

/// The path a whiteout `<dir>/.wh.<target>` (entry `path`) removes.
fn whiteout_path(dir: &BStr, target: &BStr, path: &BStr) -> Result<BString, ExtractError> {
    if target.is_empty() || target == "." || target == ".." || target.contains(&b'/') {
        return Err(entry_err(
            path,
            format!("invalid whiteout target {target:?}"),
        ));
    }
    Ok(path::join(dir, target))
}

impl Extractor {
    /// A new extractor.
    pub fn new(opts: ExtractOptions) -> Extractor {
        Extractor {
            opts,
            unpriv: crate::fs::unpriv::needed(),
            ..Default::default()
        }
    }

    /// Unprivileged: open up the restricted directories of earlier layers
    /// again (parents first) before this layer puts entries beneath them.
    fn open_restricted(&self, root: &Root) {
        for (p, mode) in &self.restricted {
            set_mode(root, p.as_ref(), *mode, true);
        }
    }

    /// Unprivileged: open up (and record) every directory on the way to
    /// `dir` (itself included) that its owner cannot search or write, when
    /// it was not this extractor that made it so: a rootfs extracted over
    /// (`raw unpack`), a tree a layer store copied. Each directory is
    /// checked once per layer.
    fn open_up(&mut self, root: &Root, dir: &BStr, st: &mut LayerState) {
        if !self.unpriv || st.usable.contains(dir) {
            return;
        }
        let usable = root
            .open_at(dir, OFlags::RDONLY | OFlags::DIRECTORY)
            .is_ok_and(|fd| {
                rustix::fs::accessat(
                    &fd,
                    ".",
                    rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
                    AtFlags::EACCESS,
                )
                .is_ok()
            });
        if usable {
            st.usable.insert(dir.to_owned());
            return;
        }
        if matches!(root.open_dir(dir), Err(Errno::NOENT) | Err(Errno::NOTDIR)) {
            return;
        }
        let uid = rustix::process::geteuid().as_raw();
        for (parent_path, comp, at) in components(dir) {
            let Ok(parent) = root.open_dir(parent_path.as_ref()) else {
                return;
            };
            let comp: &[u8] = comp;
            let Ok(st) = rustix::fs::statat(&parent, comp, AtFlags::SYMLINK_NOFOLLOW) else {
                return;
            };
            let mode = st.st_mode & 0o7777;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory
                && st.st_uid == uid
                && mode & 0o700 != 0o700
                && rustix::fs::chmodat(
                    &parent,
                    comp,
                    Mode::from_raw_mode(mode | 0o700),
                    AtFlags::empty(),
                )
                .is_ok()
            {
                self.restricted.entry(at).or_insert(mode);
            }
        }
        st.usable.insert(dir.to_owned());
    }

    /// Unprivileged, in a layer store: leave restricted directories open
    /// (`u+rwx`) at the end of each layer; [`Self::restricted`] says what
    /// their modes are, for [`Self::close_restricted`] on the copy.
    pub fn keep_restricted_open(&mut self, on: bool) {
        self.keep_open = on && self.unpriv;
    }

    /// Directories kept open for their unprivileged owner, with their real
    /// modes (empty as root).
    pub fn restricted(&self) -> &BTreeMap<BString, u32> {
        &self.restricted
    }

    /// Take over the restricted directories of a tree extracted earlier
    /// (from a layer store's record).
    pub fn set_restricted(&mut self, dirs: BTreeMap<BString, u32>) {
        if self.unpriv {
            self.restricted = dirs;
        }
    }

    /// Unprivileged: give the restricted directories their real modes
    /// (deepest first): at the end of a layer, or on a copy of a store's
    /// tree.
    pub fn close_restricted(&self, root: &Root) {
        close_modes(root, &self.restricted);
    }

    /// The options.
    pub fn options(&self) -> &ExtractOptions {
        &self.opts
    }

    /// overlayfs form: the lower layers (topmost first) of the next layer
    /// to extract, looked up for copy-ups.
    pub fn set_lower(&mut self, lower: Lower) {
        self.lower = Some(lower);
    }

    /// The overlay xattr prefix in overlayfs form, else `None`.
    fn overlay_prefix(&self) -> Option<&'static str> {
        match self.opts.whiteout {
            WhiteoutMode::Overlay { xattr_prefix } => Some(xattr_prefix),
            WhiteoutMode::Apply => None,
        }
    }

    /// Apply one uncompressed layer (a tar stream) to `root`.
    pub fn apply_layer(&mut self, root: &Root, layer: impl BufRead) -> Result<(), ExtractError> {
        let mut archive = tarread::Reader::new(layer);
        let fresh = matches!(self.opts.whiteout, WhiteoutMode::Apply)
            && self.lower.is_none()
            && root.open_dir(b"".into()).is_ok_and(is_empty_dir);
        let mut st = LayerState {
            fresh,
            upper: HashSet::new(),
            dir_times: BTreeMap::new(),
            dir_headers: BTreeMap::new(),
            usable: HashSet::new(),
            parent: None,
        };
        self.open_restricted(root);
        let res = self.apply_entries(root, &mut archive, &mut st);
        if res.is_ok() {
            self.restore_dir_times(root, &st);
        }
        // the real modes (a chmod keeps the times), also when the layer
        // failed: a partial tree keeps them, its removal grants what it needs
        if !self.keep_open {
            self.close_restricted(root);
        }
        res
    }

    fn apply_entries<R: BufRead>(
        &mut self,
        root: &Root,
        archive: &mut tarread::Reader<R>,
        st: &mut LayerState,
    ) -> Result<(), ExtractError> {
        while let Some(hdr) = archive.next_header().map_err(ExtractError::Tar)? {
            self.apply_entry(root, archive, hdr, st)?;
        }
        Ok(())
    }

    /// Restore directory times, deepest first.
    fn restore_dir_times(&self, root: &Root, st: &LayerState) {
        let mut dirs: Vec<(&BString, Timestamps)> = st
            .dir_times
            .iter()
            .map(|(p, t)| {
                (
                    p,
                    st.dir_headers.get(p).map_or_else(|| clone_ts(t), clone_ts),
                )
            })
            .collect();
        for (p, t) in st.dir_headers.iter() {
            if !st.dir_times.contains_key(p) {
                dirs.push((p, clone_ts(t)));
            }
        }
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(path::depth(p)));
        for (p, t) in dirs {
            if let Ok(fd) = root.open_at(p.as_ref(), OFlags::RDONLY | OFlags::DIRECTORY) {
                let _ = rustix::fs::futimens(&fd, &t);
            }
        }
    }

    /// Drop the digests recorded for `path` and everything beneath it.
    fn forget(&mut self, path: &BStr) {
        if !self.restricted.is_empty() {
            self.restricted.retain(|p, _| !path::is_within(p, path));
        }
        if path.is_empty() {
            self.digests.clear();
            return;
        }
        self.digests.remove(path);
        let prefix = path::join(path, b"");
        let doomed: Vec<BString> = self
            .digests
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(prefix.as_slice()))
            .map(|(p, _)| p.clone())
            .collect();
        for p in doomed {
            self.digests.remove(&p);
        }
    }

    fn apply_entry<R: BufRead>(
        &mut self,
        root: &Root,
        archive: &mut tarread::Reader<R>,
        mut hdr: Header,
        st: &mut LayerState,
    ) -> Result<(), ExtractError> {
        let kind = hdr.kind;
        if kind == Kind::Global {
            // PAX global records apply to nothing (Go returns the header
            // and extractors skip it)
            return Ok(());
        }
        let path = path::clean(&hdr.path);
        let (dir, name) = split_parent(path.as_ref());

        // whiteouts
        if let Some(target) = name.strip_prefix(b".wh.") {
            let target = target.as_bstr();
            if let Some(prefix) = self.overlay_prefix() {
                st.parent = None;
                return self.overlay_whiteout(root, dir, target, path.as_ref(), st, prefix);
            }
            st.parent = None;
            return self.whiteout(root, dir, target, path.as_ref(), st);
        }
        let overlay = self.overlay_prefix();

        // xattrs and precise times (from PAX records)
        let mut xattrs = std::mem::take(&mut hdr.xattrs);
        if overlay.is_some() {
            xattrs.retain(|x, _| {
                let drop = ov::is_overlay_xattr(x);
                if drop {
                    tracing::warn!("{path}: ignoring overlayfs xattr {x} found in the layer");
                }
                !drop
            });
        }
        let mtime = hdr.mtime;
        let atime = hdr.atime.unwrap_or(mtime);
        let times = Timestamps {
            last_access: ts(atime.0, atime.1),
            last_modification: ts(mtime.0, mtime.1),
        };

        if path.is_empty() {
            if kind != Kind::Dir {
                return Err(entry_err(
                    &hdr.path,
                    "malicious tar entry -- refusing to change type of root directory",
                ));
            }
            let fd = root
                .open_at(b"".into(), OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| entry_err("/", e))?;
            self.apply_meta(&fd, None, b"/".into(), &hdr, &xattrs, true)?;
            st.dir_headers.insert(BString::from(""), times);
            st.add_upper(b"".into());
            return Ok(());
        }

        if let Kind::Other(flag) = kind {
            return Err(entry_err(
                &path,
                format!("unknown typeflag {:?}", flag as char),
            ));
        }
        if overlay.is_some() {
            self.copy_up_parents(root, dir, st)?;
        }
        self.open_up(root, dir, st);
        let parent = if overlay.is_some() {
            // copy-up changes the tree beneath the parents: resolved anew
            st.parent = None;
            entry_parent(root, dir, st).map(Rc::new)
        } else {
            cached_parent(root, dir, st)
        }
        .map_err(|e| entry_err(&path, format!("cannot create parent directory: {e}")))?;

        // a regular file is created first (the common case: nothing is
        // there), and the way cleared only if something is
        let made = match kind {
            Kind::Regular => match create_file(&parent, name, Mode::from_raw_mode(0o600)) {
                Ok(fd) => Some(fd),
                Err(Errno::EXIST) => None,
                Err(e) => return Err(entry_err(&path, e)),
            },
            _ => None,
        };
        let make_opaque = if made.is_some() {
            false
        } else {
            match self.clear_way(root, &parent, name, path.as_ref(), kind, st)? {
                Way::Clear { make_opaque } => make_opaque,
                Way::KeptDirlink => return Ok(()),
            }
        };

        let e = Put {
            hdr: &hdr,
            path: path.as_ref(),
            name,
            parent: &parent,
            xattrs: &xattrs,
            times: &times,
        };
        match kind {
            Kind::Dir => self.put_dir(root, &e, make_opaque, st)?,
            Kind::Regular => self.put_file(archive, &e, made)?,
            Kind::Symlink => self.put_symlink(&e)?,
            Kind::Link => self.put_hardlink(root, &e, st)?,
            Kind::Char | Kind::Block | Kind::Fifo => self.put_node(&e)?,
            // refused (or skipped) above, before anything changed
            Kind::Global | Kind::Other(_) => return Ok(()),
        }
        st.add_upper(path.as_ref());
        Ok(())
    }

    /// Clear the way for entry `path` (`name` in `parent`): remove what is
    /// there, unless both are directories (or, with `keep_dirlinks`, a
    /// directory entry meets a symlink resolving to a directory inside
    /// the root, which stays).
    fn clear_way(
        &mut self,
        root: &Root,
        parent: &OwnedFd,
        name: &BStr,
        path: &BStr,
        kind: Kind,
        st: &mut LayerState,
    ) -> Result<Way, ExtractError> {
        let Ok(ex) = rustix::fs::statat(parent, name.as_bytes(), AtFlags::SYMLINK_NOFOLLOW) else {
            return Ok(Way::Clear { make_opaque: false });
        };
        // overlayfs form: a directory replacing this layer's own whiteout
        // hides what lower layers have beneath it, as in one shared tree
        let make_opaque = self.overlay_prefix().is_some() && ov::is_whiteout(&ex);
        let ex_type = FileType::from_raw_mode(ex.st_mode);
        match kind {
            Kind::Dir if ex_type == FileType::Directory => {
                return Ok(Way::Clear { make_opaque });
            }
            Kind::Dir
                if self.opts.keep_dirlinks
                    && ex_type == FileType::Symlink
                    && root.open_dir(path).is_ok() =>
            {
                st.add_upper(path);
                return Ok(Way::KeptDirlink);
            }
            _ => {}
        }
        st.parent = None;
        remove_all_at(parent, name.as_bytes()).map_err(|e| entry_err(path, e))?;
        if ex_type == FileType::Directory {
            self.forget(path);
        } else {
            self.digests.remove(path);
            self.restricted.remove(path);
        }
        Ok(Way::Clear { make_opaque })
    }

    /// A directory: made if missing (an existing one keeps its content),
    /// then its metadata; in overlayfs form, made opaque where it replaces
    /// this layer's own whiteout.
    fn put_dir(
        &mut self,
        root: &Root,
        e: &Put<'_>,
        make_opaque: bool,
        st: &mut LayerState,
    ) -> Result<(), ExtractError> {
        match rustix::fs::mkdirat(e.parent, e.name.as_bytes(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(err) => return Err(entry_err(e.path, err)),
        }
        self.open_up(root, e.path, st);
        let fd =
            ov::open_dir_at(e.parent, e.name.as_bytes()).map_err(|err| entry_err(e.path, err))?;
        self.apply_meta(&fd, None, e.path, e.hdr, e.xattrs, true)?;
        if make_opaque && let Some(prefix) = self.overlay_prefix() {
            ov::set_opaque(&fd, prefix)
                .map_err(|err| entry_err(e.path, format!("set {prefix}opaque: {err}")))?;
        }
        st.dir_headers.insert(e.path.to_owned(), clone_ts(e.times));
        Ok(())
    }

    /// A regular file (`made`: already created, empty, by the caller): its
    /// data written and hashed as it passes (a sparse member's at its
    /// offsets, holes left unwritten), then its metadata.
    fn put_file<R: BufRead>(
        &mut self,
        archive: &mut tarread::Reader<R>,
        e: &Put<'_>,
        made: Option<OwnedFd>,
    ) -> Result<(), ExtractError> {
        let path = e.path;
        let fd = match made {
            Some(fd) => fd,
            None => create_file(e.parent, e.name, Mode::from_raw_mode(0o600))
                .map_err(|err| entry_err(path, err))?,
        };
        let mut file = File::from(fd);
        let size = e.hdr.size;
        let mut data = archive.data();
        let digest = if let Some(segments) = &e.hdr.sparse {
            tarread::sparse::write_out(&mut data, &file, segments, size).map_err(
                |err| match err {
                    tarread::sparse::CopyError::Read(err) => ExtractError::Tar(TarError::Io(err)),
                    tarread::sparse::CopyError::Write(err) => entry_err(path, err),
                },
            )?
        } else {
            // hashed and written from where the stream holds the bytes
            let mut hasher = sha2::Sha256::new();
            // (a stream that ends early is a read error: the size is met)
            data.each_slice(
                |err| ExtractError::Tar(TarError::Io(err)),
                |bytes| {
                    hasher.update(bytes);
                    file.write_all(bytes).map_err(|err| entry_err(path, err))
                },
            )?;
            hasher.finalize().into()
        };
        let fd = OwnedFd::from(file);
        self.apply_meta(&fd, None, path, e.hdr, e.xattrs, false)?;
        rustix::fs::futimens(&fd, e.times).map_err(|err| entry_err(path, err))?;
        self.digests.insert(path.to_owned(), digest);
        Ok(())
    }

    /// A symbolic link (its target as written: it is never followed).
    fn put_symlink(&mut self, e: &Put<'_>) -> Result<(), ExtractError> {
        rustix::fs::symlinkat(e.hdr.link.as_slice(), e.parent, e.name.as_bytes())
            .map_err(|err| entry_err(e.path, err))?;
        self.apply_meta(
            e.parent,
            Some(e.name),
            e.path,
            e.hdr,
            &BTreeMap::new(),
            false,
        )?;
        rustix::fs::utimensat(
            e.parent,
            e.name.as_bytes(),
            e.times,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|err| entry_err(e.path, err))
    }

    /// A hard link to an entry already in the tree (copied up first in
    /// overlayfs form); it shares the target's digest.
    fn put_hardlink(
        &mut self,
        root: &Root,
        e: &Put<'_>,
        st: &mut LayerState,
    ) -> Result<(), ExtractError> {
        let path = e.path;
        let target = path::clean(&e.hdr.link);
        if target.is_empty() {
            return Err(entry_err(path, "hardlink to the root directory"));
        }
        let (tdir, tname) = split_parent(target.as_ref());
        if self.overlay_prefix().is_some() {
            self.copy_up_link_target(root, target.as_ref(), st)?;
        }
        self.open_up(root, tdir, st);
        let tparent = root
            .open_dir(tdir)
            .map_err(|err| entry_err(path, format!("hardlink target {target}: {err}")))?;
        rustix::fs::linkat(
            &tparent,
            tname.as_bytes(),
            e.parent,
            e.name.as_bytes(),
            AtFlags::empty(),
        )
        .map_err(|err| entry_err(path, format!("hardlink to {target}: {err}")))?;
        if let Some(d) = self.digests.get(&target).copied() {
            self.digests.insert(path.to_owned(), d);
        }
        Ok(())
    }

    /// A device or fifo; rootless, a device becomes an empty file with
    /// its owner recorded.
    fn put_node(&mut self, e: &Put<'_>) -> Result<(), ExtractError> {
        let (path, name, kind) = (e.path, e.name, e.hdr.kind);
        let perm = Mode::from_raw_mode((e.hdr.mode & 0o7777) as u32);
        if kind != Kind::Fifo && self.opts.rootless {
            tracing::warn!("{path}: rootless unpack cannot create devices; creating an empty file");
            let fd =
                create_file(e.parent, name, Mode::empty()).map_err(|err| entry_err(path, err))?;
            self.apply_rootless_owner(&fd, path, e.hdr)?;
            rustix::fs::fchmod(&fd, perm).map_err(|err| entry_err(path, err))?;
            rustix::fs::futimens(&fd, e.times).map_err(|err| entry_err(path, err))?;
            self.digests
                .insert(path.to_owned(), sha2::Sha256::digest([]).into());
            return Ok(());
        }
        let (ft, dev) = match kind {
            Kind::Char => (FileType::CharacterDevice, self.dev(e.hdr, path)?),
            Kind::Block => (FileType::BlockDevice, self.dev(e.hdr, path)?),
            _ => (FileType::Fifo, 0),
        };
        if self.overlay_prefix().is_some() && kind == Kind::Char && dev == 0 {
            return Err(entry_err(
                path,
                "a character device 0:0 cannot be kept in overlayfs form (it would read as a whiteout)",
            ));
        }
        rustix::fs::mknodat(e.parent, name.as_bytes(), ft, perm, dev)
            .map_err(|err| entry_err(path, err))?;
        self.apply_meta_path(e.parent, name, path, e.hdr, e.xattrs)?;
        rustix::fs::utimensat(
            e.parent,
            name.as_bytes(),
            e.times,
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|err| entry_err(path, err))
    }

    fn whiteout(
        &mut self,
        root: &Root,
        dir: &BStr,
        target: &BStr,
        path: &BStr,
        st: &mut LayerState,
    ) -> Result<(), ExtractError> {
        self.open_up(root, dir, st);
        let parent = match root.open_dir(dir) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
            Err(e) => return Err(entry_err(path, e)),
        };
        st.remember(dir, &parent);
        if target == ".wh..opq" {
            // opaque: keep the directory, drop what lower layers put in it
            let prefix = if dir.is_empty() {
                BString::from("")
            } else {
                path::join(dir, b"")
            };
            return self.drop_lower(&parent, b".".as_bstr(), prefix.as_ref(), path, st);
        }
        let full = whiteout_path(dir, target, path)?;
        if st.in_upper(full.as_ref()) {
            // this layer wrote (beneath) it: only remove what lower layers had
            return self.drop_lower(&parent, target, path::join(&full, b"").as_ref(), path, st);
        }
        remove_all_at(&parent, target.as_bytes()).map_err(|e| entry_err(path, e))?;
        self.forget(full.as_ref());
        Ok(())
    }

    /// Empty the directory `name` in `parent` (its children's paths start
    /// with `prefix`) of everything this layer did not write (entry `path`).
    fn drop_lower(
        &mut self,
        parent: &OwnedFd,
        name: &BStr,
        prefix: &BStr,
        path: &BStr,
        st: &LayerState,
    ) -> Result<(), ExtractError> {
        let mut removed = Vec::new();
        empty_dir_at(parent, name.as_bytes(), &mut |child| {
            let mut full = prefix.to_owned();
            full.push_str(child);
            let keep = st.in_upper(full.as_ref());
            if !keep {
                removed.push(full);
            }
            keep
        })
        .map_err(|e| entry_err(path, e))?;
        for r in removed {
            self.forget(r.as_ref());
        }
        Ok(())
    }
}

/// Give the directories and files `modes` (paths of `root`, with the real
/// modes their unprivileged owner was kept out by) those modes, deepest
/// first: at the end of a layer, or on a copy of a layer store's tree
/// (which keeps them open, see [`Extractor::keep_restricted_open`]).
pub fn close_modes(root: &Root, modes: &BTreeMap<BString, u32>) {
    for (p, mode) in modes.iter().rev() {
        set_mode(root, p.as_ref(), *mode, false);
    }
}

/// Set the mode of the directory or regular file `path` of `root` (never
/// through a symlink) to `mode`, or with `open` to `mode` plus what its
/// owner needs to work in it (`u+rwx` for a directory, `u+r` for a file).
/// Best effort: an entry that went away has nothing to fix.
fn set_mode(root: &Root, path: &BStr, mode: u32, open: bool) {
    let (dir, name) = split_parent(path);
    let Ok(parent) = root.open_dir(dir) else {
        return;
    };
    let Ok(st) = rustix::fs::statat(&parent, name.as_bytes(), AtFlags::SYMLINK_NOFOLLOW) else {
        return;
    };
    let mode = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory if open => mode | 0o700,
        FileType::RegularFile if open => mode | 0o400,
        FileType::Directory | FileType::RegularFile => mode,
        _ => return,
    };
    let _ = rustix::fs::chmodat(
        &parent,
        name.as_bytes(),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    );
}

fn clone_ts(t: &Timestamps) -> Timestamps {
    Timestamps {
        last_access: t.last_access,
        last_modification: t.last_modification,
    }
}

fn fd_num(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

impl crate::layer::extract::ExtractError {
    /// What kind of failure this is: a layer that cannot be read or
    /// applied is invalid input.
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            crate::layer::extract::ExtractError::Tar(crate::layer::tarread::TarError::Io(e))
                if !matches!(
                    crate::error::ErrorKind::of_io(e),
                    crate::error::ErrorKind::InvalidInput | crate::error::ErrorKind::Io
                ) =>
            {
                crate::error::ErrorKind::of_io(e)
            }
            _ => crate::error::ErrorKind::InvalidInput,
        }
    }
}

rumoci_core::wraps!(crate::layer::extract::ExtractError);
