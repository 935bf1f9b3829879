//! Image → root filesystem: resolve the manifest's layers, verify each blob
//! (size, digest), decompress by media type, check the uncompressed stream
//! against the config's diff_id, and apply it with the extractor.

use std::io::Read;
use std::path::Path;

use crate::cas::{Cas, CasError, ext};
use crate::layer::compress::decompressor;
use crate::layer::extract::{ExtractError, ExtractOptions, Extractor};
use crate::layer::root::Root;
use crate::oci::{Digest, Hasher, Image, Manifest, media};

/// Errors of an unpack.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the image failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// A layer could not be applied.
    #[error("layer {digest}: {source}")]
    Layer {
        /// The layer blob.
        digest: Digest,
        /// Why.
        #[source]
        source: ExtractError,
    },
    /// The image is not something rumoci can unpack.
    #[error("{0}")]
    Invalid(String),
    /// Filesystem error on the target.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Hashes and counts what passes through.
struct DiffIdReader<R> {
    inner: R,
    hasher: Hasher,
    size: u64,
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Check that `manifest`/`config` describe an unpackable image.
pub fn check_image(manifest: &Manifest, config: &Image) -> Result<(), UnpackError> {
    if manifest.config.media_type != media::CONFIG {
        return Err(UnpackError::Invalid(format!(
            "config {}: unsupported media type {}",
            manifest.config.digest, manifest.config.media_type
        )));
    }
    if config.rootfs.kind != "layers" {
        return Err(UnpackError::Invalid(format!(
            "config {}: rootfs.type is {:?}, not \"layers\"",
            manifest.config.digest, config.rootfs.kind
        )));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(UnpackError::Invalid(format!(
            "config {}: {} diff_ids for {} layers",
            manifest.config.digest,
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    Ok(())
}

/// Extract every layer of the image into the existing directory `rootfs`.
/// Returns the extractor, whose `digests` describe the regular files.
pub fn unpack_rootfs(
    cas: &dyn Cas,
    manifest: &Manifest,
    config: &Image,
    rootfs: &Path,
    opts: ExtractOptions,
) -> Result<Extractor, UnpackError> {
    check_image(manifest, config)?;
    let root = Root::open(rootfs).map_err(|source| UnpackError::Io {
        path: rootfs.display().to_string(),
        source,
    })?;
    let mut ex = Extractor::new(opts);
    for (i, layer) in manifest.layers.iter().enumerate() {
        let diff_id = &config.rootfs.diff_ids[i];
        tracing::info!(
            "unpacking layer {} ({}/{})",
            layer.digest,
            i + 1,
            manifest.layers.len()
        );
        let blob = ext::open_verified(cas, layer)?;
        let progress = crate::progress::LayerProgress::new(
            format!("layer {}/{}", i + 1, manifest.layers.len()),
            layer.size,
        );
        let counted = progress.reader(blob);
        let plain = decompressor(&layer.media_type, Box::new(counted))
            .map_err(|e| UnpackError::Invalid(format!("layer {}: {e}", layer.digest)))?;
        let mut reader = DiffIdReader {
            inner: plain,
            hasher: diff_id.algorithm().hasher(),
            size: 0,
        };
        pipelined_apply(&mut ex, &root, &mut reader, &layer.digest)?;
        progress.finish();
        let got = reader.hasher.finish();
        if &got != diff_id {
            return Err(UnpackError::Invalid(format!(
                "layer {}: diff_id mismatch: config says {diff_id}, content is {got}",
                layer.digest
            )));
        }
    }
    Ok(ex)
}

/// Chunks handed from the reading thread to the extracting thread.
const CHUNK: usize = 1 << 20;
/// Chunks in flight (bounds memory to a few MiB).
const IN_FLIGHT: usize = 4;

/// Reads chunks from the channel as one stream.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Apply one layer with reading, verifying, decompressing and diff_id
/// hashing on this thread and tar parsing, file writing and file hashing on
/// another, so the two halves overlap on two cores. The stream is read to
/// its very end (trailing bytes count for the diff_id, and the end is where
/// the blob digest is checked), whatever the extractor does.
fn pipelined_apply(
    ex: &mut Extractor,
    root: &Root,
    reader: &mut dyn Read,
    digest: &Digest,
) -> Result<(), UnpackError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut r = ChannelReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            };
            let res = ex.apply_layer(root, &mut r);
            // keep the reader going to the end, whatever happened
            let trailing = std::io::copy(&mut r, &mut std::io::sink()).unwrap_or(0);
            (res, trailing)
        });
        let mut read_err = None;
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < CHUNK {
                match reader.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        read_err = Some(e);
                        break;
                    }
                }
            }
            if filled == 0 || read_err.is_some() {
                break;
            }
            chunk.truncate(filled);
            if tx.send(chunk).is_err() {
                // the extractor stopped early (an error): finish reading so
                // that a corrupt blob is reported as such
                if let Err(e) = std::io::copy(reader, &mut std::io::sink()) {
                    read_err = Some(e);
                }
                break;
            }
        }
        drop(tx);
        let (res, trailing) = worker
            .join()
            .map_err(|_| UnpackError::Invalid(format!("layer {digest}: extractor panicked")))?;
        // a bad blob (digest, size, compression) explains any extraction error
        if let Some(e) = read_err {
            return Err(UnpackError::Cas(CasError::io(format!("layer {digest}"), e)));
        }
        res.map_err(|source| UnpackError::Layer {
            digest: digest.clone(),
            source,
        })?;
        if trailing > 0 {
            tracing::debug!("layer {digest}: {trailing} bytes after the end of the archive");
        }
        Ok(())
    })
}

/// Check one layer blob stream (already size/digest verified as it is
/// read): it must decompress by its media type to content whose hash is
/// `diff_id`. Used by `verify`.
pub fn check_layer(
    desc: &crate::oci::Descriptor,
    diff_id: Option<&Digest>,
    blob: &mut dyn Read,
) -> Result<(), String> {
    let plain = decompressor(&desc.media_type, Box::new(blob))?;
    let alg = diff_id.map_or(crate::oci::Algorithm::Sha256, Digest::algorithm);
    let mut reader = DiffIdReader {
        inner: plain,
        hasher: alg.hasher(),
        size: 0,
    };
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| format!("layer {}: {e}", desc.digest))?;
    let got = reader.hasher.finish();
    match diff_id {
        Some(d) if *d != got => Err(format!(
            "layer {}: diff_id mismatch: config says {d}, content is {got}",
            desc.digest
        )),
        Some(_) => Ok(()),
        None => Err(format!("layer {}: no diff_id in the config", desc.digest)),
    }
}
