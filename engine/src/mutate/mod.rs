//! Image mutation: new config and manifest blobs, new layers, history, and
//! rewriting every parent index along the descriptor path (as umoci's
//! `mutate.Mutator` does). The caller retags the returned root.

mod compress;
pub mod history;
mod pgzip;

use std::io::Read;

pub use compress::{Compression, Compressor};

use crate::cas::refs::DescriptorPath;
use crate::cas::{Cas, CasError, WriteLock, ext};
use crate::oci::{Algorithm, Blob, Descriptor, Digest, History, Image, Manifest, media};

/// Annotation umoci puts on a layer descriptor whose blob size differs from
/// the uncompressed size.
pub const UNCOMPRESSED_SIZE_ANNOTATION: &str = "ci.umo.uncompressed_blob_size";

/// Errors of a mutation.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// The store failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// Reading the new layer failed.
    #[error("reading layer: {0}")]
    Read(#[source] std::io::Error),
    /// The descriptor path does not end at a manifest.
    #[error("{0}")]
    Invalid(String),
}

/// A new layer being written: uncompressed tar in, compressed blob out.
pub struct LayerWriter {
    enc: Compressor<'static, Box<dyn crate::cas::BlobWriter>>,
    compression: Compression,
    diff: crate::oci::Hasher,
    plain: u64,
    progress: crate::progress::Item,
}

impl std::io::Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.enc.write(buf)?;
        self.diff.update(&buf[..n]);
        self.plain += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.enc.flush()
    }
}

/// Edits one image (the manifest at the end of a descriptor path). It
/// borrows the store's [`WriteLock`] for its whole life: the blobs it
/// writes stay safe from gc until the caller retags the result.
pub struct Mutator<'a> {
    cas: &'a dyn Cas,
    _lock: &'a WriteLock<'a>,
    path: DescriptorPath,
    manifest: Manifest,
    config: Image,
}

