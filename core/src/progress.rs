//! Progress of long operations, reported to whoever wants it.
//!
//! The library reports; it never draws. Long operations (reading a layer
//! at unpack, writing a new layer at repack/insert/`raw add-layer`,
//! checking blobs at verify, examining blobs at gc, copying a snapshot out
//! of a layer store) announce an *item* with [`Item::start`], advance it by
//! bytes or by objects, and finish it. The items go to the process-wide
//! reporter set with [`set_reporter`] — by default [`NoProgress`], which
//! does nothing, so a program using the library sees nothing unless it
//! asks. The `rumoci` command line installs a terminal bar when stderr is a
//! terminal and `-q` is not given.
//!
//! Items do not nest: an operation reports one item at a time (a new
//! `start` before `finish` replaces the current item). Calls may come from
//! any thread.

use std::io::{Read, Write};
use std::sync::{Arc, RwLock};

/// What an item counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes (a layer read or written).
    Bytes,
    /// Objects (blobs checked, blobs examined, entries copied).
    Objects,
}

/// Receives progress reports. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// An item starts: `label` says what it is (`layer 2/5`, `verify
    /// blobs`), `total` how many units it will take when known.
    fn start(&self, label: &str, total: Option<u64>, unit: Unit) {
        let _ = (label, total, unit);
    }
    /// `n` more units of the current item are done.
    fn advance(&self, n: u64) {
        let _ = n;
    }
    /// The current item is finished (or abandoned on an error).
    fn finish(&self) {}
}

/// The default reporter: reports go nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}

static REPORTER: RwLock<Option<Arc<dyn Progress>>> = RwLock::new(None);

/// Send this process's progress reports to `p` (replacing the previous
/// reporter).
pub fn set_reporter(p: Arc<dyn Progress>) {
    if let Ok(mut slot) = REPORTER.write() {
        *slot = Some(p);
    }
}

/// The current reporter ([`NoProgress`] unless [`set_reporter`] was called).
pub fn reporter() -> Arc<dyn Progress> {
    REPORTER
        .read()
        .ok()
        .and_then(|r| r.clone())
        .unwrap_or_else(|| Arc::new(NoProgress))
}

/// One reported item: started on creation, finished by [`Item::finish`] or
/// when dropped (so an error path ends the line too).
pub struct Item {
    to: Arc<dyn Progress>,
    done: bool,
}

impl Item {
    /// Start an item on the current reporter.
    pub fn start(label: &str, total: Option<u64>, unit: Unit) -> Item {
        let to = reporter();
        to.start(label, total, unit);
        Item { to, done: false }
    }

    /// `n` more units done.
    pub fn advance(&self, n: u64) {
        self.to.advance(n);
    }

    /// Finish the item.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if !self.done {
            self.done = true;
            self.to.finish();
        }
    }

    /// A reader that advances this item by the bytes read.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            to: self.to.clone(),
        }
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.end();
    }
}

/// A reader that reports the bytes read (see [`Item::reader`]).
pub struct CountingReader<R> {
    inner: R,
    to: Arc<dyn Progress>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.to.advance(n as u64);
        Ok(n)
    }
}

/// A writer that reports the bytes written.
pub struct CountingWriter<W> {
    inner: W,
    to: Arc<dyn Progress>,
}

impl<W> CountingWriter<W> {
    /// Report what is written to `inner` to the item's reporter.
    pub fn new(item: &Item, inner: W) -> CountingWriter<W> {
        CountingWriter {
            inner,
            to: item.to.clone(),
        }
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.to.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    impl Progress for Log {
        fn start(&self, label: &str, total: Option<u64>, _unit: Unit) {
            self.0
                .lock()
                .expect("lock")
                .push(format!("start {label} {total:?}"));
        }
        fn advance(&self, n: u64) {
            self.0.lock().expect("lock").push(format!("+{n}"));
        }
        fn finish(&self) {
            self.0.lock().expect("lock").push("finish".into());
        }
    }

    #[test]
    fn an_item_is_started_advanced_and_finished_once() {
        let log = Arc::new(Log::default());
        let item = Item {
            to: log.clone(),
            done: false,
        };
        item.to.start("x", Some(3), Unit::Bytes);
        let mut r = item.reader(&b"abc"[..]);
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).expect("read");
        item.finish();
        let got = log.0.lock().expect("lock").clone();
        assert_eq!(got, ["start x Some(3)", "+3", "+0", "finish"]);
    }
}
