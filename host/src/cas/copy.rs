//! Copy an image between two content stores (`rumoci copy`): a tag with
//! everything it reaches (nested indexes, every platform or one, and with
//! `referrers` the artifacts whose `subject` is one of its manifests).
//!
//! Blobs go children first, each read verified (size and digest) from the
//! source and committed under the digest the destination computes, so the
//! destination never holds a document whose blobs are missing; blobs the
//! destination has (same size) are skipped. The destination's tag is set
//! last: a copy that fails or is killed leaves no tag pointing at missing
//! blobs (its blobs stay, for the next copy to skip, or for gc).

use std::collections::{BTreeSet, HashSet};

use super::ext::{fetch, open_verified, read_index, update_index};
use super::refs::{PlatformSpec, resolve, set_tag, tag_roots};
use super::{Cas, CasError};
use crate::limits::{self, Limit, LimitError};
use crate::oci::{Blob, Descriptor, Digest, media};
use crate::progress::{Item, Unit};
use crate::show;

/// What to copy besides the tag's own tree.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Copy only the manifest for this platform (the destination tag then
    /// names that manifest, not the index).
    pub platform: Option<PlatformSpec>,
    /// Also copy the artifacts in the source's `index.json` whose `subject`
    /// is a manifest being copied (OCI 1.1 referrers), with their entries.
    pub referrers: bool,
}

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Copied.
    Copied,
    /// The destination had it already.
    Skipped,
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyStats {
    /// Blobs copied.
    pub copied: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Blobs the destination had.
    pub skipped: usize,
    /// Referrers copied (with `referrers`).
    pub referrers: usize,
    /// The descriptor the destination tag names.
    pub root: Option<Descriptor>,
}

/// The one `index.json` entry naming `tag`.
fn tag_root(cas: &dyn Cas, tag: &str) -> Result<Descriptor, CasError> {
    let mut found = tag_roots(cas, tag)?.into_iter();
    let first = found
        .next()
        .ok_or_else(|| CasError::NotFound(format!("tag {}", show::name(tag))))?;
    if found.next().is_some() {
        return Err(CasError::Invalid(format!(
            "tag {} names several index.json entries",
            show::name(tag)
        )));
    }
    Ok(first)
}

/// A step of the post-order walk.
enum Step {
    /// Read the descriptor's children and visit them.
    Enter(Descriptor, usize),
    /// Its children are done: emit it.
    Exit(Descriptor),
}

/// Every descriptor reachable from `root`, children before parents, each
/// digest once. Iterative; bounded as every walk is.
fn post_order(cas: &dyn Cas, root: &Descriptor) -> Result<Vec<Descriptor>, CasError> {
    let mut out = Vec::new();
    let mut entered: HashSet<Digest> = HashSet::new();
    let mut stack = vec![Step::Enter(root.clone(), 1)];
    let mut visited = 1usize;
    while let Some(step) = stack.pop() {
        let (desc, depth) = match step {
            Step::Exit(desc) => {
                out.push(desc);
                continue;
            }
            Step::Enter(desc, depth) => (desc, depth),
        };
        if !entered.insert(desc.digest.clone()) {
            continue;
        }
        let children: Vec<Descriptor> = if media::is_parseable(&desc.media_type) {
            fetch(cas, &desc)?.children().into_iter().cloned().collect()
        } else {
            Vec::new()
        };
        if depth >= limits::MAX_INDEX_DEPTH && !children.is_empty() {
            return Err(
                LimitError::new(format!("copy: {}", desc.digest), Limit::IndexDepth).into(),
            );
        }
        visited += children.len();
        if visited > limits::MAX_WALK_DESCRIPTORS {
            return Err(LimitError::new("copy", Limit::WalkDescriptors).into());
        }
        stack.push(Step::Exit(desc));
        for c in children.into_iter().rev() {
            if !entered.contains(&c.digest) {
                stack.push(Step::Enter(c, depth + 1));
            }
        }
    }
    Ok(out)
}

