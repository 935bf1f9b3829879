//! References: `--image PATH[:TAG]`, tag names, and resolving a tag through
//! nested indexes to exactly one manifest (choosing a platform when an index
//! offers several).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use super::ext::{fetch, read_index, update_index};
use super::{Cas, CasError, WriteLock};
use crate::limits::{self, Limit, LimitError};
use crate::oci::{Blob, Descriptor, Digest, Platform, media};
use crate::show;

/// Whether `name` matches the OCI ref-name grammar:
/// `component(/component)*` where a component is alphanumeric runs joined
/// by one of `-._:@+` or `--`.
pub fn is_valid_tag(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        if b[i] == b'-' && b.get(i + 1) == Some(&b'-') {
            i += 2;
        } else if b"-._:@+".contains(&b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
}

/// A parsed `--image PATH[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The layout directory.
    pub layout: PathBuf,
    /// The tag (`latest` when none was given).
    pub tag: String,
}

impl ImageRef {
    /// Parse `PATH[:TAG]`, split at the first `:` as umoci does.
    pub fn parse(s: &str) -> Result<ImageRef, CasError> {
        let (path, tag) = match s.split_once(':') {
            Some((p, t)) => (p, t),
            None => (s, "latest"),
        };
        if path.is_empty() {
            return Err(CasError::Invalid(format!("image {s:?}: path is empty")));
        }
        if tag.is_empty() {
            return Err(CasError::Invalid(format!("image {s:?}: tag is empty")));
        }
        check_tag(tag)?;
        Ok(ImageRef {
            layout: PathBuf::from(path),
            tag: tag.to_string(),
        })
    }
}

/// Fail with a clear error unless `tag` is a valid ref name.
pub fn check_tag(tag: &str) -> Result<(), CasError> {
    if is_valid_tag(tag) {
        Ok(())
    } else {
        Err(CasError::Invalid(format!(
            "tag {tag:?}: not a valid OCI reference name"
        )))
    }
}

/// `os/arch[/variant]` as given to `--platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// Operating system.
    pub os: String,
    /// Architecture.
    pub architecture: String,
    /// Variant (empty: any).
    pub variant: String,
}

impl PlatformSpec {
    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<PlatformSpec, CasError> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || CasError::Invalid(format!("platform {s:?}: expected os/arch[/variant]"));
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: String::new(),
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(PlatformSpec {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: variant.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }

    /// The platform this binary runs on, in OCI (GOARCH) terms.
    pub fn host() -> PlatformSpec {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        PlatformSpec {
            os: std::env::consts::OS.to_string(),
            architecture: arch.to_string(),
            variant: String::new(),
        }
    }

    /// The platform `umoci new` records for this host: [`PlatformSpec::host`]
    /// plus, on ARM (`arm`, `arm64`), the CPU variant as containerd's
    /// `platforms.DefaultSpec()` finds it (`v8` on arm64, `v7`, `v6`, …).
    pub fn host_for_new_image() -> PlatformSpec {
        let mut p = PlatformSpec::host();
        if cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let machine = rustix::system::uname()
                .machine()
                .to_string_lossy()
                .into_owned();
            p.variant = arm_variant(&cpuinfo, &machine, cfg!(target_arch = "arm"));
        }
        p
    }

    pub(crate) fn matches(&self, p: &Platform) -> bool {
        p.os == self.os
            && p.architecture == self.architecture
            && (self.variant.is_empty() || p.variant == self.variant)
    }
}

