//! Multi-platform image indexes: an `index.json` tag naming an OCI image
//! index whose entries are single-platform images of the same store
//! (`rumoci index create|add|remove|annotate`).
//!
//! Each entry is the descriptor of a source tag's manifest with the
//! platform its config says (`os`, `architecture`, `variant`,
//! `os.version`, `os.features`). Two entries for the same platform are
//! refused (`add --replace` swaps one). Every change writes a new index
//! blob and moves the tag only if it still names the index read
//! (compare-and-swap under the store's write lock); the old index is left
//! for gc.

use std::collections::BTreeMap;

use crate::cas::{CasError, WriteLock, ext, refs};
use crate::oci::{Blob, Descriptor, Index, Platform, media};

use super::{PlatformSpec, Store};
use crate::error::ResultExt;
use crate::{Error, ErrorKind, Result};

/// Errors of index editing.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The store failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// The request does not fit the store (a source that is not a
    /// single-platform image, a platform twice, an entry that is not
    /// there).
    #[error("{0}")]
    Invalid(String),
    /// The tag moved while the index was being changed.
    #[error("{0}")]
    Conflict(String),
}

impl IndexError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IndexError::Cas(c) => c.kind(),
            IndexError::Invalid(_) => ErrorKind::InvalidInput,
            IndexError::Conflict(_) => ErrorKind::Conflict,
        }
    }
}

rumoci_core::wraps!(crate::image::index::IndexError);

/// `os/arch[/variant]` of a descriptor's platform, for messages.
fn show_platform(p: Option<&Platform>) -> String {
    match p {
        None => "(no platform)".into(),
        Some(p) if p.variant.is_empty() => format!("{}/{}", p.os, p.architecture),
        Some(p) => format!("{}/{}/{}", p.os, p.architecture, p.variant),
    }
}

/// Whether `spec` names `p` (an empty variant in `spec` matches any).
fn matches(spec: &PlatformSpec, p: Option<&Platform>) -> bool {
    p.is_some_and(|p| spec.matches(p))
}

/// The key two entries must not share.
fn key(p: Option<&Platform>) -> Option<(String, String, String, String)> {
    p.map(|p| {
        (
            p.os.clone(),
            p.architecture.clone(),
            p.variant.clone(),
            p.os_version.clone(),
        )
    })
}

