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
use crate::layer::pipe::{self, ChunkReader, Pump};
use crate::oci::Descriptor;

/// Layers in flight at once: the one being extracted and those after it.
const AHEAD: usize = 3;
/// Chunks a layer may have queued before its thread waits (16 MiB): what
/// the link delivers in a third of a second at 50 MB/s.
const DEPTH: usize = 16;

/// A layer being fetched: whether its blob opened (`None` once that
/// answer was taken, and was yes), then its bytes.
struct Pending {
    opened: Option<Receiver<Result<(), CasError>>>,
    reader: ChunkReader,
}

impl Pending {
    /// Wait until the blob of `layer` is open (its request answered).
    fn wait_opened(&mut self, layer: &Descriptor) -> Result<(), CasError> {
        let Some(opened) = self.opened.take() else {
            return Ok(());
        };
        opened.recv().map_err(|_| {
            CasError::io(
                format!("layer {}", layer.digest),
                io::Error::other("the read-ahead thread stopped before opening the blob"),
            )
        })?
    }
}

/// The layers of one image, opened in order by the extractor.
pub(crate) struct ReadAhead<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    cas: &'env dyn Cas,
    layers: &'env [Descriptor],
    /// Whether layers are read ahead at all.
    enabled: bool,
    /// The queues of the layers being fetched.
    pending: BTreeMap<usize, Pending>,
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

    /// Start reading the first layer now (when reading ahead at all), before
    /// [`ReadAhead::open`] asks for it, and return once the store has
    /// answered its request: its bytes then come while the caller fetches
    /// what it needs first (the image config, whose request follows on
    /// another connection). Only for a caller that will read the layer
    /// (nothing cached): an unread layer is dropped after at most `DEPTH`
    /// chunks.
    pub(crate) fn start_first(&mut self) -> Result<(), CasError> {
        if !self.enabled || self.started != 0 || self.layers.is_empty() {
            return Ok(());
        }
        self.start(0)?;
        self.started = 1;
        match self.pending.get_mut(&0) {
            // the store serves one call at a time: waiting here sends the
            // layer's request before the config's
            Some(first) => first.wait_opened(&self.layers[0]),
            None => Ok(()),
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
        let Some(mut pending) = self.pending.remove(&i) else {
            // opened again: read it as a local store is
            return self.local(layer);
        };
        pending.wait_opened(layer)?;
        Ok(Box::new(pending.reader))
    }

    /// A blob of a local store: read and checked (size, digest) on a
    /// thread of its own, handed over in chunks, so that hashing the
    /// compressed bytes does not slow the inflater reading them.
    fn local(&self, layer: &Descriptor) -> Result<Box<dyn Read + Send + 'env>, CasError> {
        let mut blob = ext::open_verified(self.cas, layer)?;
        let (pump, reader) = pipe::channel_pair(None);
        // a read error reaches the reader, and through it the unpack
        self.scope.spawn(move || pump.pump(&mut blob).is_ok());
        Ok(Box::new(reader))
    }

    fn start(&mut self, j: usize) -> Result<(), CasError> {
        let Some(layer) = self.layers.get(j) else {
            return Ok(());
        };
        let (open_tx, opened) = sync_channel(1);
        let (pump, reader) = pipe::channel_pair_of(DEPTH, None);
        let (read_tx, read_rx) = sync_channel(0);
        let before = self.last_read.replace(read_rx);
        let cas = self.cas;
        std::thread::Builder::new()
            .name(format!("rumoci-fetch-{}", j + 1))
            .spawn_scoped(self.scope, move || {
                fetch(cas, layer, before, &open_tx, pump);
                // the next layer may be read now
                drop(read_tx);
            })
            .map_err(|e| CasError::io(format!("layer {}: read-ahead thread", layer.digest), e))?;
        self.pending.insert(
            j,
            Pending {
                opened: Some(opened),
                reader,
            },
        );
        Ok(())
    }
}

/// Open `layer`, then (once `before` closes: the layer before it has been
/// read) read it through `pump` until its end, an error, or the reader is
/// gone (the extractor stopped, or no longer wants the layer).
fn fetch(
    cas: &dyn Cas,
    layer: &Descriptor,
    before: Option<Receiver<()>>,
    opened: &SyncSender<Result<(), CasError>>,
    pump: Pump,
) {
    let mut blob = match ext::open_verified(cas, layer) {
        Ok(b) => b,
        Err(e) => {
            let _ = opened.send(Err(e));
            return;
        }
    };
    if opened.send(Ok(())).is_err() {
        return;
    }
    if let Some(before) = before {
        // nothing is ever sent: this returns when the sender is dropped
        let _ = before.recv();
    }
    // an error reaches the reader
    let _ = pump.pump_while_wanted(&mut blob);
}
