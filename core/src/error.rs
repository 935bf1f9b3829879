//! The library's one public error type: [`Error`], with an [`ErrorKind`],
//! the object it is about and its cause.
//!
//! Each module keeps its own precise error (`CasError`, `UnpackError`,
//! `RepackError`, …), and each of those says its [`ErrorKind`] through a
//! `kind()` method. The entry points of `rumoci::image` return [`Error`],
//! which wraps them: [`Error::kind`] says what went wrong in a way a caller
//! can act on, [`Error::object`] names the tag, path or digest, and the
//! cause chain ([`std::error::Error::source`]) keeps every detail.
//!
//! ```
//! use rumoci_core::{Error, ErrorKind};
//! let e = Error::from(std::io::Error::from(std::io::ErrorKind::NotFound))
//!     .context("open layout /x");
//! assert_eq!(e.kind(), ErrorKind::NotFound);
//! assert_eq!(e.what(), Some("open layout /x"));
//! assert_eq!(e.to_string(), "open layout /x: entity not found");
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
            && let Some(k) = inner.downcast_ref::<Kinded>()
        {
            return k.kind;
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

/// A module's error travelling inside an `io::Error` (as a verified
/// reader's does, through `Read`), keeping its kind there: shown as
/// itself, its kind read back by [`ErrorKind::of_io`], itself taken back
/// out with [`Kinded::take`].
#[derive(Debug)]
pub struct Kinded {
    kind: ErrorKind,
    inner: Box<dyn std::error::Error + Send + Sync>,
}

impl Kinded {
    /// `e` (of kind `kind`) as an `io::Error` of kind `io_kind`.
    pub fn io(
        io_kind: std::io::ErrorKind,
        kind: ErrorKind,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> std::io::Error {
        std::io::Error::new(
            io_kind,
            Kinded {
                kind,
                inner: Box::new(e),
            },
        )
    }

    /// The error of type `T` inside `e`, if `e` carries one; else `e`.
    pub fn take<T: std::error::Error + 'static>(
        e: std::io::Error,
    ) -> std::result::Result<Box<T>, std::io::Error> {
        let is_t = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<Kinded>())
            .is_some_and(|k| k.inner.is::<T>());
        if !is_t {
            return Err(e);
        }
        match e.into_inner().map(|i| i.downcast::<Kinded>()) {
            Some(Ok(k)) => k
                .inner
                .downcast::<T>()
                .map_err(|i| std::io::Error::other(i.to_string())),
            _ => Err(std::io::Error::other("error lost in transit")),
        }
    }
}

impl fmt::Display for Kinded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for Kinded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
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
/// Shown, it is `WHAT: CAUSE` (or the cause alone), the cause shown with
/// its own causes, so a program that prints the error (or returns it from
/// `main`) says why, not only what failed. The cause is also its
/// [`source`](std::error::Error::source), so [`Error::find`] and chain
/// walkers reach a module error anywhere in it; a printer that walks the
/// chain itself should print [`Error::what`] for this layer. The debug
/// form (`{:?}`, what `main` prints) is the same line with the kind;
/// `{:#?}` gives the fields.
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

    /// What was being done, as given to [`Error::context`]: this layer's
    /// own message, without the cause.
    pub fn what(&self) -> Option<&str> {
        self.what.as_deref()
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
        if f.alternate() {
            return f
                .debug_struct("Error")
                .field("kind", &self.kind)
                .field("object", &self.object)
                .field("what", &self.what)
                .field("cause", &self.cause)
                .finish();
        }
        write!(f, "{self} ({})", self.kind)
    }
}

impl fmt::Display for Error {
    /// `WHAT: CAUSE: ITS CAUSE…`, each message once.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut said: Vec<String> = Vec::new();
        if let Some(w) = &self.what {
            said.push(w.clone());
        }
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*self.cause);
        while let Some(e) = next {
            // a nested Error says its own layer only; its cause follows
            let text = match e.downcast_ref::<Error>() {
                Some(inner) => inner.what.clone(),
                None => Some(e.to_string()),
            };
            if let Some(t) = text
                && !said.iter().any(|m| m.contains(&t))
            {
                said.push(t);
            }
            next = e.source();
        }
        f.write_str(&said.join(": "))
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
pub trait ResultExt<T> {
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

/// `From<$t> for Error`, the kind from the type's own `kind()`: each
/// module says it beside its error, so this module imports none of them.
#[doc(hidden)]
#[macro_export]
macro_rules! wraps {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for $crate::error::Error {
            fn from(e: $t) -> $crate::error::Error {
                $crate::error::Error::new(e.kind(), e)
            }
        }
    )*};
}

// ---- the kinds of the module errors ----

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_nests_and_keeps_the_kind() {
        let e = Error::from(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "blob x: not found",
        ))
        .context("resolve a:b")
        .context("unpack a:b into c")
        .with_object("a:b");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.object(), Some("a:b"));
        assert_eq!(
            e.to_string(),
            "unpack a:b into c: resolve a:b: blob x: not found"
        );
        assert_eq!(e.what(), Some("unpack a:b into c"));
        assert_eq!(
            format!("{e:?}"),
            "unpack a:b into c: resolve a:b: blob x: not found (not found)"
        );
        assert!(e.find::<std::io::Error>().is_some());
        let mut chain = Vec::new();
        let mut next: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = next {
            chain.push(match c.downcast_ref::<Error>() {
                Some(e) => e.what().unwrap_or_default().to_string(),
                None => c.to_string(),
            });
            next = c.source();
        }
        assert_eq!(
            chain,
            ["unpack a:b into c", "resolve a:b", "blob x: not found"]
        );
    }
}
