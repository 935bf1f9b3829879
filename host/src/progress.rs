//! A progress bar per layer on stderr, drawn only when stderr is a
//! terminal (silent in pipes, logs and tests).

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);
const WIDTH: usize = 30;

/// Progress of reading one layer blob.
pub struct LayerProgress {
    label: String,
    total: u64,
    done: Arc<AtomicU64>,
    enabled: bool,
}

/// A reader that counts the bytes read and redraws the bar now and then.
pub struct CountingReader<R> {
    inner: R,
    done: Arc<AtomicU64>,
    bar: Option<(String, u64, Instant)>,
}

fn draw(label: &str, done: u64, total: u64) {
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (frac * WIDTH as f64) as usize;
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r{label} [{}{}] {:>6.1}/{:.1} MiB",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled),
        done as f64 / 1048576.0,
        total as f64 / 1048576.0
    );
    let _ = err.flush();
}

impl LayerProgress {
    /// A bar for `total` bytes, enabled when stderr is a terminal.
    pub fn new(label: String, total: u64) -> LayerProgress {
        LayerProgress {
            label,
            total,
            done: Arc::new(AtomicU64::new(0)),
            enabled: rustix::termios::isatty(std::io::stderr()),
        }
    }

    /// Wrap the blob reader.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader {
            inner,
            done: self.done.clone(),
            bar: self
                .enabled
                .then(|| (self.label.clone(), self.total, Instant::now())),
        }
    }

    /// Draw the final state and end the line.
    pub fn finish(&self) {
        if self.enabled {
            draw(&self.label, self.done.load(Ordering::Relaxed), self.total);
            eprintln!();
        }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let done = self.done.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if let Some((label, total, last)) = &mut self.bar
            && last.elapsed() >= TICK
        {
            *last = Instant::now();
            draw(label, done, *total);
        }
        Ok(n)
    }
}
