//! # rumoci-driver-sdk
//!
//! Write [rumoci](../rumoci/index.html) storage drivers in Rust. A driver is
//! a WebAssembly component (target `wasm32-wasip2`) implementing the
//! `rumoci:driver@0.2.0` contract in this crate's `wit/` directory (see
//! `GUIDE.md` for the rules the host enforces). The
//! host runs it sandboxed: one preopened directory (the *store directory*),
//! no environment, no sockets and no name lookup (a driver given `url=` may
//! send `wasi:http` requests to that one origin; the host sends them and
//! holds TLS and credentials), a memory limit and a deadline per call.
//!
//! A driver implements three traits, each with defaults that answer
//! `unsupported` (so a content-store driver only writes [`Cas`], and a layer
//! cache only [`LayerStore`]; [`Cas::check`] too answers `unsupported`, so a
//! content store writes it, and [`Cas::clean`] is a no-op):
//!
//! * [`Driver`]: name, version and capabilities ([`DriverInfo`]).
//! * [`Cas`]: blobs and `index.json`, with [`BlobRead`] / [`BlobWrite`].
//!   [`blob_file`] keeps blobs as files ([`blob_file::FileBlobReader`],
//!   [`blob_file::FileBlobWriter`]: temporary file, renamed on commit).
//! * [`LayerStore`]: snapshot bookkeeping (the host does extraction/mounts).
//!
//! then exports them with [`register_driver!`], which takes one type
//! implementing all three. Both store traits have a `stat`, so inside these
//! impls `Self::stat` is ambiguous (error E0034): write `<Self as
//! Cas>::stat`. The crate's `README.md` has a complete content store
//! (its quick start, which CI builds and checks); in short:
//!
//! ```ignore
//! use rumoci_driver_sdk::*;
//! struct Mine;
//! impl Driver for Mine {
//!     fn info() -> DriverInfo { DriverInfo::new("mine", env!("CARGO_PKG_VERSION"), &["cas"]) }
//! }
//! impl Cas for Mine {
//!     fn check() -> Result<()> { todo!("is the store directory one of mine?") }
//!     fn delete(d: &Digest) -> Result<()> {
//!         if <Self as Cas>::stat(d)?.is_some() { /* remove it */ } // not `Self::stat`
//!         Ok(())
//!     }
//!     // init, stat, open, create, list_blobs, read_index, write_index
//! }
//! impl LayerStore for Mine {} // every layer-store method answers `unsupported`
//! register_driver!(Mine);
//! ```
//!
//! The host computes and verifies every digest and size itself: a driver
//! stores and returns bytes, it never vouches for them.
//!
//! Helpers: [`Digest`] (validated digest parsing, safe as a path component),
//! [`safe_join`] (relative path join refusing `..` and absolute paths),
//! [`store_dir`] (discovers the single preopened directory), [`log`] and
//! [`config`] (host imports), and [`open_file_stream`] for the stream fast
//! path.
//!
//! For layer stores: [`SnapshotStore`] and [`SnapshotDriver`] (a store
//! value with the `layer-store` operations, made a driver),
//! [`store_util`] (name and label checks, an atomically replaced record
//! file, tree walks and removals that open only directories, garbage
//! collection, paging), [`store_db`] (the serde records of a `db.json`:
//! the stored snapshot kind and the file's envelope) and [`testing`]
//! (helpers for a store's native unit tests).
//!
//! For drivers that reach a network through `url=` (feature `http`):
//! `http`, a blocking HTTP client over `wasi:http` (an endpoint parsed
//! from `url=`, bounded response bodies, retries of server errors, a
//! `Range:`-GET blob reader that resumes, and a fake transport for native
//! unit tests).

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};

/// The generated bindings of the `rumoci:driver/driver` world (and the WASI
/// interfaces it uses). Most plugins need only the re-exports at the crate
/// root.
#[allow(missing_docs, unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "driver",
        generate_all,
        pub_export_macro: true,
        export_macro_name: "__export_driver_world",
        default_bindings_module: "rumoci_driver_sdk::bindings",
    });
}

