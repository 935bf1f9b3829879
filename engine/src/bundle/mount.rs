//! Bundles whose `rootfs` is an overlayfs mount of layer directories kept
//! by an overlay layer store (see `plugins/overlay`).
//!
//! The bundle holds `overlay/upper` (every change made in the rootfs since
//! unpack, in overlayfs form) and `overlay/work` (overlayfs' scratch
//! space); `umoci.json` records the mount in an extra `overlay` field
//! (unknown to, and ignored by, the Go umoci), so that `repack` reads only
//! the upper directory and `rumoci umount`/`rumoci mount` can undo and redo
//! the mount.
//!
//! The mount always has `redirect_dir=nofollow` (renaming a lower directory
//! copies it up whole instead of leaving a redirect to the lower layers),
//! `metacopy=off` (a copied-up file has its data in the upper directory)
//! and `index=off`, so the upper directory alone describes the change.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::layer::overlayfs::{TRUSTED_PREFIX, USER_PREFIX};

/// The directory in a bundle holding the upper and work directories.
pub const OVERLAY_DIR: &str = "overlay";
/// The upper directory, relative to the bundle.
pub const UPPER: &str = "overlay/upper";
/// The work directory, relative to the bundle.
pub const WORK: &str = "overlay/work";
/// overlayfs' `f_type`.
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// Errors of overlay bundles.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The bundle is not an overlay bundle.
    #[error("bundle {0}: not an overlay bundle (umoci.json records no overlay mount)")]
    NotOverlay(String),
    /// Mounting failed.
    #[error("mount overlay on {target}: {reason}")]
    Mount {
        /// The mount point.
        target: String,
        /// Why.
        reason: String,
    },
    /// Unmounting failed.
    #[error("unmount {target}: {reason}")]
    Umount {
        /// The mount point.
        target: String,
        /// Why.
        reason: String,
    },
    /// Anything else, with the object named.
    #[error("{0}")]
    Other(String),
}

/// The `overlay` field of `umoci.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayMeta {
    /// The layer directories, absolute, topmost first.
    pub lowerdirs: Vec<String>,
    /// The upper directory, relative to the bundle.
    pub upperdir: String,
    /// The work directory, relative to the bundle.
    pub workdir: String,
    /// Mounted with `userxattr`; whiteouts use `user.overlay.*` xattrs.
    pub rootless: bool,
}

impl OverlayMeta {
    /// The overlay xattr prefix of this bundle's layers and upper directory.
    pub fn xattr_prefix(&self) -> &'static str {
        if self.rootless {
            USER_PREFIX
        } else {
            TRUSTED_PREFIX
        }
    }

    /// The upper directory of the bundle at `bundle`.
    pub fn upper(&self, bundle: &Path) -> Result<PathBuf, OverlayError> {
        bundle_path(bundle, &self.upperdir)
    }

    /// The work directory of the bundle at `bundle`.
    pub fn work(&self, bundle: &Path) -> Result<PathBuf, OverlayError> {
        bundle_path(bundle, &self.workdir)
    }
}

fn bundle_path(bundle: &Path, rel: &str) -> Result<PathBuf, OverlayError> {
    crate::layer_store::resolve(bundle, rel)
        .map_err(|e| OverlayError::Other(format!("umoci.json: overlay: {e}")))
}

/// Whether `rootfs` is an overlayfs mount point right now.
pub fn is_mounted(rootfs: &Path) -> bool {
    let (Ok(here), Some(parent)) = (std::fs::symlink_metadata(rootfs), rootfs.parent()) else {
        return false;
    };
    let Ok(up) = std::fs::metadata(parent) else {
        return false;
    };
    here.dev() != up.dev()
        && rustix::fs::statfs(rootfs).is_ok_and(|s| {
            let t: i64 = s.f_type;
            t == OVERLAYFS_SUPER_MAGIC
        })
}

fn mount_err(target: &Path, reason: impl Into<String>) -> OverlayError {
    OverlayError::Mount {
        target: target.display().to_string(),
        reason: reason.into(),
    }
}

/// Explain a mount failure: no privilege is the common case.
fn describe(e: Errno, what: &str) -> String {
    if e == Errno::PERM {
        format!(
            "{what}: {e}: mounting overlayfs needs CAP_SYS_ADMIN (run as root, or rootless inside a user and mount namespace, e.g. `unshare -Urm`, with --rootless)"
        )
    } else {
        format!("{what}: {e}")
    }
}

