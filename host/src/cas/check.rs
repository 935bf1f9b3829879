//! Whole-layout verification (`rumoci verify`): every reachable descriptor
//! is checked — the blob exists, its size and digest match, JSON documents
//! parse under the hardened rules, and (through a caller-supplied hook)
//! layers decompress to their diff_id.

use std::collections::BTreeSet;
use std::io::Read;

use super::ext::{fetch, open_verified, read_index};
use super::{Cas, CasError};
use crate::oci::{Blob, Descriptor, Digest, media};

/// One problem found, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `index.json`, or the chain of digests leading to the object.
    pub path: String,
    /// The object's digest, when it has one.
    pub digest: Option<Digest>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.digest {
            Some(d) if !self.path.ends_with(&d.to_string()) => {
                write!(f, "{} → {d}: {}", self.path, self.reason)
            }
            _ => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

/// Checks a layer's content: given its descriptor, its diff_id and the
/// verified blob stream, return an error message if it is bad.
pub type LayerCheck<'a> =
    dyn FnMut(&Descriptor, Option<&Digest>, &mut dyn Read) -> Result<(), String> + 'a;

/// Verify everything reachable from `index.json`.
pub fn verify_layout(cas: &dyn Cas, layer_check: &mut LayerCheck<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let index = match read_index(cas) {
        Ok(i) => i,
        Err(e) => {
            problems.push(Problem {
                path: "index.json".into(),
                digest: None,
                reason: e.to_string(),
            });
            return problems;
        }
    };
    let mut seen = BTreeSet::new();
    for (i, root) in index.manifests.iter().enumerate() {
        let name = match root.ref_name() {
            Some(t) => format!("index.json[{i}] (tag {t})"),
            None => format!("index.json[{i}]"),
        };
        visit(
            cas,
            root,
            &name,
            None,
            &mut seen,
            &mut problems,
            layer_check,
        );
    }
    problems
}

fn visit(
    cas: &dyn Cas,
    desc: &Descriptor,
    path: &str,
    diff_id: Option<&Digest>,
    seen: &mut BTreeSet<(Digest, Option<Digest>)>,
    problems: &mut Vec<Problem>,
    layer_check: &mut LayerCheck<'_>,
) {
    // a layer is checked once per diff_id it is claimed to have
    if !seen.insert((desc.digest.clone(), diff_id.cloned())) {
        return;
    }
    let mut report = |reason: String| {
        problems.push(Problem {
            path: path.to_string(),
            digest: Some(desc.digest.clone()),
            reason,
        })
    };
    if desc.data.is_none() {
        match cas.stat_blob(&desc.digest) {
            Ok(Some(_)) => {}
            Ok(None) => {
                report("blob is missing".into());
                return;
            }
            Err(e) => {
                report(e.to_string());
                return;
            }
        }
    }
    let is_layer = media::split_suffix(&desc.media_type).0 == media::LAYER
        || media::split_suffix(&desc.media_type).0 == media::LAYER_NONDISTRIBUTABLE;
    if is_layer {
        let res = open_verified(cas, desc)
            .map_err(|e| e.to_string())
            .and_then(|mut r| layer_check(desc, diff_id, &mut r));
        if let Err(e) = res {
            report(e);
        }
        return;
    }
    let blob = match fetch(cas, desc) {
        Ok(b) => b,
        Err(e) => {
            report(e.to_string());
            return;
        }
    };
    if let Blob::Other = blob {
        // unknown media type: check size and digest only
        let res = open_verified(cas, desc).and_then(|mut r| {
            std::io::copy(&mut r, &mut std::io::sink())
                .map_err(|e| CasError::io(desc.digest.to_string(), e))
        });
        if let Err(e) = res {
            report(e.to_string());
        }
        return;
    }
    let diff_ids: Vec<Digest> = match &blob {
        Blob::Manifest(m) => match fetch(cas, &m.config) {
            Ok(Blob::Config(c)) => {
                if c.rootfs.diff_ids.len() != m.layers.len() {
                    report(format!(
                        "config has {} diff_ids for {} layers",
                        c.rootfs.diff_ids.len(),
                        m.layers.len()
                    ));
                }
                c.rootfs.diff_ids
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    let layers: BTreeSet<&Digest> = match &blob {
        Blob::Manifest(m) => m.layers.iter().map(|l| &l.digest).collect(),
        _ => BTreeSet::new(),
    };
    let mut layer_no = 0;
    for child in blob.children() {
        let child_diff = if layers.contains(&child.digest) {
            let d = diff_ids.get(layer_no);
            layer_no += 1;
            d
        } else {
            None
        };
        let child_path = format!("{path} → {}", child.digest);
        visit(
            cas,
            child,
            &child_path,
            child_diff,
            seen,
            problems,
            layer_check,
        );
    }
}