pub mod blob_file;
#[cfg(feature = "http")]
pub mod http;
pub mod snapshot_store;
pub mod store_db;
pub mod store_util;
pub mod testing;

pub use snapshot_store::{RecordStore, SnapshotDriver, SnapshotStore};

use bindings::exports::rumoci::driver::{cas as gcas, layer_store as gls, meta as gmeta};
use bindings::rumoci::driver::host;

pub use bindings::exports::rumoci::driver::cas::{BlobInfo, BlobPage, IndexDoc, IndexPrecondition};
pub use bindings::exports::rumoci::driver::layer_store::{
    DiskUsage, Mount, Prepared, SnapshotInfo, SnapshotKind, SnapshotPage, UnpackTarget,
};
pub use bindings::exports::rumoci::driver::meta::DriverInfo;
pub use bindings::rumoci::driver::host::Level;
pub use bindings::rumoci::driver::types::Error;
pub use bindings::wasi::io::streams::InputStream;

/// Key/value labels.
pub type Labels = Vec<(String, String)>;

/// The arguments of `layer-store.prepare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    /// The new active snapshot's key.
    pub key: String,
    /// The committed snapshot it is a child of; `None` for a base layer.
    pub parent: Option<String>,
    /// The name it will be committed as, if known: when that snapshot is
    /// committed already, the answer is `cached`.
    pub target: Option<String>,
    /// Labels of the new snapshot.
    pub labels: Labels,
}

/// The arguments of `layer-store.commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The name of the committed snapshot.
    pub name: String,
    /// The active snapshot to commit.
    pub key: String,
    /// The digest of the layer's uncompressed tar stream.
    pub diff_id: Digest,
    /// Labels added to (or replacing those of) the snapshot's.
    pub labels: Labels,
}

/// Result type of every driver operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An `unsupported` error for operation `op`.
    pub fn unsupported(op: &str) -> Error {
        Error::Unsupported(format!("{op} is not supported by this driver"))
    }
    /// An error for the `std::io::Error` `e` on `what`: `NotFound` becomes
    /// `not-found`, `AlreadyExists` `already-exists`, anything else `io`;
    /// the message is `WHAT: E`.
    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("{what}: {e}")),
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(format!("{what}: {e}")),
            _ => Error::Io(format!("{what}: {e}")),
        }
    }
}

/// As [`Error::io`] with `what` = `I/O` (so `?` on `std::fs` calls keeps
/// the classes).
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::io("I/O", e)
    }
}

