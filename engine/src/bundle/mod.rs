//! Runtime bundles, as umoci makes them: `rootfs/`, `config.json`,
//! `umoci.json` and the image's `sha256_<hex>.mtree` (with rumoci's stat
//! cache beside it).
//!
//! * [`unpack`]: an image into a new bundle;
//! * [`repack`]: the bundle's changes as a new layer (from the mtree, or
//!   from an overlay bundle's upper directory), and `--refresh-bundle`;
//! * [`mount`]: overlay bundles' mounts (`rumoci mount`/`umount`);
//! * [`meta`]: `umoci.json`; [`runtime`] and [`user`]: `config.json`.
//!
//! The modules depend on each other in one direction only: `repack` uses
//! `unpack` (to write a fresh mtree), `mount` and `meta`; `unpack` uses
//! `mount`, `meta` and `runtime`; none of them uses `repack`.

pub mod meta;
pub mod mount;
pub mod repack;
pub mod runtime;
pub mod unpack;
pub mod user;

use std::path::Path;

use crate::cas::refs::DescriptorPath;

/// The rootfs directory name inside a bundle.
pub const ROOTFS: &str = "rootfs";

/// The mtree file name for a manifest: `sha256_<hex>.mtree`.
pub fn mtree_name(path: &DescriptorPath) -> String {
    format!("{}.mtree", path.target().digest.file_stem())
}

/// The stat cache file name for a manifest: `sha256_<hex>.statcache`.
pub fn statcache_name(path: &DescriptorPath) -> String {
    format!("{}.statcache", path.target().digest.file_stem())
}

/// Errors of bundle creation and of the bundle's files.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Extracting the layers failed.
    #[error(transparent)]
    Unpack(#[from] crate::rootfs::UnpackError),
    /// Reading the image failed.
    #[error(transparent)]
    Cas(#[from] crate::cas::CasError),
    /// Anything else, with the object named.
    #[error("{0}")]
    Other(String),
}

/// Write `data` to `path` atomically ([`crate::fs::atomic::write`]).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), BundleError> {
    crate::fs::atomic::write(path, data)
        .map_err(|e| BundleError::Other(format!("{}: {e}", path.display())))
}

impl crate::bundle::BundleError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::bundle::BundleError as E;
        match self {
            E::Unpack(u) => u.kind(),
            E::Cas(c) => c.kind(),
            E::Other(_) => crate::error::ErrorKind::InvalidInput,
        }
    }
}

rumoci_core::wraps!(crate::bundle::BundleError);
