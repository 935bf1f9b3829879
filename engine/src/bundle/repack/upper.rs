//! `repack` of an overlay bundle (see [`crate::bundle::mount`]): the new
//! layer is the upper directory, so its cost grows with the change, not
//! with the image.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::FileType;

use super::commit::{add_layer, masks, member, rewrite_bundle, tree_grant};
use super::{RepackError, RepackOptions, RepackOutcome, bundle_err, check_layer_name};
use crate::bundle::ROOTFS;
use crate::bundle::meta::Meta;
use crate::cas::WriteLock;
use crate::cas::refs::DescriptorPath;
use crate::fs::walk::{Entry, Step, walk};
use crate::mtree::diff::DiffStats;
use crate::mutate::Mutator;
use crate::path::{self, BString};

/// What an entry of an overlay bundle's upper directory stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upper {
    /// A character device 0:0: the entry was deleted.
    Whiteout,
    /// A directory; opaque ones hide everything lower layers have beneath.
    Dir { opaque: bool },
    /// Anything else: added or changed.
    Entry,
}

/// The value of the xattr `name` of the entry `e` (not followed).
fn xattr_of(e: &Entry<'_>, name: &str) -> Result<Option<Vec<u8>>, RepackError> {
    use crate::fs::xattr;
    let proc = e
        .dir
        .map(|d| crate::fs::dir::proc_path(d.as_fd(), Some(e.name)));
    let node = match &proc {
        Some(p) => xattr::Node::proc(p),
        None => return Ok(None),
    };
    xattr::get(node, name.as_bytes()).map_err(|err| RepackError::Rootfs {
        path: crate::show::name(e.rel),
        reason: format!("getxattr {name}: {err}"),
    })
}

/// Every entry of the upper directory in tree order (depth first, names
/// sorted by bytes), masked paths and what lies beneath them left out.
fn walk_upper(
    upper: &Path,
    prefix: &str,
    masks: &[Vec<u8>],
) -> Result<Vec<(BString, Upper)>, RepackError> {
    let io = |p: &str, e: std::io::Error| RepackError::Rootfs {
        path: p.to_string(),
        reason: e.to_string(),
    };
    let masked = |rel: &[u8]| masks.iter().any(|m| path::is_within(rel, m));
    let (redirect, metacopy, opaque) = (
        format!("{prefix}redirect"),
        format!("{prefix}metacopy"),
        format!("{prefix}opaque"),
    );
    let mut out = Vec::new();
    walk(upper, io, |e| {
        let rel = e.rel;
        if !rel.is_empty() && masked(rel) {
            return Ok(Step::Prune);
        }
        let ft = e.file_type();
        let kind = if ft == FileType::CharacterDevice && e.stat.st_rdev == 0 {
            Upper::Whiteout
        } else if ft == FileType::Directory {
            if xattr_of(e, &redirect)?.is_some() {
                return Err(RepackError::Rootfs {
                    path: crate::show::name(rel),
                    reason: format!(
                        "{prefix}redirect: a renamed directory that still points into the lower layers (mounted without redirect_dir=nofollow?)"
                    ),
                });
            }
            Upper::Dir {
                opaque: !rel.is_empty() && xattr_of(e, &opaque)?.is_some_and(|v| v == b"y"),
            }
        } else {
            if ft == FileType::RegularFile && xattr_of(e, &metacopy)?.is_some() {
                return Err(RepackError::Rootfs {
                    path: crate::show::name(rel),
                    reason: format!(
                        "{prefix}metacopy: the data is still in a lower layer (mounted with metacopy=on?)"
                    ),
                });
            }
            Upper::Entry
        };
        if !rel.is_empty() {
            check_layer_name(rel)?;
        }
        out.push((rel.to_owned(), kind));
        Ok(Step::Descend)
    })?;
    Ok(out)
}