impl DriverInfo {
    /// Build a [`DriverInfo`].
    pub fn new(name: &str, version: &str, capabilities: &[&str]) -> DriverInfo {
        DriverInfo {
            name: name.to_string(),
            version: version.to_string(),
            capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// A validated OCI digest `algorithm:encoded`.
///
/// Validation follows the OCI image spec grammar, and additionally
/// guarantees that both parts are safe single path components (no `/`, no
/// `.`-only names), so `blobs/<algorithm>/<encoded>` can be built from them.
/// `sha256` and `sha512` encodings must be lowercase hex of the right length.
/// rumoci passes `sha256` digests (and `sha512` ones where an image uses
/// them). It displays as `algorithm:encoded`. The WIT's `digest` (in
/// [`BlobInfo::digest`]) is that string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    algorithm: String,
    encoded: String,
}

impl Digest {
    /// Parse and validate; errors are `invalid-argument`.
    pub fn parse(s: &str) -> Result<Digest> {
        let bad = |why: &str| Error::InvalidArgument(format!("digest {s:?}: {why}"));
        let (alg, enc) = s.split_once(':').ok_or_else(|| bad("missing ':'"))?;
        // algorithm-component ([+._-] algorithm-component)*, components [a-z0-9]+
        let mut prev_sep = true;
        for c in alg.chars() {
            match c {
                'a'..='z' | '0'..='9' => prev_sep = false,
                '+' | '.' | '_' | '-' if !prev_sep => prev_sep = true,
                _ => return Err(bad("invalid algorithm")),
            }
        }
        if alg.is_empty() || prev_sep {
            return Err(bad("invalid algorithm"));
        }
        if enc.is_empty()
            || !enc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '=' | '_' | '-'))
        {
            return Err(bad("invalid encoded part"));
        }
        let hex_len = match alg {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        if let Some(n) = hex_len
            && (enc.len() != n || !enc.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
        {
            return Err(bad(&format!("{alg} needs {n} lowercase hex digits")));
        }
        Ok(Digest {
            algorithm: alg.to_string(),
            encoded: enc.to_string(),
        })
    }

    /// The algorithm, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The encoded part (hex for sha256).
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// The OCI layout path of this blob: `blobs/<algorithm>/<encoded>`.
    pub fn blob_path(&self) -> PathBuf {
        Path::new("blobs").join(&self.algorithm).join(&self.encoded)
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.encoded)
    }
}

/// Join a relative path `rel` onto `base`, refusing absolute paths, `..`,
/// NUL bytes and empty paths (`invalid-argument`). `.` components are
/// dropped. This is lexical; the WASI sandbox additionally stops symlinks
/// from leaving the store directory.
pub fn safe_join(base: &Path, rel: &str) -> Result<PathBuf> {
    let bad = |why: &str| Error::InvalidArgument(format!("path {rel:?}: {why}"));
    if rel.contains('\0') {
        return Err(bad("contains NUL"));
    }
    let mut out = base.to_path_buf();
    let mut any = false;
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => {
                out.push(p);
                any = true;
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(bad("'..' is not allowed")),
            Component::RootDir | Component::Prefix(_) => return Err(bad("must be relative")),
        }
    }
    if !any {
        return Err(bad("empty"));
    }
    Ok(out)
}

thread_local! {
    static STORE: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// The store directory: the plugin's single preopened directory, as a path
/// usable with `std::fs`. Fails (`failed-precondition`) unless exactly one
/// directory is preopened. The answer is cached.
pub fn store_dir() -> Result<PathBuf> {
    if let Some(p) = STORE.with(|s| s.borrow().clone()) {
        return Ok(p);
    }
    let dirs = bindings::wasi::filesystem::preopens::get_directories();
    if dirs.len() != 1 {
        return Err(Error::FailedPrecondition(format!(
            "expected exactly one preopened directory, found {}",
            dirs.len()
        )));
    }
    let p = dirs
        .into_iter()
        .next()
        .map(|(_, name)| PathBuf::from(name))
        .ok_or_else(|| Error::FailedPrecondition("no preopened directory".into()))?;
    STORE.with(|s| *s.borrow_mut() = Some(p.clone()));
    Ok(p)
}

/// Open `rel` (relative to the store directory, checked like [`safe_join`])
/// read-only and return a WASI input-stream positioned at `offset`: the
/// `cas.open-stream` fast path, where the host reads the file directly.
/// A missing file is `not-found`, other failures `io`.
pub fn open_file_stream(rel: &str, offset: u64) -> Result<InputStream> {
    use bindings::wasi::filesystem::types::{DescriptorFlags, ErrorCode, OpenFlags, PathFlags};
    safe_join(Path::new("."), rel)?;
    let dirs = bindings::wasi::filesystem::preopens::get_directories();
    let (dir, _) = dirs
        .into_iter()
        .next()
        .ok_or_else(|| Error::FailedPrecondition("no preopened directory".into()))?;
    let f = dir
        .open_at(
            PathFlags::empty(),
            rel,
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .map_err(|e| match e {
            ErrorCode::NoEntry => Error::NotFound(rel.to_string()),
            e => Error::Io(format!("{rel}: {e:?}")),
        })?;
    f.read_via_stream(offset)
        .map_err(|e| Error::Io(format!("{rel}: {e:?}")))
}

/// Log through the host's logger (tagged with the driver's name there).
pub fn log(level: Level, message: &str) {
    host::log(level, message);
}

/// The `key=value` options given to the driver on the command line.
pub fn config() -> Vec<(String, String)> {
    host::config()
}

/// Inside [`Cas::create`]: the media type of the blob being created, when
/// the host knows it (`application/vnd.oci.image.layer.v1.tar+gzip`, a
/// manifest's, …), so a store that compresses or places blobs by kind can
/// act on it; `None` when unknown or called outside `create`. A plugin
/// that calls it needs a rumoci that provides it (see `GUIDE.md`).
pub fn create_media_type() -> Option<String> {
    host::create_media_type()
}

/// The refs (tags) of `index.json` the current command reads, when it
/// reads only those and writes no index (`unpack`, `stat`, the source of
/// `copy` …); `None` when the whole index is needed. A store where each
/// index entry costs a request (a registry) may answer [`Cas::read_index`]
/// with just those entries; such an index is partial, so
/// [`Cas::write_index`] must then fail (the host never calls it while
/// this is `Some`, and refuses itself). The same answer for the life of
/// the instance. A plugin that calls it needs a rumoci that provides it
/// (see `GUIDE.md`).
pub fn wanted_refs() -> Option<Vec<String>> {
    host::wanted_refs()
}

// ---------------------------------------------------------------------------
// Driver traits

/// Self-description: every driver implements this.
pub trait Driver: 'static {
    /// Name, version and capabilities.
    fn info() -> DriverInfo;
}

/// Random access to one blob (see `cas.blob-reader`).
pub trait BlobRead: 'static {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Up to `len` bytes at `offset`; shorter or empty at the end.
    fn read_at(&mut self, offset: u64, len: u32) -> Result<Vec<u8>>;
}