/// Mount the overlay `ov` of the bundle at `bundle` on its `rootfs`
/// (which must be an empty directory). Every lower directory must exist.
pub fn mount(bundle: &Path, ov: &OverlayMeta) -> Result<(), OverlayError> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
        fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    };
    let bundle = &std::fs::canonicalize(bundle).map_err(|e| {
        mount_err(
            &bundle.join(super::ROOTFS),
            format!("{}: {e}", bundle.display()),
        )
    })?;
    let target = bundle.join(super::ROOTFS);
    if ov.lowerdirs.is_empty() {
        return Err(mount_err(&target, "no lower directories"));
    }
    for l in &ov.lowerdirs {
        if !Path::new(l).is_absolute() || !std::fs::metadata(l).is_ok_and(|m| m.is_dir()) {
            return Err(mount_err(
                &target,
                format!("lower directory {l} is missing or not a directory"),
            ));
        }
    }
    let upper = ov.upper(bundle)?;
    let work = ov.work(bundle)?;
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)
        .map_err(|e| mount_err(&target, describe(e, "fsopen")))?;
    let set = |k: &str, v: &str| {
        fsconfig_set_string(&fs, k, v).map_err(|e| mount_err(&target, describe(e, k)))
    };
    set("source", "rumoci")?;
    // one lower directory per call (Linux 6.8+): no length limit, no
    // escaping; else the classic colon-separated list
    let mut appended = true;
    for l in &ov.lowerdirs {
        match fsconfig_set_string(&fs, "lowerdir+", l.as_str()) {
            Ok(()) => {}
            Err(Errno::INVAL) if l == &ov.lowerdirs[0] => {
                appended = false;
                break;
            }
            Err(e) => return Err(mount_err(&target, describe(e, &format!("lowerdir+ {l}")))),
        }
    }
    if !appended {
        if let Some(bad) = ov.lowerdirs.iter().find(|l| l.contains([':', '\\', ','])) {
            return Err(mount_err(
                &target,
                format!(
                    "lower directory {bad} contains ':', ',' or '\\' (this kernel has no lowerdir+)"
                ),
            ));
        }
        set("lowerdir", &ov.lowerdirs.join(":"))?;
    }
    let path_str = |p: &Path| -> Result<String, OverlayError> {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| mount_err(&target, format!("{} is not UTF-8", p.display())))
    };
    set("upperdir", &path_str(&upper)?)?;
    set("workdir", &path_str(&work)?)?;
    set("redirect_dir", "nofollow")?;
    set("metacopy", "off")?;
    set("index", "off")?;
    if ov.rootless {
        fsconfig_set_flag(&fs, "userxattr")
            .map_err(|e| mount_err(&target, describe(e, "userxattr")))?;
    }
    fsconfig_create(&fs).map_err(|e| mount_err(&target, describe(e, "create")))?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())
        .map_err(|e| mount_err(&target, describe(e, "fsmount")))?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        &target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| mount_err(&target, describe(e, "move_mount")))?;
    Ok(())
}

/// Unmount the bundle's rootfs if it is an overlay mount; returns whether
/// it was mounted. Idempotent.
pub fn umount(bundle: &Path) -> Result<bool, OverlayError> {
    let target = bundle.join(super::ROOTFS);
    if !is_mounted(&target) {
        return Ok(false);
    }
    match rustix::mount::unmount(&target, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::INVAL) => Ok(false),
        Err(Errno::BUSY) => Err(OverlayError::Umount {
            target: target.display().to_string(),
            reason:
                "busy: a process still uses it (its working directory or an open file is inside)"
                    .into(),
        }),
        Err(e) => Err(OverlayError::Umount {
            target: target.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Create the upper and work directories of a new overlay bundle: empty,
/// the upper one with the owner, mode, xattrs and times of the topmost
/// layer's root (overlayfs shows the upper root's metadata as the rootfs').
pub fn make_dirs(
    bundle: &Path,
    top_layer: &Path,
    rootless: bool,
) -> Result<OverlayMeta, OverlayError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| OverlayError::Other(format!("{p}: {e}"))
    };
    let base = bundle.join(OVERLAY_DIR);
    std::fs::create_dir(&base).map_err(io(&base))?;
    let upper = bundle.join(UPPER);
    let work = bundle.join(WORK);
    std::fs::create_dir(&upper).map_err(io(&upper))?;
    std::fs::create_dir(&work).map_err(io(&work))?;
    crate::layer::overlayfs::copy_dir_meta(top_layer, &upper, rootless)
        .map_err(|(p, e)| OverlayError::Other(format!("{}: {e}", p.display())))?;
    Ok(OverlayMeta {
        lowerdirs: Vec::new(),
        upperdir: UPPER.into(),
        workdir: WORK.into(),
        rootless,
    })
}

impl crate::bundle::mount::OverlayError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::bundle::mount::OverlayError as E;
        match self {
            E::NotOverlay(_) => crate::error::ErrorKind::InvalidInput,
            E::Mount { .. } | E::Umount { .. } | E::Other(_) => crate::error::ErrorKind::Io,
        }
    }
}

rumoci_core::wraps!(crate::bundle::mount::OverlayError);
