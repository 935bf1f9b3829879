//! [`WasmCas`]: the host [`Cas`] trait over a plugin's `cas` export.

use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::component::{Resource, ResourceAny};
use wasmtime_wasi::p2::{DynInputStream, StreamError};

use super::bindings::exports::rumoci::driver::cas::IndexPrecondition;
use super::bindings::rumoci::driver::types::Error as WitError;
use super::link::Linked;
use super::plugin::{Plugin, PluginInfo};
use super::{DriverError, DriverSpec};
use crate::cas::{BlobHint, BlobWriter, Cas, CasError};
use crate::oci::{Algorithm, Digest, Hasher};

/// Bytes pulled per `read-at` call and pushed per `write` call.
const CHUNK: usize = 1 << 20;
/// Items asked for per `list-blobs` page.
const PAGE: u32 = 1024;
/// Largest `index.json` accepted from a plugin.
const MAX_INDEX: u64 = crate::limits::MAX_DOCUMENT_SIZE;
/// Largest blob remembered by a store that reads over the network
/// ([`Docs`]): manifests, indexes and configs.
const MAX_DOC: usize = 256 << 10;
/// Most bytes [`Docs`] holds.
const MAX_DOCS: usize = 16 << 20;

/// Small blobs (manifests, indexes, configs) a store that reads over the
/// network has read whole, by digest, checked: a command reads the same
/// manifest more than once (to resolve a tag, then to unpack it), and
/// over a link with latency each read is a round trip or two. Content
/// addressed, so never stale; callers verify every read as always.
#[derive(Debug, Default)]
struct Docs {
    blobs: std::collections::HashMap<String, Arc<[u8]>>,
    bytes: usize,
}

type SharedDocs = Arc<Mutex<Docs>>;

/// The documents, locked (a panic while holding them leaves a map).
fn docs(d: &SharedDocs) -> MutexGuard<'_, Docs> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

/// A plugin instance shared between the handles made from it (a content
/// store and its open readers and writers).
pub type SharedPlugin = Arc<Mutex<Plugin>>;

/// The shared plugin, locked for one call or a sequence of calls.
pub fn lock(p: &SharedPlugin) -> MutexGuard<'_, Plugin> {
    // A panic while holding the lock cannot leave the plugin inconsistent
    // in a way later calls rely on (a trap re-creates the instance anyway).
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wrap a driver error for the [`Cas`] API, keeping it in the source chain.
fn cas_err(e: DriverError) -> CasError {
    CasError::Io {
        what: "storage driver".into(),
        source: io::Error::other(e),
    }
}

fn is_not_found(e: &DriverError) -> bool {
    matches!(
        e,
        DriverError::Plugin {
            error: WitError::NotFound(_),
            ..
        }
    )
}

/// A content store provided by a WebAssembly plugin.
///
/// Reads use the plugin's `open-stream` fast path when it declares
/// `cas.open-stream` (the host reads the plugin's file stream directly),
/// else chunked `read-at` calls. Writes are hashed on the host while they
/// pass through in chunks of `CHUNK` bytes; the plugin is told the digest
/// the host computed. Callers verify reads ([`crate::cas::ext`]).
#[derive(Clone, Debug)]
pub struct WasmCas {
    plugin: SharedPlugin,
    /// The store directory: rumoci locks it as it locks a layout, so that
    /// gc through a plugin excludes writers too.
    dir: std::path::PathBuf,
    /// Small blobs read whole, when the plugin reads over the network.
    docs: Option<SharedDocs>,
    /// Instances for blob writers that run side by side, when the plugin
    /// reaches the network (each upload waits on its own round trips).
    writers: Option<Arc<WriterPool>>,
}

/// Blob writers running at once on instances of their own (beyond this
/// they share one).
pub const PARALLEL_WRITERS: usize = 4;

/// Further instances of a networked plugin, one per blob writer running
/// at once: uploads side by side, as separate rumoci processes would make
/// them (a store must already take those). `index.json` and reads stay on
/// the store's own instance.
struct WriterPool {
    linked: Linked,
    spec: DriverSpec,
    dir: std::path::PathBuf,
    instances: Mutex<Vec<SharedPlugin>>,
}

impl std::fmt::Debug for WriterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterPool").finish_non_exhaustive()
    }
}

