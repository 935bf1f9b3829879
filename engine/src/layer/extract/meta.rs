//! The metadata an entry gets once created: owner (mapped, or recorded as
//! an xattr when rootless), mode, extended attributes and times, through
//! its descriptor or, for what cannot be opened (symlinks, devices,
//! fifos), through its parent.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Dev, Mode, XattrFlags};
use rustix::io::Errno;

use super::{ExtractError, Extractor, entry_err, fd_num};
use crate::layer::idmap::{ROOTLESS_XATTR, encode_rootless, to_host};
use crate::layer::overlayfs as ov;
use crate::layer::tarread::Header;
use crate::path::{BStr, ByteSlice};

/// A numeric id of the header (owner, device number) as a `u32`.
fn id(v: i64, path: &BStr, what: &str) -> Result<u32, ExtractError> {
    u32::try_from(v).map_err(|_| entry_err(path, format!("{what} {v} out of range")))
}

impl Extractor {
    pub(super) fn dev(&self, hdr: &Header, path: &BStr) -> Result<Dev, ExtractError> {
        Ok(rustix::fs::makedev(
            id(hdr.devmajor, path, "device major")?,
            id(hdr.devminor, path, "device minor")?,
        ))
    }

    pub(super) fn owner(&self, hdr: &Header, path: &BStr) -> Result<(u32, u32), ExtractError> {
        Ok((id(hdr.uid, path, "uid")?, id(hdr.gid, path, "gid")?))
    }

    pub(super) fn apply_rootless_owner(
        &mut self,
        fd: &OwnedFd,
        path: &BStr,
        hdr: &Header,
    ) -> Result<(), ExtractError> {
        let (uid, gid) = self.owner(hdr, path)?;
        if let Some(v) = encode_rootless(uid, gid) {
            self.set_xattr_fd(fd, path, ROOTLESS_XATTR, &v)?;
        }
        Ok(())
    }

