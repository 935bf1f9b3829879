//! The limits every walk over outside data obeys, defined once.
//!
//! Image layouts, bundles' `umoci.json` and plugins' answers come from
//! outside and may be hostile. Every walk over them is iterative (an
//! explicit stack or queue, never recursion on the input's shape) and
//! bounded by these constants, so that no input can overflow the stack,
//! exhaust memory or run for ever. A limit hit is an ordinary error
//! ([`LimitError`]) naming the object and the limit.
//!
//! The values are far above anything a real image uses, and above what the
//! Go umoci is known to handle well in practice: the Go umoci itself has no
//! limits (its walks recurse on a growable stack), so rumoci's limits only
//! refuse structures that no tool produces. `docs/design.md` says why each
//! exists.

use std::fmt;

/// How long a descriptor path may be: an `index.json` entry, the indexes
/// nested beneath it and the manifest at the end (so at most
/// `MAX_INDEX_DEPTH - 1` nested indexes). Real images nest one or two
/// levels; rumoci resolves and rewrites paths of this length without
/// recursion (a retag rewrites every index on the path).
pub const MAX_INDEX_DEPTH: usize = 4096;

/// Largest JSON document rumoci loads: `index.json`, indexes, manifests,
/// configs (64 MiB; the Go umoci loads them whole too).
pub const MAX_DOCUMENT_SIZE: u64 = 64 << 20;

/// Most descriptors one document may hold (the manifests of an index or
/// `index.json`, the layers of a manifest). Also the deepest snapshot chain
/// a layer store may report, since a chain is one image's layers.
pub const MAX_DOCUMENT_DESCRIPTORS: usize = 1 << 16;

/// Most descriptors one walk (resolving a tag, `verify`, `gc`'s mark) visits,
/// counting a descriptor reached by several paths once per path where the
/// walk follows paths. Bounds "billion laughs" layouts: indexes that name
/// the same index many times, nested.
pub const MAX_WALK_DESCRIPTORS: usize = 1 << 20;

/// Most blobs a content store may list (`gc`'s sweep).
pub const MAX_LISTED_BLOBS: usize = 1 << 22;

/// Most snapshots a layer store may list.
pub const MAX_SNAPSHOTS: usize = 1 << 20;

/// Largest PAX extended header, GNU long name/link or sparse map accepted
/// in a layer, in bytes: the tar reader buffers one whole before its entry.
/// Go `archive/tar`'s own limit (`maxSpecialFileSize`), so every layer the
/// Go umoci reads passes (see `layer::tarread`).
pub const MAX_TAR_EXTENSION: u64 = 1 << 20;

/// Largest real size of a sparse member of a layer (1 TiB). A sparse map of
/// a few bytes can claim any size, and the file's digest hashes its holes
/// as zeros (the mtree records it; the Go umoci writes every zero), so the
/// size is the cost a few bytes of input can ask for. Go's own test data
/// goes to 60 GB.
pub const MAX_SPARSE_SIZE: u64 = 1 << 40;

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`MAX_INDEX_DEPTH`].
    IndexDepth,
    /// [`MAX_DOCUMENT_SIZE`] (with the size found).
    DocumentSize(u64),
    /// [`MAX_DOCUMENT_DESCRIPTORS`] (with the number found).
    DocumentDescriptors(usize),
    /// [`MAX_WALK_DESCRIPTORS`].
    WalkDescriptors,
    /// [`MAX_LISTED_BLOBS`].
    ListedBlobs,
    /// [`MAX_SNAPSHOTS`].
    Snapshots,
    /// [`MAX_DOCUMENT_DESCRIPTORS`] applied to a snapshot chain.
    SnapshotChain,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::IndexDepth => write!(
                f,
                "nested more than {MAX_INDEX_DEPTH} levels deep (limit MAX_INDEX_DEPTH)"
            ),
            Limit::DocumentSize(n) => write!(
                f,
                "{n} bytes is larger than a document may be (limit MAX_DOCUMENT_SIZE = {MAX_DOCUMENT_SIZE})"
            ),
            Limit::DocumentDescriptors(n) => write!(
                f,
                "{n} descriptors are more than a document may hold (limit MAX_DOCUMENT_DESCRIPTORS = {MAX_DOCUMENT_DESCRIPTORS})"
            ),
            Limit::WalkDescriptors => write!(
                f,
                "walk reaches more than {MAX_WALK_DESCRIPTORS} descriptors (limit MAX_WALK_DESCRIPTORS)"
            ),
            Limit::ListedBlobs => write!(
                f,
                "lists more than {MAX_LISTED_BLOBS} blobs (limit MAX_LISTED_BLOBS)"
            ),
            Limit::Snapshots => write!(
                f,
                "lists more than {MAX_SNAPSHOTS} snapshots (limit MAX_SNAPSHOTS)"
            ),
            Limit::SnapshotChain => write!(
                f,
                "snapshot chain longer than {MAX_DOCUMENT_DESCRIPTORS} (limit MAX_DOCUMENT_DESCRIPTORS)"
            ),
        }
    }
}

/// A limit was hit on `object` (a tag, digest, path or plugin).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {limit}")]
pub struct LimitError {
    /// What the limit was hit on, already shortened for display.
    pub object: String,
    /// Which limit.
    pub limit: Limit,
}

impl LimitError {
    /// `limit` hit on `object`.
    pub fn new(object: impl Into<String>, limit: Limit) -> LimitError {
        LimitError {
            object: object.into(),
            limit,
        }
    }
}

/// Fail unless a document of `size` bytes is within [`MAX_DOCUMENT_SIZE`].
pub fn check_document_size(object: impl fmt::Display, size: u64) -> Result<(), LimitError> {
    if size > MAX_DOCUMENT_SIZE {
        return Err(LimitError::new(
            object.to_string(),
            Limit::DocumentSize(size),
        ));
    }
    Ok(())
}

/// Fail unless a document's `count` descriptors are within
/// [`MAX_DOCUMENT_DESCRIPTORS`].
pub fn check_document_descriptors(
    object: impl fmt::Display,
    count: usize,
) -> Result<(), LimitError> {
    if count > MAX_DOCUMENT_DESCRIPTORS {
        return Err(LimitError::new(
            object.to_string(),
            Limit::DocumentDescriptors(count),
        ));
    }
    Ok(())
}

impl crate::limits::LimitError {
    /// What kind of failure this is: always [`crate::error::ErrorKind::InvalidInput`].
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::InvalidInput
    }
}

crate::wraps!(crate::limits::LimitError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_object_and_limit() {
        let e = LimitError::new("tag t: index sha256:ab", Limit::IndexDepth);
        assert_eq!(
            e.to_string(),
            "tag t: index sha256:ab: nested more than 4096 levels deep (limit MAX_INDEX_DEPTH)"
        );
        assert!(check_document_size("x", MAX_DOCUMENT_SIZE).is_ok());
        let e = check_document_size("manifest sha256:cd", MAX_DOCUMENT_SIZE + 1)
            .expect_err("too large");
        assert!(
            e.to_string()
                .starts_with("manifest sha256:cd: 67108865 bytes")
        );
        assert!(check_document_descriptors("x", MAX_DOCUMENT_DESCRIPTORS + 1).is_err());
    }
}
