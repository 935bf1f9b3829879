//! Helpers derived from the [`Cas`] primitives: verified reads (honouring
//! embedded `data`), JSON blobs, `index.json` read-modify-write, walks.

use std::io::{Cursor, Read, Write};

use serde::Serialize;

use super::{Cas, CasError, VerifiedReader};
use crate::limits;
use crate::oci::{self, Blob, Descriptor, Digest, Index, media};

/// Largest JSON document (manifest, index, config) rumoci will load.
pub const MAX_JSON_BLOB: u64 = limits::MAX_DOCUMENT_SIZE;

/// Open the content a descriptor points to, verified against its size and
/// digest. Embedded `data` is checked and used instead of the stored blob.
pub fn open_verified(cas: &dyn Cas, desc: &Descriptor) -> Result<Box<dyn Read + Send>, CasError> {
    if desc.media_type == media::EMPTY_JSON && desc.digest.to_string() != media::EMPTY_JSON_DIGEST {
        return Err(CasError::Invalid(format!(
            "blob {}: an {} descriptor must point to {{}}",
            desc.digest,
            media::EMPTY_JSON
        )));
    }
    if let Some(data) = &desc.data {
        let mut r = VerifiedReader::new(Cursor::new(data.clone()), desc.digest.clone(), desc.size);
        let mut checked = Vec::with_capacity(data.len());
        r.read_to_end(&mut checked)
            .map_err(|e| CasError::io(format!("embedded data of {}", desc.digest), e))?;
        return Ok(Box::new(Cursor::new(checked)));
    }
    let inner = cas.open_blob(&desc.digest)?;
    Ok(Box::new(
        VerifiedReader::new(inner, desc.digest.clone(), desc.size).through(cas.driver_label()),
    ))
}

/// Read a whole (small) blob into memory, verified.
pub fn read_bytes(cas: &dyn Cas, desc: &Descriptor) -> Result<Vec<u8>, CasError> {
    limits::check_document_size(describe(desc), desc.size)?;
    let mut buf = Vec::with_capacity(usize::try_from(desc.size).unwrap_or(0));
    open_verified(cas, desc)?
        .read_to_end(&mut buf)
        .map_err(|e| CasError::io(format!("blob {}", desc.digest), e))?;
    Ok(buf)
}

/// `index sha256:…`, `manifest sha256:…`, `config sha256:…` or `blob sha256:…`,
/// by the descriptor's media type, for messages.
pub(crate) fn describe(desc: &Descriptor) -> String {
    let kind = match media::kind(&desc.media_type) {
        media::Kind::Index => "index",
        media::Kind::Manifest => "manifest",
        media::Kind::Config => "config",
        _ => "blob",
    };
    format!("{kind} {}", desc.digest)
}

/// Read and parse the blob a descriptor points to, by its media type
/// ([`media::kind`]: Docker schema 2 documents as their OCI twins).
/// Layers and unknown types are not read and come back as [`Blob::Other`].
/// Documents are bounded by [`limits::MAX_DOCUMENT_SIZE`] and
/// [`limits::MAX_DOCUMENT_DESCRIPTORS`].
pub fn fetch(cas: &dyn Cas, desc: &Descriptor) -> Result<Blob, CasError> {
    if !media::is_document(&desc.media_type) {
        return Ok(Blob::Other);
    }
    let bytes = read_bytes(cas, desc)?;
    let blob = oci::parse_blob(&desc.media_type, &bytes).map_err(|source| CasError::Document {
        what: describe(desc),
        source,
    })?;
    limits::check_document_descriptors(describe(desc), blob.children().len())?;
    Ok(blob)
}

/// Fetch a manifest.
pub fn fetch_manifest(cas: &dyn Cas, desc: &Descriptor) -> Result<oci::Manifest, CasError> {
    match fetch(cas, desc)? {
        Blob::Manifest(m) => Ok(m),
        _ => Err(CasError::Invalid(format!(
            "{}: media type {} is not an image manifest",
            desc.digest, desc.media_type
        ))),
    }
}