    pub(super) fn set_xattr_fd(
        &mut self,
        fd: &OwnedFd,
        path: &BStr,
        k: &str,
        v: &[u8],
    ) -> Result<(), ExtractError> {
        match rustix::fs::fsetxattr(fd, k, v, XattrFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::NOTSUP) => {
                if !self.warned_enotsup {
                    tracing::warn!("{path}: xattrs not supported here; ignoring {k}");
                    self.warned_enotsup = true;
                }
                Ok(())
            }
            Err(Errno::PERM) if self.opts.rootless => Ok(()),
            Err(e) => Err(entry_err(path, format!("setxattr {k}: {e}"))),
        }
    }

    /// chown, chmod and xattrs on an open file or directory (`name` is set
    /// for symlinks, handled through the parent).
    pub(super) fn apply_meta(
        &mut self,
        fd: &OwnedFd,
        symlink_name: Option<&BStr>,
        path: &BStr,
        hdr: &Header,
        xattrs: &BTreeMap<String, Vec<u8>>,
        is_dir: bool,
    ) -> Result<(), ExtractError> {
        let (uid, gid) = self.owner(hdr, path)?;
        if let Some(name) = symlink_name {
            if !self.opts.rootless {
                self.chown_name(fd, name, uid, gid, path)?;
            }
            return Ok(());
        }
        if self.opts.rootless {
            // drop a stale owner record, then write ours
            let _ = rustix::fs::fremovexattr(fd, ROOTLESS_XATTR);
            if let Some(v) = encode_rootless(uid, gid) {
                self.set_xattr_fd(fd, path, ROOTLESS_XATTR, &v)?;
            }
        } else {
            let (hu, hg) = self.map_owner(uid, gid, path)?;
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(hu)),
                Some(rustix::fs::Gid::from_raw(hg)),
            )
            .map_err(|e| entry_err(path, e))?;
        }
        let mode = (hdr.mode & 0o7777) as u32;
        if is_dir {
            // a directory that already existed: replace its xattrs
            use crate::fs::xattr;
            if let Ok(names) = xattr::list(xattr::Node::Fd(fd.as_fd())) {
                for name in names {
                    let name = String::from_utf8_lossy(&name).into_owned();
                    if crate::fs::xattr::FORBIDDEN.contains(&name.as_str())
                        || (self.opts.rootless && name == ROOTLESS_XATTR)
                        || (self.overlay_prefix().is_some() && ov::is_overlay_xattr(&name))
                        || xattrs.contains_key(&name)
                    {
                        continue;
                    }
                    let _ = rustix::fs::fremovexattr(fd, name.as_str());
                }
            }
        }
        for (k, v) in xattrs {
            if crate::fs::xattr::FORBIDDEN.contains(&k.as_str()) {
                tracing::warn!("{path}: ignoring forbidden xattr {k}");
                continue;
            }
            if k == ROOTLESS_XATTR {
                tracing::warn!("{path}: ignoring {k} found in the layer");
                continue;
            }
            self.set_xattr_fd(fd, path, k, v)?;
        }
        // last: an unprivileged owner can no longer set xattrs once the
        // mode keeps it out
        let mut applied = mode;
        if is_dir && self.unpriv {
            if mode & 0o700 != 0o700 {
                self.restricted.insert(path.to_owned(), mode);
                applied |= 0o700;
            } else {
                self.restricted.remove(path);
            }
        } else if self.keep_open && symlink_name.is_none() {
            // a file of a store's snapshot is read again (copied): its
            // owner keeps read permission there, the copy gets the mode
            if mode & 0o400 == 0 {
                self.restricted.insert(path.to_owned(), mode);
                applied |= 0o400;
            } else {
                self.restricted.remove(path);
            }
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(applied)).map_err(|e| entry_err(path, e))?;
        Ok(())
    }

    /// Metadata for devices and fifos (which cannot be opened safely):
    /// through the parent descriptor, never following `name`.
    pub(super) fn apply_meta_path(
        &mut self,
        parent: &OwnedFd,
        name: &BStr,
        path: &BStr,
        hdr: &Header,
        xattrs: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(), ExtractError> {
        let (uid, gid) = self.owner(hdr, path)?;
        if !self.opts.rootless {
            self.chown_name(parent, name, uid, gid, path)?;
        }
        let mode = (hdr.mode & 0o7777) as u32;
        rustix::fs::chmodat(
            parent,
            name.as_bytes(),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )
        .map_err(|e| entry_err(path, e))?;
        // through the parent: l*xattr on /proc/self/fd/<O_PATH fd of the
        // entry> acts on that magic link itself (ENOTSUP), not on the entry
        let mut proc_path = format!("/proc/self/fd/{}/", fd_num(parent)).into_bytes();
        proc_path.extend_from_slice(name);
        let mut all: Vec<(String, Vec<u8>)> = xattrs
            .iter()
            .filter(|(k, _)| {
                !crate::fs::xattr::FORBIDDEN.contains(&k.as_str()) && k.as_str() != ROOTLESS_XATTR
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if self.opts.rootless
            && let Some(v) = encode_rootless(uid, gid)
        {
            all.push((ROOTLESS_XATTR.to_string(), v));
        }
        for (k, v) in all {
            match rustix::fs::lsetxattr(proc_path.as_slice(), k.as_str(), &v, XattrFlags::empty()) {
                Ok(()) | Err(Errno::NOTSUP) => {}
                Err(Errno::PERM) if self.opts.rootless => {}
                Err(e) => return Err(entry_err(path, format!("setxattr {k}: {e}"))),
            }
        }
        Ok(())
    }

    pub(super) fn map_owner(
        &self,
        uid: u32,
        gid: u32,
        path: &BStr,
    ) -> Result<(u32, u32), ExtractError> {
        let hu = to_host(uid, &self.opts.uid_map)
            .ok_or_else(|| entry_err(path, format!("uid {uid} is not mapped")))?;
        let hg = to_host(gid, &self.opts.gid_map)
            .ok_or_else(|| entry_err(path, format!("gid {gid} is not mapped")))?;
        Ok((hu, hg))
    }

    /// Give the entry `name` of the directory `parent` (not followed) the
    /// host owner of the image's `uid`:`gid`.
    fn chown_name(
        &self,
        parent: &OwnedFd,
        name: &BStr,
        uid: u32,
        gid: u32,
        path: &BStr,
    ) -> Result<(), ExtractError> {
        let (hu, hg) = self.map_owner(uid, gid, path)?;
        rustix::fs::chownat(
            parent,
            name.as_bytes(),
            Some(rustix::fs::Uid::from_raw(hu)),
            Some(rustix::fs::Gid::from_raw(hg)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| entry_err(path, e))
    }
}