/// `repack` of an overlay bundle: the new layer is the upper directory
/// (every entry in it is an addition or a change; character devices 0:0
/// become whiteouts, opaque directories opaque whiteouts), so its cost
/// grows with the change, not with the image. Works mounted or not.
pub(super) fn repack(
    lock: &WriteLock<'_>,
    bundle: &Path,
    meta: Meta,
    ov: crate::bundle::mount::OverlayMeta,
    path: DescriptorPath,
    opts: &RepackOptions,
) -> Result<RepackOutcome, RepackError> {
    let upper = ov
        .upper(bundle)
        .map_err(|e| bundle_err(bundle, e.to_string()))?;
    if !std::fs::symlink_metadata(&upper).is_ok_and(|m| m.is_dir()) {
        return Err(bundle_err(
            bundle,
            format!("{} is missing or not a directory", ov.upperdir),
        ));
    }
    let m = Mutator::new(lock, path)?;
    let masks = masks(opts, &m);
    let mut entries = walk_upper(&upper, ov.xattr_prefix(), &masks)?;
    let stats = DiffStats {
        walked: entries.len(),
        ..DiffStats::default()
    };
    // an upper directory with nothing in it: no change
    if entries.len() == 1 {
        entries.clear();
    }
    let changed: HashSet<Vec<u8>> = entries
        .iter()
        .map(|(p, _)| Vec::from(p.as_slice()))
        .collect();
    tracing::debug!(
        "repack (overlay): {} entries in the upper directory",
        entries.len()
    );
    let new = add_layer(
        m,
        opts,
        &meta,
        tree_grant(&upper)?,
        &upper,
        entries.len(),
        |tar| {
            for (name, kind) in &entries {
                let (host, arch) = member(&upper, name.as_ref());
                match kind {
                    Upper::Whiteout => tar.add_whiteout(name.as_ref())?,
                    Upper::Dir { opaque } => {
                        tar.add_path(arch, &host)?;
                        if *opaque {
                            tar.add_opaque_whiteout(name.as_ref())?;
                        }
                    }
                    Upper::Entry => tar.add_path(arch, &host)?,
                }
            }
            Ok(())
        },
    )?;
    Ok(RepackOutcome {
        path: new,
        entries: entries.len(),
        stats,
        meta,
        changed,
    })
}

/// `--refresh-bundle` of an overlay bundle: the upper directory holds
/// exactly the layer just added, so it becomes the bundle's own topmost
/// lower layer (`overlay/layer-<n>`), a new empty upper directory takes its
/// place, and the bundle is remounted on the new image: the next repack
/// again holds only what changed since. The new mtree is written from the
/// mounted tree (digests of unchanged files reused from the old mtree), so
/// the Go umoci can still repack the bundle. Not crash-safe: a crash in the
/// middle can leave `umoci.json` describing the old layers.
pub(super) fn refresh(
    bundle: &Path,
    outcome: &RepackOutcome,
    mut ov: crate::bundle::mount::OverlayMeta,
) -> Result<(), RepackError> {
    use crate::bundle::mount as bo;
    let err = |e: bo::OverlayError| bundle_err(bundle, e.to_string());
    let rootfs = bundle.join(ROOTFS);
    let was_mounted = bo::is_mounted(&rootfs);
    if outcome.entries > 0 {
        bo::umount(bundle).map_err(err)?;
        let upper = ov.upper(bundle).map_err(err)?;
        let mut k = 1;
        let layer = loop {
            let p = bundle.join(bo::OVERLAY_DIR).join(format!("layer-{k}"));
            if std::fs::symlink_metadata(&p).is_err() {
                break p;
            }
            k += 1;
        };
        let io = |p: &Path, e: std::io::Error| bundle_err(bundle, format!("{}: {e}", p.display()));
        std::fs::rename(&upper, &layer).map_err(|e| io(&upper, e))?;
        let layer_abs = std::fs::canonicalize(&layer).map_err(|e| io(&layer, e))?;
        let layer_str = layer_abs
            .to_str()
            .ok_or_else(|| bundle_err(bundle, "bundle path is not UTF-8"))?
            .to_string();
        let work = ov.work(bundle).map_err(err)?;
        std::fs::remove_dir_all(&work).map_err(|e| io(&work, e))?;
        std::fs::create_dir(&work).map_err(|e| io(&work, e))?;
        std::fs::create_dir(&upper).map_err(|e| io(&upper, e))?;
        // the new upper root shows the root as it is now
        crate::layer::overlayfs::copy_dir_meta(&layer, &upper, ov.rootless)
            .map_err(|(p, e)| bundle_err(bundle, format!("{}: {e}", p.display())))?;
        ov.lowerdirs.insert(0, layer_str);
    }
    if !bo::is_mounted(&rootfs) {
        bo::mount(bundle, &ov).map_err(err)?;
    }
    rewrite_bundle(bundle, outcome, Some(ov))?;
    if !was_mounted {
        bo::umount(bundle).map_err(err)?;
    }
    Ok(())
}