impl<'a> Mutator<'a> {
    /// Load the manifest and config at the end of `path`.
    /// A path longer than [`crate::limits::MAX_INDEX_DEPTH`] (e.g. from a
    /// bundle's `umoci.json`) is refused before anything is read.
    pub fn new(lock: &'a WriteLock<'a>, path: DescriptorPath) -> Result<Mutator<'a>, MutateError> {
        let cas = lock.cas();
        if path.0.is_empty() {
            return Err(MutateError::Invalid("empty descriptor path".into()));
        }
        if path.0.len() > crate::limits::MAX_INDEX_DEPTH {
            return Err(CasError::from(crate::limits::LimitError::new(
                format!("descriptor path to {}", path.target().digest),
                crate::limits::Limit::IndexDepth,
            ))
            .into());
        }
        if path.target().media_type != media::MANIFEST {
            let why = if media::is_manifest(&path.target().media_type) {
                "rumoci changes only OCI image manifests (convert the image first, e.g. skopeo copy --format oci)"
            } else {
                "not an image manifest"
            };
            return Err(MutateError::Invalid(format!(
                "{}: media type {}: {why}",
                path.target().digest,
                path.target().media_type
            )));
        }
        let manifest = ext::fetch_manifest(cas, path.target())?;
        let config = ext::fetch_image_config(cas, path.target(), &manifest)?;
        Ok(Mutator {
            cas,
            _lock: lock,
            path,
            manifest,
            config,
        })
    }

    /// The image configuration (as edited so far).
    pub fn config(&self) -> &Image {
        &self.config
    }

    /// Edit the image configuration.
    pub fn config_mut(&mut self) -> &mut Image {
        &mut self.config
    }

    /// The manifest (as edited so far).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Edit the manifest (annotations and the like; layers go through
    /// [`Mutator::add_layer`]).
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// The path this mutator started from.
    pub fn source(&self) -> &DescriptorPath {
        &self.path
    }

    /// Append a history entry.
    pub fn add_history(&mut self, h: History) {
        self.config.history.push(h);
    }

    /// Start a new layer: write the uncompressed tar into the returned
    /// writer (compressed and hashed — blob digest and diff_id — in the same
    /// pass), then hand it to [`Mutator::finish_layer`].
    pub fn begin_layer(&self, compression: Compression) -> Result<LayerWriter, MutateError> {
        let blob = self.cas.begin_blob_for(&crate::cas::BlobHint {
            media_type: Some(compression.media_type()),
            ..Default::default()
        })?;
        let enc = compression
            .writer(blob)
            .map_err(|e| CasError::io("new layer", e))?;
        Ok(LayerWriter {
            enc,
            compression,
            diff: Algorithm::Sha256.hasher(),
            plain: 0,
            progress: crate::progress::Item::start("new layer", None, crate::progress::Unit::Bytes),
        })
    }

    /// Publish a layer written through [`Mutator::begin_layer`] and append it.
    pub fn finish_layer(
        &mut self,
        layer: LayerWriter,
        history: Option<History>,
    ) -> Result<Descriptor, MutateError> {
        let blob = layer
            .enc
            .finish()
            .map_err(|e| CasError::io("new layer", e))?;
        layer.progress.finish();
        let (digest, size) = blob.commit(None)?;
        let mut desc = Descriptor::new(layer.compression.media_type(), digest, size);
        if layer.plain != size {
            desc.annotations.insert(
                UNCOMPRESSED_SIZE_ANNOTATION.to_string(),
                layer.plain.to_string(),
            );
        }
        self.push_layer(desc.clone(), layer.diff.finish(), history);
        Ok(desc)
    }

    /// Stream an uncompressed tar into a new layer and append it.
    pub fn add_layer(
        &mut self,
        tar: &mut dyn Read,
        compression: Compression,
        history: Option<History>,
    ) -> Result<Descriptor, MutateError> {
        let mut w = self.begin_layer(compression)?;
        std::io::copy(tar, &mut w).map_err(MutateError::Read)?;
        self.finish_layer(w, history)
    }

    /// Append an existing blob as a layer with its diff_id.
    pub fn push_layer(&mut self, desc: Descriptor, diff_id: Digest, history: Option<History>) {
        self.manifest.layers.push(desc);
        self.config.rootfs.diff_ids.push(diff_id);
        match history {
            Some(h) => self.config.history.push(h),
            None => tracing::warn!("new layer without a history entry will confuse many tools"),
        }
    }

    /// Write the config and manifest, rewrite every parent index on the path,
    /// and return the new path (its root is what the tag should point at).
    pub fn commit(mut self) -> Result<DescriptorPath, MutateError> {
        let config_desc = ext::put_json(self.cas, media::CONFIG, &self.config)?;
        self.manifest.config = Descriptor::new(
            self.manifest.config.media_type.clone(),
            config_desc.digest,
            config_desc.size,
        );
        self.manifest.media_type = media::MANIFEST.to_string();
        let new_manifest = ext::put_json(self.cas, media::MANIFEST, &self.manifest)?;
        let mut old = self.path.0;
        let mut new_path: Vec<Descriptor> = Vec::with_capacity(old.len());
        let mut child_old = old
            .pop()
            .ok_or_else(|| MutateError::Invalid("empty path".into()))?;
        let mut child_new = rewrite(&child_old, &new_manifest);
        new_path.push(child_new.clone());
        while let Some(parent) = old.pop() {
            let mut index = match ext::fetch(self.cas, &parent)? {
                Blob::Index(i) => i,
                _ => {
                    return Err(MutateError::Invalid(format!(
                        "{}: parent on the descriptor path is not an index",
                        parent.digest
                    )));
                }
            };
            for d in index.manifests.iter_mut() {
                if d.digest == child_old.digest {
                    *d = rewrite(d, &child_new);
                }
            }
            let stored = ext::put_json(self.cas, &parent.media_type, &index)?;
            child_old = parent.clone();
            child_new = rewrite(&parent, &stored);
            new_path.push(child_new.clone());
        }
        new_path.reverse();
        Ok(DescriptorPath(new_path))
    }
}

/// `old` with the digest and size of `new` (other fields kept; embedded
/// data dropped since it would be stale).
fn rewrite(old: &Descriptor, new: &Descriptor) -> Descriptor {
    let mut d = old.clone();
    d.digest = new.digest.clone();
    d.size = new.size;
    d.data = None;
    d
}

impl crate::mutate::MutateError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::mutate::MutateError as E;
        match self {
            E::Cas(c) => c.kind(),
            E::Read(io) => crate::error::ErrorKind::of_io(io),
            E::Invalid(_) => crate::error::ErrorKind::InvalidInput,
        }
    }
}

rumoci_core::wraps!(crate::mutate::MutateError);
