//! `repack`: the changes made to a bundle's rootfs since `unpack`, as one new
//! layer on top of the image the bundle came from (umoci's `repack`).
//!
//! The rootfs is compared with the bundle's mtree manifest (through the stat
//! cache where it is valid), masked paths are dropped, deleted trees are
//! reduced to their topmost whiteout, and the remaining entries are written
//! in path order as a deterministic tar, compressed and hashed in the same
//! pass. An empty diff adds no layer, only an `empty_layer` history entry.

use std::collections::{BTreeMap, HashSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::bundle::create::{ROOTFS, mtree_name};
use crate::bundle::meta::Meta;
use crate::cas::WriteLock;
use crate::cas::refs::DescriptorPath;
use crate::layer::generate::{
    GenerateError, GenerateOptions, TarGenerator, children_rev, is_whiteout_name,
};
use crate::layer::idmap::owner_mapper;
use crate::layer::unpriv::TreeGrant;
use crate::mtree::diff::{self, DeltaKind, DiffStats};
use crate::mtree::parse::{self, Spec};
use crate::mtree::statcache::StatCache;
use crate::mutate::{Compression, LayerWriter, MutateError, Mutator};
use crate::oci::{History, media};
use crate::path::{self, BStr, BString, ByteSlice};

/// Errors of a repack.
#[derive(Debug, thiserror::Error)]
pub enum RepackError {
    /// The bundle is not usable (missing or invalid `umoci.json`, mtree, rootfs).
    #[error("bundle {bundle}: {reason}")]
    Bundle {
        /// The bundle directory.
        bundle: String,
        /// Why.
        reason: String,
    },
    /// The rootfs holds something a layer cannot carry.
    #[error("rootfs {}: {reason}", crate::show::name(path))]
    Rootfs {
        /// Path inside the rootfs.
        path: String,
        /// Why.
        reason: String,
    },
    /// Comparing the rootfs with the manifest failed.
    #[error(transparent)]
    Diff(#[from] diff::DiffError),
    /// Writing the layer failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// Writing blobs or the image failed.
    #[error(transparent)]
    Mutate(#[from] MutateError),
    /// The store failed.
    #[error(transparent)]
    Cas(#[from] crate::cas::CasError),
}

/// Options of [`repack_bundle`].
#[derive(Debug, Default, Clone)]
pub struct RepackOptions {
    /// Layer compression; `None` follows the image's last layer.
    pub compression: Option<Compression>,
    /// Paths (relative to `/`) whose changes are left out.
    pub mask_paths: Vec<String>,
    /// Leave changes under the image's volumes in (`--no-mask-volumes`).
    pub no_mask_volumes: bool,
    /// Clamp mtimes to this (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<i64>,
    /// The history entry (`None` for `--no-history`); an empty author is
    /// filled with the image's author, as umoci does.
    pub history: Option<History>,
}

/// What a repack did.
#[derive(Debug)]
pub struct RepackOutcome {
    /// The new image (its root is what the tag should point at).
    pub path: DescriptorPath,
    /// Entries in the new layer (0: no layer was added).
    pub entries: usize,
    /// What the comparison did.
    pub stats: DiffStats,
    /// The bundle's metadata and manifest as read, and every path the
    /// comparison found changed (before masking): what [`refresh_bundle`]
    /// needs to reuse the digests of unchanged files.
    meta: Meta,
    spec: Spec,
    changed: HashSet<Vec<u8>>,
}

fn bundle_err(bundle: &Path, reason: impl Into<String>) -> RepackError {
    RepackError::Bundle {
        bundle: bundle.display().to_string(),
        reason: reason.into(),
    }
}

/// The stat cache file name for a manifest: `sha256_<hex>.statcache`.
pub fn statcache_name(path: &DescriptorPath) -> String {
    format!("{}.statcache", path.target().digest.file_stem())
}

/// Read a bundle's `umoci.json` and check it points at a manifest.
pub fn read_meta(bundle: &Path) -> Result<(Meta, DescriptorPath), RepackError> {
    let meta = Meta::read(bundle).map_err(|e| bundle_err(bundle, e.to_string()))?;
    let path = DescriptorPath(meta.from_descriptor_path.descriptor_walk.clone());
    if path.target().media_type != media::MANIFEST {
        return Err(bundle_err(
            bundle,
            format!(
                "umoci.json: descriptor {} is a {}, not an image manifest",
                path.target().digest,
                path.target().media_type
            ),
        ));
    }
    Ok((meta, path))
}

fn load_spec(bundle: &Path, path: &DescriptorPath) -> Result<Spec, RepackError> {
    let p = bundle.join(mtree_name(path));
    let f =
        std::fs::File::open(&p).map_err(|e| bundle_err(bundle, format!("{}: {e}", p.display())))?;
    parse::parse(BufReader::new(f)).map_err(|e| bundle_err(bundle, format!("{}: {e}", p.display())))
}

fn load_cache(bundle: &Path, path: &DescriptorPath) -> Option<StatCache> {
    let p = bundle.join(statcache_name(path));
    let f = std::fs::File::open(&p).ok()?;
    match StatCache::read(BufReader::new(f)) {
        Ok(Some(c)) => Some(c),
        _ => {
            tracing::warn!("{}: unreadable stat cache ignored", p.display());
            None
        }
    }
}

fn unchanged_digests(spec: &Spec, changed: &HashSet<Vec<u8>>) -> BTreeMap<BString, [u8; 32]> {
    spec.entries
        .iter()
        .filter(|(k, _)| !changed.contains(k.as_slice()))
        .filter_map(|(k, kw)| {
            let d = kw.get("sha256digest")?;
            let mut b = [0u8; 32];
            hex::decode_to_slice(d, &mut b).ok()?;
            Some((BString::from(k.as_slice()), b))
        })
        .collect()
}

/// Repack `bundle` onto the image it was unpacked from, under the store's
/// writer lock; the caller retags `outcome.path.root()` before dropping it.
pub fn repack_bundle(
    lock: &WriteLock<'_>,
    bundle: &Path,
    opts: &RepackOptions,
) -> Result<RepackOutcome, RepackError> {
    let (meta, path) = read_meta(bundle)?;
    if let Some(ov) = meta.overlay.clone() {
        return repack_overlay(lock, bundle, meta, ov, path, opts);
    }
    let spec = load_spec(bundle, &path)?;
    let cache = load_cache(bundle, &path);
    let rootfs = bundle.join(ROOTFS);
    if !std::fs::symlink_metadata(&rootfs).is_ok_and(|m| m.is_dir()) {
        return Err(bundle_err(bundle, "rootfs/ is missing or not a directory"));
    }
    let m = Mutator::new(lock, path)?;

    // opened up once (unprivileged) for both the comparison and the layer
    let grant = tree_grant(&rootfs)?;
    let (deltas, stats) = diff::compare_granted(&rootfs, &spec, cache.as_ref(), &grant)?;
    let changed: HashSet<Vec<u8>> = deltas.iter().map(|d| d.path.clone()).collect();
    let masks = masks(opts, &m);
    let deltas = diff::simplify(diff::mask(deltas, &masks));
    tracing::debug!(
        "repack: {} changes; walked {}, {} unchanged by the stat cache, {} hashed",
        deltas.len(),
        stats.walked,
        stats.cache_hits,
        stats.hashed
    );

    // names a layer cannot carry are refused before anything is written
    let mut names = Vec::with_capacity(deltas.len());
    for d in &deltas {
        let name = BString::from(d.path.as_slice());
        if d.kind != DeltaKind::Missing && is_whiteout_name(&name) {
            return Err(RepackError::Rootfs {
                path: crate::show::name(&name),
                reason: "a file name starting with \".wh.\" would be read as a whiteout".into(),
            });
        }
        names.push(name);
    }

    let new = add_layer(m, opts, &meta, grant, deltas.len(), |tar| {
        for (d, name) in deltas.iter().zip(&names) {
            match d.kind {
                DeltaKind::Missing => tar.add_whiteout(name.as_ref())?,
                DeltaKind::Extra | DeltaKind::Modified => {
                    let (host, arch) = member(&rootfs, name.as_ref());
                    tar.add_path(arch, &host)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(RepackOutcome {
        path: new,
        entries: deltas.len(),
        stats,
        meta,
        spec,
        changed,
    })
}

/// Open up the tree at `root` for an unprivileged owner (see
/// [`crate::layer::unpriv`]).
fn tree_grant(root: &Path) -> Result<TreeGrant, RepackError> {
    TreeGrant::new(root).map_err(|e| RepackError::Rootfs {
        path: root.display().to_string(),
        reason: e.to_string(),
    })
}

/// The paths whose changes are left out: `--mask-path`s and, unless
/// `--no-mask-volumes`, the image's volumes.
fn masks(opts: &RepackOptions, m: &Mutator<'_>) -> Vec<Vec<u8>> {
    let mut masks: Vec<Vec<u8>> = opts
        .mask_paths
        .iter()
        .map(|p| path::clean(p.as_bytes()).into())
        .collect();
    if !opts.no_mask_volumes {
        masks.extend(
            m.config()
                .config
                .volumes
                .keys()
                .map(|v| path::clean(v.as_bytes()).into()),
        );
    }
    masks
}

/// The host path and the archive name of the entry `name` (relative,
/// `""` for the root) of the tree at `root`.
fn member<'a>(root: &Path, name: &'a BStr) -> (PathBuf, &'a BStr) {
    if name.is_empty() {
        (root.to_path_buf(), b".".as_bstr())
    } else {
        (root.join(path::os(name)), name)
    }
}

/// Commit the image with one new layer of `entries` entries, which `write`
/// puts into the tar (owners mapped as at unpack, mtimes clamped as asked);
/// with no entries, no layer is added, only an `empty_layer` history entry.
/// An empty history author is the image's. `grant` holds the tree the
/// entries are read from open for an unprivileged owner.
fn add_layer(
    mut m: Mutator<'_>,
    opts: &RepackOptions,
    meta: &Meta,
    grant: TreeGrant,
    entries: usize,
    write: impl FnOnce(&mut TarGenerator<LayerWriter>) -> Result<(), RepackError>,
) -> Result<DescriptorPath, RepackError> {
    let mut history = opts.history.clone();
    if let Some(h) = &mut history
        && h.author.is_empty()
    {
        h.author = m.config().author.clone();
    }
    if entries == 0 {
        if let Some(mut h) = history {
            h.empty_layer = true;
            m.add_history(h);
        }
        return Ok(m.commit()?);
    }
    let compression = opts
        .compression
        .unwrap_or_else(|| Compression::auto(&m.manifest().layers));
    let layer = m.begin_layer(compression)?;
    let map = &meta.map_options;
    let gen_opts = GenerateOptions {
        owner: owner_mapper(
            map.uid_mappings.clone().unwrap_or_default(),
            map.gid_mappings.clone().unwrap_or_default(),
            map.rootless,
        ),
        clamp_mtime: opts.clamp_mtime,
        grant: Some(grant),
    };
    let mut tar = TarGenerator::new(layer, gen_opts);
    write(&mut tar)?;
    let layer = tar.finish()?;
    m.finish_layer(layer, history)?;
    Ok(m.commit()?)
}

/// `--refresh-bundle`: point the bundle at the new image — a fresh mtree
/// and stat cache named after the new manifest, and `umoci.json` — then
/// drop the old manifest files. Digests of files the repack found
/// unchanged are reused from the old manifest.
pub fn refresh_bundle(bundle: &Path, outcome: &RepackOutcome) -> Result<(), RepackError> {
    if let Some(ov) = outcome.meta.overlay.clone() {
        return refresh_overlay(bundle, outcome, ov);
    }
    rewrite_bundle(bundle, outcome, &outcome.spec, None)
}

/// The end of every refresh: a new mtree and stat cache for the new image
/// from the bundle's rootfs as it is now (digests of files unchanged since
/// `old_spec` reused), the new `umoci.json` (with `overlay`), and the old
/// image's mtree and stat cache removed.
fn rewrite_bundle(
    bundle: &Path,
    outcome: &RepackOutcome,
    old_spec: &Spec,
    overlay: Option<crate::bundle::overlay::OverlayMeta>,
) -> Result<(), RepackError> {
    let old_path = DescriptorPath(outcome.meta.from_descriptor_path.descriptor_walk.clone());
    let new_path = &outcome.path;
    let rootfs = bundle.join(ROOTFS);
    let written = crate::bundle::create::write_bundle_manifest(
        &rootfs,
        bundle,
        new_path,
        &unchanged_digests(old_spec, &outcome.changed),
    )
    .map_err(|e| bundle_err(bundle, e.to_string()))?;
    tracing::debug!("refresh: {written} files re-hashed");
    let mut new_meta = Meta::new(new_path, outcome.meta.map_options.clone());
    new_meta.overlay = overlay;
    new_meta
        .write(bundle)
        .map_err(|e| bundle_err(bundle, e.to_string()))?;
    if mtree_name(&old_path) != mtree_name(new_path) {
        for n in [mtree_name(&old_path), statcache_name(&old_path)] {
            match std::fs::remove_file(bundle.join(&n)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("{}: {e}", bundle.join(n).display()),
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Overlay bundles

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

fn has_xattr(path: &Path, name: &str) -> Result<bool, RepackError> {
    let mut buf = [0u8; 8];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(_) | Err(rustix::io::Errno::RANGE) => Ok(true),
        Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => Ok(false),
        Err(e) => Err(RepackError::Rootfs {
            path: path.display().to_string(),
            reason: format!("getxattr {name}: {e}"),
        }),
    }
}

/// Whether the directory `path` has the xattr `opaque` (`<prefix>opaque`)
/// set to `y`.
fn is_opaque_dir(path: &Path, opaque: &str) -> Result<bool, RepackError> {
    let mut buf = [0u8; 8];
    match rustix::fs::lgetxattr(path, opaque, &mut buf) {
        Ok(n) => Ok(&buf[..n] == b"y"),
        Err(rustix::io::Errno::NODATA)
        | Err(rustix::io::Errno::NOTSUP)
        | Err(rustix::io::Errno::RANGE) => Ok(false),
        Err(e) => Err(RepackError::Rootfs {
            path: path.display().to_string(),
            reason: format!("getxattr {opaque}: {e}"),
        }),
    }
}

/// Every entry of the upper directory in tree order (depth first, names
/// sorted by bytes), masked paths and what lies beneath them left out.
fn walk_upper(
    upper: &Path,
    prefix: &str,
    masks: &[Vec<u8>],
) -> Result<Vec<(BString, Upper)>, RepackError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let io = |p: &Path, e: std::io::Error| RepackError::Rootfs {
        path: p.display().to_string(),
        reason: e.to_string(),
    };
    let masked = |rel: &[u8]| masks.iter().any(|m| path::is_within(rel, m));
    let (redirect, metacopy, opaque) = (
        format!("{prefix}redirect"),
        format!("{prefix}metacopy"),
        format!("{prefix}opaque"),
    );
    let mut out = Vec::new();
    let mut stack: Vec<(PathBuf, BString)> = vec![(upper.to_path_buf(), BString::from(""))];
    while let Some((host, rel)) = stack.pop() {
        let md = std::fs::symlink_metadata(&host).map_err(|e| io(&host, e))?;
        let ft = md.file_type();
        let kind = if ft.is_char_device() && md.rdev() == 0 {
            Upper::Whiteout
        } else if ft.is_dir() {
            if has_xattr(&host, &redirect)? {
                return Err(RepackError::Rootfs {
                    path: crate::show::name(&rel),
                    reason: format!(
                        "{prefix}redirect: a renamed directory that still points into the lower layers (mounted without redirect_dir=nofollow?)"
                    ),
                });
            }
            Upper::Dir {
                opaque: !rel.is_empty() && is_opaque_dir(&host, &opaque)?,
            }
        } else {
            if ft.is_file() && has_xattr(&host, &metacopy)? {
                return Err(RepackError::Rootfs {
                    path: crate::show::name(&rel),
                    reason: format!(
                        "{prefix}metacopy: the data is still in a lower layer (mounted with metacopy=on?)"
                    ),
                });
            }
            Upper::Entry
        };
        if !rel.is_empty() && is_whiteout_name(&rel) {
            return Err(RepackError::Rootfs {
                path: crate::show::name(&rel),
                reason: "a file name starting with \".wh.\" would be read as a whiteout".into(),
            });
        }
        if kind != Upper::Whiteout && ft.is_dir() {
            // the same errors as the rest of the walk
            let children = children_rev(&host, rel.as_ref()).map_err(|e| match e {
                GenerateError::Io { path, source } => RepackError::Rootfs {
                    path,
                    reason: source.to_string(),
                },
                GenerateError::Invalid { path, reason } => RepackError::Rootfs {
                    path: crate::show::name(&path),
                    reason,
                },
            })?;
            stack.extend(children.into_iter().filter(|(_, child)| !masked(child)));
        }
        out.push((rel, kind));
    }
    Ok(out)
}

/// `repack` of an overlay bundle: the new layer is the upper directory
/// (every entry in it is an addition or a change; character devices 0:0
/// become whiteouts, opaque directories opaque whiteouts), so its cost
/// grows with the change, not with the image. Works mounted or not.
fn repack_overlay(
    lock: &WriteLock<'_>,
    bundle: &Path,
    meta: Meta,
    ov: crate::bundle::overlay::OverlayMeta,
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
    let new = add_layer(m, opts, &meta, tree_grant(&upper)?, entries.len(), |tar| {
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
    })?;
    Ok(RepackOutcome {
        path: new,
        entries: entries.len(),
        stats,
        meta,
        spec: Spec::default(),
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
fn refresh_overlay(
    bundle: &Path,
    outcome: &RepackOutcome,
    mut ov: crate::bundle::overlay::OverlayMeta,
) -> Result<(), RepackError> {
    use crate::bundle::overlay as bo;
    let err = |e: bo::OverlayError| bundle_err(bundle, e.to_string());
    let old_path = DescriptorPath(outcome.meta.from_descriptor_path.descriptor_walk.clone());
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
        crate::layer::overlay::copy_dir_meta(&layer, &upper, ov.rootless)
            .map_err(|(p, e)| bundle_err(bundle, format!("{}: {e}", p.display())))?;
        ov.lowerdirs.insert(0, layer_str);
    }
    if !bo::is_mounted(&rootfs) {
        bo::mount(bundle, &ov).map_err(err)?;
    }
    let old_spec = load_spec(bundle, &old_path)?;
    rewrite_bundle(bundle, outcome, &old_spec, Some(ov))?;
    if !was_mounted {
        bo::umount(bundle).map_err(err)?;
    }
    Ok(())
}
