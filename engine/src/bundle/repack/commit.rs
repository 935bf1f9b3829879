//! What every repack ends with: the new layer committed onto the image
//! ([`add_layer`]), and for `--refresh-bundle` the bundle's files rewritten
//! for the new image ([`rewrite_bundle`]).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::{RepackError, RepackOptions, RepackOutcome, bundle_err};
use crate::bundle::meta::Meta;
use crate::bundle::{ROOTFS, mtree_name, statcache_name};
use crate::cas::refs::DescriptorPath;
use crate::fs::unpriv::TreeGrant;
use crate::layer::generate::{GenerateOptions, TarGenerator};
use crate::layer::idmap::owner_mapper;
use crate::mtree::parse;
use crate::mutate::{Compression, LayerWriter, Mutator};
use crate::path::{self, BStr, BString, ByteSlice};

/// The sha256 of every regular file in the bundle's manifest `mtree` that
/// is not in `changed`, read entry by entry.
pub(super) fn unchanged_digests(
    bundle: &Path,
    mtree: &Path,
    changed: &HashSet<Vec<u8>>,
) -> Result<BTreeMap<BString, [u8; 32]>, RepackError> {
    let bad = |e: &dyn std::fmt::Display| bundle_err(bundle, format!("{}: {e}", mtree.display()));
    let f = std::fs::File::open(mtree).map_err(|e| bad(&e))?;
    let mut r = parse::Reader::new(std::io::BufReader::with_capacity(1 << 20, f));
    let mut out = BTreeMap::new();
    while let Some(ev) = r.next_event().map_err(|e| bad(&e))? {
        if let parse::Event::Entry { path, keywords, .. } = ev
            && !changed.contains(&path)
            && let Some(d) = keywords.get("sha256digest")
        {
            let mut b = [0u8; 32];
            if hex::decode_to_slice(d, &mut b).is_ok() {
                out.insert(BString::from(path), b);
            }
        }
    }
    Ok(out)
}

/// Open up the tree at `root` for an unprivileged owner (see
/// [`crate::fs::unpriv`]).
pub(super) fn tree_grant(root: &Path) -> Result<TreeGrant, RepackError> {
    TreeGrant::new(root).map_err(|e| RepackError::Rootfs {
        path: root.display().to_string(),
        reason: e.to_string(),
    })
}

/// The paths whose changes are left out: `--mask-path`s and, unless
/// `--no-mask-volumes`, the image's volumes.
pub(super) fn masks(opts: &RepackOptions, m: &Mutator<'_>) -> Vec<Vec<u8>> {
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
pub(super) fn member<'a>(root: &Path, name: &'a BStr) -> (PathBuf, &'a BStr) {
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
pub(super) fn add_layer(
    mut m: Mutator<'_>,
    opts: &RepackOptions,
    meta: &Meta,
    grant: TreeGrant,
    root: &Path,
    entries: usize,
    write: impl FnOnce(&mut TarGenerator<LayerWriter>) -> Result<(), RepackError>,
) -> Result<DescriptorPath, RepackError> {
    let clamp_mtime = opts.clamp_mtime.bound()?;
    let mut history = match &opts.history {
        Some(h) => Some(h.to_history(&m.config().author, entries == 0)?),
        None => None,
    };
    if let Some(h) = &mut history
        && h.author.is_empty()
    {
        h.author = m.config().author.clone();
    }
    if entries == 0 {
        if let Some(h) = history {
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
        clamp_mtime,
        grant: Some(grant),
    };
    let mut tar = TarGenerator::new(layer, gen_opts);
    tar.read_beneath(root)?;
    write(&mut tar)?;
    let layer = tar.finish()?;
    m.finish_layer(layer, history)?;
    Ok(m.commit()?)
}

/// The end of every refresh: a new mtree and stat cache for the new image
/// from the bundle's rootfs as it is now (digests of files the repack found
/// unchanged reused from the old mtree), the new `umoci.json` (with `overlay`), and the old
/// image's mtree and stat cache removed.
pub(super) fn rewrite_bundle(
    bundle: &Path,
    outcome: &RepackOutcome,
    overlay: Option<crate::bundle::mount::OverlayMeta>,
) -> Result<(), RepackError> {
    let old_path = DescriptorPath(outcome.meta.from_descriptor_path.descriptor_walk.clone());
    let new_path = &outcome.path;
    let rootfs = bundle.join(ROOTFS);
    let digests = unchanged_digests(
        bundle,
        &bundle.join(mtree_name(&old_path)),
        &outcome.changed,
    )?;
    let written = crate::bundle::unpack::write_bundle_manifest(&rootfs, bundle, new_path, &digests)
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