impl WriterPool {
    /// An instance no writer holds (made if fewer than
    /// [`PARALLEL_WRITERS`] exist; else the first, shared).
    fn instance(&self) -> Result<SharedPlugin, DriverError> {
        let mut all = self
            .instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // the pool's own reference is the only one: no writer holds it
        if let Some(idle) = all.iter().find(|p| Arc::strong_count(p) == 1) {
            return Ok(idle.clone());
        }
        if all.len() < PARALLEL_WRITERS {
            let p = Plugin::with(&self.linked, &self.spec, Some(&self.dir))?;
            require(&p, "cas")?;
            let p = Arc::new(Mutex::new(p));
            all.push(p.clone());
            return Ok(p);
        }
        all.first().cloned().ok_or_else(|| DriverError::Load {
            plugin: self.linked.label().to_string(),
            reason: "no writer instance".into(),
        })
    }
}

impl WasmCas {
    /// Open the existing store in `dir` with the plugin `wasm`.
    pub fn open(wasm: &Path, spec: &DriverSpec, dir: &Path) -> Result<WasmCas, DriverError> {
        WasmCas::open_linked(&*super::link(wasm)?, spec, dir)
    }

    /// Open the existing store in `dir` with the plugin `linked`.
    pub fn open_linked(
        linked: &Linked,
        spec: &DriverSpec,
        dir: &Path,
    ) -> Result<WasmCas, DriverError> {
        WasmCas::open_linked_reading(linked, spec, dir, None)
    }

    /// [`WasmCas::open_linked`]; with `refs`, the plugin is told before its
    /// `check` that the command reads only those refs of the index
    /// ([`Cas::want_refs`]: `host.wanted-refs` answers them).
    pub fn open_linked_reading(
        linked: &Linked,
        spec: &DriverSpec,
        dir: &Path,
        refs: Option<&[String]>,
    ) -> Result<WasmCas, DriverError> {
        let cas = WasmCas::load(linked, spec, dir)?;
        let mut p = lock(&cas.plugin);
        if let Some(refs) = refs {
            p.want_refs(refs.to_vec());
        }
        p.call("cas.check", |s, b| b.rumoci_driver_cas().call_check(s))?;
        drop(p);
        Ok(cas)
    }

    /// Create a new store in `dir` (created if missing) whose `index.json`
    /// is `initial_index`. Needs the `cas.init` capability.
    pub fn create(
        wasm: &Path,
        spec: &DriverSpec,
        dir: &Path,
        initial_index: &[u8],
    ) -> Result<WasmCas, DriverError> {
        WasmCas::create_linked(&*super::link(wasm)?, spec, dir, initial_index)
    }

    /// [`WasmCas::create`] with the plugin `linked`.
    pub fn create_linked(
        linked: &Linked,
        spec: &DriverSpec,
        dir: &Path,
        initial_index: &[u8],
    ) -> Result<WasmCas, DriverError> {
        std::fs::create_dir_all(dir).map_err(|e| DriverError::Load {
            plugin: linked.label().to_string(),
            reason: format!("create store directory {}: {e}", crate::show::name(&dir)),
        })?;
        let cas = WasmCas::load(linked, spec, dir)?;
        {
            let mut p = lock(&cas.plugin);
            require(&p, "cas.init")?;
            p.call("cas.init", |s, b| {
                b.rumoci_driver_cas().call_init(s, initial_index)
            })?;
        }
        Ok(cas)
    }

    fn load(linked: &Linked, spec: &DriverSpec, dir: &Path) -> Result<WasmCas, DriverError> {
        let p = Plugin::with(linked, spec, Some(dir))?;
        require(&p, "cas")?;
        Ok(WasmCas {
            docs: p.networked().then(SharedDocs::default),
            writers: p.networked().then(|| {
                Arc::new(WriterPool {
                    linked: linked.clone(),
                    spec: spec.clone(),
                    dir: dir.to_path_buf(),
                    instances: Mutex::new(Vec::new()),
                })
            }),
            plugin: Arc::new(Mutex::new(p)),
            dir: dir.to_path_buf(),
        })
    }

    /// What the plugin says about itself.
    pub fn info(&self) -> PluginInfo {
        lock(&self.plugin).info().clone()
    }

