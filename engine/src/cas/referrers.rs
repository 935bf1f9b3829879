//! OCI 1.1 referrers in a layout: artifacts (SBOMs, signatures,
//! attestations) whose manifest names an image manifest as its `subject`,
//! kept as untagged `index.json` entries (as skopeo, oras and the image
//! spec's layout do).

use std::io::Read;

use super::ext::{fetch, put_bytes, put_json, read_index, update_index};
use super::{Cas, CasError};
use crate::oci::{Blob, Descriptor, Digest, Manifest, media};

/// The referrers of `subject` among `cas`'s `index.json` entries, as the
/// distribution API's referrers answer lists them: descriptors of the
/// referring manifests with their `artifactType` (the manifest's, else its
/// config's media type) and the manifest's annotations.
pub fn list(cas: &dyn Cas, subject: &Digest) -> Result<Vec<Descriptor>, CasError> {
    let mut out: Vec<Descriptor> = Vec::new();
    for entry in read_index(cas)?.manifests {
        if !media::is_parseable(&entry.media_type) || out.iter().any(|d| d.digest == entry.digest) {
            continue;
        }
        let (artifact_type, annotations, names_subject) = match fetch(cas, &entry)? {
            Blob::Manifest(m) => {
                let t = if m.artifact_type.is_empty() {
                    m.config.media_type.clone()
                } else {
                    m.artifact_type.clone()
                };
                let s = m.subject.as_ref().is_some_and(|s| &s.digest == subject);
                (t, m.annotations, s)
            }
            Blob::Index(i) => {
                let s = i.subject.as_ref().is_some_and(|s| &s.digest == subject);
                (entry.artifact_type.clone(), i.annotations.clone(), s)
            }
            _ => continue,
        };
        if names_subject {
            let mut d = Descriptor::new(&entry.media_type, entry.digest.clone(), entry.size);
            d.artifact_type = artifact_type;
            d.annotations = annotations;
            out.push(d);
        }
    }
    Ok(out)
}

/// One file of an artifact.
pub struct ArtifactFile<'a> {
    /// Its media type (e.g. `application/spdx+json`).
    pub media_type: String,
    /// Its annotations (e.g. `org.opencontainers.image.title`).
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Its content.
    pub content: &'a mut dyn Read,
}

/// Attach an artifact of `artifact_type` made of `files` to the manifest
/// `subject`: the files become its layers, its config is the empty
/// descriptor, `annotations` go on its manifest, and an untagged
/// `index.json` entry (with the `artifactType`) keeps it. Returns the
/// artifact manifest's descriptor.
pub fn attach(
    cas: &dyn Cas,
    subject: &Descriptor,
    artifact_type: &str,
    files: &mut [ArtifactFile<'_>],
    annotations: std::collections::BTreeMap<String, String>,
) -> Result<Descriptor, CasError> {
    if artifact_type.is_empty() || artifact_type.len() > 255 || !artifact_type.contains('/') {
        return Err(CasError::Invalid(format!(
            "artifact type {artifact_type:?}: not a media type (TYPE/SUBTYPE)"
        )));
    }
    if !media::is_manifest(&subject.media_type) && !media::is_index(&subject.media_type) {
        return Err(CasError::Invalid(format!(
            "{}: a subject must be an image manifest or index, not {}",
            subject.digest, subject.media_type
        )));
    }
    let lock = super::WriteLock::new(cas)?;
    let mut layers = Vec::new();
    for f in files.iter_mut() {
        let mut w = cas.begin_blob_for(&super::BlobHint {
            media_type: Some(&f.media_type),
            ..Default::default()
        })?;
        std::io::copy(&mut f.content, &mut w).map_err(|e| CasError::io("artifact file", e))?;
        let (digest, size) = w.commit(None)?;
        let mut d = Descriptor::new(&f.media_type, digest, size);
        d.annotations = f.annotations.clone();
        layers.push(d);
    }
    let (empty, size) = put_bytes(cas, b"{}")?;
    let mut config = Descriptor::new(media::EMPTY_JSON, empty, size);
    config.data = Some(b"{}".to_vec());
    let mut subject = Descriptor::new(&subject.media_type, subject.digest.clone(), subject.size);
    subject.artifact_type.clear();
    let manifest = Manifest {
        artifact_type: artifact_type.to_string(),
        layers,
        subject: Some(subject),
        annotations,
        ..Manifest::new(config)
    };
    let mut desc = put_json(cas, media::MANIFEST, &manifest)?;
    desc.artifact_type = artifact_type.to_string();
    let entry = desc.clone();
    update_index(&lock, &mut |index| {
        if !index.manifests.iter().any(|d| d.digest == entry.digest) {
            index.manifests.push(entry.clone());
        }
        Ok(())
    })?;
    Ok(desc)
}
