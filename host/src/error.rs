//! The library's one public error type: [`Error`], with an [`ErrorKind`],
//! the object it is about and its cause.
//!
//! Each module keeps its own precise error (`CasError`, `UnpackError`,
//! `RepackError`, …), and each of those says its [`ErrorKind`] through a
//! `kind()` method. The entry points of [`crate::image`] return [`Error`],
//! which wraps them: [`Error::kind`] says what went wrong in a way a caller
//! can act on, [`Error::object`] names the tag, path or digest, and the
//! cause chain ([`std::error::Error::source`]) keeps every detail.
//!
//! ```
//! use rumoci::{Error, ErrorKind};
//! let e = rumoci::image::Store::open("/nonexistent/layout").unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::NotFound);
//! ```

use std::fmt;

/// A result of the library's entry points.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A layout, tag, blob, bundle, snapshot or file does not exist.
    NotFound,
    /// What the caller gave (or a document read from outside) is invalid,
    /// or exceeds a limit of [`crate::limits`].
    InvalidInput,
    /// Content does not match its digest or size, or a tree changed
    /// behind rumoci's back.
    Integrity,
    /// Something changed concurrently, or already exists.
    Conflict,
    /// The request is valid but not supported (an artifact where an image
    /// is needed, a media type or platform rumoci cannot handle).
    Unsupported,
    /// The operating system refused or failed.
    Io,
    /// A storage-driver plugin failed, trapped or broke the contract.
    Driver,
}

impl ErrorKind {
    /// The kind's name, in lower case (`not found`, `invalid input`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Io => "i/o",
            ErrorKind::Driver => "driver",
        }
    }

    /// The kind of an I/O error (one raised by a verified reader, which
    /// travels inside `io::Error`, keeps its own kind).
    pub fn of_io(e: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        if let Some(inner) = e.get_ref()
            && let Some(c) = inner.downcast_ref::<crate::cas::CasError>()
        {
            return c.kind();
        }
        match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::AlreadyExists => ErrorKind::Conflict,
            K::InvalidInput | K::InvalidData | K::InvalidFilename => ErrorKind::InvalidInput,
            K::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Io,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of the library's entry points: a kind, the object it is
/// about (when known), what was being done (when said) and the cause.
///
/// Shown, it is `WHAT: CAUSE` (or the cause alone); the cause is also its
/// [`source`](std::error::Error::source), so a chain walker sees every
/// layer, and [`Error::find`] reaches a module error anywhere in it.
pub struct Error {
    kind: ErrorKind,
    object: Option<String>,
    what: Option<String>,
    cause: Cause,
}

/// A message as a cause.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl Error {
    /// An error of `kind` caused by `cause`.
    pub fn new(kind: ErrorKind, cause: impl Into<Cause>) -> Error {
        Error {
            kind,
            object: None,
            what: None,
            cause: cause.into(),
        }
    }

    /// An error of `kind` whose cause is the message `msg`.
    pub fn msg(kind: ErrorKind, msg: impl Into<String>) -> Error {
        Error::new(kind, Message(msg.into()))
    }

    /// [`ErrorKind::InvalidInput`] with a message.
    pub fn invalid(msg: impl Into<String>) -> Error {
        Error::msg(ErrorKind::InvalidInput, msg)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The object the error is about (a tag as `LAYOUT:TAG`, a path, a
    /// digest), when the entry point named one.
    pub fn object(&self) -> Option<&str> {
        self.object.as_deref()
    }

    /// The cause (a module error, an I/O error, a message).
    pub fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.cause
    }

    /// The first error of type `T` in the chain (this error's cause and
    /// theirs), e.g. `e.find::<rumoci::cas::CasError>()`.
    pub fn find<T: std::error::Error + 'static>(&self) -> Option<&T> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*self.cause);
        while let Some(e) = next {
            if let Some(t) = e.downcast_ref::<T>() {
                return Some(t);
            }
            next = e.source();
        }
        None
    }

    /// Name the object the error is about (kept if one is named already).
    pub fn with_object(mut self, object: impl Into<String>) -> Error {
        if self.object.is_none() {
            self.object = Some(object.into());
        }
        self
    }

    /// Say what was being done: shown before the cause (`WHAT: CAUSE`).
    /// Said again, the earlier error becomes the cause.
    pub fn context(self, what: impl Into<String>) -> Error {
        if self.what.is_none() {
            return Error {
                what: Some(what.into()),
                ..self
            };
        }
        Error {
            kind: self.kind,
            object: self.object.clone(),
            what: Some(what.into()),
            cause: Box::new(self),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("object", &self.object)
            .field("what", &self.what)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.what {
            Some(w) => f.write_str(w),
            None => fmt::Display::fmt(&self.cause, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // with no `what`, the cause is shown as this error and again as
        // its source: chain printers that leave out a repeated message
        // (the CLI's) print it once, and downcasts along the chain reach it
        Some(&*self.cause)
    }
}

/// Add context to a result of the library's errors.
pub(crate) trait ResultExt<T> {
    /// On error, say what was being done (see [`Error::context`]).
    fn doing(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(ErrorKind::of_io(&e), e)
    }
}

/// `From<$t> for Error`, the kind from the type's `kind()`.
macro_rules! wraps {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Error {
                Error::new(e.kind(), e)
            }
        }
    )*};
}