    /// How errors name the plugin: `NAME (FILE)`.
    pub fn label(&self) -> String {
        lock(&self.plugin).label().to_string()
    }

    fn open_stream(&self, digest: &Digest) -> Result<Option<Box<dyn Read + Send>>, CasError> {
        let mut p = lock(&self.plugin);
        if !p.has("cas.open-stream") {
            return Ok(None);
        }
        let d = digest.to_string();
        match p.call("cas.open-stream", |s, b| {
            b.rumoci_driver_cas().call_open_stream(s, &d, 0)
        }) {
            Ok(res) => Ok(Some(Box::new(StreamReader {
                plugin: self.plugin.clone(),
                generation: p.generation(),
                stream: Some(res),
            }))),
            Err(DriverError::Plugin {
                error: WitError::Unsupported(_),
                ..
            }) => Ok(None),
            Err(e) if is_not_found(&e) => Err(CasError::NotFound(format!("blob {digest}"))),
            Err(e) => Err(cas_err(e)),
        }
    }
}

/// The file in a store directory that serialises `write-index` calls of
/// all rumoci processes on that store.
pub const INDEX_LOCK: &str = ".rumoci-index.lock";

/// Hold [`INDEX_LOCK`] of the store `dir` exclusively until the file drops.
fn index_lock(dir: &Path) -> Result<std::fs::File, CasError> {
    let path = dir.join(INDEX_LOCK);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| CasError::io(crate::show::name(&path), e))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| CasError::io(crate::show::name(&path), e.into()))?;
    Ok(f)
}

/// Fail unless the plugin declares `capability`.
pub(crate) fn require<W: super::World>(p: &Plugin<W>, capability: &str) -> Result<(), DriverError> {
    if p.has(capability) {
        Ok(())
    } else {
        Err(DriverError::Capability {
            plugin: p.label().to_string(),
            capability: capability.to_string(),
            provided: p.info().capabilities.clone(),
        })
    }
}

impl Cas for WasmCas {
    fn driver_label(&self) -> Option<String> {
        Some(self.label())
    }

    fn holds_untagged_entries(&self) -> bool {
        !lock(&self.plugin).has("cas.tags-only")
    }

    fn reads_over_network(&self) -> bool {
        lock(&self.plugin).networked()
    }

    fn want_refs(&self, refs: &[String]) {
        lock(&self.plugin).want_refs(refs.to_vec());
    }

    fn parallel_writes(&self) -> usize {
        if self.writers.is_some() {
            PARALLEL_WRITERS
        } else {
            1
        }
    }

    fn writer_guard(&self) -> Result<Box<dyn std::any::Any>, CasError> {
        Ok(Box::new(crate::cas::dir::WriterGuard(
            crate::cas::dir::lock(&self.dir, rustix::fs::FlockOperation::LockShared)?,
        )))
    }

    fn exclusive(&self, f: &mut dyn FnMut() -> Result<(), CasError>) -> Result<(), CasError> {
        let _lock = crate::cas::dir::lock(&self.dir, rustix::fs::FlockOperation::LockExclusive)?;
        f()
    }

    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CasError> {
        let d = digest.to_string();
        if let Some(bytes) = self
            .docs
            .as_ref()
            .and_then(|m| docs(m).blobs.get(&d).cloned())
        {
            return Ok(Box::new(io::Cursor::new(bytes)));
        }
        if let Some(r) = self.open_stream(digest)? {
            return Ok(r);
        }
        let mut p = lock(&self.plugin);
        let handle = p
            .call("cas.open", |s, b| b.rumoci_driver_cas().call_open(s, &d))
            .map_err(|e| {
                if is_not_found(&e) {
                    CasError::NotFound(format!("blob {digest}"))
                } else {
                    cas_err(e)
                }
            })?;
        Ok(Box::new(ChunkReader {
            plugin: self.plugin.clone(),
            generation: p.generation(),
            handle: Some(handle),
            offset: 0,
            buf: Vec::new(),
            pos: 0,
            keep: self.docs.clone().map(|docs| Keep {
                docs,
                digest: digest.clone(),
                bytes: Vec::new(),
            }),
        }))
    }

