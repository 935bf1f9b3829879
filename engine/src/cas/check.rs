//! Whole-layout verification (`rumoci verify`): every reachable descriptor
//! is checked — the blob exists, its size and digest match, JSON documents
//! parse under the hardened rules, and (through a caller-supplied hook)
//! layers decompress to their diff_id. Docker schema 2 documents and layers
//! are checked like their OCI twins ([`media::kind`]).
//!
//! Some findings are warnings, not problems: a `subject` that is not in the
//! store (a weak reference), a foreign layer that is not in the store (it
//! is distributed from its urls), a document whose own `mediaType` is the
//! twin of its descriptor's (an OCI descriptor leading to a Docker
//! manifest: unambiguous).

use std::collections::{BTreeSet, HashMap};
use std::io::Read;

use super::ext::{fetch, open_verified, read_index};
use super::{Cas, CasError};
use crate::limits::{self, Limit};
use crate::oci::{Blob, Descriptor, Digest, media};
use crate::show;

/// One problem found, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `index.json`, or the chain of digests leading to the object.
    pub path: String,
    /// The object's digest, when it has one.
    pub digest: Option<Digest>,
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// What is wrong.
    pub reason: String,
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A blob is not in the store.
    Missing,
    /// A blob's content does not hash to its digest.
    Digest,
    /// A blob is longer or shorter than its descriptor says.
    Size,
    /// A document (index, manifest, config) is invalid or inconsistent
    /// (e.g. a config with more diff_ids than the manifest has layers).
    Invalid,
    /// A layer's content is bad: not a valid (compressed) tar, or its
    /// uncompressed digest differs from the diff_id the config gives.
    Layer,
    /// A limit of [`crate::limits`] was hit (too deep, too many).
    Limit,
    /// A document's own `mediaType` is not its descriptor's (a warning: the
    /// twin of the same kind, e.g. a Docker manifest behind an OCI
    /// manifest descriptor).
    MediaType,
    /// The object could not be read.
    Io,
}

impl ProblemKind {
    /// The kind's name, as `verify --json` prints it: `missing`, `digest`,
    /// `size`, `invalid`, `layer`, `limit`, `media-type` or `io`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Digest => "digest",
            ProblemKind::Size => "size",
            ProblemKind::Invalid => "invalid",
            ProblemKind::Layer => "layer",
            ProblemKind::Limit => "limit",
            ProblemKind::MediaType => "media-type",
            ProblemKind::Io => "io",
        }
    }

    /// The kind of a store error.
    pub fn of(e: &CasError) -> ProblemKind {
        match e.unwrapped() {
            CasError::NotFound(_) => ProblemKind::Missing,
            CasError::DigestMismatch { .. } => ProblemKind::Digest,
            CasError::SizeMismatch { .. } => ProblemKind::Size,
            CasError::Io { .. } => ProblemKind::Io,
            CasError::Limit(_) => ProblemKind::Limit,
            _ => ProblemKind::Invalid,
        }
    }

    /// The kind of a layer check's message: a digest or size mismatch of
    /// the verified blob stream (umoci's `verified reader … mismatch`
    /// wording), else a problem of the layer's content.
    fn of_layer_message(m: &str) -> ProblemKind {
        if m.contains("verified reader digest mismatch") {
            ProblemKind::Digest
        } else if m.contains("verified reader size mismatch") {
            ProblemKind::Size
        } else {
            ProblemKind::Layer
        }
    }
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

/// What [`check_layout`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What is wrong: the layout is not sound while there is any.
    pub problems: Vec<Problem>,
    /// What is odd but sound (a missing `subject` or foreign layer, a
    /// document of its descriptor's twin media type).
    pub warnings: Vec<Problem>,
}

/// Checks a layer's content: given its descriptor, its diff_id and the
/// verified blob stream, return an error message if it is bad.
pub type LayerCheck<'a> =
    dyn FnMut(&Descriptor, Option<&Digest>, &mut dyn Read) -> Result<(), crate::Error> + 'a;

/// One descriptor waiting to be checked: a node of the walk. Nodes keep a
/// link to their parent instead of the whole path, so deep nesting costs
/// memory linear in the number of descriptors.
struct Node {
    desc: Descriptor,
    /// The diff_id the manifest above claims for this layer.
    diff_id: Option<Digest>,
    /// `index.json[i] (tag t)` for a root, else `None`.
    label: Option<String>,
    parent: Option<usize>,
    /// The length of the descriptor path ending here (a root is 1).
    depth: usize,
    /// Whether it is only a `subject` (a weak reference: its absence is a
    /// warning).
    weak: bool,
}

/// How many digests of a long path are shown at each end.
const PATH_ENDS: usize = 3;