wraps!(
    crate::cas::CasError,
    crate::oci::DigestError,
    crate::oci::OciError,
    crate::oci::gotime::TimeError,
    crate::limits::LimitError,
    crate::mutate::MutateError,
    crate::bundle::repack::RepackError,
    crate::rootfs::UnpackError,
    crate::bundle::BundleError,
    crate::bundle::mount::OverlayError,
    crate::stat::StatError,
    crate::mtree::MtreeError,
    crate::mtree::diff::DiffError,
    crate::mtree::parse::ParseError,
    crate::layer::generate::GenerateError,
    crate::layer::extract::ExtractError,
    crate::layer::copy::CopyError,
    crate::layer::idmap::IdMapError,
    crate::layer_store::LayerStoreError,
    crate::layer_store::record::RecordError,
);

#[cfg(feature = "wasm")]
wraps!(crate::driver::DriverError);

// ---- the kinds of the module errors ----

impl crate::cas::CasError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::cas::CasError as E;
        match self {
            E::NotFound(_) => ErrorKind::NotFound,
            E::Io { source, .. } => ErrorKind::of_io(source),
            E::DigestMismatch { .. } | E::SizeMismatch { .. } => ErrorKind::Integrity,
            E::InvalidLayout { .. } | E::Document { .. } | E::Digest(_) | E::Limit(_) => {
                ErrorKind::InvalidInput
            }
            E::Invalid(_) | E::AmbiguousTag { .. } => ErrorKind::InvalidInput,
            E::Conflict => ErrorKind::Conflict,
            E::NotAnImage { .. } => ErrorKind::Unsupported,
        }
    }
}

impl crate::oci::DigestError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            crate::oci::DigestError::UnsupportedAlgorithm(_) => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidInput,
        }
    }
}

impl crate::oci::OciError {
    /// What kind of failure this is: always [`ErrorKind::InvalidInput`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl crate::oci::gotime::TimeError {
    /// What kind of failure this is: always [`ErrorKind::InvalidInput`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl crate::limits::LimitError {
    /// What kind of failure this is: always [`ErrorKind::InvalidInput`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl crate::mutate::MutateError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::mutate::MutateError as E;
        match self {
            E::Cas(c) => c.kind(),
            E::Read(io) => ErrorKind::of_io(io),
            E::Invalid(_) => ErrorKind::InvalidInput,
        }
    }
}

impl crate::bundle::repack::RepackError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::bundle::repack::RepackError as E;
        match self {
            E::Bundle { .. } | E::Rootfs { .. } => ErrorKind::InvalidInput,
            E::Diff(d) => d.kind(),
            E::Generate(g) => g.kind(),
            E::Mutate(m) => m.kind(),
            E::Cas(c) => c.kind(),
        }
    }
}

impl crate::rootfs::UnpackError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::rootfs::UnpackError as E;
        match self {
            E::Cas(c) => c.kind(),
            E::Layer { source, .. } => source.kind(),
            E::Store(s) => s.kind(),
            E::Invalid(_) => ErrorKind::InvalidInput,
            E::Io { source, .. } => ErrorKind::of_io(source),
        }
    }
}

