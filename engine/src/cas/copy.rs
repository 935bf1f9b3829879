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

use super::ext::open_verified;
use super::reach::reach;
use super::refs::{PlatformSpec, resolve, set_tag, tag_root};
use super::{Cas, CasError};
use crate::limits::{self, Limit, LimitError};
use crate::oci::{Descriptor, Digest, media};
use crate::progress::{Item, Unit};

/// What to copy besides the tag's own tree.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Copy only the manifest for this platform (the destination tag then
    /// names that manifest, not the index).
    pub platform: Option<PlatformSpec>,
    /// Also copy the referrers of every manifest copied (SBOMs,
    /// signatures, attestations; and theirs), in whichever form the source
    /// keeps them ([`super::referrers::Form`]), recorded in the form the
    /// destination can keep. On by default.
    pub referrers: bool,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            platform: None,
            referrers: true,
        }
    }
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

/// A step of the post-order walk.
enum Step {
    /// Read the descriptor's children and visit them.
    Enter(Descriptor, usize),
    /// Its children are done: emit it.
    Exit(Descriptor),
}

/// Every descriptor reachable from `root` (what gc would keep: Docker
/// documents like their OCI twins, documents of unknown media type that
/// read as an index or manifest, a `subject` when the source has it),
/// children before parents, each digest once. A foreign layer the source
/// lacks is left out (it is distributed from its urls). Iterative; bounded
/// as every walk is.
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
        if media::is_foreign_layer(&desc.media_type)
            && desc.data.is_none()
            && cas.stat_blob(&desc.digest)?.is_none()
        {
            tracing::info!(
                "copy: foreign layer {} is not in the source (it is distributed from its urls)",
                desc.digest
            );
            continue;
        }
        let mut children: Vec<Descriptor> = Vec::new();
        if let Some(r) = reach(cas, &desc)? {
            children = r.children;
            // a subject is a weak reference: copied along when the source
            // has it
            if let Some(s) = r.subject {
                if s.data.is_some() || cas.stat_blob(&s.digest)?.is_some() {
                    children.push(s);
                } else {
                    tracing::info!(
                        "copy: subject {} of {} is not in the source",
                        s.digest,
                        desc.digest
                    );
                }
            }
        }
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
    let mut writer = dst.begin_blob_for(&super::BlobHint {
        digest: Some(&desc.digest),
        size: Some(desc.size),
        media_type: Some(&desc.media_type),
    })?;
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

/// Copy `blobs` (numbered for their labels) on `lanes` threads; their
/// outcomes in order, or the first error in order.
fn copy_side_by_side(
    src: &dyn Cas,
    dst: &dyn Cas,
    blobs: &[(usize, &&Descriptor)],
    lanes: usize,
    label: &(dyn Fn(usize, &Descriptor) -> String + Sync),
) -> Result<Vec<BlobOutcome>, CasError> {
    // the first failure in order explains the blobs left uncopied
    crate::parallel::in_order(
        blobs.len(),
        lanes,
        |k| {
            let (n, desc) = blobs[k];
            copy_blob(src, dst, desc, &label(n, desc))
        },
        |k| CasError::Invalid(format!("blob {}: not copied", blobs[k].1.digest)),
    )
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
    let mut found = Vec::new();
    if opts.referrers {
        let manifests: BTreeSet<Digest> = order
            .iter()
            .filter(|d| media::is_manifest(&d.media_type) || media::is_index(&d.media_type))
            .map(|d| d.digest.clone())
            .collect();
        found = super::referrers::find(src, manifests)?;
        for r in &found {
            order.extend(post_order(src, &r.desc)?);
        }
    }
    // a gc of the destination must not sweep what is not tagged yet
    let lock = super::WriteLock::new(dst)?;
    let mut stats = CopyStats::default();
    let mut seen = HashSet::new();
    let unique: Vec<&Descriptor> = order
        .iter()
        .filter(|d| seen.insert(d.digest.clone()))
        .collect();
    let total = unique.len();
    let label = |n: usize, desc: &Descriptor| {
        let hex = desc.digest.hex();
        format!("blob {}/{total} {}", n + 1, hex.get(..12).unwrap_or(hex))
    };
    let lanes = dst.parallel_writes().max(src.parallel_writes()).max(1);
    let outcomes = if lanes == 1 {
        let mut out = Vec::with_capacity(total);
        for (n, desc) in unique.iter().enumerate() {
            out.push((*desc, copy_blob(src, dst, desc, &label(n, desc))?));
        }
        out
    } else {
        // layers, configs and other leaves side by side; then manifests
        // and indexes in order, each after what it points to
        let (docs, leaves): (Vec<_>, Vec<_>) = unique.iter().enumerate().partition(|(_, d)| {
            media::is_manifest(&d.media_type) || media::is_index(&d.media_type)
        });
        let copied = copy_side_by_side(src, dst, &leaves, lanes, &label)?;
        let mut out: Vec<_> = leaves.iter().map(|(_, d)| **d).zip(copied).collect();
        for (n, desc) in docs {
            out.push((*desc, copy_blob(src, dst, desc, &label(n, desc))?));
        }
        out
    };
    for (desc, outcome) in outcomes {
        match outcome {
            BlobOutcome::Copied => {
                stats.copied += 1;
                stats.bytes += desc.size;
            }
            BlobOutcome::Skipped => stats.skipped += 1,
        }
        each(desc, outcome);
    }
    // each subject's referrers recorded at once (one index rewrite each)
    let mut by_subject: std::collections::BTreeMap<&Digest, Vec<_>> = Default::default();
    for r in &found {
        by_subject
            .entry(&r.subject)
            .or_default()
            .push((r.desc.clone(), r.form.clone()));
    }
    for (subject, referrers) in by_subject {
        super::referrers::record(&lock, subject, &referrers)?;
    }
    stats.referrers = found
        .iter()
        .map(|r| &r.desc.digest)
        .collect::<HashSet<_>>()
        .len();
    set_tag(&lock, dst_tag, &root)?;
    stats.root = Some(root);
    Ok(stats)
}
