//! Referrers: artifacts (SBOMs, signatures, attestations) about an image
//! manifest, in the three forms stores keep them ([`Form`]):
//!
//! * OCI 1.1 in a layout: untagged `index.json` entries whose manifest
//!   names the image as its `subject` (as skopeo, oras and the image spec's
//!   layout keep them);
//! * the referrers tag schema (distribution without the referrers API): an
//!   index tagged `sha256-<hex>` of the subject, listing the referrers;
//! * cosign's convention, which skopeo's sigstore attachments follow: a
//!   manifest tagged `sha256-<hex>.sig` (`.att`, `.sbom`).
//!
//! [`find`] finds all three, and the referrers of referrers; [`record`]
//! writes one in the form the destination store can keep (an untagged
//! entry, or the tag schema where only tags are kept: a registry).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use super::ext::{fetch, put_bytes, put_json, read_index, update_index};
use super::refs::set_tag;
use super::{Cas, CasError, WriteLock};
use crate::oci::{Blob, Descriptor, Digest, Index, Manifest, media};

/// How a store keeps that an artifact refers to a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form {
    /// An untagged `index.json` entry whose manifest names the subject.
    Entry,
    /// A descriptor in the index tagged `sha256-<hex>` of the subject.
    TagSchema,
    /// A manifest tagged `sha256-<hex>.SUFFIX` (cosign): the suffix
    /// (`sig`, `att`, `sbom`).
    Cosign(String),
}

/// One referrer found by [`find`].
#[derive(Debug, Clone)]
pub struct Referrer {
    /// The manifest it refers to.
    pub subject: Digest,
    /// The referring manifest or index, with its `artifactType` and
    /// annotations as the referrers API lists them.
    pub desc: Descriptor,
    /// How the store keeps it.
    pub form: Form,
}

/// The suffixes of cosign's tags.
pub const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// The tag of the referrers tag schema for `subject`: `sha256-<hex>`.
pub fn schema_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm().name(), subject.hex())
}

/// What an entry of `index.json` is: its artifact type and annotations,
/// the subject its document names, and for an index its manifests.
struct Doc {
    artifact_type: String,
    annotations: BTreeMap<String, String>,
    subject: Option<Digest>,
    children: Vec<Descriptor>,
}

fn read_doc(cas: &dyn Cas, desc: &Descriptor) -> Result<Option<Doc>, CasError> {
    if !media::is_parseable(&desc.media_type) {
        return Ok(None);
    }
    Ok(match fetch(cas, desc)? {
        Blob::Manifest(m) => Some(Doc {
            artifact_type: if !m.artifact_type.is_empty() {
                m.artifact_type.clone()
            } else if m.config.media_type == media::CONFIG || m.config.media_type.is_empty() {
                // cosign's signatures: the payload says what it is
                m.layers
                    .first()
                    .map(|l| l.media_type.clone())
                    .unwrap_or_else(|| m.config.media_type.clone())
            } else {
                m.config.media_type.clone()
            },
            annotations: m.annotations.clone(),
            subject: m.subject.as_ref().map(|s| s.digest.clone()),
            children: Vec::new(),
        }),
        Blob::Index(i) => Some(Doc {
            artifact_type: if i.artifact_type.is_empty() {
                desc.artifact_type.clone()
            } else {
                i.artifact_type.clone()
            },
            annotations: i.annotations.clone(),
            subject: i.subject.as_ref().map(|s| s.digest.clone()),
            children: i.manifests.clone(),
        }),
        _ => None,
    })
}

/// A referrer's descriptor as the referrers API lists it.
fn listed(desc: &Descriptor, doc: &Doc) -> Descriptor {
    let mut d = Descriptor::new(&desc.media_type, desc.digest.clone(), desc.size);
    d.artifact_type = doc.artifact_type.clone();
    d.annotations = doc.annotations.clone();
    d
}

/// Every referrer of the manifests `subjects` in `cas`, in all three
/// forms, and the referrers of those referrers (a signature of an SBOM),
/// each once.
pub fn find(
    cas: &dyn Cas,
    subjects: impl IntoIterator<Item = Digest>,
) -> Result<Vec<Referrer>, CasError> {
    search(cas, subjects, true)
}

