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
use crate::cas::Cas;
use crate::cas::refs::DescriptorPath;
use crate::layer::generate::{GenerateOptions, TarGenerator, is_whiteout_name};
use crate::layer::idmap::owner_mapper;
use crate::layer::root::clean_path;
use crate::mtree::diff::{self, DeltaKind, DiffStats};
use crate::mtree::parse::{self, Spec};
use crate::mtree::statcache::StatCache;
use crate::mutate::{Compression, MutateError, Mutator};
use crate::oci::{History, media};

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
    #[error("rootfs {path}: {reason}")]
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
    Generate(#[from] crate::layer::generate::GenerateError),
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
    let meta = Meta::read(bundle).map_err(|e| bundle_err(bundle, e))?;
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

fn unchanged_digests(spec: &Spec, changed: &HashSet<Vec<u8>>) -> BTreeMap<String, [u8; 32]> {
    spec.entries
        .iter()
        .filter(|(k, _)| !changed.contains(k.as_slice()))
        .filter_map(|(k, kw)| {
            let d = kw.get("sha256digest")?;
            let mut b = [0u8; 32];
            hex::decode_to_slice(d, &mut b).ok()?;
            Some((String::from_utf8(k.clone()).ok()?, b))
        })
        .collect()
}

/// Repack `bundle` onto the image it was unpacked from. The caller holds
/// the layout's writer lock and retags `outcome.path.root()`.
pub fn repack_bundle(
    cas: &dyn Cas,
    bundle: &Path,
    opts: &RepackOptions,
) -> Result<RepackOutcome, RepackError> {
    let (meta, path) = read_meta(bundle)?;
    let spec = load_spec(bundle, &path)?;
    let cache = load_cache(bundle, &path);
    let rootfs = bundle.join(ROOTFS);
    if !std::fs::symlink_metadata(&rootfs).is_ok_and(|m| m.is_dir()) {
        return Err(bundle_err(bundle, "rootfs/ is missing or not a directory"));
    }
    let mut m = Mutator::new(cas, path)?;

    let (deltas, stats) = diff::compare(&rootfs, &spec, cache.as_ref())?;
    let changed: HashSet<Vec<u8>> = deltas.iter().map(|d| d.path.clone()).collect();
    let mut masks: Vec<Vec<u8>> = opts
        .mask_paths
        .iter()
        .map(|p| clean_path(p).into_bytes())
        .collect();
    if !opts.no_mask_volumes {
        masks.extend(
            m.config()
                .config
                .volumes
                .keys()
                .map(|v| clean_path(v).into_bytes()),
        );
    }
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
        let name = String::from_utf8(d.path.clone()).map_err(|_| RepackError::Rootfs {
            path: String::from_utf8_lossy(&d.path).into_owned(),
            reason: "file name is not UTF-8".into(),
        })?;
        if d.kind != DeltaKind::Missing && is_whiteout_name(&name) {
            return Err(RepackError::Rootfs {
                path: name,
                reason: "a file name starting with \".wh.\" would be read as a whiteout".into(),
            });
        }
        names.push(name);
    }

    let mut history = opts.history.clone();
    if let Some(h) = &mut history
        && h.author.is_empty()
    {
        h.author = m.config().author.clone();
    }
    if deltas.is_empty() {
        if let Some(mut h) = history {
            h.empty_layer = true;
            m.add_history(h);
        }
        let new = m.commit()?;
        return Ok(RepackOutcome {
            path: new,
            entries: 0,
            stats,
            meta,
            spec,
            changed,
        });
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
    };
    let mut tar = TarGenerator::new(layer, gen_opts);
    for (d, name) in deltas.iter().zip(&names) {
        match d.kind {
            DeltaKind::Missing => tar.add_whiteout(name)?,
            DeltaKind::Extra | DeltaKind::Modified => {
                let host: PathBuf = if name.is_empty() {
                    rootfs.clone()
                } else {
                    rootfs.join(name)
                };
                let arch = if name.is_empty() { "." } else { name.as_str() };
                tar.add_path(arch, &host)?;
            }
        }
    }
    let layer = tar.finish()?;
    m.finish_layer(layer, history)?;
    let new = m.commit()?;
    Ok(RepackOutcome {
        path: new,
        entries: deltas.len(),
        stats,
        meta,
        spec,
        changed,
    })
}

/// `--refresh-bundle`: point the bundle at the new image — a fresh mtree
/// and stat cache named after the new manifest, and `umoci.json` — then
/// drop the old manifest files. Digests of files the repack found
/// unchanged are reused from the old manifest.
pub fn refresh_bundle(bundle: &Path, outcome: &RepackOutcome) -> Result<(), RepackError> {
    let old_path = DescriptorPath(outcome.meta.from_descriptor_path.descriptor_walk.clone());
    let new_path = &outcome.path;
    let rootfs = bundle.join(ROOTFS);
    let written = crate::bundle::create::write_bundle_manifest(
        &rootfs,
        bundle,
        new_path,
        &unchanged_digests(&outcome.spec, &outcome.changed),
    )
    .map_err(|e| bundle_err(bundle, e.to_string()))?;
    tracing::debug!("refresh: {written} files re-hashed");
    let new_meta = Meta::new(new_path, outcome.meta.map_options.clone());
    new_meta.write(bundle).map_err(|e| bundle_err(bundle, e))?;
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