/// `index.json[i] (tag t) → d1 → … → dn` for the node `at`, the middle of a
/// long path left out.
fn path_of(nodes: &[Node], at: usize) -> String {
    let mut chain = Vec::new();
    let mut i = Some(at);
    while let Some(n) = i {
        chain.push(n);
        i = nodes[n].parent;
    }
    chain.reverse();
    let show = |n: usize| match &nodes[n].label {
        Some(l) => l.clone(),
        None => nodes[n].desc.digest.to_string(),
    };
    if chain.len() <= 2 * PATH_ENDS + 1 {
        return chain
            .iter()
            .map(|&n| show(n))
            .collect::<Vec<_>>()
            .join(" → ");
    }
    let head: Vec<String> = chain[..PATH_ENDS].iter().map(|&n| show(n)).collect();
    let tail: Vec<String> = chain[chain.len() - PATH_ENDS..]
        .iter()
        .map(|&n| show(n))
        .collect();
    format!(
        "{} → …({} more)… → {}",
        head.join(" → "),
        chain.len() - 2 * PATH_ENDS,
        tail.join(" → ")
    )
}

/// Verify everything reachable from `index.json`: the problems of
/// [`check_layout`] (its warnings left out).
pub fn verify_layout(cas: &dyn Cas, layer_check: &mut LayerCheck<'_>) -> Vec<Problem> {
    check_layout(cas, layer_check).problems
}

/// Verify everything reachable from `index.json`, with the warnings. The
/// walk is iterative and bounded by [`limits::MAX_INDEX_DEPTH`] (deeper
/// indexes are a problem and not followed) and
/// [`limits::MAX_WALK_DESCRIPTORS`] (the walk stops with a problem).
pub fn check_layout(cas: &dyn Cas, layer_check: &mut LayerCheck<'_>) -> Report {
    let mut report = Report::default();
    let index = match read_index(cas) {
        Ok(i) => i,
        Err(e) => {
            report.problems.push(Problem {
                path: "index.json".into(),
                digest: None,
                kind: ProblemKind::of(&e),
                reason: e.to_string(),
            });
            return report;
        }
    };
    let mut nodes: Vec<Node> = Vec::new();
    for (i, root) in index.manifests.into_iter().enumerate() {
        let label = match root.ref_name() {
            Some(t) => format!("index.json[{i}] (tag {})", show::name(t)),
            None => format!("index.json[{i}]"),
        };
        nodes.push(Node {
            desc: root,
            diff_id: None,
            label: Some(label),
            parent: None,
            depth: 1,
            weak: false,
        });
    }
    let mut stack: Vec<usize> = (0..nodes.len()).rev().collect();
    let mut seen = BTreeSet::new();
    // A document is checked once, but walked again when reached by a longer
    // path, so that the depth limit holds for every path, as when resolving
    // a tag (its children are kept from the first visit).
    let mut walked: HashMap<Digest, (usize, Children)> = HashMap::new();
    let progress = crate::progress::Item::start(
        "verify: blobs checked",
        None,
        crate::progress::Unit::Objects,
    );
    while let Some(at) = stack.pop() {
        let depth = nodes[at].depth;
        let children = match walked.get_mut(&nodes[at].desc.digest) {
            Some((deepest, _)) if *deepest >= depth => continue,
            Some((deepest, children)) => {
                *deepest = depth;
                children.clone()
            }
            None => {
                progress.advance(1);
                let Some(children) = visit(cas, &nodes, at, &mut seen, &mut report, layer_check)
                else {
                    continue;
                };
                walked.insert(nodes[at].desc.digest.clone(), (depth, children.clone()));
                children
            }
        };
        if children.is_empty() {
            continue;
        }
        let mut limit_hit = |limit: Limit| {
            report.problems.push(Problem {
                path: path_of(&nodes, at),
                digest: Some(nodes[at].desc.digest.clone()),
                kind: ProblemKind::Limit,
                reason: limit.to_string(),
            })
        };
        // a manifest ends the descriptor path: its config and layers do
        // not nest it deeper
        if nodes[at].depth >= limits::MAX_INDEX_DEPTH
            && !media::is_manifest(&nodes[at].desc.media_type)
        {
            limit_hit(Limit::IndexDepth);
            continue;
        }
        if nodes.len() + children.len() > limits::MAX_WALK_DESCRIPTORS {
            limit_hit(Limit::WalkDescriptors);
            break;
        }
        let first = nodes.len();
        let depth = nodes[at].depth + 1;
        for Child {
            desc,
            diff_id,
            weak,
        } in children
        {
            nodes.push(Node {
                desc,
                diff_id,
                label: None,
                parent: Some(at),
                depth,
                weak,
            });
        }
        stack.extend((first..nodes.len()).rev());
    }
    progress.finish();
    report
}

/// A child of a document.
#[derive(Debug, Clone)]
struct Child {
    desc: Descriptor,
    /// The diff_id claimed for it (a manifest's layer).
    diff_id: Option<Digest>,
    /// Whether it is the document's `subject`.
    weak: bool,
}

/// The children of a document.
type Children = Vec<Child>;

