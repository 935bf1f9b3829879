//! Content-addressable storage: the [`Cas`] trait every command is written
//! against, the built-in OCI image-layout directory driver ([`DirCas`]),
//! verified reads, references (tags) and garbage collection.
//!
//! The trait is deliberately small (like umoci's `cas.Engine` and
//! containerd's content store); everything else — JSON blobs, tags, walks,
//! gc — is derived from it in [`ext`], [`refs`] and [`gc`], so a storage
//! driver only implements storage.

pub mod check;
pub mod copy;
pub mod dir;
pub mod ext;
pub mod gc;
mod reach;
pub mod referrers;
pub mod refs;
mod verified;

use std::io::{Read, Write};

use crate::oci::{Digest, DigestError, OciError};

pub use dir::DirCas;
pub use verified::VerifiedReader;

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// The blob, index or layout does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// An I/O error on a named object.
    #[error("{what}: {source}")]
    Io {
        /// The object (a path or digest) the error happened on.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Content did not hash to its digest. The message contains umoci's
    /// `verified reader digest mismatch` (scripts look for it).
    #[error("blob {expected}: verified reader digest mismatch (content hashes to {actual})")]
    DigestMismatch {
        /// The digest the descriptor promised.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// A blob read through a plugin failed its check (`inner`, a digest
    /// or size mismatch): the plugin named.
    #[error("{inner}, read through driver {driver}")]
    ReadThrough {
        /// The plugin, as errors name it.
        driver: String,
        /// The failed check.
        inner: Box<CasError>,
    },
    /// Content is longer or shorter than its descriptor says. The message
    /// contains umoci's `verified reader size mismatch`.
    #[error("blob {digest}: verified reader size mismatch (descriptor says {expected} bytes, content has {actual}{more})", more = if *.longer { " or more" } else { "" })]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes seen.
        actual: u64,
        /// Whether reading stopped early because the content was too long.
        longer: bool,
    },
    /// The layout itself is not a valid OCI image layout.
    #[error("invalid image layout {path}: {reason}")]
    InvalidLayout {
        /// The layout path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A document in the store is invalid.
    #[error("{what}: {source}")]
    Document {
        /// Which document (e.g. `index.json`, `manifest sha256:…`).
        what: String,
        /// The parse error.
        #[source]
        source: OciError,
    },
    /// A digest string is invalid.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// `index.json` changed between read and write (compare-and-swap lost).
    #[error("index.json was changed concurrently")]
    Conflict,
    /// `index.json` was read partially ([`Cas::want_refs`]): writing it
    /// back would drop every entry not read, so it is refused.
    #[error(
        "refusing to write index.json: this command read it partially (only the refs {}), and writing it back would drop every other entry",
        refs.join(", ")
    )]
    PartialIndex {
        /// The refs that were read.
        refs: Vec<String>,
    },
    /// A limit of [`crate::limits`] was hit.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
    /// Something else the caller asked for is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The manifest is an OCI artifact (its config is not an image config),
    /// so it has no root filesystem or runtime configuration.
    #[error(
        "manifest {manifest} is an artifact, not an image: its config has media type {config_media_type}{}; only image configs ({}, {}) can be unpacked",
        if artifact_type.is_empty() { String::new() } else { format!(" (artifactType {artifact_type})") },
        crate::oci::media::CONFIG,
        crate::oci::media::DOCKER_CONFIG
    )]
    NotAnImage {
        /// The manifest's digest.
        manifest: Digest,
        /// The media type of its config descriptor.
        config_media_type: String,
        /// Its `artifactType`, if any.
        artifact_type: String,
    },
    /// Several `index.json` entries carry the tag and point at different
    /// descriptors: which one is meant cannot be told (the Go umoci's
    /// `tag is ambiguous`).
    #[error(
        "tag is ambiguous: {} (its index.json entries point at {} different descriptors: {})",
        crate::show::name(tag),
        digests.len(),
        digests.iter().take(4).map(ToString::to_string).collect::<Vec<_>>().join(", ")
            + if digests.len() > 4 { ", …" } else { "" }
    )]
    AmbiguousTag {
        /// The tag.
        tag: String,
        /// The distinct digests its entries name, in `index.json` order.
        digests: Vec<Digest>,
    },
}

