//! Garbage collection: mark every blob reachable from `index.json`, sweep
//! the rest, then remove temporaries left by killed writers.

use std::collections::{BTreeSet, HashMap};

use super::ext::read_index;
use super::reach::reach;
use super::{Cas, CasError};
use crate::limits::{self, Limit, LimitError};
use crate::oci::{Descriptor, Digest, media};
use crate::show;

/// What a gc run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs kept.
    pub kept: usize,
    /// Blobs deleted.
    pub removed: Vec<Digest>,
}

/// Every digest reachable from `roots` by any walk: indexes, manifests and
/// descriptor blobs (OCI or Docker) are opened (verified) and followed by
/// every descriptor any reading of them names, even when the hardened
/// parser would refuse them (when in doubt, keep); a blob of an unknown
/// media type that reads as an index or manifest is followed too; configs
/// and layers are marked without being read. A `subject` is a weak
/// reference: kept and followed when it is in the store, never a reason to
/// fail when it is not. A document whose own `mediaType` is not its
/// descriptor's is a warning, not a refusal.
///
/// Iterative; each document is read once. Refuses (so nothing is swept) a
/// descriptor path longer than [`limits::MAX_INDEX_DEPTH`] and more than
/// [`limits::MAX_WALK_DESCRIPTORS`] descriptors in all, the limits every
/// other walk obeys, and a known document that is missing or corrupt.
pub fn mark(cas: &dyn Cas, roots: &[Descriptor]) -> Result<BTreeSet<Digest>, CasError> {
    Ok(mark_walk(cas, roots)?.marked)
}

/// What the mark found.
struct Marked {
    /// Every digest to keep.
    marked: BTreeSet<Digest>,
    /// The foreign layers among them (they may be absent from the store).
    foreign: BTreeSet<Digest>,
}

/// A document already read: the longest path it was walked at, its
/// children (each with whether it is a weak `subject`), whether they nest.
type Walked = (usize, Vec<(Descriptor, bool)>, bool);

/// A child waiting to be marked: its descriptor, the length of its path,
/// whether it is only a `subject` (weak).
type Pending = (Descriptor, usize, bool);

fn mark_walk(cas: &dyn Cas, roots: &[Descriptor]) -> Result<Marked, CasError> {
    let mut out = Marked {
        marked: BTreeSet::new(),
        foreign: BTreeSet::new(),
    };
    let too_many = || CasError::from(LimitError::new("gc", Limit::WalkDescriptors));
    if roots.len() > limits::MAX_WALK_DESCRIPTORS {
        return Err(too_many());
    }
    // A document is read once but walked again when reached by a longer
    // path, so that the depth limit holds for every path (as when resolving
    // a tag); its children are kept from the first read.
    let mut walked: HashMap<Digest, Walked> = HashMap::new();
    let mut stack: Vec<Pending> = roots.iter().map(|d| (d.clone(), 1, false)).collect();
    let mut pushed = stack.len();
    while let Some((desc, depth, weak)) = stack.pop() {
        if weak && desc.data.is_none() && cas.stat_blob(&desc.digest)?.is_none() {
            tracing::info!(
                "gc: subject {} is not in the store (a weak reference: nothing to keep)",
                desc.digest
            );
            continue;
        }
        out.marked.insert(desc.digest.clone());
        if media::is_foreign_layer(&desc.media_type) {
            out.foreign.insert(desc.digest.clone());
        }
        let (children, nests) = match walked.get_mut(&desc.digest) {
            Some((deepest, _, _)) if *deepest >= depth => continue,
            Some((deepest, children, nests)) => {
                *deepest = depth;
                (children.clone(), *nests)
            }
            None => {
                let (children, nests) = read_children(cas, &desc)?;
                walked.insert(desc.digest.clone(), (depth, children.clone(), nests));
                (children, nests)
            }
        };
        if children.is_empty() {
            continue;
        }
        // a manifest ends the descriptor path: its config and layers do
        // not nest it deeper
        if depth >= limits::MAX_INDEX_DEPTH && nests {
            return Err(LimitError::new(format!("gc: {}", desc.digest), Limit::IndexDepth).into());
        }
        pushed += children.len();
        if pushed > limits::MAX_WALK_DESCRIPTORS {
            return Err(too_many());
        }
        stack.extend(children.into_iter().map(|(c, w)| (c, depth + 1, w)));
    }
    Ok(out)
}

/// The children of `desc` to mark (each with whether it is a weak
/// `subject`) and whether they nest the path deeper; says what is odd.
fn read_children(
    cas: &dyn Cas,
    desc: &Descriptor,
) -> Result<(Vec<(Descriptor, bool)>, bool), CasError> {
    let Some(r) = reach(cas, desc)? else {
        if media::is_parseable(&desc.media_type) {
            tracing::warn!(
                "gc: {} ({}) is not a JSON object: nothing to follow",
                desc.digest,
                desc.media_type
            );
        }
        return Ok((Vec::new(), false));
    };
    if let Some(own) = &r.declared {
        tracing::warn!(
            "gc: {}: the document's mediaType is {}, its descriptor's {}; kept with everything it names",
            desc.digest,
            show::name(own),
            show::name(&desc.media_type)
        );
    }
    if r.ambiguous {
        tracing::warn!(
            "gc: {} has both an index's manifests and a manifest's config and layers; kept with everything either names",
            desc.digest
        );
    }
    if r.by_shape {
        tracing::info!(
            "gc: {} of unknown media type {} reads as an index or manifest: following it",
            desc.digest,
            show::name(&desc.media_type)
        );
    }
    let children = r
        .children
        .into_iter()
        .map(|c| (c, false))
        .chain(r.subject.map(|s| (s, true)))
        .collect();
    Ok((children, r.nests))
}

/// Collect garbage. Runs with every writer excluded (see
/// [`Cas::exclusive`]), so a blob a concurrent command has written but not
/// yet tagged is never swept, and [`Cas::clean`] never removes a temporary
/// that a running command still writes.
pub fn gc(cas: &dyn Cas) -> Result<GcStats, CasError> {
    let mut stats = GcStats::default();
    cas.exclusive(&mut || {
        let index = read_index(cas)?;
        let Marked { marked, foreign } = mark_walk(cas, &index.manifests)?;
        let blobs = cas.list_blobs()?;
        for digest in &foreign {
            if !blobs.contains(digest) {
                tracing::info!(
                    "gc: foreign layer {digest} is not in the store (it is distributed from its urls)"
                );
            }
        }
        let progress = crate::progress::Item::start(
            "gc: blobs examined",
            Some(blobs.len() as u64),
            crate::progress::Unit::Objects,
        );
        for digest in blobs {
            progress.advance(1);
            if marked.contains(&digest) {
                stats.kept += 1;
            } else {
                tracing::info!("gc: removing unreferenced blob {digest}");
                cas.delete_blob(&digest)?;
                stats.removed.push(digest);
            }
        }
        // inside the exclusive section too: a writer's temporary may exist
        // a moment before the writer locks it, and a content-store plugin
        // cannot lock its temporaries at all
        cas.clean()
    })?;
    Ok(stats)
}