/// An ingest in progress (see `cas.blob-writer`).
pub trait BlobWrite: 'static {
    /// Append `data`; returns the total accepted so far.
    fn write(&mut self, data: &[u8]) -> Result<u64>;
    /// Publish under `digest` (computed by the host) after checking `size`.
    fn commit(&mut self, digest: &Digest, size: u64) -> Result<()>;
}

/// A content store. Every method defaults to `unsupported`, [`Cas::check`]
/// included (a store must say which directories it accepts), except
/// [`Cas::clean`], which defaults to a no-op success.
pub trait Cas: 'static {
    /// Create an empty store whose index is `initial_index`.
    fn init(initial_index: Vec<u8>) -> Result<()> {
        let _ = initial_index;
        Err(Error::unsupported("init"))
    }
    /// Check that the store directory holds a usable store. The default
    /// answers `unsupported`: a content store must say what it accepts.
    fn check() -> Result<()> {
        Err(Error::unsupported("check"))
    }
    /// Information about a blob, `None` if absent.
    fn stat(digest: &Digest) -> Result<Option<BlobInfo>> {
        let _ = digest;
        Err(Error::unsupported("stat"))
    }
    /// Open a blob for chunked reading.
    fn open(digest: &Digest) -> Result<Box<dyn BlobRead>> {
        let _ = digest;
        Err(Error::unsupported("open"))
    }
    /// Stream fast path (see [`open_file_stream`]).
    fn open_stream(digest: &Digest, offset: u64) -> Result<InputStream> {
        let _ = (digest, offset);
        Err(Error::unsupported("open-stream"))
    }
    /// Start writing a blob.
    fn create(expected: Option<&Digest>, size_hint: Option<u64>) -> Result<Box<dyn BlobWrite>> {
        let _ = (expected, size_hint);
        Err(Error::unsupported("create"))
    }
    /// Delete a blob (missing is fine).
    fn delete(digest: &Digest) -> Result<()> {
        let _ = digest;
        Err(Error::unsupported("delete"))
    }
    /// One page of blobs.
    fn list_blobs(cursor: Option<String>, limit: u32) -> Result<BlobPage> {
        let _ = (cursor, limit);
        Err(Error::unsupported("list-blobs"))
    }
    /// The index and its version token.
    fn read_index() -> Result<IndexDoc> {
        Err(Error::unsupported("read-index"))
    }
    /// Replace the index if `precondition` holds; returns the new version.
    fn write_index(doc: Vec<u8>, precondition: IndexPrecondition) -> Result<String> {
        let _ = (doc, precondition);
        Err(Error::unsupported("write-index"))
    }
    /// Remove stale temporaries.
    fn clean() -> Result<()> {
        Ok(())
    }
}