fn cpuinfo_field<'a>(cpuinfo: &'a str, name: &str) -> Option<&'a str> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The ARM variant containerd derives from `/proc/cpuinfo`'s
/// `CPU architecture` (or else the machine name, `aarch64`/`armvN…`),
/// normalised to `vN` (`unknown` when unrecognised).
pub fn arm_variant(cpuinfo: &str, machine: &str, is_arm32: bool) -> String {
    let mut raw = match cpuinfo_field(cpuinfo, "Cpu architecture") {
        Some(v) => v.to_string(),
        None => {
            let m = machine.to_ascii_lowercase();
            if m == "aarch64" {
                "8".to_string()
            } else if let Some(v) = m.strip_prefix("armv").and_then(|r| r.get(..1)) {
                if ('3'..='8').any(|c| v.starts_with(c)) {
                    v.to_string()
                } else {
                    "unknown".to_string()
                }
            } else {
                return String::new();
            }
        }
    };
    // Raspberry Pi ARMv6 boards report architecture 7
    if is_arm32
        && raw == "7"
        && cpuinfo_field(cpuinfo, "model name")
            .is_some_and(|m| m.to_ascii_lowercase().starts_with("armv6-compatible"))
    {
        raw = "6".to_string();
    }
    match raw.to_ascii_lowercase().as_str() {
        "8" | "aarch64" => "v8",
        "7" | "7m" | "?(12)" | "?(13)" | "?(14)" | "?(15)" | "?(16)" | "?(17)" => "v7",
        "6" | "6tej" => "v6",
        "5" | "5t" | "5te" | "5tej" => "v5",
        "4" | "4t" => "v4",
        "3" => "v3",
        _ => "unknown",
    }
    .to_string()
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// The chain of descriptors from an `index.json` entry down to a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct DescriptorPath(pub Vec<Descriptor>);

impl DescriptorPath {
    /// The `index.json` entry.
    pub fn root(&self) -> &Descriptor {
        &self.0[0]
    }

    /// The manifest at the end of the path.
    pub fn target(&self) -> &Descriptor {
        &self.0[self.0.len() - 1]
    }

    /// The platform recorded by the nearest index entry on the path.
    pub fn platform(&self) -> Option<&Platform> {
        self.0.iter().rev().find_map(|d| d.platform.as_ref())
    }
}

/// One descriptor reached while resolving a tag: the walk keeps parent
/// links instead of whole paths, so deep nesting costs memory linear in the
/// number of descriptors visited.
struct Node {
    desc: Descriptor,
    parent: Option<usize>,
    /// The nearest node on the path (itself included) that has a platform.
    platform: Option<usize>,
    /// The length of the descriptor path ending here (the root is 1).
    depth: usize,
}

/// Every descriptor reachable from `tag`'s roots, depth first (children in
/// document order), and the nodes where the paths end (not an index).
/// Iterative, and bounded by [`limits::MAX_INDEX_DEPTH`] and
/// [`limits::MAX_WALK_DESCRIPTORS`].
struct Walk {
    nodes: Vec<Node>,
    leaves: Vec<usize>,
}

impl Walk {
    fn new(cas: &dyn Cas, tag: &str, roots: Vec<Descriptor>) -> Result<Walk, CasError> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut leaves = Vec::new();
        // children of the documents already read (a digest may be reached
        // by many paths); keyed by what the descriptor claims, since
        // `fetch` verifies and parses by it
        let mut read: HashMap<(Digest, String, u64), Option<Vec<Descriptor>>> = HashMap::new();
        let key = |d: &Descriptor| (d.digest.clone(), d.media_type.clone(), d.size);
        let too_many = || {
            CasError::from(LimitError::new(
                format!("tag {}", show::name(tag)),
                Limit::WalkDescriptors,
            ))
        };
        if roots.len() > limits::MAX_WALK_DESCRIPTORS {
            return Err(too_many());
        }
        let mut stack: Vec<usize> = Vec::new();
        for desc in roots {
            stack.push(nodes.len());
            let platform = desc.platform.is_some().then_some(nodes.len());
            nodes.push(Node {
                desc,
                parent: None,
                platform,
                depth: 1,
            });
        }
        // visit the roots in index order
        stack.reverse();
        while let Some(at) = stack.pop() {
            let (desc, depth) = (&nodes[at].desc, nodes[at].depth);
            let k = key(desc);
            if !read.contains_key(&k) {
                let blob = fetch(cas, desc)?;
                if let Some(own) = blob.media_type_mismatch(&desc.media_type) {
                    tracing::warn!(
                        "tag {}: {}: the document's mediaType is {}, its descriptor's {}",
                        show::name(tag),
                        desc.digest,
                        show::name(own),
                        show::name(&desc.media_type)
                    );
                }
                let children = match blob {
                    Blob::Index(i) => Some(i.manifests),
                    Blob::Descriptor(d) => Some(vec![d]),
                    _ => None,
                };
                read.insert(k.clone(), children);
            }
            let Some(children) = read.get(&k).and_then(|c| c.as_ref()) else {
                leaves.push(at);
                continue;
            };
            if depth >= limits::MAX_INDEX_DEPTH && !children.is_empty() {
                return Err(LimitError::new(
                    format!("tag {}: index {}", show::name(tag), nodes[at].desc.digest),
                    Limit::IndexDepth,
                )
                .into());
            }
            if nodes.len() + children.len() > limits::MAX_WALK_DESCRIPTORS {
                return Err(too_many());
            }
            let first = nodes.len();
            for child in children {
                let me = nodes.len();
                let platform = if child.platform.is_some() {
                    Some(me)
                } else {
                    nodes[at].platform
                };
                nodes.push(Node {
                    desc: child.clone(),
                    parent: Some(at),
                    platform,
                    depth: depth + 1,
                });
            }
            stack.extend((first..nodes.len()).rev());
        }
        Ok(Walk { nodes, leaves })
    }

    /// The platform recorded nearest to `leaf` on its path.
    fn platform(&self, leaf: usize) -> Option<&Platform> {
        self.nodes[leaf]
            .platform
            .and_then(|p| self.nodes[p].desc.platform.as_ref())
    }

    /// The whole descriptor path ending at `leaf`.
    fn path(&self, leaf: usize) -> DescriptorPath {
        let mut out = Vec::with_capacity(self.nodes[leaf].depth);
        let mut at = Some(leaf);
        while let Some(i) = at {
            out.push(self.nodes[i].desc.clone());
            at = self.nodes[i].parent;
        }
        out.reverse();
        DescriptorPath(out)
    }
}