impl Store {
    /// The index entry for the source tag `src`: its manifest's descriptor
    /// with the platform of its config.
    fn index_entry(&self, src: &str) -> std::result::Result<Descriptor, IndexError> {
        let root = refs::tag_root(self.cas(), src)?;
        if !media::is_manifest(&root.media_type) {
            return Err(IndexError::Invalid(format!(
                "{}: {} is not a single-platform image (media type {})",
                self.image(src),
                root.digest,
                root.media_type
            )));
        }
        let manifest = ext::fetch_manifest(self.cas(), &root)?;
        let config = ext::fetch_image_config(self.cas(), &root, &manifest)?;
        if config.os.is_empty() || config.architecture.is_empty() {
            return Err(IndexError::Invalid(format!(
                "{}: its config names no os/architecture",
                self.image(src)
            )));
        }
        let mut d = Descriptor::new(root.media_type.clone(), root.digest.clone(), root.size);
        d.platform = Some(Platform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            os_version: config.os_version.clone(),
            os_features: config.os_features.clone(),
            variant: config.variant.clone(),
            extra: Default::default(),
        });
        Ok(d)
    }

    /// The index `tag` names, and its descriptor.
    fn read_index_tag(&self, tag: &str) -> std::result::Result<(Descriptor, Index), IndexError> {
        let root = refs::tag_root(self.cas(), tag)?;
        match ext::fetch(self.cas(), &root)? {
            Blob::Index(i) if media::is_index(&root.media_type) => Ok((root, i)),
            _ => Err(IndexError::Invalid(format!(
                "{}: not an image index (media type {}); create one with `index create`",
                self.image(tag),
                root.media_type
            ))),
        }
    }

    /// Store `index` and point `tag` at it, if `tag` still names `old`.
    fn write_index_tag(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        old: Option<&Descriptor>,
        index: &Index,
    ) -> std::result::Result<Descriptor, IndexError> {
        let desc = ext::put_json(self.cas(), media::INDEX, index)?;
        if !refs::set_tag_if(lock, tag, old, &desc)? {
            return Err(IndexError::Conflict(format!(
                "{}: the tag changed while the index was being written; nothing done, try again",
                self.image(tag)
            )));
        }
        Ok(desc)
    }

    /// Append the entries of `sources` to `manifests`, refusing (or with
    /// `replace`, swapping) an entry for a platform already there.
    fn add_entries(
        &self,
        manifests: &mut Vec<Descriptor>,
        sources: &[String],
        replace: bool,
    ) -> std::result::Result<(), IndexError> {
        if sources.is_empty() {
            return Err(IndexError::Invalid("no source image given".into()));
        }
        for src in sources {
            let d = self.index_entry(src)?;
            let k = key(d.platform.as_ref());
            match manifests.iter().position(|m| key(m.platform.as_ref()) == k) {
                Some(i) if replace => manifests[i] = d,
                Some(i) => {
                    return Err(IndexError::Invalid(format!(
                        "{}: the index already has an image for {} ({}); use --replace to swap it",
                        self.image(src),
                        show_platform(d.platform.as_ref()),
                        manifests[i].digest
                    )));
                }
                None => manifests.push(d),
            }
        }
        Ok(())
    }

    /// Create the image index `tag` over the images the tags `sources` of
    /// this store name (one per platform), replacing what `tag` named.
    pub fn index_create(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        sources: &[String],
    ) -> Result<Descriptor> {
        self.check_lock(lock)?;
        refs::check_tag(tag)?;
        let what = || format!("create index {}", self.image(tag));
        let mut manifests = Vec::new();
        self.add_entries(&mut manifests, sources, false)
            .doing(what)?;
        let index = Index {
            schema_version: 2,
            media_type: media::INDEX.to_string(),
            artifact_type: String::new(),
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
            extra: Default::default(),
        };
        let desc = ext::put_json(self.cas(), media::INDEX, &index).doing(what)?;
        refs::set_tag(lock, tag, &desc).doing(what)?;
        Ok(desc)
    }

    /// Add the images `sources` name to the index `tag` (`replace`: an
    /// image for a platform already there takes its place).
    pub fn index_add(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        sources: &[String],
        replace: bool,
    ) -> Result<Descriptor> {
        self.check_lock(lock)?;
        let what = || format!("add to index {}", self.image(tag));
        let (old, mut index) = self.read_index_tag(tag).doing(what)?;
        self.add_entries(&mut index.manifests, sources, replace)
            .doing(what)?;
        self.write_index_tag(lock, tag, Some(&old), &index)
            .doing(what)
    }

    /// Remove the entries of the index `tag` for `platform` (an empty
    /// variant matches any); none is an error. Returns the new index and
    /// how many entries went.
    pub fn index_remove(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: &PlatformSpec,
    ) -> Result<(Descriptor, usize)> {
        self.check_lock(lock)?;
        let what = || format!("remove from index {}", self.image(tag));
        let (old, mut index) = self.read_index_tag(tag).doing(what)?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|m| !matches(platform, m.platform.as_ref()));
        let removed = before - index.manifests.len();
        if removed == 0 {
            return Err(Error::msg(
                ErrorKind::NotFound,
                format!("{}: no image for {platform} in the index", self.image(tag)),
            ));
        }
        let desc = self
            .write_index_tag(lock, tag, Some(&old), &index)
            .doing(what)?;
        Ok((desc, removed))
    }

    /// Set (`set`) and remove (`unset`) annotations of the index `tag`
    /// itself, or with `platform` of its entries for that platform (at
    /// least one must match).
    pub fn index_annotate(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: Option<&PlatformSpec>,
        set: &[(String, String)],
        unset: &[String],
    ) -> Result<Descriptor> {
        self.check_lock(lock)?;
        let what = || format!("annotate index {}", self.image(tag));
        let (old, mut index) = self.read_index_tag(tag).doing(what)?;
        let edit = |a: &mut BTreeMap<String, String>| {
            for k in unset {
                a.remove(k);
            }
            for (k, v) in set {
                a.insert(k.clone(), v.clone());
            }
        };
        match platform {
            None => edit(&mut index.annotations),
            Some(p) => {
                let mut n = 0;
                for m in index
                    .manifests
                    .iter_mut()
                    .filter(|m| matches(p, m.platform.as_ref()))
                {
                    edit(&mut m.annotations);
                    n += 1;
                }
                if n == 0 {
                    return Err(Error::msg(
                        ErrorKind::NotFound,
                        format!(
                            "{}: no image for {}/{} in the index",
                            self.image(tag),
                            p.os,
                            p.architecture
                        ),
                    ));
                }
            }
        }
        self.write_index_tag(lock, tag, Some(&old), &index)
            .doing(what)
    }
}