    fn stat_blob(&self, digest: &Digest) -> Result<Option<u64>, CasError> {
        let d = digest.to_string();
        let mut p = lock(&self.plugin);
        let info = p
            .call("cas.stat", |s, b| b.rumoci_driver_cas().call_stat(s, &d))
            .map_err(cas_err)?;
        match info {
            None => Ok(None),
            Some(i) if i.digest == d => Ok(Some(i.size)),
            Some(i) => Err(cas_err(p.protocol(
                "cas.stat",
                format!("asked for {d}, answered for {:?}", i.digest),
            ))),
        }
    }

    fn begin_blob(&self) -> Result<Box<dyn BlobWriter>, CasError> {
        self.begin_blob_for(&BlobHint::default())
    }

    fn begin_blob_for(&self, hint: &BlobHint<'_>) -> Result<Box<dyn BlobWriter>, CasError> {
        let plugin = match &self.writers {
            Some(pool) => pool.instance().map_err(cas_err)?,
            None => self.plugin.clone(),
        };
        let mut p = lock(&plugin);
        let expected = hint.digest.map(|d| d.to_string());
        let handle = p
            .call("cas.create", |s, b| {
                // what `host.create-media-type` answers during this call
                s.data_mut().create_media_type = hint.media_type.map(str::to_string);
                let res = b
                    .rumoci_driver_cas()
                    .call_create(&mut *s, expected.as_ref(), hint.size);
                s.data_mut().create_media_type = None;
                res
            })
            .map_err(cas_err)?;
        Ok(Box::new(WasmBlobWriter {
            plugin: plugin.clone(),
            generation: p.generation(),
            handle: Some(handle),
            hasher: Some(Algorithm::Sha256.hasher()),
            size: 0,
            sent: 0,
            buf: Vec::with_capacity(CHUNK),
        }))
    }

    fn delete_blob(&self, digest: &Digest) -> Result<(), CasError> {
        let d = digest.to_string();
        match lock(&self.plugin).call("cas.delete", |s, b| {
            b.rumoci_driver_cas().call_delete(s, &d)
        }) {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(cas_err(e)),
        }
    }

