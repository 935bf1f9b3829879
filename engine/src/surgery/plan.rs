//! The first pass of a squash: the layers' headers replayed on a tree of
//! paths (no data), exactly as the extractor would apply them, then the
//! plan of what the merged layer must hold.
//!
//! The tree knows, for every path, whether it is a directory, which header
//! gave it its metadata, which "inode" (content object) a non-directory is
//! — hard links share one — and whether it is still the object the kept
//! base layers left there. From the final tree the plan derives:
//!
//! * the whiteouts the merged layer keeps (those of the range that hide
//!   something the base has, plus one where the range replaced a base
//!   directory by a new one without any whiteout), written first;
//! * the final directory headers (kept from the first pass), written
//!   next, parents first, so every directory exists, with its metadata,
//!   before anything goes in it (bsdtar sets the times of a directory that
//!   already exists at once, and a later child would change them);
//! * for each other entry of the range, what to write when the second
//!   pass reaches it: its content object under its first surviving path
//!   (sorted) followed by hard links for its other paths — so a hard link
//!   never names a path overridden later;
//! * at the end, hard links to base objects that are still in place.
//!
//! Memory is proportional to the number of paths, never to the bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::layer::extract::add_upper;
use crate::layer::tarread::{Header, Kind};
use crate::path::{self, BStr, BString, ByteSlice};

use super::SurgeryError;

/// Where an entry is: (layer index in the manifest, index of the member in
/// that layer's archive, counting every header the reader returns).
pub type Pos = (usize, u64);

#[derive(Debug, Clone, Copy)]
enum Src {
    /// Made by the extractor as a missing parent, with no header.
    Implicit,
    /// The header at this position.
    Entry(Pos),
}

#[derive(Debug, Clone, Copy)]
struct Node {
    dir: bool,
    /// Directories: the header that gave the metadata (the last one).
    src: Src,
    /// Non-directories: the content object.
    inode: usize,
    /// Still the object the base layers left at this path.
    orig: bool,
    /// A symbolic link (the extractor follows it in a parent).
    symlink: bool,
}

/// A whiteout the merged layer keeps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Marker {
    /// `dir/.wh.name`: `path` removed.
    Whiteout(BString),
    /// `dir/.wh..wh..opq`: what the base has in `dir` removed.
    Opaque(BString),
}

/// What the second pass writes when it reaches an entry: the entry's
/// content object under `primary`, then hard links to it at `links`.
#[derive(Debug, Clone)]
pub struct Emit {
    /// The path the content goes under.
    pub primary: BString,
    /// Other paths of the same object.
    pub links: Vec<BString>,
}

/// The merged layer, as decided by the first pass.
#[derive(Debug, Default)]
pub struct Plan {
    /// Whiteouts, written first.
    pub markers: BTreeSet<Marker>,
    /// Directory headers, written next, parents first (`None`: a
    /// directory the extractor made with no header that ends up empty).
    pub dirs: Vec<(BString, Option<Header>)>,
    /// What to write at each entry of the layers.
    pub emits: HashMap<Pos, Emit>,
    /// Hard links to base objects left in place: (path, target), written
    /// last.
    pub base_links: Vec<(BString, BString)>,
    /// Range whiteouts dropped (they hide nothing the base has).
    pub dropped_markers: usize,
}

impl Plan {
    /// The layers the second pass must read.
    pub fn layers(&self) -> BTreeSet<usize> {
        self.emits.keys().map(|p| p.0).collect()
    }
}

/// The replay.
pub struct Replay {
    tree: BTreeMap<BString, Node>,
    /// Each content object's entry.
    inodes: Vec<Pos>,
    /// The tree the base layers left: path → whether a directory.
    base: BTreeMap<BString, bool>,
    /// Number of base inodes (inodes below this index come from the base).
    base_inodes: usize,
    /// The range's whiteouts, in order.
    markers: Vec<Marker>,
    in_range: bool,
    /// The first layer of the range.
    first_range_layer: usize,
    /// The range's directory headers.
    dir_headers: HashMap<Pos, Header>,
    /// Per layer: paths written and their ancestors.
    upper: HashSet<BString>,
}

