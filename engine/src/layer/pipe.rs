//! A pipe between threads: one stream handed over in chunks. The
//! producing side ([`Pump`]) reads (verifies, inflates) into 1 MiB chunks
//! and hands them over a bounded channel to the consuming side
//! ([`ChunkReader`], a [`Read`]), so inflating overlaps with tar parsing
//! and writing on two cores. Emptied chunks travel back for reuse.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use crate::oci::{Digest, Hasher};

/// Bytes per chunk handed between the threads.
pub(crate) const CHUNK: usize = 1 << 20;
/// Chunks in flight between the threads (bounds the memory used).
const IN_FLIGHT: usize = 4;

/// A chunk shared by the consumer and the hashing thread; whichever lets go
/// last sends the buffer back for reuse.
type Chunk = Arc<Vec<u8>>;

fn recycle(chunk: Chunk, spent: &Sender<Vec<u8>>) {
    if let Some(buf) = Arc::into_inner(chunk) {
        let _ = spent.send(buf);
    }
}

/// The producing end: see [`Pump::pump`].
pub(crate) struct Pump {
    tx: SyncSender<io::Result<Chunk>>,
    /// The hashing thread's queue, if the stream is hashed.
    hash_tx: Option<SyncSender<Chunk>>,
    spent: Receiver<Vec<u8>>,
}

/// The consuming end: the stream's bytes, in order; a read error of the
/// producer is returned where it happened; the end of the stream when the
/// producer reached it (an empty chunk marks it). A producer gone before
/// the end is an error.
pub(crate) struct ChunkReader {
    rx: Receiver<io::Result<Chunk>>,
    spent: Sender<Vec<u8>>,
    buf: Chunk,
    pos: usize,
    ended: bool,
    /// The thread hashing every chunk (e.g. for the diff_id): a third
    /// share of the work, which the scheduler balances against inflating
    /// and extracting.
    hashing: Option<JoinHandle<Digest>>,
}

/// A connected producer and consumer; with a `hasher`, a thread hashes the
/// whole stream (every byte the producer reads, also those the consumer
/// leaves): [`ChunkReader::digest`].
pub(crate) fn channel_pair(hasher: Option<Hasher>) -> (Pump, ChunkReader) {
    channel_pair_of(IN_FLIGHT, hasher)
}

/// [`channel_pair`] holding up to `depth` chunks in flight (a network
/// read-ahead queues more than a local read needs).
pub(crate) fn channel_pair_of(depth: usize, hasher: Option<Hasher>) -> (Pump, ChunkReader) {
    let (tx, rx) = sync_channel(depth);
    let (spent_tx, spent_rx) = channel();
    let (hash_tx, hashing) = match hasher {
        Some(mut h) => {
            let (htx, hrx) = sync_channel::<Chunk>(depth);
            let spent = spent_tx.clone();
            let t = std::thread::spawn(move || {
                for chunk in hrx {
                    h.update(&chunk);
                    recycle(chunk, &spent);
                }
                h.finish()
            });
            (Some(htx), Some(t))
        }
        None => (None, None),
    };
    (
        Pump {
            tx,
            hash_tx,
            spent: spent_rx,
        },
        ChunkReader {
            rx,
            spent: spent_tx,
            buf: Arc::new(Vec::new()),
            pos: 0,
            ended: false,
            hashing,
        },
    )
}

impl Pump {
    /// Read `reader` to its very end into chunks for the consumer (and
    /// the hashing thread). If the consumer stops early, the rest is still
    /// read (and hashed): the end is where a blob's digest is checked, and
    /// a bad blob explains what the consumer stopped on. A read error is
    /// passed on to the consumer and returned.
    pub(crate) fn pump(self, reader: &mut dyn Read) -> io::Result<()> {
        self.run(reader, true)
    }

    /// [`Pump::pump`], but stop reading as soon as the consumer is gone
    /// (a download nobody will read is not worth its bytes).
    pub(crate) fn pump_while_wanted(self, reader: &mut dyn Read) -> io::Result<()> {
        self.run(reader, false)
    }

