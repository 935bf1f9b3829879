//! Filesystem → tar: the deterministic layer writer used by `repack` and
//! `insert`.
//!
//! Output is reproducible: one header format (ustar, with PAX records only
//! where ustar cannot say it — long names, xattrs, large ids or sizes),
//! empty user and group names, mtimes truncated to whole seconds and clamped
//! to `SOURCE_DATE_EPOCH` when set, xattrs in name order. The caller decides
//! the entry order (sorted).

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use tar::{EntryType, Header};

use super::idmap::OwnerFn;
use crate::path::{self, BStr, BString, ByteSlice, ByteVec};

/// The xattr rootless unpack uses to remember the container owner.
pub const ROOTLESS_XATTR: &str = "user.rootlesscontainers";

/// Errors while generating a layer.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// An I/O error on a path.
    #[error("{}: {source}", crate::show::name(path))]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A file in the tree cannot be represented in a layer.
    #[error("{}: {reason}", crate::show::name(path))]
    Invalid {
        /// The archive path.
        path: BString,
        /// Why.
        reason: String,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Options of the generator.
#[derive(Default)]
pub struct GenerateOptions {
    /// Owner mapping; `None` records host ids unchanged.
    pub owner: Option<Box<OwnerFn>>,
    /// Clamp mtimes to this (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<i64>,
    /// Unprivileged: the tree's directories opened up for their owner
    /// while the layer is written ([`crate::fs::unpriv::TreeGrant`]); headers
    /// carry their original modes.
    pub grant: Option<crate::fs::unpriv::TreeGrant>,
}

/// Writes a layer tar entry by entry.
pub struct TarGenerator<W: Write> {
    out: tar::Builder<W>,
    opts: GenerateOptions,
    /// First archive name seen for each (device, inode) with nlink > 1.
    hardlinks: HashMap<(u64, u64), BString>,
    /// The tree entries are read from, once [`TarGenerator::read_beneath`]
    /// named it.
    beneath: Option<Beneath>,
}

/// A tree the generator reads entries from through descriptors: each
/// entry's parent directory is opened beneath the tree's root without
/// following a symlink, and the entry is reached by name in it.
struct Beneath {
    root: PathBuf,
    fd: OwnedFd,
    /// The parent directory of the last entry read (relative to `root`),
    /// reused for its siblings.
    parent: Option<(PathBuf, OwnedFd)>,
}

/// Whether a base name is a whiteout name (files with such names cannot be
/// put in a layer: they would be read back as whiteouts).
pub fn is_whiteout_name(name: &[u8]) -> bool {
    path::base_name(name.as_bstr()).starts_with(b".wh.")
}

/// A reader that fails unless it yields exactly `left` bytes (a file that
/// shrinks while being archived would otherwise corrupt the tar).
struct Exact<R> {
    inner: R,
    left: u64,
    path: String,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: file shrank while being archived", self.path),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The xattrs a layer carries of the entry at `path` (named `host` in
/// errors).
fn read_xattrs(path: &Path, host: &Path) -> Result<BTreeMap<String, Vec<u8>>, GenerateError> {
    use crate::fs::xattr;
    // overlayfs' own bookkeeping (origin, impure, opaque, …) is never image
    // content
    xattr::read_all(xattr::Node::Path(path), |n| {
        crate::fs::xattr::FORBIDDEN.contains(&n) || super::overlayfs::is_overlay_xattr(n)
    })
    .map_err(|e| io_at(host)(e.into()))
}

/// A PAX time record's value: seconds, and the fraction without trailing
/// zeros.
fn pax_time(secs: i64, nanos: u32) -> String {
    if nanos == 0 {
        return secs.to_string();
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    if secs < 0 {
        // -1.5 s is written as "-1.5": seconds then fraction, both negative
        let (s, n) = (secs + 1, 1_000_000_000 - nanos);
        let f = format!("{n:09}");
        return format!("-{}.{}", s.unsigned_abs(), f.trim_end_matches('0'));
    }
    format!("{secs}.{frac}")
}

/// Largest value an octal ustar numeric field of `width` bytes can hold.
fn fits_octal(v: u64, width: u32) -> bool {
    v < 8u64.pow(width - 1)
}

impl<W: Write> TarGenerator<W> {
    /// A generator writing to `out`.
    pub fn new(out: W, opts: GenerateOptions) -> Self {
        let mut b = tar::Builder::new(out);
        b.mode(tar::HeaderMode::Complete);
        b.follow_symlinks(false);
        TarGenerator {
            out: b,
            opts,
            hardlinks: HashMap::new(),
            beneath: None,
        }
    }

    /// Read every later entry whose host path lies beneath the directory
    /// `root` through its parent directory, opened beneath `root` without
    /// following a symlink (`openat2` with `RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS`), and then by name, never following it. A
    /// directory of the tree replaced by a symlink while the layer is
    /// written (by a process still running in a bundle's rootfs) makes that
    /// entry fail instead of putting what lies outside the tree into the
    /// layer.
    pub fn read_beneath(&mut self, root: &Path) -> Result<(), GenerateError> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_at(root)(e.into()))?;
        self.beneath = Some(Beneath {
            root: root.to_path_buf(),
            fd,
            parent: None,
        });
        Ok(())
    }

    /// The path through which the entry at `host` is read: with
    /// [`Self::read_beneath`], `/proc/self/fd/<parent>/<name>` of its
    /// parent opened beneath the root (the descriptor's magic link is
    /// followed, the name never is); else `host` itself.
    fn pin(&mut self, host: &Path) -> Result<PathBuf, GenerateError> {
        let Some(b) = self.beneath.as_mut() else {
            return Ok(host.to_path_buf());
        };
        let Ok(rel) = host.strip_prefix(&b.root) else {
            return Ok(host.to_path_buf());
        };
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            // the root itself, as the caller named it (an `lstat` of a
            // descriptor's magic link would see the link)
            return Ok(host.to_path_buf());
        };
        let dir = if parent.as_os_str().is_empty() {
            b.fd.as_fd()
        } else {
            if b.parent.as_ref().is_none_or(|(r, _)| r != parent) {
                let fd = crate::fs::root::open_dir_beneath(&b.fd, parent).map_err(|e| {
                    let reason = match e {
                        Errno::LOOP | Errno::XDEV => format!(
                            "{}: a directory above it is a symlink now (changed while the layer was written?)",
                            parent.display()
                        ),
                        e => format!("{}: {e}", parent.display()),
                    };
                    io_at(host)(io::Error::other(reason))
                })?;
                b.parent = Some((parent.to_path_buf(), fd));
            }
            match &b.parent {
                Some((_, fd)) => fd.as_fd(),
                None => b.fd.as_fd(),
            }
        };
        Ok(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name))
    }

    fn clamp(&self, mtime: i64) -> u64 {
        let t = match self.opts.clamp_mtime {
            Some(max) if mtime > max => max,
            _ => mtime,
        };
        u64::try_from(t).unwrap_or(0)
    }

    /// Write one header (+ PAX records where needed) and its content.
    fn emit(
        &mut self,
        name: &BStr,
        header: Header,
        link: Option<&[u8]>,
        xattrs: &BTreeMap<String, Vec<u8>>,
        data: &mut dyn Read,
    ) -> Result<(), GenerateError> {
        self.emit_with(name, header, link, Vec::new(), xattrs, data)
    }

    /// [`Self::emit`] with PAX records of its own (`extra`, before the
    /// name's and the xattrs').
    fn emit_with(
        &mut self,
        name: &BStr,
        mut header: Header,
        link: Option<&[u8]>,
        extra: Vec<(String, Vec<u8>)>,
        xattrs: &BTreeMap<String, Vec<u8>>,
        data: &mut dyn Read,
    ) -> Result<(), GenerateError> {
        let mut pax: Vec<(String, Vec<u8>)> = extra;
        let nb: &[u8] = name;
        {
            let h = header
                .as_ustar_mut()
                .ok_or_else(|| GenerateError::Invalid {
                    path: name.to_owned(),
                    reason: "internal: not a ustar header".into(),
                })?;
            let n = nb.len().min(100);
            h.name = [0; 100];
            h.name[..n].copy_from_slice(&nb[..n]);
        }
        // as Go's archive/tar (the Go umoci's writer): a name that is
        // longer than the ustar field or not ASCII goes in a PAX record too,
        // raw bytes and all
        if nb.len() > 100 || !nb.is_ascii() {
            pax.push(("path".into(), nb.to_vec()));
        }
        if let Some(lb) = link {
            let h = header.as_old_mut();
            let n = lb.len().min(100);
            h.linkname = [0; 100];
            h.linkname[..n].copy_from_slice(&lb[..n]);
            if lb.len() > 100 || !lb.is_ascii() {
                pax.push(("linkpath".into(), lb.to_vec()));
            }
        }
        for (k, v) in xattrs {
            if v.is_empty() {
                tracing::warn!("{name}: skipping empty xattr {k} (disallowed by PAX)");
                continue;
            }
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        if !pax.is_empty() {
            self.out
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(|e| GenerateError::Io {
                    path: name.to_string(),
                    source: e,
                })?;
        }
        header.set_cksum();
        self.out
            .append(&header, data)
            .map_err(|e| GenerateError::Io {
                path: name.to_string(),
                source: e,
            })
    }

    fn base_header(
        &self,
        name: &BStr,
        host: &Path,
        md: &Metadata,
        xattrs: &mut BTreeMap<String, Vec<u8>>,
    ) -> Result<Header, GenerateError> {
        let rootless = xattrs.remove(ROOTLESS_XATTR);
        let (uid, gid) = match &self.opts.owner {
            Some(f) => f(md.uid(), md.gid(), rootless.as_deref()).map_err(|reason| {
                GenerateError::Invalid {
                    path: name.to_owned(),
                    reason: reason.0,
                }
            })?,
            None => {
                if rootless.is_some() {
                    tracing::warn!("{name}: ignoring {ROOTLESS_XATTR} (not a rootless bundle)");
                }
                (md.uid(), md.gid())
            }
        };
        if !fits_octal(u64::from(uid), 8) || !fits_octal(u64::from(gid), 8) {
            return Err(GenerateError::Invalid {
                path: name.to_owned(),
                reason: format!("owner {uid}:{gid} too large for a ustar header"),
            });
        }
        let mut h = Header::new_ustar();
        h.set_mode(crate::fs::unpriv::mode_of(
            self.opts.grant.as_ref().map(|g| g.modes()),
            host,
            md,
        ));
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(self.clamp(md.mtime()));
        h.set_size(0);
        let _ = h.set_username("");
        let _ = h.set_groupname("");
        Ok(h)
    }

    /// Add the file at `host` under the archive name `name` (relative,
    /// `/`-separated). Directories are added as a header only.
    pub fn add_path(&mut self, name: &BStr, host: &Path) -> Result<(), GenerateError> {
        if is_whiteout_name(name) {
            return Err(GenerateError::Invalid {
                path: name.to_owned(),
                reason: "invalid path has whiteout prefix \".wh.\"".into(),
            });
        }
        let p = self.pin(host)?;
        let md = std::fs::symlink_metadata(&p).map_err(io_at(host))?;
        let ft = md.file_type();
        let mut xattrs = if ft.is_symlink() {
            BTreeMap::new()
        } else {
            crate::fs::unpriv::with_read(&p, &md, || Ok(read_xattrs(&p, host)))
                .map_err(io_at(host))??
        };
        let mut h = self.base_header(name, host, &md, &mut xattrs)?;
        let key = (md.dev(), md.ino());
        if !ft.is_dir() && md.nlink() > 1 {
            if let Some(first) = self.hardlinks.get(&key).cloned() {
                h.set_entry_type(EntryType::Link);
                return self.emit(name, h, Some(&first), &BTreeMap::new(), &mut io::empty());
            }
            self.hardlinks.insert(key, name.to_owned());
        }
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            let mut dname = BString::from(name.trim_end_with(|c| c == '/'));
            dname.push_byte(b'/');
            self.emit(dname.as_ref(), h, None, &xattrs, &mut io::empty())
        } else if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let target = std::fs::read_link(&p).map_err(io_at(host))?;
            let target = path::bytes(target.as_os_str());
            self.emit(name, h, Some(target), &xattrs, &mut io::empty())
        } else if ft.is_file() {
            h.set_entry_type(EntryType::Regular);
            let size = md.size();
            if !fits_octal(size, 12) {
                return Err(GenerateError::Invalid {
                    path: name.to_owned(),
                    reason: format!("{size} bytes is too large for a ustar header"),
                });
            }
            h.set_size(size);
            let f = crate::fs::unpriv::read_file(&p).map_err(io_at(host))?;
            let mut data = Exact {
                inner: f,
                left: size,
                path: host.display().to_string(),
            };
            self.emit(name, h, None, &xattrs, &mut data)
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            });
            if !ft.is_fifo() {
                let rdev = md.rdev();
                let _ = h.set_device_major(rustix::fs::major(rdev));
                let _ = h.set_device_minor(rustix::fs::minor(rdev));
            }
            self.emit(name, h, None, &xattrs, &mut io::empty())
        } else {
            tracing::warn!("{name}: skipping socket");
            Ok(())
        }
    }

    /// Add a whiteout for `name` (`dir/.wh.base`).
    pub fn add_whiteout(&mut self, name: &BStr) -> Result<(), GenerateError> {
        let name = name.trim_end_with(|c| c == '/').as_bstr();
        if is_whiteout_name(name) {
            return Err(GenerateError::Invalid {
                path: name.to_owned(),
                reason: "cannot white out a whiteout".into(),
            });
        }
        let (dir, base) = path::split_parent(name);
        let mut wh = BString::from(".wh.");
        wh.push_str(base);
        self.add_marker(path::join(dir, &wh).as_ref())
    }

    /// Add an opaque whiteout for the directory `dir` (`dir/.wh..wh..opq`).
    pub fn add_opaque_whiteout(&mut self, dir: &BStr) -> Result<(), GenerateError> {
        let dir = dir.trim_end_with(|c| c == '/');
        let dir: &[u8] = if dir == b"." { b"" } else { dir };
        self.add_marker(path::join(dir, b".wh..wh..opq").as_ref())
    }

    fn add_marker(&mut self, name: &BStr) -> Result<(), GenerateError> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        self.emit(name, h, None, &BTreeMap::new(), &mut io::empty())
    }

    /// Copy a member read by [`crate::layer::tarread`] under the archive
    /// name `name` (clean, relative; the root is the empty name): its type,
    /// mode, owner, times (whole seconds in the header, a PAX `mtime` or
    /// `atime` record for sub-second or negative ones; clamped like the
    /// rest when a clamp is set), device numbers, link target and xattrs,
    /// then `data` for a regular file (exactly `hdr.size` bytes: a sparse
    /// member's real content, holes included). With `link_to`, a hard link
    /// to that archive name is written instead (with the member's
    /// metadata, which extractors ignore). Owners that do not fit a ustar
    /// field go in PAX records, as Go's `archive/tar` writes them; a name
    /// or link target that is not UTF-8 gets a PAX `hdrcharset=BINARY`
    /// record besides its `path`/`linkpath` (POSIX's way to say so, which
    /// bsdtar needs).
    pub fn add_entry(
        &mut self,
        name: &BStr,
        hdr: &crate::layer::tarread::Header,
        link_to: Option<&BStr>,
        data: &mut dyn Read,
    ) -> Result<(), GenerateError> {
        use crate::layer::tarread::Kind;
        let invalid = |reason: String| GenerateError::Invalid {
            path: name.to_owned(),
            reason,
        };
        let mut extra: Vec<(String, Vec<u8>)> = Vec::new();
        let mut h = Header::new_ustar();
        h.set_mode((hdr.mode & 0o7777) as u32);
        for (key, v) in [("uid", hdr.uid), ("gid", hdr.gid)] {
            let v = u64::try_from(v).map_err(|_| invalid(format!("negative {key} {v}")))?;
            let field = if fits_octal(v, 8) {
                v
            } else {
                extra.push((key.into(), v.to_string().into_bytes()));
                0
            };
            if key == "uid" {
                h.set_uid(field);
            } else {
                h.set_gid(field);
            }
        }
        let (mut secs, mut nanos) = hdr.mtime;
        if let Some(max) = self.opts.clamp_mtime
            && secs >= max
            && (secs, nanos) != (max, 0)
        {
            (secs, nanos) = (max, 0);
        }
        if secs < 0 || nanos != 0 {
            extra.push(("mtime".into(), pax_time(secs, nanos).into_bytes()));
        }
        h.set_mtime(u64::try_from(secs).unwrap_or(0));
        if let Some((s, n)) = hdr.atime
            && (s, n) != (secs, nanos)
            && self.opts.clamp_mtime.is_none()
        {
            extra.push(("atime".into(), pax_time(s, n).into_bytes()));
        }
        h.set_size(0);
        let _ = h.set_username("");
        let _ = h.set_groupname("");
        let root = name.is_empty();
        // raw bytes in a name or link target: say so, as GNU tar and
        // libarchive do (bsdtar otherwise refuses to convert the name;
        // Go's reader ignores the record)
        let link_bytes: &[u8] = match (link_to, hdr.kind) {
            (Some(t), _) => t,
            (None, Kind::Symlink) => &hdr.link,
            _ => b"",
        };
        if !name.is_utf8() || !link_bytes.is_utf8() {
            extra.push(("hdrcharset".into(), b"BINARY".to_vec()));
        }
        if let Some(target) = link_to {
            h.set_entry_type(EntryType::Link);
            return self.emit_with(
                name,
                h,
                Some(target),
                extra,
                &BTreeMap::new(),
                &mut io::empty(),
            );
        }
        match hdr.kind {
            Kind::Regular => {
                h.set_entry_type(EntryType::Regular);
                if fits_octal(hdr.size, 12) {
                    h.set_size(hdr.size);
                } else {
                    extra.push(("size".into(), hdr.size.to_string().into_bytes()));
                }
                let mut exact = Exact {
                    inner: data,
                    left: hdr.size,
                    path: name.to_string(),
                };
                self.emit_with(name, h, None, extra, &hdr.xattrs, &mut exact)
            }
            Kind::Dir => {
                h.set_entry_type(EntryType::Directory);
                let dname = if root {
                    BString::from("./")
                } else {
                    let mut d = BString::from(name.trim_end_with(|c| c == '/'));
                    d.push_byte(b'/');
                    d
                };
                self.emit_with(
                    dname.as_ref(),
                    h,
                    None,
                    extra,
                    &hdr.xattrs,
                    &mut io::empty(),
                )
            }
            Kind::Symlink => {
                h.set_entry_type(EntryType::Symlink);
                self.emit_with(
                    name,
                    h,
                    Some(&hdr.link),
                    extra,
                    &hdr.xattrs,
                    &mut io::empty(),
                )
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                h.set_entry_type(match hdr.kind {
                    Kind::Char => EntryType::Char,
                    Kind::Block => EntryType::Block,
                    _ => EntryType::Fifo,
                });
                if hdr.kind != Kind::Fifo {
                    let major = u32::try_from(hdr.devmajor)
                        .map_err(|_| invalid(format!("device major {}", hdr.devmajor)))?;
                    let minor = u32::try_from(hdr.devminor)
                        .map_err(|_| invalid(format!("device minor {}", hdr.devminor)))?;
                    h.set_device_major(major)
                        .and_then(|_| h.set_device_minor(minor))
                        .map_err(|e| invalid(format!("device {major}:{minor}: {e}")))?;
                }
                self.emit_with(name, h, None, extra, &hdr.xattrs, &mut io::empty())
            }
            Kind::Link | Kind::Global | Kind::Other(_) => Err(invalid(format!(
                "cannot copy a member of type {:?}",
                hdr.typeflag as char
            ))),
        }
    }

    /// Write the end-of-archive marker and return the writer.
    pub fn finish(self) -> Result<W, GenerateError> {
        self.out.into_inner().map_err(|e| GenerateError::Io {
            path: "layer".into(),
            source: e,
        })
    }
}