/// The `index.json` entry named `tag`: [`CasError::NotFound`] when there
/// is none, [`CasError::AmbiguousTag`] when entries of that name point at
/// different descriptors (as the Go umoci, which says `tag is ambiguous`);
/// entries naming the same digest are one.
pub fn tag_root(cas: &dyn Cas, tag: &str) -> Result<Descriptor, CasError> {
    let mut roots: Vec<Descriptor> = Vec::new();
    for d in read_index(cas)?.manifests {
        if d.ref_name() == Some(tag) && !roots.iter().any(|r| r.digest == d.digest) {
            roots.push(d);
        }
    }
    match roots.len() {
        0 => Err(CasError::NotFound(format!("tag {}", show::name(tag)))),
        1 => Ok(roots.remove(0)),
        _ => Err(CasError::AmbiguousTag {
            tag: tag.to_string(),
            digests: roots.into_iter().map(|d| d.digest).collect(),
        }),
    }
}

/// Every descriptor path a tag leads to (one per manifest reachable through
/// nested indexes). The paths together may hold at most
/// [`limits::MAX_WALK_DESCRIPTORS`] descriptors.
pub fn resolve_all(cas: &dyn Cas, tag: &str) -> Result<Vec<DescriptorPath>, CasError> {
    let walk = Walk::new(cas, tag, vec![tag_root(cas, tag)?])?;
    let total: usize = walk.leaves.iter().map(|&l| walk.nodes[l].depth).sum();
    if total > limits::MAX_WALK_DESCRIPTORS {
        return Err(
            LimitError::new(format!("tag {}", show::name(tag)), Limit::WalkDescriptors).into(),
        );
    }
    Ok(walk.leaves.iter().map(|&l| walk.path(l)).collect())
}

/// Resolve a tag to exactly one image manifest (OCI or Docker schema 2).
/// When the tag leads to several (through an OCI index or a Docker
/// manifest list), the one for `platform` (default: the host's) is chosen.
/// A tag whose `index.json` entries disagree is ambiguous
/// ([`CasError::AmbiguousTag`]).
pub fn resolve(
    cas: &dyn Cas,
    tag: &str,
    platform: Option<&PlatformSpec>,
) -> Result<DescriptorPath, CasError> {
    let walk = Walk::new(cas, tag, vec![tag_root(cas, tag)?])?;
    let mut leaves = walk.leaves.clone();
    if leaves.is_empty() {
        return Err(CasError::NotFound(format!("tag {}", show::name(tag))));
    }
    if leaves.len() > 1 || platform.is_some() {
        let want = platform.cloned().unwrap_or_else(PlatformSpec::host);
        let multiple = leaves.len() > 1;
        let before = leaves.len();
        leaves.retain(|&l| walk.platform(l).is_some_and(|pl| want.matches(pl)) || !multiple);
        match leaves.len() {
            0 => {
                let mut available: Vec<String> = walk
                    .leaves
                    .iter()
                    .map(|&l| match walk.platform(l) {
                        Some(pl) => PlatformSpec {
                            os: pl.os.clone(),
                            architecture: pl.architecture.clone(),
                            variant: pl.variant.clone(),
                        }
                        .to_string(),
                        None => "(unknown)".to_string(),
                    })
                    .take(16)
                    .map(|p| show::name(&p))
                    .collect();
                if before > available.len() {
                    available.push(format!("… {} in all", before));
                }
                return Err(CasError::NotFound(format!(
                    "tag {}: no manifest for platform {want} (available: {})",
                    show::name(tag),
                    available.join(", ")
                )));
            }
            1 => {}
            _ => {
                return Err(CasError::Invalid(format!(
                    "tag {} is ambiguous: {} manifests match platform {want}",
                    show::name(tag),
                    leaves.len()
                )));
            }
        }
    }
    let path = walk.path(leaves[0]);
    let target = path.target();
    if !media::is_manifest(&target.media_type) {
        return Err(CasError::Invalid(format!(
            "tag {}: {} has media type {}, not an image manifest",
            show::name(tag),
            target.digest,
            show::name(&target.media_type)
        )));
    }
    Ok(path)
}

