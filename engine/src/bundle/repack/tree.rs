//! `repack` of a plain bundle: the rootfs compared with the bundle's mtree
//! manifest (through the stat cache where it is valid).

use std::collections::HashSet;
use std::io::BufReader;
use std::path::Path;

use super::commit::{add_layer, masks, member, tree_grant};
use super::{RepackError, RepackOptions, RepackOutcome, bundle_err, check_layer_name};
use crate::bundle::meta::Meta;
use crate::bundle::{ROOTFS, mtree_name, statcache_name};
use crate::cas::WriteLock;
use crate::cas::refs::DescriptorPath;
use crate::mtree::diff::{self, DeltaKind, StreamError};
use crate::mtree::parse::{self, Spec};
use crate::mtree::statcache::{StatCache, StatCacheStream};
use crate::mutate::Mutator;
use crate::path::BString;

/// `repack` of a plain bundle: the rootfs compared with the mtree.
pub(super) fn repack(
    lock: &WriteLock<'_>,
    bundle: &Path,
    meta: Meta,
    path: DescriptorPath,
    opts: &RepackOptions,
) -> Result<RepackOutcome, RepackError> {
    let mtree = open_mtree(bundle, &path)?;
    let rootfs = bundle.join(ROOTFS);
    if !std::fs::symlink_metadata(&rootfs).is_ok_and(|m| m.is_dir()) {
        return Err(bundle_err(bundle, "rootfs/ is missing or not a directory"));
    }
    let m = Mutator::new(lock, path.clone())?;

    // opened up once (unprivileged) for both the comparison and the layer
    let grant = tree_grant(&rootfs)?;
    let (deltas, stats) = compare(bundle, &path, mtree, &rootfs, &grant)?;
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
        if d.kind != DeltaKind::Missing {
            check_layer_name(&name)?;
        }
        names.push(name);
    }

    let new = add_layer(m, opts, &meta, grant, &rootfs, deltas.len(), |tar| {
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
        changed,
    })
}

/// Compare the rootfs with the bundle's mtree: streamed (the mtree and the
/// stat cache read alongside the walk, never held whole), or, for a
/// manifest not in go-mtree's walk order, parsed into memory first.
fn compare(
    bundle: &Path,
    path: &DescriptorPath,
    f: std::fs::File,
    rootfs: &Path,
    grant: &crate::fs::unpriv::TreeGrant,
) -> Result<(Vec<diff::Delta>, diff::DiffStats), RepackError> {
    let p = bundle.join(mtree_name(path));
    let bad = |e: &dyn std::fmt::Display| bundle_err(bundle, format!("{}: {e}", p.display()));
    let cache = std::fs::File::open(bundle.join(statcache_name(path)))
        .ok()
        .and_then(|f| {
            StatCacheStream::new(BufReader::with_capacity(1 << 20, f))
                .ok()
                .flatten()
        });
    match diff::compare_streaming(rootfs, BufReader::with_capacity(1 << 20, f), cache, grant) {
        Ok(r) => Ok(r),
        Err(StreamError::Diff(e)) => Err(e.into()),
        Err(StreamError::Parse(e)) => Err(bad(&e)),
        Err(StreamError::Unordered(why)) => {
            tracing::debug!("{}: {why}: compared in memory", p.display());
            let spec = load_spec(bundle, path)?;
            let cache = load_cache(bundle, path);
            Ok(diff::compare_granted(rootfs, &spec, cache.as_ref(), grant)?)
        }
    }
}

/// The bundle's mtree file for the image at `path`, opened.
fn open_mtree(bundle: &Path, path: &DescriptorPath) -> Result<std::fs::File, RepackError> {
    let p = bundle.join(mtree_name(path));
    std::fs::File::open(&p).map_err(|e| bundle_err(bundle, format!("{}: {e}", p.display())))
}

fn load_spec(bundle: &Path, path: &DescriptorPath) -> Result<Spec, RepackError> {
    let p = bundle.join(mtree_name(path));
    let f = open_mtree(bundle, path)?;
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