/// Add the tree at `src` under the archive path `target` (sorted, depth
/// first), as `umoci insert` does. With `opaque`, the target directory is
/// first made opaque so the inserted tree replaces what was there.
pub fn add_tree<W: Write>(
    tar: &mut TarGenerator<W>,
    src: &Path,
    target: &BStr,
    opaque: bool,
) -> Result<(), GenerateError> {
    let target = target.trim_with(|c| c == '/').as_bstr();
    if std::fs::symlink_metadata(src).is_ok_and(|m| m.is_dir()) {
        tar.read_beneath(src)?;
    }
    if opaque {
        tar.add_opaque_whiteout(target)?;
    }
    let mut stack = vec![(src.to_path_buf(), target.to_owned())];
    while let Some((host, name)) = stack.pop() {
        let md = std::fs::symlink_metadata(&host).map_err(io_at(&host))?;
        if !name.is_empty() {
            tar.add_path(name.as_ref(), &host)?;
        } else if md.is_dir() {
            // inserted at the image's root: the source directory's own
            // metadata becomes the root's, in an entry named `/` (as the
            // Go umoci writes it)
            tar.add_path(b"".as_bstr(), &host)?;
        } else {
            return Err(GenerateError::Invalid {
                path: BString::from("/"),
                reason: format!(
                    "{} is not a directory: it cannot become the root",
                    host.display()
                ),
            });
        }
        if md.is_dir() {
            stack.extend(children_rev(&host, name.as_ref())?);
        }
    }
    Ok(())
}

