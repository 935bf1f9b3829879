//! `repack`: the changes made to a bundle's rootfs since `unpack`, as one new
//! layer on top of the image the bundle came from (umoci's `repack`).
//!
//! The rootfs is compared with the bundle's mtree manifest (through the stat
//! cache where it is valid), masked paths are dropped, deleted trees are
//! reduced to their topmost whiteout, and the remaining entries are written
//! in path order as a deterministic tar, compressed and hashed in the same
//! pass. An empty diff adds no layer, only an `empty_layer` history entry.

mod commit;
mod tree;
mod upper;

use std::collections::HashSet;
use std::path::Path;

use crate::bundle::meta::Meta;
use crate::cas::WriteLock;
use crate::cas::refs::DescriptorPath;
use crate::layer::generate::GenerateError;
use crate::mtree::diff::{self, DiffStats};
use crate::mutate::history::{HistoryEntry, HistoryError, MtimeClamp};
use crate::mutate::{Compression, MutateError};
use crate::oci::media;

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
    /// The history entry or `SOURCE_DATE_EPOCH` is invalid.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// Options of [`repack_bundle`]. The defaults are what `rumoci repack`
/// does without flags: mtimes clamped to `SOURCE_DATE_EPOCH` when it is
/// set, a history entry `umoci repack` (created at `SOURCE_DATE_EPOCH`,
/// else now; the image's author), compression following the image's last
/// layer, the image's volumes masked. The same change repacked through the
/// library and through the command line makes the same image.
#[derive(Debug, Clone)]
pub struct RepackOptions {
    /// Layer compression; `None` follows the image's last layer.
    pub compression: Option<Compression>,
    /// Paths (relative to `/`) whose changes are left out.
    pub mask_paths: Vec<String>,
    /// Leave changes under the image's volumes in (`--no-mask-volumes`).
    pub no_mask_volumes: bool,
    /// How mtimes are clamped (default: to `SOURCE_DATE_EPOCH`).
    pub clamp_mtime: MtimeClamp,
    /// The history entry (`None` for `--no-history`); an author not given
    /// is the image's, as umoci does.
    pub history: Option<HistoryEntry>,
}

/// The `created_by` of the history entry a repack records by default.
pub const REPACK_CREATED_BY: &str = "umoci repack";

impl Default for RepackOptions {
    fn default() -> RepackOptions {
        RepackOptions {
            compression: None,
            mask_paths: Vec::new(),
            no_mask_volumes: false,
            clamp_mtime: MtimeClamp::default(),
            history: Some(HistoryEntry::new(REPACK_CREATED_BY)),
        }
    }
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
    /// The bundle's metadata as read, and every path the comparison found
    /// changed (before masking): what [`refresh_bundle`] needs to reuse the
    /// digests of unchanged files from the old manifest.
    meta: Meta,
    changed: HashSet<Vec<u8>>,
}

fn bundle_err(bundle: &Path, reason: impl Into<String>) -> RepackError {
    RepackError::Bundle {
        bundle: bundle.display().to_string(),
        reason: reason.into(),
    }
}

/// Refuse to put the entry `name` in a layer if its file name would be
/// read back as a whiteout.
fn check_layer_name(name: &[u8]) -> Result<(), RepackError> {
    if crate::layer::generate::is_whiteout_name(name) {
        return Err(RepackError::Rootfs {
            path: crate::show::name(name),
            reason: "a file name starting with \".wh.\" would be read as a whiteout".into(),
        });
    }
    Ok(())
}

/// Read a bundle's `umoci.json` and check it points at a manifest.
pub fn read_meta(bundle: &Path) -> Result<(Meta, DescriptorPath), RepackError> {
    let meta = Meta::read(bundle).map_err(|e| bundle_err(bundle, e.to_string()))?;
    let path = DescriptorPath(meta.from_descriptor_path.descriptor_walk.clone());
    if path.target().media_type != media::MANIFEST {
        let why = if media::is_manifest(&path.target().media_type) {
            "rumoci repacks only onto OCI image manifests (convert the image first, e.g. skopeo copy --format oci)"
        } else {
            "not an image manifest"
        };
        return Err(bundle_err(
            bundle,
            format!(
                "umoci.json: descriptor {} is a {}: {why}",
                path.target().digest,
                path.target().media_type
            ),
        ));
    }
    Ok((meta, path))
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
        return upper::repack(lock, bundle, meta, ov, path, opts);
    }
    tree::repack(lock, bundle, meta, path, opts)
}

/// `--refresh-bundle`: point the bundle at the new image — a fresh mtree
/// and stat cache named after the new manifest, and `umoci.json` — then
/// drop the old manifest files. Digests of files the repack found
/// unchanged are reused from the old manifest.
pub fn refresh_bundle(bundle: &Path, outcome: &RepackOutcome) -> Result<(), RepackError> {
    if let Some(ov) = outcome.meta.overlay.clone() {
        return upper::refresh(bundle, outcome, ov);
    }
    commit::rewrite_bundle(bundle, outcome, None)
}

impl crate::bundle::repack::RepackError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::bundle::repack::RepackError as E;
        match self {
            E::Bundle { .. } | E::Rootfs { .. } => crate::error::ErrorKind::InvalidInput,
            E::Diff(d) => d.kind(),
            E::Generate(g) => g.kind(),
            E::Mutate(m) => m.kind(),
            E::Cas(c) => c.kind(),
            E::History(h) => h.kind(),
        }
    }
}

rumoci_core::wraps!(crate::bundle::repack::RepackError);
