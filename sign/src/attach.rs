//! Signatures kept beside an image in any content store, the way
//! containers/image (skopeo 1.9 with `use-sigstore-attachments`) and
//! cosign keep them: an OCI manifest tagged `sha256-<hex>.sig`, where
//! `<hex>` is the signed manifest's digest, whose layers are the payloads
//! (media type [`SIMPLESIGNING_MEDIA_TYPE`]), each with its base64
//! signature in the annotation [`SIGNATURE_ANNOTATION`], and whose config
//! is an OCI image config listing the payloads' digests as `diff_ids`.
//!
//! Everything goes through the [`Cas`] trait, so a layout, a plugin's
//! store and a registry (through the registry plugin) are alike.

use rumoci_core::oci::{Descriptor, Digest, Manifest, media};
use rumoci_engine::cas::ext::{fetch_manifest, put_json, put_typed_bytes, read_bytes};
use rumoci_engine::cas::referrers::{COSIGN_SUFFIXES, schema_tag};
use rumoci_engine::cas::refs::{set_tag, tag_root};
use rumoci_engine::cas::{Cas, CasError, WriteLock};

/// The media type of a signature payload layer.
pub const SIMPLESIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a payload's base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// A payload larger than this is not read (containers/image's limit on
/// signature bodies is 4 MiB).
pub const MAX_PAYLOAD_SIZE: u64 = 4 << 20;

/// Errors of reading and writing attachments.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The store failed, or holds something broken.
    #[error("signatures of {manifest}: {source}")]
    Cas {
        /// The signed manifest.
        manifest: Digest,
        /// What failed.
        #[source]
        source: CasError,
    },
    /// The attachment manifest is not what it should be.
    #[error("signatures of {manifest}: attachment {tag}: {why}")]
    Invalid {
        /// The signed manifest.
        manifest: Digest,
        /// The attachment's tag.
        tag: String,
        /// What is wrong.
        why: String,
    },
}

impl AttachError {
    /// What kind of failure this is.
    pub fn kind(&self) -> rumoci_core::ErrorKind {
        match self {
            AttachError::Cas { source, .. } => source.kind(),
            AttachError::Invalid { .. } => rumoci_core::ErrorKind::InvalidInput,
        }
    }
}

/// One signature found beside an image.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The payload layer's descriptor.
    pub layer: Descriptor,
    /// The payload (verified against the layer's digest).
    pub payload: Vec<u8>,
    /// The base64 signature from its annotation, if there is one.
    pub signature: Option<String>,
}

/// The tag of `manifest`'s attachment: `sha256-<hex>.sig`.
pub fn attachment_tag(manifest: &Digest) -> String {
    format!("{}.sig", schema_tag(manifest))
}

/// Whether `tag` names a cosign attachment (`ALG-HEX.sig`, `.att`, `.sbom`).
pub fn is_attachment_tag(tag: &str) -> bool {
    let Some((alg, rest)) = tag.split_once('-') else {
        return false;
    };
    let Some((hex, suffix)) = rest.split_once('.') else {
        return false;
    };
    alg == "sha256"
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && COSIGN_SUFFIXES.contains(&suffix)
}

/// The attachment manifest of `manifest`, if the store has one.
fn attachment(cas: &dyn Cas, manifest: &Digest) -> Result<Option<Manifest>, AttachError> {
    let wrap = |source| AttachError::Cas {
        manifest: manifest.clone(),
        source,
    };
    let tag = attachment_tag(manifest);
    let desc = match tag_root(cas, &tag) {
        Ok(d) => d,
        Err(CasError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(wrap(e)),
    };
    if !media::is_manifest(&desc.media_type) {
        return Err(AttachError::Invalid {
            manifest: manifest.clone(),
            tag,
            why: format!("media type {}, not an image manifest", desc.media_type),
        });
    }
    fetch_manifest(cas, &desc).map(Some).map_err(wrap)
}

/// The signatures beside `manifest` (none when there is no attachment).
/// Payloads are read verified; layers of other media types are skipped.
pub fn read(cas: &dyn Cas, manifest: &Digest) -> Result<Vec<Attached>, AttachError> {
    let Some(m) = attachment(cas, manifest)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for layer in m.layers {
        if layer.media_type != SIMPLESIGNING_MEDIA_TYPE {
            continue;
        }
        if layer.size > MAX_PAYLOAD_SIZE {
            return Err(AttachError::Invalid {
                manifest: manifest.clone(),
                tag: attachment_tag(manifest),
                why: format!(
                    "payload {} of {} bytes (at most {MAX_PAYLOAD_SIZE})",
                    layer.digest, layer.size
                ),
            });
        }
        let payload = read_bytes(cas, &layer).map_err(|source| AttachError::Cas {
            manifest: manifest.clone(),
            source,
        })?;
        out.push(Attached {
            signature: layer.annotations.get(SIGNATURE_ANNOTATION).cloned(),
            layer,
            payload,
        });
    }
    Ok(out)
}

/// Add a signature (`payload` and its base64 `signature`) to `manifest`'s
/// attachment in the store `lock` holds, creating the attachment or
/// appending to it (a signature already there is not added twice), and
/// tag it. Returns the attachment manifest's descriptor.
pub fn add(
    lock: &WriteLock<'_>,
    manifest: &Digest,
    payload: &[u8],
    signature: &str,
) -> Result<Descriptor, AttachError> {
    let cas = lock.cas();
    let wrap = |source| AttachError::Cas {
        manifest: manifest.clone(),
        source,
    };
    let tag = attachment_tag(manifest);
    let (mut m, mut config) = match attachment(cas, manifest)? {
        Some(m) => {
            let bytes = read_bytes(cas, &m.config).map_err(wrap)?;
            let config: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| AttachError::Invalid {
                    manifest: manifest.clone(),
                    tag: tag.clone(),
                    why: format!("config {}: {e}", m.config.digest),
                })?;
            (m, config)
        }
        None => (
            Manifest::new(Descriptor::new(media::CONFIG, Digest::sha256_of(b""), 0)),
            serde_json::json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": []}}),
        ),
    };
    let (digest, size) =
        put_typed_bytes(cas, Some(SIMPLESIGNING_MEDIA_TYPE), payload).map_err(wrap)?;
    let mut layer = Descriptor::new(SIMPLESIGNING_MEDIA_TYPE, digest.clone(), size);
    layer
        .annotations
        .insert(SIGNATURE_ANNOTATION.to_string(), signature.to_string());
    if !m
        .layers
        .iter()
        .any(|l| l.digest == layer.digest && l.annotations == layer.annotations)
    {
        m.layers.push(layer);
        let diff_ids = config
            .get_mut("rootfs")
            .and_then(|r| r.get_mut("diff_ids"))
            .and_then(|d| d.as_array_mut())
            .ok_or_else(|| AttachError::Invalid {
                manifest: manifest.clone(),
                tag: tag.clone(),
                why: "config has no rootfs.diff_ids".into(),
            })?;
        diff_ids.push(serde_json::Value::from(digest.to_string()));
    }
    m.config = put_json(cas, media::CONFIG, &config).map_err(wrap)?;
    let desc = put_json(cas, media::MANIFEST, &m).map_err(wrap)?;
    set_tag(lock, &tag, &desc).map_err(wrap)?;
    Ok(desc)
}