/// Check the node `at`; its children (with the diff_ids claimed for them)
/// when it is a document to descend into.
fn visit(
    cas: &dyn Cas,
    nodes: &[Node],
    at: usize,
    seen: &mut BTreeSet<(Digest, String, Option<Digest>)>,
    found: &mut Report,
    layer_check: &mut LayerCheck<'_>,
) -> Option<Children> {
    let desc = &nodes[at].desc;
    let diff_id = nodes[at].diff_id.as_ref();
    // a blob is checked once per way it is read: a layer per media type
    // (its compression) and diff_id it is claimed to have (one blob named
    // by two manifests as `tar` and as `tar+gzip` is checked as both)
    if !seen.insert((
        desc.digest.clone(),
        desc.media_type.clone(),
        diff_id.cloned(),
    )) {
        return None;
    }
    let finding = |kind: ProblemKind, reason: String| Problem {
        path: path_of(nodes, at),
        digest: Some(desc.digest.clone()),
        kind,
        reason,
    };
    if desc.data.is_none() {
        let absent = match cas.stat_blob(&desc.digest) {
            Ok(Some(_)) => None,
            Ok(None) if nodes[at].weak => Some((
                &mut found.warnings,
                "subject is not in the store (a weak reference)",
            )),
            Ok(None) if media::is_foreign_layer(&desc.media_type) => Some((
                &mut found.warnings,
                "foreign layer is not in the store (it is distributed from its urls)",
            )),
            Ok(None) => Some((&mut found.problems, "blob is missing")),
            Err(e) => {
                found
                    .problems
                    .push(finding(ProblemKind::of(&e), e.to_string()));
                return None;
            }
        };
        if let Some((list, reason)) = absent {
            list.push(finding(ProblemKind::Missing, reason.into()));
            return None;
        }
    }
    let mut report = |kind: ProblemKind, reason: String| found.problems.push(finding(kind, reason));
    if media::is_layer(&desc.media_type) {
        let res = open_verified(cas, desc)
            .map_err(|e| (ProblemKind::of(&e), e.to_string()))
            .and_then(|mut r| {
                layer_check(desc, diff_id, &mut r).map_err(|e| {
                    // content that is not a layer may be a blob that is not
                    // what its digest says: read the rest to tell
                    if let Err(e) = std::io::copy(&mut r, &mut std::io::sink()) {
                        let e = CasError::io(desc.digest.to_string(), e);
                        if matches!(
                            e.unwrapped(),
                            CasError::DigestMismatch { .. } | CasError::SizeMismatch { .. }
                        ) {
                            return (ProblemKind::of(&e), e.to_string());
                        }
                    }
                    let m = e.to_string();
                    (ProblemKind::of_layer_message(&m), m)
                })
            });
        if let Err((kind, e)) = res {
            report(kind, e);
        }
        return None;
    }
    let blob = match fetch(cas, desc) {
        Ok(b) => b,
        Err(e) => {
            report(ProblemKind::of(&e), e.to_string());
            return None;
        }
    };
    if let Blob::Other = blob {
        // unknown media type: check size and digest only
        let res = open_verified(cas, desc).and_then(|mut r| {
            std::io::copy(&mut r, &mut std::io::sink())
                .map_err(|e| CasError::io(desc.digest.to_string(), e))
        });
        if let Err(e) = res {
            report(ProblemKind::of(&e), e.to_string());
        }
        return None;
    }
    let diff_ids: Vec<Digest> = match &blob {
        Blob::Manifest(m) => match fetch(cas, &m.config) {
            Ok(Blob::Config(c)) => {
                if c.rootfs.diff_ids.len() != m.layers.len() {
                    report(
                        ProblemKind::Invalid,
                        format!(
                            "config has {} diff_ids for {} layers",
                            c.rootfs.diff_ids.len(),
                            m.layers.len()
                        ),
                    );
                }
                c.rootfs.diff_ids
            }
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if let Some(own) = blob.media_type_mismatch(&desc.media_type) {
        found.warnings.push(finding(
            ProblemKind::MediaType,
            format!(
                "the document's mediaType is {}, its descriptor's {}",
                show::name(own),
                show::name(&desc.media_type)
            ),
        ));
    }
    let child = |desc: &Descriptor, diff_id: Option<&Digest>, weak: bool| Child {
        desc: desc.clone(),
        diff_id: diff_id.cloned(),
        weak,
    };
    let mut children: Children = match &blob {
        Blob::Manifest(m) => std::iter::once(child(&m.config, None, false))
            .chain(
                m.layers
                    .iter()
                    .enumerate()
                    .map(|(i, l)| child(l, diff_ids.get(i), false)),
            )
            .collect(),
        other => other
            .children()
            .into_iter()
            .map(|c| child(c, None, false))
            .collect(),
    };
    if let Some(s) = blob.subject() {
        children.push(child(s, None, true));
    }
    Some(children)
}
