//! Layers read ahead from a store that reads over the network
//! ([`Cas::reads_over_network`], e.g. a registry): while layer `i` is
//! extracted, layers `i+1 … i+AHEAD-1` are already opened (their requests
//! sent, so their round trips overlap the transfer before them), each on
//! its own thread that reads into a bounded queue of chunks in memory.
//! A layer's body is read once the layer before it has arrived whole:
//! on a link of limited bandwidth, layers read side by side would each
//! arrive later, and extraction (in order) would wait for the first one
//! while the others sit in memory. So the link carries the layers in the
//! order they are extracted, without a gap between them, and extraction
//! follows the bytes as they come. Nothing is written to disk; at most
//! `AHEAD × DEPTH` chunks are held. A local store's layer is read (and its
//! digest checked) on a thread of its own through a `layer::pipe`, one
//! layer at a time, while the extracting side inflates it.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::Scope;

use crate::cas::{Cas, CasError, ext};
use crate::oci::Descriptor;

/// Layers in flight at once: the one being extracted and those after it.
const AHEAD: usize = 3;
/// Bytes per chunk queued.
const CHUNK: usize = 1 << 20;
/// Chunks a layer may have queued before its thread waits (16 MiB): what
/// the link delivers in a third of a second at 50 MB/s.
const DEPTH: usize = 16;

/// What a read-ahead thread sends: first whether the blob opened, then its
/// bytes (verified as they are read: size and digest), then its end.
enum Fetched {
    Opened(Result<(), CasError>),
    Data(io::Result<Vec<u8>>),
    End,
}

/// The layers of one image, opened in order by the extractor.
pub(crate) struct ReadAhead<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    cas: &'env dyn Cas,
    layers: &'env [Descriptor],
    /// Whether layers are read ahead at all.
    enabled: bool,
    /// The queues of the layers being fetched.
    pending: BTreeMap<usize, Receiver<Fetched>>,
    /// The layers below this one have been started (or skipped).
    started: usize,
    /// Closed when the last layer started has been read to its end.
    last_read: Option<Receiver<()>>,
}

impl<'scope, 'env> ReadAhead<'scope, 'env> {
    /// Read `layers` from `cas`, ahead when it reads over the network.
    pub(crate) fn new(
        scope: &'scope Scope<'scope, 'env>,
        cas: &'env dyn Cas,
        layers: &'env [Descriptor],
    ) -> ReadAhead<'scope, 'env> {
        ReadAhead {
            scope,
            cas,
            layers,
            enabled: cas.reads_over_network(),
            pending: BTreeMap::new(),
            started: 0,
            last_read: None,
        }
    }

    /// Layer `i`'s blob, verified as it is read; the layers after it are
    /// started meanwhile.
    pub(crate) fn open(&mut self, i: usize) -> Result<Box<dyn Read + Send + 'env>, CasError> {
        let layer = self.layers.get(i).ok_or_else(|| {
            CasError::Invalid(format!("layer {}: no such layer in the manifest", i + 1))
        })?;
        if !self.enabled {
            return self.local(layer);
        }
        // the layers before `i` were not wanted after all (cached)
        self.pending.retain(|&j, _| j >= i);
        self.started = self.started.max(i);
        while self.started < (i + AHEAD).min(self.layers.len()) {
            self.start(self.started)?;
            self.started += 1;
        }
        let Some(rx) = self.pending.remove(&i) else {
            // opened again: read it as a local store is
            return self.local(layer);
        };
        match rx.recv() {
            Ok(Fetched::Opened(Ok(()))) => Ok(Box::new(Queued {
                rx,
                buf: Vec::new(),
                pos: 0,
                ended: false,
            })),
            Ok(Fetched::Opened(Err(e))) => Err(e),
            _ => Err(CasError::io(
                format!("layer {}", layer.digest),
                io::Error::other("the read-ahead thread stopped before opening the blob"),
            )),
        }
    }

    /// A blob of a local store: read and checked (size, digest) on a
    /// thread of its own, handed over in chunks, so that hashing the
    /// compressed bytes does not slow the inflater reading them.
    fn local(&self, layer: &Descriptor) -> Result<Box<dyn Read + Send + 'env>, CasError> {
        let mut blob = ext::open_verified(self.cas, layer)?;
        let (pump, reader) = crate::layer::pipe::channel_pair(None);
        // a read error reaches the reader, and through it the unpack
        self.scope.spawn(move || pump.pump(&mut blob).is_ok());
        Ok(Box::new(reader))
    }

    fn start(&mut self, j: usize) -> Result<(), CasError> {
        let Some(layer) = self.layers.get(j) else {
            return Ok(());
        };
        let (tx, rx) = sync_channel(DEPTH);
        let (read_tx, read_rx) = sync_channel(0);
        let before = self.last_read.replace(read_rx);
        let cas = self.cas;
        std::thread::Builder::new()
            .name(format!("rumoci-fetch-{}", j + 1))
            .spawn_scoped(self.scope, move || {
                fetch(cas, layer, before, &tx);
                // the next layer may be read now
                drop(read_tx);
            })
            .map_err(|e| CasError::io(format!("layer {}: read-ahead thread", layer.digest), e))?;
        self.pending.insert(j, rx);
        Ok(())
    }
}

/// Open `layer`, then (once `before` closes: the layer before it has been
/// read) read it into `tx` until its end, an error, or the receiver is
/// gone (the extractor stopped).
fn fetch(
    cas: &dyn Cas,
    layer: &Descriptor,
    before: Option<Receiver<()>>,
    tx: &SyncSender<Fetched>,
) {
    let mut blob = match ext::open_verified(cas, layer) {
        Ok(b) => b,
        Err(e) => {
            let _ = tx.send(Fetched::Opened(Err(e)));
            return;
        }
    };
    if tx.send(Fetched::Opened(Ok(()))).is_err() {
        return;
    }
    if let Some(before) = before {
        // nothing is ever sent: this returns when the sender is dropped
        let _ = before.recv();
    }
    loop {
        let mut chunk = vec![0; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match blob.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Fetched::Data(Err(e)));
                    return;
                }
            }
        }
        if filled == 0 {
            let _ = tx.send(Fetched::End);
            return;
        }
        chunk.truncate(filled);
        if tx.send(Fetched::Data(Ok(chunk))).is_err() {
            return;
        }
    }
}

/// The extractor's side of one layer's queue.
struct Queued {
    rx: Receiver<Fetched>,
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Read for Queued {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Fetched::Data(Ok(b))) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Ok(Fetched::Data(Err(e))) => return Err(e),
                Ok(Fetched::End) => self.ended = true,
                Ok(Fetched::Opened(_)) | Err(_) => {
                    return Err(io::Error::other(
                        "the read-ahead thread stopped before the end of the blob",
                    ));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