/// Fetch an image configuration.
pub fn fetch_config(cas: &dyn Cas, desc: &Descriptor) -> Result<oci::Image, CasError> {
    match fetch(cas, desc)? {
        Blob::Config(c) => Ok(c),
        _ => Err(CasError::Invalid(format!(
            "{}: media type {} is not an image config",
            desc.digest, desc.media_type
        ))),
    }
}

/// Fetch the image config (OCI or Docker) of `manifest` (found through
/// `manifest_desc`), refusing an OCI artifact (a config that is not an
/// image config, e.g. the empty descriptor) with [`CasError::NotAnImage`].
pub fn fetch_image_config(
    cas: &dyn Cas,
    manifest_desc: &Descriptor,
    manifest: &oci::Manifest,
) -> Result<oci::Image, CasError> {
    if !media::is_config(&manifest.config.media_type) {
        let artifact_type = if manifest.artifact_type.is_empty() {
            manifest_desc.artifact_type.clone()
        } else {
            manifest.artifact_type.clone()
        };
        return Err(CasError::NotAnImage {
            manifest: manifest_desc.digest.clone(),
            config_media_type: manifest.config.media_type.clone(),
            artifact_type,
        });
    }
    fetch_config(cas, &manifest.config)
}

/// Store `bytes` as a blob.
pub fn put_bytes(cas: &dyn Cas, bytes: &[u8]) -> Result<(Digest, u64), CasError> {
    put_typed_bytes(cas, None, bytes)
}

/// Store `bytes` as a blob of `media_type` (a hint to the store).
pub fn put_typed_bytes(
    cas: &dyn Cas,
    media_type: Option<&str>,
    bytes: &[u8],
) -> Result<(Digest, u64), CasError> {
    let mut w = cas.begin_blob_for(&super::BlobHint {
        size: Some(bytes.len() as u64),
        media_type,
        ..Default::default()
    })?;
    w.write_all(bytes)
        .map_err(|e| CasError::io("new blob", e))?;
    w.commit(None)
}

/// Store `value` as Go-compatible JSON and describe it with `media_type`.
pub fn put_json<T: Serialize>(
    cas: &dyn Cas,
    media_type: &str,
    value: &T,
) -> Result<Descriptor, CasError> {
    let bytes = oci::to_go_json(value)
        .map_err(|e| CasError::Invalid(format!("serialising {media_type}: {e}")))?;
    let (digest, size) = put_typed_bytes(cas, Some(media_type), &bytes)?;
    Ok(Descriptor::new(media_type, digest, size))
}

/// Read and parse `index.json`.
pub fn read_index(cas: &dyn Cas) -> Result<Index, CasError> {
    parse_index_json(&cas.read_index_raw()?)
}

fn parse_index_json(raw: &[u8]) -> Result<Index, CasError> {
    limits::check_document_size("index.json", raw.len() as u64)?;
    let index = oci::parse_index(raw).map_err(|source| CasError::Document {
        what: "index.json".into(),
        source,
    })?;
    limits::check_document_descriptors("index.json", index.manifests.len())?;
    Ok(index)
}

/// Read-modify-write `index.json`: `f` edits the index, which is written back
/// atomically with compare-and-swap; on a concurrent change the whole
/// read-modify-write is retried, so no update is ever lost. Needs the
/// store's writer lock.
pub fn update_index(
    lock: &super::WriteLock<'_>,
    f: &mut dyn FnMut(&mut Index) -> Result<(), CasError>,
) -> Result<Index, CasError> {
    let cas = lock.cas();
    let mut backoff = std::time::Duration::from_micros(200);
    for _ in 0..10_000 {
        let raw = cas.read_index_raw()?;
        let mut index = parse_index_json(&raw)?;
        f(&mut index)?;
        let new = oci::to_go_json(&index)
            .map_err(|e| CasError::Invalid(format!("serialising index.json: {e}")))?;
        match cas.swap_index_raw(&raw, &new) {
            Ok(()) => return Ok(index),
            Err(CasError::Conflict) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
    Err(CasError::Invalid(
        "index.json: gave up after too many concurrent changes".into(),
    ))
}