    fn list_blobs(&self) -> Result<Vec<Digest>, CasError> {
        let mut p = lock(&self.plugin);
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor.clone();
            let page = p
                .call("cas.list-blobs", |s, b| {
                    b.rumoci_driver_cas().call_list_blobs(s, c.as_deref(), PAGE)
                })
                .map_err(cas_err)?;
            if page.items.len() > PAGE as usize {
                return Err(cas_err(
                    p.protocol("cas.list-blobs", "page larger than asked for"),
                ));
            }
            for item in &page.items {
                let d = Digest::from_str(&item.digest).map_err(|e| {
                    cas_err(p.protocol("cas.list-blobs", format!("bad digest: {e}")))
                })?;
                out.push(d);
            }
            if out.len() > crate::limits::MAX_LISTED_BLOBS {
                return Err(cas_err(p.protocol(
                    "cas.list-blobs",
                    crate::limits::Limit::ListedBlobs.to_string(),
                )));
            }
            match page.next {
                None => break,
                Some(n) if Some(&n) == cursor.as_ref() || page.items.is_empty() => {
                    return Err(cas_err(
                        p.protocol("cas.list-blobs", "paging does not advance"),
                    ));
                }
                Some(n) => cursor = Some(n),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn read_index_raw(&self) -> Result<Vec<u8>, CasError> {
        let mut p = lock(&self.plugin);
        match p.call("cas.read-index", |s, b| {
            b.rumoci_driver_cas().call_read_index(s)
        }) {
            Ok(doc) if doc.bytes.len() as u64 > MAX_INDEX => Err(cas_err(p.protocol(
                "cas.read-index",
                crate::limits::Limit::DocumentSize(doc.bytes.len() as u64).to_string(),
            ))),
            Ok(doc) => Ok(doc.bytes),
            Err(e) if is_not_found(&e) => Err(CasError::NotFound("index.json".into())),
            Err(e) => Err(cas_err(e)),
        }
    }

    fn swap_index_raw(&self, old: &[u8], new: &[u8]) -> Result<(), CasError> {
        // an index read partially is never written back (whatever the
        // plugin does about it)
        if let Some(refs) = lock(&self.plugin).wanted_refs() {
            return Err(CasError::PartialIndex {
                refs: refs.to_vec(),
            });
        }
        // WASI has no file locks: rumoci processes take turns here, so that
        // a plugin's read-compare-rename is a real compare-and-swap
        let _turn = index_lock(&self.dir)?;
        // and never while gc runs `clean` (which may remove temporaries)
        let _writer = self.writer_guard()?;
        let pre = IndexPrecondition::Bytes(old.to_vec());
        match lock(&self.plugin).call("cas.write-index", |s, b| {
            b.rumoci_driver_cas().call_write_index(s, new, &pre)
        }) {
            Ok(_) => Ok(()),
            Err(DriverError::Plugin {
                error: WitError::FailedPrecondition(_),
                ..
            }) => Err(CasError::Conflict),
            Err(e) => Err(cas_err(e)),
        }
    }

    fn clean(&self) -> Result<(), CasError> {
        lock(&self.plugin)
            .call("cas.clean", |s, b| b.rumoci_driver_cas().call_clean(s))
            .map_err(cas_err)
    }
}

fn stale(p: &Plugin) -> io::Error {
    io::Error::other(p.protocol("", "the plugin instance was restarted after a trap"))
}

/// Chunked reads through `blob-reader.read-at`.
struct ChunkReader {
    plugin: SharedPlugin,
    generation: u64,
    handle: Option<ResourceAny>,
    offset: u64,
    buf: Vec<u8>,
    pos: usize,
    /// The bytes so far of a blob that may be small enough to remember.
    keep: Option<Keep>,
}

/// A small blob being read, remembered in `docs` when read whole and
/// found to be what its digest says.
struct Keep {
    docs: SharedDocs,
    digest: Digest,
    bytes: Vec<u8>,
}

impl Keep {
    /// `chunk` was read; false once the blob is too large to keep.
    fn add(&mut self, chunk: &[u8]) -> bool {
        self.bytes.extend_from_slice(chunk);
        self.bytes.len() <= MAX_DOC
    }

    /// The blob ended here.
    fn finish(self) {
        let mut h = self.digest.algorithm().hasher();
        h.update(&self.bytes);
        if h.finish() != self.digest {
            return;
        }
        let mut d = docs(&self.docs);
        if d.bytes + self.bytes.len() <= MAX_DOCS {
            d.bytes += self.bytes.len();
            d.blobs.insert(self.digest.to_string(), self.bytes.into());
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.buf.len() {
            let Some(handle) = self.handle else {
                return Ok(0);
            };
            let mut p = lock(&self.plugin);
            if p.generation() != self.generation {
                return Err(stale(&p));
            }
            let off = self.offset;
            let chunk = p
                .call("cas.blob-reader.read-at", |s, b| {
                    b.rumoci_driver_cas()
                        .blob_reader()
                        .call_read_at(s, handle, off, CHUNK as u32)
                })
                .map_err(io::Error::other)?;
            if chunk.len() > CHUNK {
                return Err(io::Error::other(p.protocol(
                    "cas.blob-reader.read-at",
                    "returned more than asked for",
                )));
            }
            if chunk.is_empty() {
                if let Some(k) = self.keep.take() {
                    k.finish();
                }
                return Ok(0);
            }
            if self.keep.as_mut().is_some_and(|k| !k.add(&chunk)) {
                self.keep = None;
            }
            self.offset += chunk.len() as u64;
            self.buf = chunk;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let mut p = lock(&self.plugin);
            if p.generation() == self.generation {
                p.drop_resource(h);
            }
        }
    }
}

/// A reader of the input-stream `stream`, a resource of `plugin`'s current
/// instance (the conformance runner's `open-stream` checks).
pub fn stream_reader(plugin: SharedPlugin, stream: Resource<DynInputStream>) -> impl Read + Send {
    let generation = lock(&plugin).generation();
    StreamReader {
        plugin,
        generation,
        stream: Some(stream),
    }
}

/// The stream fast path: the host reads the plugin's WASI input-stream
/// itself (no copies through guest memory).
struct StreamReader {
    plugin: SharedPlugin,
    generation: u64,
    stream: Option<Resource<DynInputStream>>,
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(res) = &self.stream else {
            return Ok(0);
        };
        if out.is_empty() {
            return Ok(0);
        }
        let mut p = lock(&self.plugin);
        if p.generation() != self.generation {
            return Err(stale(&p));
        }
        let inst = p.instance().map_err(io::Error::other)?;
        let stream = inst
            .store
            .data_mut()
            .table
            .get_mut(res)
            .map_err(io::Error::other)?;
        let want = out.len().min(CHUNK);
        match wasmtime_wasi::runtime::in_tokio(stream.blocking_read(want)) {
            Ok(bytes) => {
                let n = bytes.len().min(out.len());
                out[..n].copy_from_slice(&bytes[..n]);
                Ok(n)
            }
            Err(StreamError::Closed) => Ok(0),
            Err(e) => Err(io::Error::other(format!("{}: read stream: {e}", p.label()))),
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        if let Some(res) = self.stream.take() {
            let mut p = lock(&self.plugin);
            if p.generation() == self.generation
                && let Ok(inst) = p.instance()
            {
                let _ = inst.store.data_mut().table.delete(res);
            }
        }
    }
}

/// Writes pushed in chunks, hashed on the host.
struct WasmBlobWriter {
    plugin: SharedPlugin,
    generation: u64,
    handle: Option<ResourceAny>,
    hasher: Option<Hasher>,
    size: u64,
    sent: u64,
    buf: Vec<u8>,
}

impl WasmBlobWriter {
    fn flush_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let handle = self
            .handle
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        let mut p = lock(&self.plugin);
        if p.generation() != self.generation {
            return Err(stale(&p));
        }
        let data = &self.buf;
        let accepted = p
            .call("cas.blob-writer.write", |s, b| {
                b.rumoci_driver_cas()
                    .blob_writer()
                    .call_write(s, handle, data)
            })
            .map_err(io::Error::other)?;
        self.sent += self.buf.len() as u64;
        if accepted != self.sent {
            return Err(io::Error::other(p.protocol(
                "cas.blob-writer.write",
                format!("accepted {accepted} bytes, {} were sent", self.sent),
            )));
        }
        self.buf.clear();
        Ok(())
    }
}

impl Write for WasmBlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let h = self
            .hasher
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        let n = data.len().min(CHUNK - self.buf.len());
        h.update(&data[..n]);
        self.buf.extend_from_slice(&data[..n]);
        self.size += n as u64;
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for WasmBlobWriter {
    fn commit(mut self: Box<Self>, expected: Option<&Digest>) -> Result<(Digest, u64), CasError> {
        let hasher = self
            .hasher
            .take()
            .ok_or_else(|| CasError::Invalid("blob writer already finished".into()))?;
        let digest = hasher.finish();
        CasError::check_digest(expected, &digest)?;
        self.flush_chunk()
            .map_err(|e| CasError::io(format!("blob {digest}"), e))?;
        let handle = self
            .handle
            .take()
            .ok_or_else(|| CasError::Invalid("blob writer already finished".into()))?;
        let d = digest.to_string();
        let size = self.size;
        let mut p = lock(&self.plugin);
        if p.generation() != self.generation {
            return Err(cas_err(p.protocol(
                "cas.blob-writer.commit",
                "the plugin instance was restarted after a trap",
            )));
        }
        let res = p.call("cas.blob-writer.commit", |s, b| {
            b.rumoci_driver_cas()
                .blob_writer()
                .call_commit(s, handle, &d, size)
        });
        p.drop_resource(handle);
        res.map_err(cas_err)?;
        // Trust, but verify: the plugin must now hold exactly `size` bytes.
        let stored = p
            .call("cas.stat", |s, b| b.rumoci_driver_cas().call_stat(s, &d))
            .map_err(cas_err)?;
        match stored {
            Some(i) if i.size == size => Ok((digest, size)),
            other => Err(cas_err(p.protocol(
                "cas.blob-writer.commit",
                format!(
                    "after commit of {d} ({size} bytes) stat says {:?}",
                    other.map(|i| i.size)
                ),
            ))),
        }
    }
}

impl Drop for WasmBlobWriter {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let mut p = lock(&self.plugin);
            if p.generation() == self.generation {
                p.drop_resource(h);
            }
        }
    }
}