/// The referrers of `subjects`; with `recurse`, theirs too.
fn search(
    cas: &dyn Cas,
    subjects: impl IntoIterator<Item = Digest>,
    recurse: bool,
) -> Result<Vec<Referrer>, CasError> {
    let index = read_index(cas)?;
    let mut tags: BTreeMap<&str, &Descriptor> = BTreeMap::new();
    for e in &index.manifests {
        if let Some(t) = e.ref_name() {
            tags.insert(t, e);
        }
    }
    let special = |tag: &str| {
        tag.split_once('-')
            .is_some_and(|(alg, rest)| (alg == "sha256" || alg == "sha512") && rest.len() >= 64)
    };
    // the OCI 1.1 form: entries (not tags of the other two forms) naming a subject
    let mut by_subject: BTreeMap<Digest, Vec<Descriptor>> = BTreeMap::new();
    let mut seen_entries = BTreeSet::new();
    for e in &index.manifests {
        if e.ref_name().is_some_and(special) || !seen_entries.insert(e.digest.clone()) {
            continue;
        }
        if let Some(doc) = read_doc(cas, e)?
            && let Some(s) = &doc.subject
        {
            by_subject
                .entry(s.clone())
                .or_default()
                .push(listed(e, &doc));
        }
    }
    let mut out: Vec<Referrer> = Vec::new();
    let mut queue: Vec<Digest> = subjects.into_iter().collect();
    let mut done: BTreeSet<Digest> = BTreeSet::new();
    while let Some(subject) = queue.pop() {
        if !done.insert(subject.clone()) {
            continue;
        }
        let mut found: Vec<(Descriptor, Form)> = by_subject
            .get(&subject)
            .into_iter()
            .flatten()
            .map(|d| (d.clone(), Form::Entry))
            .collect();
        let base = schema_tag(&subject);
        if let Some(e) = tags.get(base.as_str())
            && let Some(doc) = read_doc(cas, e)?
        {
            for child in &doc.children {
                let d = match read_doc(cas, child)? {
                    Some(cd) => listed(child, &cd),
                    None => child.clone(),
                };
                found.push((d, Form::TagSchema));
            }
        }
        for suffix in COSIGN_SUFFIXES {
            if let Some(e) = tags.get(format!("{base}.{suffix}").as_str())
                && let Some(doc) = read_doc(cas, e)?
            {
                found.push((listed(e, &doc), Form::Cosign(suffix.to_string())));
            }
        }
        for (desc, form) in found {
            if out
                .iter()
                .any(|r| r.subject == subject && r.desc.digest == desc.digest && r.form == form)
            {
                continue;
            }
            if recurse {
                queue.push(desc.digest.clone());
            }
            out.push(Referrer {
                subject: subject.clone(),
                desc,
                form,
            });
        }
    }
    Ok(out)
}

/// The referrers of `subject` in `cas` (all three forms, not those of the
/// referrers), as the distribution API's referrers answer lists them:
/// descriptors of the referring manifests with their `artifactType` (the
/// manifest's, else its config's media type, or for a cosign signature its
/// payload's) and the manifest's annotations.
pub fn list(cas: &dyn Cas, subject: &Digest) -> Result<Vec<Descriptor>, CasError> {
    let mut out: Vec<Descriptor> = Vec::new();
    for r in search(cas, [subject.clone()], false)? {
        if !out.iter().any(|d| d.digest == r.desc.digest) {
            out.push(r.desc);
        }
    }
    Ok(out)
}

/// Record that `referrers` (their blobs already in `lock`'s store) refer to
/// `subject`, each in its form: a cosign referrer tagged as cosign tags
/// it; the others as untagged `index.json` entries where the store keeps
/// them, else (a registry) in the index tagged `sha256-<hex>` of the
/// subject, created or extended. `index.json` (and that index) is
/// rewritten once for all of them. Returns how many were new.
pub fn record(
    lock: &WriteLock<'_>,
    subject: &Digest,
    referrers: &[(Descriptor, Form)],
) -> Result<usize, CasError> {
    let cas = lock.cas();
    let mut added = 0;
    // the entries as an index lists them: what each is and its artifact type
    let mut entries = Vec::new();
    for (referrer, form) in referrers {
        let mut bare =
            Descriptor::new(&referrer.media_type, referrer.digest.clone(), referrer.size);
        if let Form::Cosign(suffix) = form {
            set_tag(lock, &format!("{}.{suffix}", schema_tag(subject)), &bare)?;
            added += 1;
            continue;
        }
        bare.artifact_type = referrer.artifact_type.clone();
        if !cas.holds_untagged_entries() {
            // the referrers API lists the artifact's annotations with it
            bare.annotations = referrer.annotations.clone();
            bare.annotations.remove(media::ANNOTATION_REF_NAME);
        }
        entries.push(bare);
    }
    if entries.is_empty() {
        return Ok(added);
    }
    if cas.holds_untagged_entries() {
        update_index(lock, &mut |index| {
            let before = index.manifests.len();
            for e in &entries {
                if !index.manifests.iter().any(|d| d.digest == e.digest) {
                    index.manifests.push(e.clone());
                }
            }
            added += index.manifests.len() - before;
            Ok(())
        })?;
        return Ok(added);
    }
    let tag = schema_tag(subject);
    let mut index = match super::refs::tag_root(cas, &tag) {
        Ok(d) => match fetch(cas, &d)? {
            Blob::Index(i) => i,
            _ => {
                return Err(CasError::Invalid(format!(
                    "tag {tag}: the referrers tag schema needs an image index here"
                )));
            }
        },
        Err(CasError::NotFound(_)) => Index {
            schema_version: 2,
            media_type: media::INDEX.to_string(),
            ..Index::default()
        },
        Err(e) => return Err(e),
    };
    let before = index.manifests.len();
    for e in entries {
        if !index.manifests.iter().any(|d| d.digest == e.digest) {
            index.manifests.push(e);
        }
    }
    if index.manifests.len() > before {
        added += index.manifests.len() - before;
        let desc = put_json(cas, media::INDEX, &index)?;
        set_tag(lock, &tag, &desc)?;
    }
    Ok(added)
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
/// `index.json` entry (with the `artifactType`) keeps it, or in a store
/// of tags only the referrers tag schema ([`record`]). Returns the
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
    let subject_digest = subject.digest.clone();
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
    record(&lock, &subject_digest, &[(desc.clone(), Form::Entry)])?;
    Ok(desc)
}