impl crate::bundle::BundleError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::bundle::BundleError as E;
        match self {
            E::Unpack(u) => u.kind(),
            E::Cas(c) => c.kind(),
            E::Other(_) => ErrorKind::InvalidInput,
        }
    }
}

impl crate::bundle::mount::OverlayError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::bundle::mount::OverlayError as E;
        match self {
            E::NotOverlay(_) => ErrorKind::InvalidInput,
            E::Mount { .. } | E::Umount { .. } | E::Other(_) => ErrorKind::Io,
        }
    }
}

impl crate::stat::StatError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::stat::StatError as E;
        match self {
            E::Cas(c) => c.kind(),
            E::NotAManifest { .. } => ErrorKind::Unsupported,
            E::Json(_) => ErrorKind::InvalidInput,
        }
    }
}

impl crate::mtree::MtreeError {
    /// What kind of failure this is (that of the I/O error).
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::of_io(&self.source)
    }
}

impl crate::mtree::diff::DiffError {
    /// What kind of failure this is (that of the I/O error).
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::of_io(&self.source)
    }
}

impl crate::mtree::parse::ParseError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            crate::mtree::parse::ParseError::Io(e) => ErrorKind::of_io(e),
            crate::mtree::parse::ParseError::Syntax { .. } => ErrorKind::InvalidInput,
        }
    }
}

impl crate::layer::generate::GenerateError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            crate::layer::generate::GenerateError::Io { source, .. } => ErrorKind::of_io(source),
            crate::layer::generate::GenerateError::Invalid { .. } => ErrorKind::InvalidInput,
        }
    }
}

impl crate::layer::extract::ExtractError {
    /// What kind of failure this is: a layer that cannot be read or
    /// applied is invalid input.
    pub fn kind(&self) -> ErrorKind {
        match self {
            crate::layer::extract::ExtractError::Tar(crate::layer::tarread::TarError::Io(e))
                if !matches!(ErrorKind::of_io(e), ErrorKind::InvalidInput | ErrorKind::Io) =>
            {
                ErrorKind::of_io(e)
            }
            _ => ErrorKind::InvalidInput,
        }
    }
}

impl crate::layer::copy::CopyError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::layer::copy::CopyError as E;
        match self {
            E::Source { .. } | E::Destination { .. } => ErrorKind::InvalidInput,
            E::Io { source, .. } => ErrorKind::of_io(source),
            E::Rejected { .. } | E::Changed { .. } => ErrorKind::Integrity,
        }
    }
}

impl crate::layer::idmap::IdMapError {
    /// What kind of failure this is: always [`ErrorKind::InvalidInput`].
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl crate::layer_store::LayerStoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::layer_store::LayerStoreError as E;
        match self {
            E::Store { .. } => ErrorKind::Driver,
            E::AlreadyExists { .. } | E::HasChildren { .. } | E::InUse { .. } => {
                ErrorKind::Conflict
            }
            E::NotFound { .. } => ErrorKind::NotFound,
            E::Protocol { .. } => ErrorKind::Driver,
        }
    }
}

impl crate::layer_store::record::RecordError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::layer_store::record::RecordError as E;
        match self {
            E::Io { source, .. } => ErrorKind::of_io(source),
            E::Invalid { .. } => ErrorKind::Integrity,
        }
    }
}

#[cfg(feature = "wasm")]
impl crate::driver::DriverError {
    /// What kind of failure this is: a malformed spec or a missing store
    /// directory is invalid input, everything else the driver's.
    pub fn kind(&self) -> ErrorKind {
        use crate::driver::DriverError as E;
        match self {
            E::Spec { .. } | E::Store(_) => ErrorKind::InvalidInput,
            E::Capability { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::Driver,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_nests_and_keeps_the_kind() {
        let e = Error::from(crate::cas::CasError::NotFound("blob x".into()))
            .context("resolve a:b")
            .context("unpack a:b into c")
            .with_object("a:b");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.object(), Some("a:b"));
        assert_eq!(e.to_string(), "unpack a:b into c");
        assert!(e.find::<crate::cas::CasError>().is_some());
        let mut chain = Vec::new();
        let mut next: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = next {
            chain.push(c.to_string());
            next = c.source();
        }
        assert_eq!(
            chain,
            ["unpack a:b into c", "resolve a:b", "blob x: not found"]
        );
    }
}
