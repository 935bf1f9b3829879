//! What a blob refers to, read the lenient way the walks that keep or copy
//! everything reachable need (gc's mark, `copy`): whatever any reading of
//! a document reaches is followed, so a parse ambiguity never makes gc
//! delete (when in doubt, keep) nor `copy` leave a blob behind.
//!
//! * Layers, configs and the empty JSON blob refer to nothing: not read.
//! * Indexes, manifests and descriptor blobs (OCI or Docker, by
//!   [`media::kind`]) are read verified and followed by every descriptor
//!   under `manifests`, `config` and `layers` ([`crate::oci::loose_refs`]),
//!   even when the hardened parser would refuse the document.
//! * A blob of an unknown media type is followed when it is in the store,
//!   looks like a JSON object and reads as an index (a `manifests` array)
//!   or a manifest (`config` and `layers`).
//!
//! A `subject` is kept apart: it is a weak reference (see
//! `docs/design.md`, "Docker media types, ambiguity and `subject`").

use std::io::Read;

use super::ext::{describe, read_bytes};
use super::{Cas, CasError};
use crate::limits;
use crate::oci::{self, Descriptor, media};

/// What one blob refers to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reached {
    /// An index's manifests, a manifest's config and layers, a descriptor
    /// blob's descriptor (every reading's).
    pub children: Vec<Descriptor>,
    /// Its `subject` (weak: it need not be in the store).
    pub subject: Option<Descriptor>,
    /// Whether following it nests the descriptor path deeper (it lists
    /// `manifests` or is a descriptor blob; a manifest ends the path).
    pub nests: bool,
    /// The document's own `mediaType` when it differs from its
    /// descriptor's (worth a warning; never a reason to refuse).
    pub declared: Option<String>,
    /// Whether both an index's and a manifest's fields are present (the
    /// hardened parser refuses it; everything is followed here).
    pub ambiguous: bool,
    /// Whether the blob has an unknown media type and was followed for its
    /// shape.
    pub by_shape: bool,
}

/// How many bytes are looked at to tell whether an unknown blob may be a
/// JSON document.
const PEEK: usize = 512;

/// Whether the blob `desc` names starts (after white space) with `{`.
/// `Ok(false)` when it is not in the store.
fn looks_like_object(cas: &dyn Cas, desc: &Descriptor) -> Result<bool, CasError> {
    let mut head = Vec::with_capacity(PEEK);
    match &desc.data {
        Some(data) => head.extend(data.iter().take(PEEK)),
        None => {
            let r = match cas.open_blob(&desc.digest) {
                Ok(r) => r,
                Err(CasError::NotFound(_)) => return Ok(false),
                Err(e) => return Err(e),
            };
            r.take(PEEK as u64)
                .read_to_end(&mut head)
                .map_err(|e| CasError::io(format!("blob {}", desc.digest), e))?;
        }
    }
    Ok(head
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{'))
}

/// What the blob `desc` names refers to; `None` when there is nothing to
/// follow (a layer, a config, a blob of unknown type that is absent or is
/// not an index or manifest, a document that is not a JSON object).
/// A known document that is missing or fails verification is an error (a
/// caller that deletes must not go on); so is a descriptor count over
/// [`limits::MAX_DOCUMENT_DESCRIPTORS`].
pub(crate) fn reach(cas: &dyn Cas, desc: &Descriptor) -> Result<Option<Reached>, CasError> {
    let kind = media::kind(&desc.media_type);
    let by_shape = match kind {
        media::Kind::Layer | media::Kind::Config | media::Kind::EmptyJson => return Ok(None),
        media::Kind::Index | media::Kind::Manifest | media::Kind::Descriptor => false,
        media::Kind::Other => {
            if desc.size > limits::MAX_DOCUMENT_SIZE || !looks_like_object(cas, desc)? {
                return Ok(None);
            }
            true
        }
    };
    let bytes = read_bytes(cas, desc)?;
    if kind == media::Kind::Descriptor {
        let d = serde_json::from_slice(&bytes)
            .ok()
            .and_then(|v| oci::loose_descriptor(&v));
        return Ok(Some(Reached {
            children: d.into_iter().collect(),
            nests: true,
            ..Reached::default()
        }));
    }
    let Some(refs) = oci::loose_refs(&bytes) else {
        return Ok(None);
    };
    if by_shape && !refs.has_manifests && !refs.has_config_and_layers {
        return Ok(None);
    }
    limits::check_document_descriptors(describe(desc), refs.children.len())?;
    let declared = refs
        .media_type
        .filter(|own| !by_shape && *own != desc.media_type);
    Ok(Some(Reached {
        nests: refs.has_manifests,
        ambiguous: refs.has_manifests && refs.has_config_and_layers,
        children: refs.children,
        subject: refs.subject,
        declared,
        by_shape,
    }))
}