/// The `index.json` entry naming `desc` as `tag` (the tag is checked).
fn tag_entry(tag: &str, desc: &Descriptor) -> Result<Descriptor, CasError> {
    check_tag(tag)?;
    let mut entry = desc.clone();
    entry
        .annotations
        .insert(media::ANNOTATION_REF_NAME.to_string(), tag.to_string());
    Ok(entry)
}

/// Point `tag` at `desc` (an `index.json` entry): entries with the same name
/// are removed and the new one is appended, atomically. Needs the store's
/// writer lock, held since before `desc`'s blobs were written.
pub fn set_tag(lock: &WriteLock<'_>, tag: &str, desc: &Descriptor) -> Result<(), CasError> {
    let entry = tag_entry(tag, desc)?;
    update_index(lock, &mut |index| {
        index.manifests.retain(|d| d.ref_name() != Some(tag));
        index.manifests.push(entry.clone());
        Ok(())
    })?;
    Ok(())
}

/// Point `tag` at `desc` only if it still points at `expected` (its current
/// `index.json` entry has that digest; `None`: only if `tag` is absent).
/// Returns whether the tag was changed. Read-modify-write commands use this
/// to notice a concurrent update of the same tag and redo their change on
/// top of it instead of overwriting it.
pub fn set_tag_if(
    lock: &WriteLock<'_>,
    tag: &str,
    expected: Option<&Descriptor>,
    desc: &Descriptor,
) -> Result<bool, CasError> {
    let entry = tag_entry(tag, desc)?;
    let mut changed = false;
    update_index(lock, &mut |index| {
        let current = index
            .manifests
            .iter()
            .rev()
            .find(|d| d.ref_name() == Some(tag))
            .map(|d| &d.digest);
        changed = current == expected.map(|d| &d.digest);
        if changed {
            index.manifests.retain(|d| d.ref_name() != Some(tag));
            index.manifests.push(entry.clone());
        }
        Ok(())
    })?;
    Ok(changed)
}

/// Remove every `index.json` entry named `tag`; returns how many went.
pub fn remove_tag(lock: &WriteLock<'_>, tag: &str) -> Result<usize, CasError> {
    let mut removed = 0;
    update_index(lock, &mut |index| {
        let before = index.manifests.len();
        index.manifests.retain(|d| d.ref_name() != Some(tag));
        removed = before - index.manifests.len();
        Ok(())
    })?;
    Ok(removed)
}

/// The tag names in `index.json`, in order (duplicates possible).
pub fn list_tags(cas: &dyn Cas) -> Result<Vec<String>, CasError> {
    Ok(read_index(cas)?
        .manifests
        .iter()
        .filter_map(|d| d.ref_name().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_variant_like_containerd() {
        assert_eq!(arm_variant("CPU architecture: 8\n", "aarch64", false), "v8");
        assert_eq!(
            arm_variant("processor : 0\nCPU architecture: 7\n", "armv7l", true),
            "v7"
        );
        let pi = "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n";
        assert_eq!(arm_variant(pi, "armv6l", true), "v6");
        assert_eq!(arm_variant("", "aarch64", false), "v8");
        assert_eq!(arm_variant("", "armv5tel", true), "v5");
        assert_eq!(arm_variant("", "armv9", true), "unknown");
        assert_eq!(arm_variant("", "x86_64", false), "");
    }

    #[test]
    fn tag_grammar() {
        for ok in [
            "latest",
            "v1.0",
            "a--b",
            "a:b@c+d",
            "x/y/z",
            "A9",
            "1.2_3-rc1",
        ] {
            assert!(is_valid_tag(ok), "{ok} rejected");
        }
        for bad in [
            ".AZ94n18s",
            "",
            "a/",
            "/a",
            "a..b",
            "a---b",
            "a b",
            "-a",
            "a-",
            "ä",
        ] {
            assert!(!is_valid_tag(bad), "{bad} accepted");
        }
    }

    #[test]
    fn image_ref_splits_at_first_colon() {
        let r = ImageRef::parse("dir:tag:with:colons").expect("valid");
        assert_eq!(r.layout, PathBuf::from("dir"));
        assert_eq!(r.tag, "tag:with:colons");
        assert_eq!(ImageRef::parse("dir").expect("valid").tag, "latest");
        assert!(ImageRef::parse(":t").is_err());
        assert!(ImageRef::parse("d:").is_err());
        assert!(ImageRef::parse("d:.bad").is_err());
    }

    #[test]
    fn platform_spec() {
        let p = PlatformSpec::parse("linux/arm/v7").expect("valid");
        assert_eq!(p.variant, "v7");
        assert!(PlatformSpec::parse("linux").is_err());
        assert!(PlatformSpec::parse("linux//v7").is_err());
    }
}
