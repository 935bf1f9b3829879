//! Garbage collection: mark every blob reachable from `index.json`, sweep
//! the rest, then remove temporaries left by killed writers.

use std::collections::BTreeSet;

use super::ext::{fetch, read_index};
use super::{Cas, CasError};
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
pub fn mark(cas: &dyn Cas, roots: &[Descriptor]) -> Result<BTreeSet<Digest>, CasError> {
    let mut marked = BTreeSet::new();
    let mut stack: Vec<Descriptor> = roots.to_vec();
    while let Some(desc) = stack.pop() {
        if !marked.insert(desc.digest.clone()) {
            continue;
        }
        // Configs, layers and unknown blobs cannot refer to anything: mark
        // them without reading them.
        if media::is_parseable(&desc.media_type) {
            let blob = fetch(cas, &desc)?;
            stack.extend(blob.children().into_iter().cloned());
        }
    }
    Ok(marked)
}

/// Collect garbage. Runs with every writer excluded (see
/// [`Cas::exclusive`]), so a blob a concurrent command has written but not
/// yet tagged is never swept.
pub fn gc(cas: &dyn Cas) -> Result<GcStats, CasError> {
    let mut stats = GcStats::default();
    cas.exclusive(&mut || {
        let index = read_index(cas)?;
        let marked = mark(cas, &index.manifests)?;
        for digest in cas.list_blobs()? {
            if marked.contains(&digest) {
                stats.kept += 1;
            } else {
                tracing::info!("gc: removing unreferenced blob {digest}");
                cas.delete_blob(&digest)?;
                stats.removed.push(digest);
            }
        }
        Ok(())
    })?;
    cas.clean()?;
    Ok(stats)
}
