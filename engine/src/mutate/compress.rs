//! Layer compression, chosen by name or by the image's last layer.

use std::io::{self, Write};

use super::pgzip::ParGzEncoder;
use crate::oci::{Descriptor, media};

/// How a new layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (the default).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Parse `--compress`: `auto` gives `None` (decide later), else the algorithm.
    pub fn parse(s: &str) -> Result<Option<Compression>, super::MutateError> {
        match s {
            "auto" => Ok(None),
            "none" | "" => Ok(Some(Compression::None)),
            "gzip" => Ok(Some(Compression::Gzip)),
            "zstd" => Ok(Some(Compression::Zstd)),
            other => Err(super::MutateError::Invalid(format!(
                "--compress {other:?}: expected auto, none, gzip or zstd"
            ))),
        }
    }

    /// umoci's `auto`: the algorithm of the most recent layer that has a
    /// known compression suffix, else gzip. Never `None`.
    pub fn auto(layers: &[Descriptor]) -> Compression {
        layers
            .iter()
            .rev()
            .find_map(|l| match media::split_suffix(&l.media_type).1 {
                "gzip" => Some(Compression::Gzip),
                "zstd" => Some(Compression::Zstd),
                _ => None,
            })
            .unwrap_or(Compression::Gzip)
    }

    /// The layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => media::LAYER,
            Compression::Gzip => media::LAYER_GZIP,
            Compression::Zstd => media::LAYER_ZSTD,
        }
    }

    /// Wrap `out` in a compressing writer.
    pub fn writer<'a, W: Write + Send + 'a>(self, out: W) -> io::Result<Compressor<'a, W>> {
        Ok(match self {
            Compression::None => Compressor::None(out),
            Compression::Gzip => Compressor::Gzip(ParGzEncoder::new(out)),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
                // Always zstd's multi-threaded mode (at least one worker):
                // its output depends on the job size, not on the number of
                // workers, while the single-threaded mode (0 workers)
                // writes other bytes. So the blob digest is the same on
                // one CPU as on many.
                let threads = std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(1)
                    .max(1);
                enc.multithread(threads)?;
                Compressor::Zstd(enc)
            }
        })
    }
}

/// A compressing writer; [`Compressor::finish`] flushes the trailer and
/// returns the inner writer.
pub enum Compressor<'a, W: Write> {
    /// Pass-through.
    None(W),
    /// gzip, compressed in parallel (deterministic, one gzip member per
    /// 1 MiB block).
    Gzip(ParGzEncoder<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'a, W>),
}

impl<W: Write> Compressor<'_, W> {
    /// Finish the stream.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}