    fn run(self, reader: &mut dyn Read, drain: bool) -> io::Result<()> {
        let mut listening = true;
        loop {
            // a recycled chunk was full (len CHUNK): resizing costs nothing
            let mut chunk = self.spent.try_recv().unwrap_or_default();
            chunk.resize(CHUNK, 0);
            let mut filled = 0;
            while filled < CHUNK {
                match reader.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if listening {
                            let _ = self.tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        }
                        return Err(e);
                    }
                }
            }
            if filled == 0 {
                if listening {
                    let _ = self.tx.send(Ok(Arc::new(Vec::new())));
                }
                return Ok(());
            }
            chunk.truncate(filled);
            let chunk = Arc::new(chunk);
            if let Some(h) = &self.hash_tx {
                // the hashing thread only ends when this sender is dropped
                let _ = h.send(chunk.clone());
            }
            if listening && self.tx.send(Ok(chunk)).is_err() {
                listening = false;
            }
            if !listening && !drain {
                return Ok(());
            }
        }
    }
}

impl ChunkReader {
    /// The hash of the whole stream, once the producer is done (`None`
    /// without a hasher, or if the hashing thread failed).
    pub(crate) fn digest(self) -> Option<Digest> {
        let ChunkReader { rx, hashing, .. } = self;
        drop(rx);
        hashing.and_then(|t| t.join().ok())
    }
}

/// Read `reader` to its end on this thread, hashing it on another: the
/// digest, or the read error (as the reader gave it).
pub(crate) fn hash_on_thread(reader: &mut dyn Read, hasher: Hasher) -> io::Result<Digest> {
    let (pump, r) = channel_pair(Some(hasher));
    let ChunkReader { rx, hashing, .. } = r;
    // no consumer: every chunk goes to the hashing thread only
    drop(rx);
    pump.pump(reader)?;
    hashing
        .and_then(|t| t.join().ok())
        .ok_or_else(|| io::Error::other("the hashing thread failed"))
}

impl io::BufRead for ChunkReader {
    /// The rest of the current chunk (the next one once it is spent): the
    /// consumer reads the producer's bytes where they are, without a copy.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.buf.len() {
            if self.ended {
                return Ok(&[]);
            }
            match self.rx.recv() {
                Ok(Ok(b)) if b.is_empty() => self.ended = true,
                Ok(Ok(b)) => {
                    let old = std::mem::replace(&mut self.buf, b);
                    recycle(old, &self.spent);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(io::Error::other(
                        "the reading thread stopped before the end of the stream",
                    ));
                }
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        use io::BufRead as _;
        let avail = self.fill_buf()?;
        let n = out.len().min(avail.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_and_errors_where_they_happened() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let (pump, mut r) = channel_pair(None);
        let mut got = Vec::new();
        std::thread::scope(|s| {
            let d = &data;
            let p = s.spawn(move || pump.pump(&mut &d[..]));
            r.read_to_end(&mut got).unwrap();
            p.join().unwrap().unwrap();
        });
        assert!(got == data);

        // hashed on a thread of its own, every byte, also those the
        // consumer never reads
        let (pump, mut r) = channel_pair(Some(crate::oci::Algorithm::Sha256.hasher()));
        std::thread::scope(|s| {
            let d = &data;
            let p = s.spawn(move || pump.pump(&mut &d[..]));
            let mut first = vec![0u8; 10];
            r.read_exact(&mut first).unwrap();
            p.join().unwrap().unwrap();
        });
        let mut want = crate::oci::Algorithm::Sha256.hasher();
        want.update(&data);
        let want = want.finish();
        assert_eq!(r.digest(), Some(want.clone()));
        let alone = hash_on_thread(&mut &data[..], crate::oci::Algorithm::Sha256.hasher());
        assert_eq!(alone.unwrap(), want);

        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "digest mismatch",
                    ));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let (pump, mut r) = channel_pair(None);
        std::thread::scope(|s| {
            let p = s.spawn(move || pump.pump(&mut Failing(CHUNK + 5)));
            let mut sink = Vec::new();
            let e = r.read_to_end(&mut sink).unwrap_err();
            assert_eq!(e.to_string(), "digest mismatch");
            assert!(p.join().unwrap().is_err());
        });
    }
}