/// A layer store (snapshotter). Every method defaults to `unsupported`.
pub trait LayerStore: 'static {
    /// See `layer-store.stat`.
    fn stat(name: String) -> Result<Option<SnapshotInfo>> {
        let _ = name;
        Err(Error::unsupported("layer-store.stat"))
    }
    /// See `layer-store.prepare`.
    fn prepare(req: Prepare) -> Result<Prepared> {
        let _ = req;
        Err(Error::unsupported("layer-store.prepare"))
    }
    /// See `layer-store.view`.
    fn view(key: String, parent: String) -> Result<Vec<Mount>> {
        let _ = (key, parent);
        Err(Error::unsupported("layer-store.view"))
    }
    /// See `layer-store.mounts`.
    fn mounts(key: String) -> Result<Vec<Mount>> {
        let _ = key;
        Err(Error::unsupported("layer-store.mounts"))
    }
    /// See `layer-store.commit`.
    fn commit(req: Commit) -> Result<SnapshotInfo> {
        let _ = req;
        Err(Error::unsupported("layer-store.commit"))
    }
    /// See `layer-store.remove`.
    fn remove(name: String) -> Result<()> {
        let _ = name;
        Err(Error::unsupported("layer-store.remove"))
    }
    /// See `layer-store.usage`.
    fn usage(name: String) -> Result<DiskUsage> {
        let _ = name;
        Err(Error::unsupported("layer-store.usage"))
    }
    /// See `layer-store.list-snapshots`.
    fn list_snapshots(cursor: Option<String>, limit: u32) -> Result<SnapshotPage> {
        let _ = (cursor, limit);
        Err(Error::unsupported("layer-store.list-snapshots"))
    }
}

// ---------------------------------------------------------------------------
// Glue between the traits above and the generated bindings.

/// The exported `blob-reader` resource (wraps a [`BlobRead`]).
#[doc(hidden)]
pub struct ReaderResource(RefCell<Box<dyn BlobRead>>);
/// The exported `blob-writer` resource (wraps a [`BlobWrite`]).
#[doc(hidden)]
pub struct WriterResource(RefCell<Option<Box<dyn BlobWrite>>>);

impl gcas::GuestBlobReader for ReaderResource {
    fn size(&self) -> u64 {
        self.0.borrow().size()
    }
    fn read_at(&self, offset: u64, len: u32) -> Result<Vec<u8>> {
        self.0.borrow_mut().read_at(offset, len)
    }
}

impl gcas::GuestBlobWriter for WriterResource {
    fn write(&self, data: Vec<u8>) -> Result<u64> {
        match self.0.borrow_mut().as_mut() {
            Some(w) => w.write(&data),
            None => Err(Error::FailedPrecondition("writer already committed".into())),
        }
    }
    fn commit(&self, digest: String, size: u64) -> Result<()> {
        let d = Digest::parse(&digest)?;
        match self.0.borrow_mut().take() {
            Some(mut w) => w.commit(&d, size),
            None => Err(Error::FailedPrecondition("writer already committed".into())),
        }
    }
}

/// Adapter: the generated `meta` export for every [`Driver`].
#[doc(hidden)]
pub struct Export<T>(std::marker::PhantomData<T>);

impl<T: Driver> gmeta::Guest for Export<T> {
    fn info() -> DriverInfo {
        T::info()
    }
}

impl<T: Cas> gcas::Guest for Export<T> {
    type BlobReader = ReaderResource;
    type BlobWriter = WriterResource;