impl CasError {
    /// The error itself, or the failed check a [`CasError::ReadThrough`]
    /// carries.
    pub fn unwrapped(&self) -> &CasError {
        match self {
            CasError::ReadThrough { inner, .. } => inner.unwrapped(),
            e => e,
        }
    }

    /// A blob writer's check at commit: `Ok` when nothing was expected or
    /// the bytes written hash to what was, else [`CasError::DigestMismatch`].
    pub fn check_digest(expected: Option<&Digest>, actual: &Digest) -> Result<(), CasError> {
        match expected {
            Some(exp) if exp != actual => Err(CasError::DigestMismatch {
                expected: exp.clone(),
                actual: actual.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Wrap an I/O error on `what`; errors raised by verified readers (which
    /// travel inside `io::Error`) come back out as themselves.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> CasError {
        match crate::error::Kinded::take::<CasError>(source) {
            Ok(inner) => *inner,
            Err(source) => CasError::Io {
                what: what.into(),
                source,
            },
        }
    }
}

/// The writer lock of a store, held: while it lives, a concurrent gc does
/// not sweep (blobs written but not yet tagged stay safe), and it is the
/// proof the writing functions ask for — [`refs::set_tag`],
/// [`refs::set_tag_if`], [`refs::remove_tag`], [`ext::update_index`],
/// [`crate::mutate::Mutator::new`], [`crate::bundle::repack::repack_bundle`] — so a
/// caller cannot forget to take it. Take it before the first blob of a
/// change is written and drop it after the tag is set.
pub struct WriteLock<'a> {
    cas: &'a dyn Cas,
    _held: Box<dyn std::any::Any>,
}

impl<'a> WriteLock<'a> {
    /// Take the writer lock of `cas` ([`Cas::writer_guard`]).
    pub fn new(cas: &'a dyn Cas) -> Result<WriteLock<'a>, CasError> {
        Ok(WriteLock {
            _held: cas.writer_guard()?,
            cas,
        })
    }

    /// The store this lock is held on.
    pub fn cas(&self) -> &'a dyn Cas {
        self.cas
    }

    /// Whether this lock is held on `cas` (the same object).
    pub fn is_for(&self, cas: &dyn Cas) -> bool {
        std::ptr::addr_eq(self.cas as *const dyn Cas, cas as *const dyn Cas)
    }
}

impl std::fmt::Debug for WriteLock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteLock")
    }
}

/// A blob being written: bytes go in through [`Write`], and
/// [`BlobWriter::commit`] makes the blob visible under its digest.
/// Dropping a writer without committing leaves nothing behind.
pub trait BlobWriter: Write + Send {
    /// Finish the blob and publish it. If `expected` is given and the content
    /// hashes differently, nothing is published and an error is returned.
    fn commit(self: Box<Self>, expected: Option<&Digest>) -> Result<(Digest, u64), CasError>;
}

/// What the writer of a new blob knows of it before writing
/// ([`Cas::begin_blob_for`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct BlobHint<'a> {
    /// The digest the content should have.
    pub digest: Option<&'a Digest>,
    /// Its size, if known.
    pub size: Option<u64>,
    /// Its media type (a layer's says its compression).
    pub media_type: Option<&'a str>,
}

/// A content-addressable store holding blobs and one `index.json`.
///
/// Implementations do storage only; verification of what they return is
/// done by the callers in [`ext`] (a driver never vouches for content).
pub trait Cas: Send + Sync {
    /// Open a blob for reading, unverified. Missing blobs give
    /// [`CasError::NotFound`].
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CasError>;

    /// The stored size of a blob, or `None` if absent.
    fn stat_blob(&self, digest: &Digest) -> Result<Option<u64>, CasError>;

    /// Start writing a new blob.
    fn begin_blob(&self) -> Result<Box<dyn BlobWriter>, CasError>;