/// Copy one blob (verified on the way) unless `dst` has it; `label`
/// names it for the progress reporter.
fn copy_blob(
    src: &dyn Cas,
    dst: &dyn Cas,
    desc: &Descriptor,
    label: &str,
) -> Result<BlobOutcome, CasError> {
    if dst.stat_blob(&desc.digest)? == Some(desc.size) {
        return Ok(BlobOutcome::Skipped);
    }
    let item = Item::start(label, Some(desc.size), Unit::Bytes);
    let mut reader = item.reader(open_verified(src, desc)?);
    let mut writer = dst.begin_blob()?;
    std::io::copy(&mut reader, &mut writer)
        .map_err(|e| CasError::io(format!("copy blob {}", desc.digest), e))?;
    let (_, size) = writer.commit(Some(&desc.digest))?;
    if size != desc.size {
        return Err(CasError::Invalid(format!(
            "blob {}: {size} bytes written, the descriptor says {}",
            desc.digest, desc.size
        )));
    }
    Ok(BlobOutcome::Copied)
}

/// Copy `tag` of `src` to `dst` as `dst_tag`; `each` hears of every blob.
pub fn copy_image(
    src: &dyn Cas,
    dst: &dyn Cas,
    tag: &str,
    dst_tag: &str,
    opts: &CopyOptions,
    each: &mut dyn FnMut(&Descriptor, BlobOutcome),
) -> Result<CopyStats, CasError> {
    super::refs::check_tag(dst_tag)?;
    let mut root = match &opts.platform {
        Some(p) => resolve(src, tag, Some(p))?.target().clone(),
        None => tag_root(src, tag)?,
    };
    root.annotations.remove(media::ANNOTATION_REF_NAME);
    let mut order = post_order(src, &root)?;
    let mut referrer_entries = Vec::new();
    if opts.referrers {
        let manifests: BTreeSet<Digest> = order
            .iter()
            .filter(|d| d.media_type == media::MANIFEST || d.media_type == media::INDEX)
            .map(|d| d.digest.clone())
            .collect();
        let copied: HashSet<Digest> = order.iter().map(|d| d.digest.clone()).collect();
        for entry in read_index(src)?.manifests {
            if copied.contains(&entry.digest) || !media::is_parseable(&entry.media_type) {
                continue;
            }
            let subject = match fetch(src, &entry)? {
                Blob::Manifest(m) => m.subject,
                Blob::Index(i) => i.subject,
                _ => None,
            };
            if subject.is_some_and(|s| manifests.contains(&s.digest)) {
                order.extend(post_order(src, &entry)?);
                referrer_entries.push(entry);
            }
        }
    }
    // a gc of the destination must not sweep what is not tagged yet
    let lock = super::WriteLock::new(dst)?;
    let mut stats = CopyStats::default();
    let mut seen = HashSet::new();
    let total = order
        .iter()
        .map(|d| &d.digest)
        .collect::<HashSet<_>>()
        .len();
    for desc in &order {
        if !seen.insert(desc.digest.clone()) {
            continue;
        }
        let hex = desc.digest.hex();
        let label = format!(
            "blob {}/{total} {}",
            seen.len(),
            hex.get(..12).unwrap_or(hex)
        );
        let outcome = copy_blob(src, dst, desc, &label)?;
        match outcome {
            BlobOutcome::Copied => {
                stats.copied += 1;
                stats.bytes += desc.size;
            }
            BlobOutcome::Skipped => stats.skipped += 1,
        }
        each(desc, outcome);
    }
    if !referrer_entries.is_empty() {
        stats.referrers = referrer_entries.len();
        update_index(&lock, &mut |index| {
            for e in &referrer_entries {
                if !index
                    .manifests
                    .iter()
                    .any(|d| d.digest == e.digest && d.ref_name() == e.ref_name())
                {
                    index.manifests.push(e.clone());
                }
            }
            Ok(())
        })?;
    }
    set_tag(&lock, dst_tag, &root)?;
    stats.root = Some(root);
    Ok(stats)
}