/// Keys of `map` at `p` or beneath it.
fn subtree<V>(map: &BTreeMap<BString, V>, p: &BStr) -> Vec<BString> {
    if p.is_empty() {
        return map.keys().filter(|k| !k.is_empty()).cloned().collect();
    }
    let mut out = Vec::new();
    if map.contains_key(p) {
        out.push(p.to_owned());
    }
    let prefix = path::join(p, b"");
    for (k, _) in map.range(prefix.clone()..) {
        if !k.starts_with(prefix.as_slice()) {
            break;
        }
        out.push(k.clone());
    }
    out
}

/// Direct children of `dir` in `map`.
fn children<V>(map: &BTreeMap<BString, V>, dir: &BStr) -> Vec<BString> {
    let prefix = if dir.is_empty() {
        BString::from("")
    } else {
        path::join(dir, b"")
    };
    let mut out = Vec::new();
    for (k, _) in map.range(prefix.clone()..) {
        if !k.starts_with(prefix.as_slice()) {
            break;
        }
        if k.len() > prefix.len() && !k[prefix.len()..].contains(&b'/') {
            out.push(k.clone());
        }
    }
    out
}

fn bad(pos: Pos, p: &BStr, why: impl std::fmt::Display) -> SurgeryError {
    SurgeryError::Layer {
        layer: pos.0,
        reason: format!("{}: {why}", crate::show::name(&p)),
    }
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

impl Replay {
    /// An empty tree (the root only).
    pub fn new() -> Replay {
        let mut tree = BTreeMap::new();
        tree.insert(
            BString::from(""),
            Node {
                dir: true,
                src: Src::Implicit,
                inode: 0,
                orig: true,
                symlink: false,
            },
        );
        Replay {
            tree,
            inodes: Vec::new(),
            base: BTreeMap::new(),
            base_inodes: 0,
            markers: Vec::new(),
            in_range: false,
            first_range_layer: 0,
            dir_headers: HashMap::new(),
            upper: HashSet::new(),
        }
    }

    /// The base layers are done (the range starts at layer `first`):
    /// what is in the tree now is the base.
    pub fn start_range(&mut self, first: usize) {
        self.first_range_layer = first;
        for n in self.tree.values_mut() {
            n.orig = true;
        }
        self.base = self.tree.iter().map(|(k, n)| (k.clone(), n.dir)).collect();
        self.base_inodes = self.inodes.len();
        self.in_range = true;
    }

    /// A new layer starts.
    pub fn start_layer(&mut self) {
        self.upper.clear();
    }

    fn remove_subtree(&mut self, p: &BStr) {
        for k in subtree(&self.tree, p) {
            self.tree.remove(&k);
        }
    }

    /// Remove the children of `dir` this layer has not written.
    ///
    /// In the range, a child this layer wrote beneath that still holds
    /// something of the base is refused: the extractor keeps that child
    /// whole, base content included, while the merged layer writes its
    /// whiteout first, which would remove that content.
    fn drop_lower(&mut self, pos: Pos, entry: &BStr, dir: &BStr) -> Result<(), SurgeryError> {
        for c in children(&self.tree, dir) {
            if !self.upper.contains(&c) {
                self.remove_subtree(c.as_ref());
            } else if self.in_range
                && subtree(&self.tree, c.as_ref())
                    .iter()
                    .any(|k| self.tree.get(k).is_some_and(|n| n.orig))
            {
                return Err(bad(
                    pos,
                    entry,
                    format!(
                        "a whiteout after this layer wrote beneath {}, which keeps content of the layers below the range; such a layer cannot be merged",
                        crate::show::name(&c)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn is_dir(&self, p: &BStr) -> bool {
        self.tree.get(p).is_some_and(|n| n.dir)
    }

    /// Refuse a path whose directory part goes through a symbolic link:
    /// the extractor would follow it, and the replay is by path.
    fn through_symlink(&self, pos: Pos, entry: &BStr, dir: &BStr) -> Result<(), SurgeryError> {
        for (_, _, a) in path::components(dir) {
            if self.tree.get(&a).is_some_and(|n| n.symlink) {
                return Err(bad(
                    pos,
                    entry,
                    format!(
                        "goes through the symbolic link {}; layers that write through links cannot be merged",
                        crate::show::name(&a)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Apply one header, as the extractor would.
    pub fn apply(&mut self, pos: Pos, hdr: &Header) -> Result<(), SurgeryError> {
        if hdr.kind == Kind::Global {
            return Ok(());
        }
        let p = path::clean(&hdr.path);
        let (dir, name) = path::split_parent(p.as_ref());
        self.through_symlink(pos, p.as_ref(), dir)?;
        if let Some(target) = name.strip_prefix(b".wh.") {
            let target = target.as_bstr();
            if !self.is_dir(dir) {
                return Ok(());
            }
            if target == ".wh..opq" {
                self.drop_lower(pos, p.as_ref(), dir)?;
                if self.in_range {
                    self.markers.push(Marker::Opaque(dir.to_owned()));
                }
                return Ok(());
            }
            if target.is_empty() || target == "." || target == ".." || target.contains(&b'/') {
                return Err(bad(
                    pos,
                    p.as_ref(),
                    format!("invalid whiteout target {target:?}"),
                ));
            }
            let full = path::join(dir, target);
            if self.upper.contains(&full) {
                if self.is_dir(full.as_ref()) {
                    self.drop_lower(pos, p.as_ref(), full.as_ref())?;
                }
            } else {
                self.remove_subtree(full.as_ref());
            }
            if self.in_range {
                self.markers.push(Marker::Whiteout(full));
            }
            return Ok(());
        }
        if p.is_empty() {
            if hdr.kind != Kind::Dir {
                return Err(bad(
                    pos,
                    b"/".as_bstr(),
                    "refusing to change the type of the root directory",
                ));
            }
            if let Some(root) = self.tree.get_mut(&p) {
                root.src = Src::Entry(pos);
            }
            if self.in_range {
                self.dir_headers.insert(pos, hdr.clone());
            }
            add_upper(&mut self.upper, p.as_ref());
            return Ok(());
        }
        if let Kind::Other(flag) = hdr.kind {
            return Err(bad(
                pos,
                p.as_ref(),
                format!("unknown typeflag {:?}", flag as char),
            ));
        }
        // missing parents are made; a parent that is not a directory is
        // replaced by one
        for (_, _, a) in path::components(dir) {
            match self.tree.get(&a) {
                Some(n) if n.dir => {}
                other => {
                    if other.is_some() {
                        self.tree.remove(&a);
                    }
                    self.tree.insert(
                        a,
                        Node {
                            dir: true,
                            src: Src::Implicit,
                            inode: 0,
                            orig: false,
                            symlink: false,
                        },
                    );
                }
            }
        }
        // clear the way: what is there goes, unless both are directories
        let existing = self.tree.get(&p).copied();
        let merge = matches!(existing, Some(n) if n.dir) && hdr.kind == Kind::Dir;
        if existing.is_some() && !merge {
            self.remove_subtree(p.as_ref());
        }
        match hdr.kind {
            Kind::Dir => {
                if self.in_range {
                    self.dir_headers.insert(pos, hdr.clone());
                }
                if let Some(n) = self.tree.get_mut(&p).filter(|_| merge) {
                    n.src = Src::Entry(pos);
                } else {
                    self.tree.insert(
                        p.clone(),
                        Node {
                            dir: true,
                            src: Src::Entry(pos),
                            inode: 0,
                            orig: false,
                            symlink: false,
                        },
                    );
                }
            }
            Kind::Link => {
                let target = path::clean(&hdr.link);
                if target.is_empty() {
                    return Err(bad(pos, p.as_ref(), "hardlink to the root directory"));
                }
                self.through_symlink(pos, p.as_ref(), path::split_parent(target.as_ref()).0)?;
                let node = match self.tree.get(&target) {
                    None => {
                        return Err(bad(
                            pos,
                            p.as_ref(),
                            format!("hardlink to {target}: no such file"),
                        ));
                    }
                    Some(n) if n.dir => {
                        return Err(bad(
                            pos,
                            p.as_ref(),
                            format!("hardlink to {target}: a directory"),
                        ));
                    }
                    Some(n) => *n,
                };
                self.tree.insert(
                    p.clone(),
                    Node {
                        dir: false,
                        src: Src::Entry(pos),
                        inode: node.inode,
                        orig: false,
                        symlink: node.symlink,
                    },
                );
            }
            _ => {
                self.inodes.push(pos);
                self.tree.insert(
                    p.clone(),
                    Node {
                        dir: false,
                        src: Src::Entry(pos),
                        inode: self.inodes.len() - 1,
                        orig: false,
                        symlink: hdr.kind == Kind::Symlink,
                    },
                );
            }
        }
        add_upper(&mut self.upper, p.as_ref());
        Ok(())
    }

    /// Whether the kept markers already remove what the base has at `p`:
    /// a whiteout of it or of a parent, or an opaque parent.
    fn covered(markers: &BTreeSet<Marker>, p: &BStr) -> bool {
        let mut a: &BStr = p;
        loop {
            if markers.contains(&Marker::Whiteout(a.to_owned())) {
                return true;
            }
            if a.is_empty() {
                return false;
            }
            let (parent, _) = path::split_parent(a);
            if markers.contains(&Marker::Opaque(parent.to_owned())) {
                return true;
            }
            a = parent;
        }
    }

    /// The plan of the merged layer.
    pub fn plan(mut self) -> Plan {
        let mut plan = Plan::default();
        // the range's whiteouts that hide something of the base
        for m in &self.markers {
            let keep = match m {
                Marker::Whiteout(p) => self.base.contains_key(p),
                Marker::Opaque(d) => {
                    self.base.get(d) == Some(&true) && !children(&self.base, d.as_ref()).is_empty()
                }
            };
            if keep {
                plan.markers.insert(m.clone());
            } else {
                plan.dropped_markers += 1;
            }
        }
        // a base directory replaced by a new one with no whiteout for it
        let mut synth = Vec::new();
        for (p, n) in &self.tree {
            if n.dir
                && !n.orig
                && !p.is_empty()
                && self.base.get(p) == Some(&true)
                && !Self::covered(&plan.markers, p.as_ref())
            {
                synth.push(Marker::Whiteout(p.clone()));
            }
        }
        plan.markers.extend(synth);

        // base objects still in place, by inode: the first path
        let mut anchors: HashMap<usize, BString> = HashMap::new();
        for (p, n) in &self.tree {
            if !n.dir && n.orig {
                anchors.entry(n.inode).or_insert_with(|| p.clone());
            }
        }
        let mut paths_of: BTreeMap<usize, Vec<BString>> = BTreeMap::new();
        for (p, n) in &self.tree {
            if n.dir {
                match n.src {
                    Src::Entry(pos) if self.in_range_pos(pos) => {
                        plan.dirs.push((p.clone(), self.dir_headers.remove(&pos)));
                    }
                    Src::Implicit if !n.orig => {
                        let prefix = path::join(p, b"");
                        let has_child = self
                            .tree
                            .range(prefix.clone()..)
                            .next()
                            .is_some_and(|(k, _)| k.starts_with(prefix.as_slice()));
                        if !has_child {
                            plan.dirs.push((p.clone(), None));
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if n.orig {
                continue;
            }
            if n.inode < self.base_inodes
                && let Some(anchor) = anchors.get(&n.inode)
            {
                plan.base_links.push((p.clone(), anchor.clone()));
                continue;
            }
            paths_of.entry(n.inode).or_default().push(p.clone());
        }
        for (inode, mut paths) in paths_of {
            // sorted already (tree order); the first carries the content
            let primary = paths.remove(0);
            plan.emits.insert(
                self.inodes[inode],
                Emit {
                    primary,
                    links: paths,
                },
            );
        }
        plan
    }

    /// Whether `pos` is in a range layer.
    fn in_range_pos(&self, pos: Pos) -> bool {
        self.in_range && pos.0 >= self.first_range_layer
    }
}