    /// Start writing a new blob about which the caller knows something
    /// ([`BlobHint`]: its digest, size or media type), so a store can act
    /// on it (a compressing store skips compressed layers). Hints only:
    /// what is written is verified all the same. The default ignores them.
    fn begin_blob_for(&self, hint: &BlobHint<'_>) -> Result<Box<dyn BlobWriter>, CasError> {
        let _ = hint;
        self.begin_blob()
    }

    /// Delete a blob; deleting a missing blob is not an error.
    fn delete_blob(&self, digest: &Digest) -> Result<(), CasError>;

    /// Every blob digest in the store.
    fn list_blobs(&self) -> Result<Vec<Digest>, CasError>;

    /// The raw bytes of `index.json`.
    fn read_index_raw(&self) -> Result<Vec<u8>, CasError>;

    /// Replace `index.json` with `new` if and only if it still holds `old`
    /// (compare-and-swap); otherwise fail with [`CasError::Conflict`]. The
    /// replacement is atomic: readers see the old or the new document.
    fn swap_index_raw(&self, old: &[u8], new: &[u8]) -> Result<(), CasError>;

    /// Remove temporaries left behind by killed writers.
    fn clean(&self) -> Result<(), CasError>;

    /// Hold off garbage collection: while the returned guard lives, a
    /// concurrent gc will not sweep (blobs written but not yet referenced
    /// stay safe). The default does nothing. Callers take it through
    /// [`WriteLock::new`], which the writing functions require.
    fn writer_guard(&self) -> Result<Box<dyn std::any::Any>, CasError> {
        Ok(Box::new(()))
    }

    /// Run `f` while excluding every writer holding a [`Cas::writer_guard`].
    /// The default runs `f` directly.
    fn exclusive(&self, f: &mut dyn FnMut() -> Result<(), CasError>) -> Result<(), CasError> {
        f()
    }

    /// The driver content read through this store comes from, as errors
    /// name it (`driver NAME (FILE)`): a blob that fails its check names
    /// it, so a plugin's bug can be told from a damaged store. `None` (the
    /// default) for the built-in directory driver.
    fn driver_label(&self) -> Option<String> {
        None
    }

    /// The command reads only the refs `refs` of `index.json` (the tags
    /// it resolves) and never writes the index: a store where each entry
    /// costs a request (a registry) may then read just those entries.
    /// Irrevocable (a later call adds refs): from then on the store must
    /// refuse to write the index
    /// ([`CasError::PartialIndex`]), since what it read may lack the other
    /// entries. Never call it for a command that writes the index. The
    /// default does nothing (the whole index is read as always).
    fn want_refs(&self, refs: &[String]) {
        let _ = refs;
    }

    /// Whether reads come over the network (a registry, an object
    /// store): unpack then fetches the next layers while one is extracted.
    /// The default: no (a local store is read as it is extracted).
    fn reads_over_network(&self) -> bool {
        false
    }

    /// How many blob writers are worth running at once (each upload to an
    /// object store or registry waits on its own round trips): `copy`
    /// copies that many blobs side by side. The default: one.
    fn parallel_writes(&self) -> usize {
        1
    }

    /// Whether the store keeps `index.json` entries without a tag (a
    /// layout does; a registry keeps tags only, so referrers go there by
    /// the referrers tag schema). The default: it does.
    fn holds_untagged_entries(&self) -> bool {
        true
    }
}

impl crate::cas::CasError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::cas::CasError as E;
        match self {
            E::NotFound(_) => crate::error::ErrorKind::NotFound,
            E::Io { source, .. } => crate::error::ErrorKind::of_io(source),
            E::DigestMismatch { .. } | E::SizeMismatch { .. } => crate::error::ErrorKind::Integrity,
            E::ReadThrough { inner, .. } => inner.kind(),
            E::InvalidLayout { .. } | E::Document { .. } | E::Digest(_) | E::Limit(_) => {
                crate::error::ErrorKind::InvalidInput
            }
            E::Invalid(_) | E::AmbiguousTag { .. } | E::PartialIndex { .. } => {
                crate::error::ErrorKind::InvalidInput
            }
            E::Conflict => crate::error::ErrorKind::Conflict,
            E::NotAnImage { .. } => crate::error::ErrorKind::Unsupported,
        }
    }
}

rumoci_core::wraps!(crate::cas::CasError);