/// The entries of the directory `host`, whose archive name is `name` (`""`
/// for the root), as (host path, archive name) in reverse byte order of
/// their names: pushed onto a stack they come off sorted.
pub fn children_rev(host: &Path, name: &BStr) -> Result<Vec<(PathBuf, BString)>, GenerateError> {
    let mut children: Vec<_> = std::fs::read_dir(host)
        .map_err(io_at(host))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_at(host))?;
    children.sort();
    children
        .into_iter()
        .rev()
        .map(|c| {
            let child_name = path::join(name, path::bytes(&c));
            Ok((host.join(&c), child_name))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names_and_data(layer: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut a = tar::Archive::new(layer);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let kind = match e.header().entry_type() {
                    EntryType::Directory => "dir ",
                    EntryType::Symlink => "link ",
                    _ => "",
                };
                let name = format!("{kind}{}", String::from_utf8_lossy(&e.path_bytes()));
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect()
    }

    /// A directory of the tree replaced by a symlink to somewhere else (as
    /// a process still running in a bundle could do while `repack` writes
    /// the layer): read beneath the root, the entry fails and nothing from
    /// outside the tree reaches the layer; the tree's own entries, the root
    /// and nested ones, are read as before.
    #[test]
    fn entries_are_read_beneath_the_root_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc/app")).unwrap();
        std::fs::write(root.join("etc/app/conf"), "inside").unwrap();
        std::fs::write(root.join("top"), "top").unwrap();
        std::fs::create_dir(t.path().join("outside")).unwrap();
        std::fs::write(t.path().join("outside/secret"), "secret").unwrap();
        std::os::unix::fs::symlink("../outside", root.join("swapped")).unwrap();

        let mut tar = TarGenerator::new(Vec::new(), GenerateOptions::default());
        tar.read_beneath(&root).unwrap();
        for n in ["", "etc", "etc/app", "etc/app/conf", "top", "swapped"] {
            tar.add_path(n.as_bytes().as_bstr(), &root.join(n)).unwrap();
        }
        let err = tar
            .add_path(b"swapped/secret".as_bstr(), &root.join("swapped/secret"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a symlink now"), "{err}");
        let entries = names_and_data(&tar.finish().unwrap());
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "dir /",
                "dir etc/",
                "dir etc/app/",
                "etc/app/conf",
                "top",
                "link swapped"
            ]
        );
        assert_eq!(entries[3].1, b"inside");
        assert!(entries.iter().all(|(_, d)| d != b"secret"));

        // without it, the path is followed: what the guard is for
        let mut tar = TarGenerator::new(Vec::new(), GenerateOptions::default());
        tar.add_path(b"swapped/secret".as_bstr(), &root.join("swapped/secret"))
            .unwrap();
        let entries = names_and_data(&tar.finish().unwrap());
        assert_eq!(entries[0].1, b"secret");
    }
}

impl crate::layer::generate::GenerateError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            crate::layer::generate::GenerateError::Io { source, .. } => {
                crate::error::ErrorKind::of_io(source)
            }
            crate::layer::generate::GenerateError::Invalid { .. } => {
                crate::error::ErrorKind::InvalidInput
            }
        }
    }
}

rumoci_core::wraps!(crate::layer::generate::GenerateError);
