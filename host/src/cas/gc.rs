//! Garbage collection: mark every blob reachable from `index.json`, sweep
//! the rest, then remove temporaries left by killed writers.

use std::collections::{BTreeSet, HashMap};

use super::ext::{fetch, read_index};
use super::{Cas, CasError};
use crate::limits::{self, Limit, LimitError};
use crate::oci::{Descriptor, Digest, media};

/// What a gc run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    /// Blobs kept.
    pub kept: usize,
    /// Blobs deleted.
    pub removed: Vec<Digest>,
}

/// Every digest reachable from `roots`: indexes, manifests and descriptor
/// blobs are opened (verified) and followed, including `subject`; configs,
/// layers and unknown blobs are marked without being read.
///
/// Iterative; each document is read once. Refuses (so nothing is swept) a
/// descriptor path longer than [`limits::MAX_INDEX_DEPTH`] and more than
/// [`limits::MAX_WALK_DESCRIPTORS`] descriptors in all, the limits every
/// other walk obeys.
pub fn mark(cas: &dyn Cas, roots: &[Descriptor]) -> Result<BTreeSet<Digest>, CasError> {
    let mut marked = BTreeSet::new();
    let too_many = || CasError::from(LimitError::new("gc", Limit::WalkDescriptors));
    if roots.len() > limits::MAX_WALK_DESCRIPTORS {
        return Err(too_many());
    }
    // A document is read once but walked again when reached by a longer
    // path, so that the depth limit holds for every path (as when resolving
    // a tag); its children are kept from the first read.
    let mut walked: HashMap<Digest, (usize, Vec<Descriptor>)> = HashMap::new();
    let mut stack: Vec<(Descriptor, usize)> = roots.iter().map(|d| (d.clone(), 1)).collect();
    let mut pushed = stack.len();
    while let Some((desc, depth)) = stack.pop() {
        marked.insert(desc.digest.clone());
        // Configs, layers and unknown blobs cannot refer to anything: mark
        // them without reading them.
        if !media::is_parseable(&desc.media_type) {
            continue;
        }
        let children = match walked.get_mut(&desc.digest) {
            Some((deepest, _)) if *deepest >= depth => continue,
            Some((deepest, children)) => {
                *deepest = depth;
                children.clone()
            }
            None => {
                let children: Vec<Descriptor> =
                    fetch(cas, &desc)?.children().into_iter().cloned().collect();
                walked.insert(desc.digest.clone(), (depth, children.clone()));
                children
            }
        };
        if children.is_empty() {
            continue;
        }
        // a manifest ends the descriptor path: its config and layers do
        // not nest it deeper
        if depth >= limits::MAX_INDEX_DEPTH && desc.media_type != media::MANIFEST {
            return Err(LimitError::new(format!("gc: {}", desc.digest), Limit::IndexDepth).into());
        }
        pushed += children.len();
        if pushed > limits::MAX_WALK_DESCRIPTORS {
            return Err(too_many());
        }
        stack.extend(children.into_iter().map(|c| (c, depth + 1)));
    }
    Ok(marked)
}

/// Collect garbage. Runs with every writer excluded (see
/// [`Cas::exclusive`]), so a blob a concurrent command has written but not
/// yet tagged is never swept, and [`Cas::clean`] never removes a temporary
/// that a running command still writes.
pub fn gc(cas: &dyn Cas) -> Result<GcStats, CasError> {
    let mut stats = GcStats::default();
    cas.exclusive(&mut || {
        let index = read_index(cas)?;
        let marked = mark(cas, &index.manifests)?;
        let blobs = cas.list_blobs()?;
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