    fn init(initial_index: Vec<u8>) -> Result<()> {
        T::init(initial_index)
    }
    fn check() -> Result<()> {
        T::check()
    }
    fn stat(digest: String) -> Result<Option<BlobInfo>> {
        T::stat(&Digest::parse(&digest)?)
    }
    fn open(digest: String) -> Result<gcas::BlobReader> {
        let r = T::open(&Digest::parse(&digest)?)?;
        Ok(gcas::BlobReader::new(ReaderResource(RefCell::new(r))))
    }
    fn open_stream(digest: String, offset: u64) -> Result<InputStream> {
        T::open_stream(&Digest::parse(&digest)?, offset)
    }
    fn create(expected: Option<String>, size_hint: Option<u64>) -> Result<gcas::BlobWriter> {
        let expected = expected.as_deref().map(Digest::parse).transpose()?;
        let w = T::create(expected.as_ref(), size_hint)?;
        Ok(gcas::BlobWriter::new(WriterResource(RefCell::new(Some(w)))))
    }
    fn delete(digest: String) -> Result<()> {
        T::delete(&Digest::parse(&digest)?)
    }
    fn list_blobs(cursor: Option<String>, limit: u32) -> Result<BlobPage> {
        T::list_blobs(cursor, limit)
    }
    fn read_index() -> Result<IndexDoc> {
        T::read_index()
    }
    fn write_index(doc: Vec<u8>, precondition: IndexPrecondition) -> Result<String> {
        T::write_index(doc, precondition)
    }
    fn clean() -> Result<()> {
        T::clean()
    }
}

impl<T: LayerStore> gls::Guest for Export<T> {
    fn stat(name: String) -> Result<Option<SnapshotInfo>> {
        T::stat(name)
    }
    fn prepare(
        key: String,
        parent: Option<String>,
        target: Option<String>,
        labels: Labels,
    ) -> Result<Prepared> {
        T::prepare(Prepare {
            key,
            parent,
            target,
            labels,
        })
    }
    fn view(key: String, parent: String) -> Result<Vec<Mount>> {
        T::view(key, parent)
    }
    fn mounts(key: String) -> Result<Vec<Mount>> {
        T::mounts(key)
    }
    fn commit(name: String, key: String, diff_id: String, labels: Labels) -> Result<SnapshotInfo> {
        let diff_id = Digest::parse(&diff_id)?;
        T::commit(Commit {
            name,
            key,
            diff_id,
            labels,
        })
    }
    fn remove(name: String) -> Result<()> {
        T::remove(name)
    }
    fn usage(name: String) -> Result<DiskUsage> {
        T::usage(name)
    }
    fn list_snapshots(cursor: Option<String>, limit: u32) -> Result<SnapshotPage> {
        T::list_snapshots(cursor, limit)
    }
}

/// Export a driver type as the plugin's component exports. The type must
/// implement [`Driver`], [`Cas`] and [`LayerStore`] (an empty `impl` keeps
/// the `unsupported` defaults). Use once, at the crate root of a `cdylib`.
///
/// As both store traits are on the one type and both have a `stat`, a call
/// of it inside the impls names the trait: `<Self as Cas>::stat(d)` or
/// `<Self as LayerStore>::stat(n)` (`Self::stat` fails with E0034).
#[macro_export]
macro_rules! register_driver {
    ($ty:ty) => {
        #[doc(hidden)]
        type __RumociDriverExport = $crate::Export<$ty>;
        $crate::bindings::__export_driver_world!(__RumociDriverExport with_types_in $crate::bindings);
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let h = "a".repeat(64);
        assert!(Digest::parse(&format!("sha256:{h}")).is_ok());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse("sha256:../../etc").is_err());
        assert!(Digest::parse("x:a/b").is_err());
        assert!(Digest::parse("x:..").is_err());
        assert!(Digest::parse(":abc").is_err());
        assert!(Digest::parse("a+b:abc").is_ok());
        assert!(Digest::parse("a++b:abc").is_err());
    }

    #[test]
    fn joins() {
        let b = Path::new("/s");
        assert_eq!(safe_join(b, "a/./b").unwrap(), Path::new("/s/a/b"));
        assert!(safe_join(b, "../x").is_err());
        assert!(safe_join(b, "a/../../x").is_err());
        assert!(safe_join(b, "/etc/passwd").is_err());
        assert!(safe_join(b, "").is_err());
        assert!(safe_join(b, ".").is_err());
    }
}
