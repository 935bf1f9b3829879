//! The terminal progress bar: the command line's [`Progress`] reporter,
//! drawn on stderr only when stderr is a terminal and `-q` is not given.
//!
//! One line per item, redrawn at most every 100 ms: `LABEL [####   ]
//! 12.0/40.0 MiB 8.1 MiB/s ETA 3s` for bytes with a known total, `LABEL
//! 12.0 MiB 8.1 MiB/s` without one, `LABEL 17/40` (or `LABEL 17`) for
//! objects.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumoci::progress::{Progress, Unit, set_reporter};

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);
const WIDTH: usize = 30;
const MIB: f64 = 1048576.0;

struct Bar {
    label: String,
    total: Option<u64>,
    unit: Unit,
    done: u64,
    started: Instant,
    drawn: Option<Instant>,
}

/// Draws on stderr.
#[derive(Default)]
struct Terminal(Mutex<Option<Bar>>);

impl Bar {
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let mut out = self.label.clone();
        if let Some(total) = self.total {
            let frac = if total == 0 {
                1.0
            } else {
                (self.done as f64 / total as f64).min(1.0)
            };
            let filled = (frac * WIDTH as f64) as usize;
            out.push_str(&format!(
                " [{}{}]",
                "#".repeat(filled),
                " ".repeat(WIDTH - filled)
            ));
        }
        match self.unit {
            Unit::Bytes => {
                out.push_str(&format!(" {:.1}", self.done as f64 / MIB));
                if let Some(t) = self.total {
                    out.push_str(&format!("/{:.1}", t as f64 / MIB));
                }
                out.push_str(" MiB");
                if secs > 0.2 {
                    let rate = self.done as f64 / secs;
                    out.push_str(&format!(" {:.1} MiB/s", rate / MIB));
                    if let Some(t) = self.total
                        && rate > 0.0
                        && self.done < t
                    {
                        let eta = (t - self.done) as f64 / rate;
                        out.push_str(&format!(" ETA {}s", eta.ceil() as u64));
                    }
                }
            }
            Unit::Objects => {
                out.push_str(&format!(" {}", self.done));
                if let Some(t) = self.total {
                    out.push_str(&format!("/{t}"));
                }
            }
        }
        out
    }

    fn draw(&mut self) {
        self.drawn = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}", self.line());
        let _ = err.flush();
    }
}

impl Progress for Terminal {
    fn start(&self, label: &str, total: Option<u64>, unit: Unit) {
        let Ok(mut slot) = self.0.lock() else { return };
        if let Some(prev) = slot.as_mut() {
            prev.draw();
            eprintln!();
        }
        let mut bar = Bar {
            label: label.to_string(),
            total,
            unit,
            done: 0,
            started: Instant::now(),
            drawn: None,
        };
        bar.draw();
        *slot = Some(bar);
    }

    fn advance(&self, n: u64) {
        let Ok(mut slot) = self.0.lock() else { return };
        if let Some(bar) = slot.as_mut() {
            bar.done += n;
            if bar.drawn.is_none_or(|t| t.elapsed() >= TICK) {
                bar.draw();
            }
        }
    }

    fn finish(&self) {
        let Ok(mut slot) = self.0.lock() else { return };
        if let Some(mut bar) = slot.take() {
            bar.draw();
            eprintln!();
        }
    }
}

/// Install the terminal bar unless `quiet` or stderr is not a terminal.
pub fn install(quiet: bool) {
    if !quiet && rustix::termios::isatty(std::io::stderr()) {
        set_reporter(Arc::new(Terminal::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_bytes_rate_and_eta() {
        let bar = Bar {
            label: "layer 1/1".into(),
            total: Some(4 * 1048576),
            unit: Unit::Bytes,
            done: 1048576,
            started: Instant::now() - Duration::from_secs(1),
            drawn: None,
        };
        let l = bar.line();
        assert!(l.starts_with("layer 1/1 [#######"), "{l}");
        assert!(l.contains(" 1.0/4.0 MiB "), "{l}");
        assert!(l.contains("MiB/s ETA "), "{l}");
    }
}
