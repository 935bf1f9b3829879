//! Comparing a root filesystem with its manifest: what `repack` puts in the
//! new layer.
//!
//! The tree is walked in byte order of its paths. An entry whose inode,
//! size, mtime and ctime match the bundle's stat cache is unchanged without
//! further work (ctime cannot be set from user space, and every change to
//! content, mode, owner, xattrs or links moves it). Otherwise the manifest's
//! keywords are compared one by one, cheapest first, and a regular file is
//! hashed only when everything else matches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::parse::{EntryKeywords, Event, Keywords, ParseError, Reader, Spec};
use super::statcache::{StatCache, StatCacheStream};
use super::vis::unvis;
use super::{list_xattrs, sha256_file, type_name};

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaKind {
    /// In the manifest, gone from the tree.
    Missing,
    /// New in the tree.
    Extra,
    /// Present in both, with a keyword (possibly the type) changed.
    Modified,
}

/// One difference between the manifest and the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    /// Path relative to the root (`""` is the root itself).
    pub path: Vec<u8>,
    /// What changed.
    pub kind: DeltaKind,
    /// For `Modified`: the first keyword found to differ (`type`, `uid`,
    /// `gid`, `mode`, `size`, `nlink`, `tar_time`, `time`, `link`,
    /// `xattr`, `sha256digest`); `None` for a path reported only because
    /// it shares its inode with a changed one, and for the other kinds.
    pub keyword: Option<&'static str>,
    /// For `Modified`: whether a directory became something else (its old
    /// children are then implicitly gone).
    pub was_dir_now_not: bool,
}

/// Errors while comparing.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", crate::show::name(path))]
pub struct DiffError {
    /// The path on the host.
    pub path: String,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> DiffError + '_ {
    move |source| DiffError {
        path: path.display().to_string(),
        source,
    }
}

/// What the comparison did, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiffStats {
    /// Entries walked.
    pub walked: usize,
    /// Entries found unchanged through the stat cache.
    pub cache_hits: usize,
    /// Files hashed.
    pub hashed: usize,
}

struct Walker<'a> {
    /// Directories opened up for an unprivileged owner during the walk.
    modes: &'a crate::fs::unpriv::Modes,
    spec: &'a Spec,
    cache: Option<&'a StatCache>,
    seen: HashSet<&'a [u8]>,
    out: Vec<Delta>,
    stats: DiffStats,
    /// Paths of every inode with more than one link, by (device, inode).
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
}

/// An entry's keywords: a parsed map (in-memory comparison) or the entry as
/// read (streaming, looked up on demand).
trait Lookup {
    /// The value of keyword `k`.
    fn value(&self, k: &str) -> Option<&str>;
    /// The `xattr.NAME` keywords: NAME (unvis-decoded) to value.
    fn xattrs(&self) -> BTreeMap<Vec<u8>, &str>;
}

fn xattr_pair<'v>(k: &str, v: &'v str) -> Option<(Vec<u8>, &'v str)> {
    let name = k.strip_prefix("xattr.")?;
    Some((unvis(name).unwrap_or_else(|| name.into()), v))
}

impl Lookup for Keywords {
    fn value(&self, k: &str) -> Option<&str> {
        self.get(k).map(String::as_str)
    }
    fn xattrs(&self) -> BTreeMap<Vec<u8>, &str> {
        self.iter().filter_map(|(k, v)| xattr_pair(k, v)).collect()
    }
}

impl Lookup for EntryKeywords {
    fn value(&self, k: &str) -> Option<&str> {
        self.get(k)
    }
    fn xattrs(&self) -> BTreeMap<Vec<u8>, &str> {
        self.borrowed()
            .into_iter()
            .filter_map(|(k, v)| xattr_pair(k, v))
            .collect()
    }
}

fn num<T: std::str::FromStr>(kw: &impl Lookup, k: &str) -> Option<Option<T>> {
    kw.value(k).map(|v| v.parse().ok())
}

impl<'a> Walker<'a> {
    /// Whether the entry at `host` differs from `kw`.
    fn modified(
        &mut self,
        host: &Path,
        kw: &Keywords,
        md: &std::fs::Metadata,
    ) -> Result<Option<&'static str>, DiffError> {
        let xattrs = self.spec.uses("xattr");
        modified(self.modes, xattrs, &mut self.stats, host, kw, md)
    }
}

/// Whether the entry at `host` (metadata `md`) differs from the manifest's
/// keywords `kw`: the first keyword found to differ, cheapest first (a
/// file is hashed only when all else matches). `xattrs`: whether the
/// manifest records xattrs.
fn modified(
    modes: &crate::fs::unpriv::Modes,
    xattrs: bool,
    stats: &mut DiffStats,
    host: &Path,
    kw: &impl Lookup,
    md: &std::fs::Metadata,
) -> Result<Option<&'static str>, DiffError> {
    let ty = type_name(md);
    if let Some(t) = kw.value("type")
        && t != ty
    {
        return Ok(Some("type"));
    }
    if num::<u32>(kw, "uid").is_some_and(|v| v != Some(md.uid())) {
        return Ok(Some("uid"));
    }
    if num::<u32>(kw, "gid").is_some_and(|v| v != Some(md.gid())) {
        return Ok(Some("gid"));
    }
    if let Some(m) = kw.value("mode")
        && u32::from_str_radix(m, 8).ok() != Some(modes.mode(host, md))
    {
        return Ok(Some("mode"));
    }
    if ty != "dir" && num::<u64>(kw, "size").is_some_and(|v| v != Some(md.size())) {
        return Ok(Some("size"));
    }
    if ty != "dir" && num::<u64>(kw, "nlink").is_some_and(|v| v != Some(md.nlink())) {
        return Ok(Some("nlink"));
    }
    if let Some(t) = kw.value("tar_time") {
        let secs = t.split('.').next().unwrap_or_default();
        if secs.parse::<i64>().ok() != Some(md.mtime()) {
            return Ok(Some("tar_time"));
        }
    }
    if let Some(t) = kw.value("time") {
        let (s, ns) = t.split_once('.').unwrap_or((t, "0"));
        if s.parse::<i64>().ok() != Some(md.mtime())
            || ns.parse::<i64>().ok() != Some(md.mtime_nsec())
        {
            return Ok(Some("time"));
        }
    }
    if ty == "link"
        && let Some(l) = kw.value("link")
    {
        let target = std::fs::read_link(host).map_err(err(host))?;
        if unvis(l).as_deref() != Some(target.as_os_str().as_bytes()) {
            return Ok(Some("link"));
        }
    }
    if (ty == "file" || ty == "dir") && xattrs {
        let want = kw.xattrs();
        let have =
            crate::fs::unpriv::with_read(host, md, || list_xattrs(host)).map_err(err(host))?;
        if have.len() != want.len()
            || have.iter().any(|(k, v)| {
                want.get(k.as_bytes()).copied()
                    != Some(base64::engine::general_purpose::STANDARD.encode(v).as_str())
            })
        {
            return Ok(Some("xattr"));
        }
    }
    if ty == "file"
        && let Some(d) = kw.value("sha256digest")
    {
        stats.hashed += 1;
        let h = sha256_file(host).map_err(err(host))?;
        if hex::encode(h) != d {
            return Ok(Some("sha256digest"));
        }
    }
    Ok(None)
}

impl<'a> Walker<'a> {
    /// Visit the tree at `root` in path order (a parent before its
    /// children, names sorted by bytes), iteratively: trees can be
    /// thousands of directories deep.
    fn walk(&mut self, root: &Path) -> Result<(), DiffError> {
        let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
        while let Some((host, rel)) = stack.pop() {
            if let Some(mut names) = self.visit(&host, &rel)? {
                names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
                for n in names {
                    let mut child = rel.clone();
                    if !child.is_empty() {
                        child.push(b'/');
                    }
                    child.extend_from_slice(n.as_bytes());
                    stack.push((host.join(&n), child));
                }
            }
        }
        Ok(())
    }

    /// Compare one entry; a directory's names are returned for the walk.
    fn visit(
        &mut self,
        host: &Path,
        rel: &[u8],
    ) -> Result<Option<Vec<std::ffi::OsString>>, DiffError> {
        let md = std::fs::symlink_metadata(host).map_err(err(host))?;
        walked(&mut self.stats, &mut self.links, rel, &md);
        match self.spec.entries.get_key_value(rel) {
            None => self.out.push(Delta {
                path: rel.to_vec(),
                kind: DeltaKind::Extra,
                keyword: None,
                was_dir_now_not: false,
            }),
            Some((key, kw)) => {
                self.seen.insert(key.as_slice());
                let hit = self.cache.is_some_and(|c| c.unchanged(rel, &md));
                if hit {
                    self.stats.cache_hits += 1;
                } else if let Some(keyword) = self.modified(host, kw, &md)? {
                    self.out.push(Delta {
                        path: rel.to_vec(),
                        kind: DeltaKind::Modified,
                        keyword: Some(keyword),
                        was_dir_now_not: kw.get("type").map(String::as_str) == Some("dir")
                            && !md.is_dir(),
                    });
                }
            }
        }
        if !md.is_dir() {
            return Ok(None);
        }
        let names = std::fs::read_dir(host)
            .map_err(err(host))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(err(host))?;
        Ok(Some(names))
    }
}

/// Compare the tree at `root` with `spec`. Deltas come sorted by path (a
/// parent before its children); `Missing` entries are all reported (see
/// [`simplify`]). When a new or changed entry shares its inode with other
/// paths, those are reported as modified too, so the layer can carry the
/// whole hardlink group (a link count alone may not have moved: one link
/// removed, another added).
pub fn compare(
    root: &Path,
    spec: &Spec,
    cache: Option<&StatCache>,
) -> Result<(Vec<Delta>, DiffStats), DiffError> {
    let grant = crate::fs::unpriv::TreeGrant::new(root).map_err(err(root))?;
    compare_granted(root, spec, cache, &grant)
}

/// [`compare`] within a [`TreeGrant`](crate::fs::unpriv::TreeGrant)
/// the caller holds on `root` (and keeps for the layer it writes next, so
/// the tree is opened up once).
pub fn compare_granted(
    root: &Path,
    spec: &Spec,
    cache: Option<&StatCache>,
    grant: &crate::fs::unpriv::TreeGrant,
) -> Result<(Vec<Delta>, DiffStats), DiffError> {
    let mut w = Walker {
        modes: grant.modes(),
        spec,
        cache,
        seen: HashSet::with_capacity(spec.entries.len()),
        out: Vec::new(),
        stats: DiffStats::default(),
        links: HashMap::new(),
    };
    w.walk(root)?;
    let Walker {
        seen,
        mut out,
        stats,
        links,
        ..
    } = w;
    for k in spec.entries.keys() {
        if !seen.contains(k.as_slice()) {
            out.push(Delta {
                path: k.clone(),
                kind: DeltaKind::Missing,
                keyword: None,
                was_dir_now_not: false,
            });
        }
    }
    let out = finish(out, links);
    Ok((out, stats))
}

/// The hardlink groups touched by a change, whole, added to `out`; then
/// `out` in [`tree_order`].
/// Count entry `rel` as walked (its status `md`), noting its path under
/// its inode when it has other links.
fn walked(
    stats: &mut DiffStats,
    links: &mut HashMap<(u64, u64), Vec<Vec<u8>>>,
    rel: &[u8],
    md: &std::fs::Metadata,
) {
    stats.walked += 1;
    if !md.is_dir() && md.nlink() > 1 {
        links
            .entry((md.dev(), md.ino()))
            .or_default()
            .push(rel.to_vec());
    }
}

fn finish(mut out: Vec<Delta>, links: HashMap<(u64, u64), Vec<Vec<u8>>>) -> Vec<Delta> {
    let in_delta: HashSet<&[u8]> = out.iter().map(|d| d.path.as_slice()).collect();
    let mut extra_links: Vec<Delta> = Vec::new();
    for group in links.values() {
        if group.len() > 1 && group.iter().any(|p| in_delta.contains(p.as_slice())) {
            for p in group.iter().filter(|p| !in_delta.contains(p.as_slice())) {
                extra_links.push(Delta {
                    path: p.clone(),
                    kind: DeltaKind::Modified,
                    keyword: None,
                    was_dir_now_not: false,
                });
            }
        }
    }
    out.extend(extra_links);
    out.sort_by(|a, b| tree_order(&a.path, &b.path));
    out
}

/// Errors of [`compare_streaming`].
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the tree failed.
    #[error(transparent)]
    Diff(#[from] DiffError),
    /// The manifest is malformed.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The manifest is not in the order go-mtree and rumoci write (per
    /// directory: its entry, its other children by name, then each
    /// subdirectory's block by name; no full paths): compare it in memory
    /// with [`compare`] instead.
    #[error("manifest not in walk order: {0}")]
    Unordered(&'static str),
}

fn is_dir_kw(kw: &EntryKeywords) -> bool {
    kw.is_dir()
}

/// A directory present in both the manifest and the tree, whose manifest
/// block is being read.
struct Frame {
    rel: Vec<u8>,
    /// Tree subdirectories not yet matched with a manifest block, sorted,
    /// the next one last.
    dirs: Vec<Vec<u8>>,
    /// Of the tree subdirectories, those the manifest lists as something
    /// else (already reported as modified): their children are new.
    retyped: Vec<Vec<u8>>,
    /// Tree non-directories the manifest does not list as such: new, unless
    /// a block of that name comes (a directory became something else).
    pending: std::collections::BTreeSet<Vec<u8>>,
    /// The manifest's non-directory names here, sorted (a block may not
    /// reuse one).
    files: Vec<Vec<u8>>,
    /// The last block opened here (blocks come sorted).
    last_block: Option<Vec<u8>>,
}

struct Streamer<'a, R: std::io::BufRead, C: std::io::BufRead> {
    root: &'a Path,
    modes: &'a crate::fs::unpriv::Modes,
    xattrs: bool,
    events: Reader<R>,
    peeked: Option<Event>,
    cache: Option<StatCacheStream<C>>,
    out: Vec<Delta>,
    stats: DiffStats,
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
}

fn child(rel: &[u8], name: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(rel.len() + 1 + name.len());
    c.extend_from_slice(rel);
    if !rel.is_empty() {
        c.push(b'/');
    }
    c.extend_from_slice(name);
    c
}

/// The name of `path` if it is a child of `dir`.
fn name_in<'p>(dir: &[u8], path: &'p [u8]) -> Option<&'p [u8]> {
    if dir.is_empty() {
        (!path.is_empty() && !path.contains(&b'/')).then_some(path)
    } else {
        let rest = path.strip_prefix(dir)?.strip_prefix(b"/")?;
        (!rest.is_empty() && !rest.contains(&b'/')).then_some(rest)
    }
}

impl<R: std::io::BufRead, C: std::io::BufRead> Streamer<'_, R, C> {
    fn peek(&mut self) -> Result<Option<&Event>, ParseError> {
        if self.peeked.is_none() {
            self.peeked = self.events.next_event()?;
        }
        Ok(self.peeked.as_ref())
    }

    fn next(&mut self) -> Result<Option<Event>, ParseError> {
        match self.peeked.take() {
            Some(e) => Ok(Some(e)),
            None => self.events.next_event(),
        }
    }

    fn host(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(std::ffi::OsStr::from_bytes(rel))
        }
    }

    /// Advance the stat cache past manifest entry `rel` (every entry, in
    /// the manifest's order); whether it is unchanged from the record.
    fn cached(&mut self, rel: &[u8], md: Option<&std::fs::Metadata>) -> bool {
        self.cache.as_mut().is_some_and(|c| c.unchanged(rel, md))
    }

    fn stat(&mut self, host: &Path, rel: &[u8]) -> Result<std::fs::Metadata, DiffError> {
        let md = std::fs::symlink_metadata(host).map_err(err(host))?;
        walked(&mut self.stats, &mut self.links, rel, &md);
        Ok(md)
    }

    /// Compare manifest entry `rel` (`kw`) with the tree's (`md`).
    fn pair(
        &mut self,
        host: &Path,
        rel: &[u8],
        kw: &EntryKeywords,
        md: &std::fs::Metadata,
    ) -> Result<(), DiffError> {
        if self.cached(rel, Some(md)) {
            self.stats.cache_hits += 1;
            return Ok(());
        }
        if let Some(keyword) = modified(self.modes, self.xattrs, &mut self.stats, host, kw, md)? {
            self.out.push(Delta {
                path: rel.to_vec(),
                kind: DeltaKind::Modified,
                keyword: Some(keyword),
                was_dir_now_not: is_dir_kw(kw) && !md.is_dir(),
            });
        }
        Ok(())
    }

    fn delta(&mut self, rel: Vec<u8>, kind: DeltaKind) {
        self.out.push(Delta {
            path: rel,
            kind,
            keyword: None,
            was_dir_now_not: false,
        });
    }

    /// A tree entry the manifest does not have (and, for a directory,
    /// everything beneath it); `with_self: false` for a directory already
    /// reported: only its children are new.
    fn extra_tree(&mut self, rel: Vec<u8>, with_self: bool) -> Result<(), DiffError> {
        let mut stack = vec![(rel, with_self)];
        while let Some((rel, with_self)) = stack.pop() {
            let host = self.host(&rel);
            let is_dir = if with_self {
                let md = self.stat(&host, &rel)?;
                self.delta(rel.clone(), DeltaKind::Extra);
                md.is_dir()
            } else {
                true
            };
            if is_dir {
                for e in std::fs::read_dir(&host).map_err(err(&host))? {
                    let e = e.map_err(err(&host))?;
                    stack.push((child(&rel, e.file_name().as_bytes()), true));
                }
            }
        }
        Ok(())
    }

    /// Consume the rest of the block of a directory whose entry was just
    /// read (its children are gone with it), keeping the cache in step.
    fn skip_block(&mut self) -> Result<(), StreamError> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next()? {
                None => break,
                Some(Event::Up) => depth -= 1,
                Some(Event::Entry {
                    path,
                    keywords,
                    relative,
                }) => {
                    if !relative {
                        return Err(StreamError::Unordered("an entry named by its full path"));
                    }
                    self.cached(&path, None);
                    if is_dir_kw(&keywords) {
                        depth += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Start the directory `rel` (in both, its entry compared): list it,
    /// and compare its non-directory entries, which the manifest gives
    /// first.
    fn open_dir(&mut self, rel: Vec<u8>) -> Result<Frame, StreamError> {
        let host = self.host(&rel);
        let mut t_files = Vec::new();
        let mut dirs = Vec::new();
        for e in std::fs::read_dir(&host).map_err(err(&host))? {
            let e = e.map_err(err(&host))?;
            let name = e.file_name().into_vec();
            if e.file_type().map_err(err(&host))?.is_dir() {
                dirs.push(name);
            } else {
                // stat relative to the open directory (not its full path)
                let md = e.metadata().map_err(err(&e.path()))?;
                t_files.push((name, md));
            }
        }
        t_files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        dirs.sort_unstable();
        let mut frame = Frame {
            rel,
            dirs: Vec::new(),
            retyped: Vec::new(),
            pending: Default::default(),
            files: Vec::new(),
            last_block: None,
        };
        let mut t_files = t_files.into_iter().peekable();
        loop {
            match self.peek()? {
                Some(Event::Entry {
                    relative: true,
                    keywords,
                    ..
                }) if !is_dir_kw(keywords) => {}
                Some(Event::Entry {
                    relative: false, ..
                }) => return Err(StreamError::Unordered("an entry named by its full path")),
                _ => break,
            }
            let Some(Event::Entry { path, keywords, .. }) = self.next()? else {
                break;
            };
            let Some(name) = name_in(&frame.rel, &path) else {
                return Err(StreamError::Unordered("an entry outside its directory"));
            };
            if frame.files.last().is_some_and(|l| l.as_slice() >= name) {
                return Err(StreamError::Unordered("entries not sorted by name"));
            }
            frame.files.push(name.to_vec());
            while let Some((t, _)) = t_files.next_if(|t| t.0.as_slice() < name) {
                frame.pending.insert(t);
            }
            if let Some((_, md)) = t_files.next_if(|t| t.0.as_slice() == name) {
                let h = self.host(&path);
                walked(&mut self.stats, &mut self.links, &path, &md);
                self.pair(&h, &path, &keywords, &md)?;
            } else if dirs.binary_search_by(|d| d.as_slice().cmp(name)).is_ok() {
                // a non-directory became a directory
                let h = self.host(&path);
                let md = self.stat(&h, &path)?;
                self.pair(&h, &path, &keywords, &md)?;
                frame.retyped.push(name.to_vec());
            } else {
                self.cached(&path, None);
                self.delta(path, DeltaKind::Missing);
            }
        }
        frame.pending.extend(t_files.map(|(t, _)| t));
        dirs.reverse();
        frame.dirs = dirs;
        Ok(frame)
    }

    /// Tree subdirectories of `frame` that sort before `name` (all with
    /// `None`) have no manifest block: new trees.
    fn new_dirs_before(&mut self, frame: &mut Frame, name: Option<&[u8]>) -> Result<(), DiffError> {
        while let Some(d) = frame.dirs.pop_if(|d| name.is_none_or(|n| d.as_slice() < n)) {
            let rel = child(&frame.rel, &d);
            let retyped = frame.retyped.binary_search(&d).is_ok();
            self.extra_tree(rel, !retyped)?;
        }
        Ok(())
    }

    /// The end of `frame`'s block: what the tree has beyond it is new.
    fn close(&mut self, mut frame: Frame) -> Result<(), DiffError> {
        self.new_dirs_before(&mut frame, None)?;
        for name in std::mem::take(&mut frame.pending) {
            self.extra_tree(child(&frame.rel, &name), true)?;
        }
        Ok(())
    }

    fn run(&mut self) -> Result<(), StreamError> {
        let root_kw = match self.next()? {
            Some(Event::Entry {
                path,
                keywords,
                relative: true,
            }) if path.is_empty() && is_dir_kw(&keywords) => keywords,
            _ => {
                return Err(StreamError::Unordered(
                    "the manifest does not start at the root",
                ));
            }
        };
        self.xattrs = self.events.uses("xattr");
        let host = self.root.to_path_buf();
        let md = self.stat(&host, b"")?;
        if !md.is_dir() {
            return Err(StreamError::Unordered("the root is not a directory"));
        }
        self.pair(&host, b"", &root_kw, &md)?;
        let mut stack = vec![self.open_dir(Vec::new())?];
        while let Some(mut top) = stack.pop() {
            let ev = self.next()?;
            let (path, keywords) = match ev {
                None | Some(Event::Up) => {
                    self.close(top)?;
                    continue;
                }
                Some(Event::Entry {
                    relative: false, ..
                }) => return Err(StreamError::Unordered("an entry named by its full path")),
                Some(Event::Entry { keywords, .. }) if !is_dir_kw(&keywords) => {
                    return Err(StreamError::Unordered("a file after a subdirectory"));
                }
                Some(Event::Entry { path, keywords, .. }) => (path, keywords),
            };
            let Some(name) = name_in(&top.rel, &path) else {
                return Err(StreamError::Unordered("an entry outside its directory"));
            };
            if top.last_block.as_deref().is_some_and(|l| l >= name)
                || top
                    .files
                    .binary_search_by(|f| f.as_slice().cmp(name))
                    .is_ok()
            {
                return Err(StreamError::Unordered("entries not sorted by name"));
            }
            let name = name.to_vec();
            self.new_dirs_before(&mut top, Some(&name))?;
            let host = self.host(&path);
            if top.dirs.pop_if(|d| *d == name).is_some() {
                let md = self.stat(&host, &path)?;
                self.pair(&host, &path, &keywords, &md)?;
                top.last_block = Some(name);
                stack.push(top);
                if md.is_dir() {
                    let f = self.open_dir(path)?;
                    stack.push(f);
                } else {
                    self.skip_block()?;
                }
                continue;
            }
            if top.pending.remove(&name) {
                // a directory became something else
                let md = self.stat(&host, &path)?;
                self.pair(&host, &path, &keywords, &md)?;
            } else {
                self.cached(&path, None);
                self.delta(path, DeltaKind::Missing);
            }
            self.skip_block()?;
            top.last_block = Some(name);
            stack.push(top);
        }
        if self.next()?.is_some() {
            return Err(StreamError::Unordered("entries after the root's block"));
        }
        Ok(())
    }
}

/// [`compare_granted`] reading the manifest from `manifest` as it goes and
/// the stat cache (if any) from `cache` alongside it, holding neither
/// whole: memory grows with the depth of the tree and the width of its
/// directories, not with its size. The manifest must be in the order
/// go-mtree and rumoci write ([`StreamError::Unordered`] otherwise: use
/// [`compare`]). Deltas are those of [`compare`] less the `Missing` ones
/// beneath a missing directory or a directory that became something else
/// ([`simplify`] drops them anyway).
pub fn compare_streaming<R: std::io::BufRead, C: std::io::BufRead>(
    root: &Path,
    manifest: R,
    cache: Option<StatCacheStream<C>>,
    grant: &crate::fs::unpriv::TreeGrant,
) -> Result<(Vec<Delta>, DiffStats), StreamError> {
    let mut s = Streamer {
        root,
        modes: grant.modes(),
        xattrs: true,
        events: Reader::new(manifest),
        peeked: None,
        cache,
        out: Vec::new(),
        stats: DiffStats::default(),
        links: HashMap::new(),
    };
    s.run()?;
    Ok((finish(s.out, s.links), s.stats))
}

/// Depth-first tree order: bytes compared with `/` below every other byte,
/// so a directory's whole subtree follows it without a gap (`a`, `a/x`,
/// `a-b`; plain byte order would put `a-b` between `a` and `a/x`).
pub fn tree_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    // '/' below every other byte, NUL included (so distinct paths never
    // compare equal, whatever bytes a manifest holds)
    let key = |&c: &u8| if c == b'/' { 0u16 } else { u16::from(c) + 1 };
    a.iter().map(key).cmp(b.iter().map(key))
}

fn is_under(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty() || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

/// Drop `Missing` entries that are already gone with an ancestor: beneath a
/// missing directory, or beneath a directory replaced by something else.
/// A deleted tree then costs one whiteout. `deltas` must be in
/// [`tree_order`], as [`compare`] returns them.
pub fn simplify(deltas: Vec<Delta>) -> Vec<Delta> {
    let mut out: Vec<Delta> = Vec::with_capacity(deltas.len());
    // deltas are in tree order, so a subtree follows its root without a gap
    let mut gone: Option<Vec<u8>> = None;
    for d in deltas {
        if let Some(g) = &gone {
            if is_under(&d.path, g) {
                if d.kind == DeltaKind::Missing {
                    continue;
                }
            } else {
                gone = None;
            }
        }
        if gone.is_none()
            && (d.kind == DeltaKind::Missing || d.was_dir_now_not)
            && !d.path.is_empty()
        {
            gone = Some(d.path.clone());
        }
        out.push(d);
    }
    out
}

/// Drop deltas at or beneath any of `masks` (paths relative to the root,
/// lexical match, as `umoci repack --mask-path`).
pub fn mask(deltas: Vec<Delta>, masks: &[Vec<u8>]) -> Vec<Delta> {
    deltas
        .into_iter()
        .filter(|d| {
            !masks
                .iter()
                .any(|m| d.path == *m || (!m.is_empty() && is_under(&d.path, m)))
        })
        .collect()
}

impl crate::mtree::diff::DiffError {
    /// What kind of failure this is (that of the I/O error).
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::of_io(&self.source)
    }
}

rumoci_core::wraps!(crate::mtree::diff::DiffError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_order_keeps_subtrees_together_and_never_ties() {
        use std::cmp::Ordering::*;
        assert_eq!(tree_order(b"a", b"a/x"), Less);
        assert_eq!(tree_order(b"a/x", b"a-b"), Less);
        assert_eq!(tree_order(b"a/x", b"a.b"), Less);
        // NUL is not '/': distinct paths never compare equal (found by fuzzing)
        assert_eq!(tree_order(b"\0\0\0\0\0", b"\0\0\0\0/"), Greater);
        assert_eq!(tree_order(b"ab", b"ab"), Equal);
    }

    fn d(p: &str, kind: DeltaKind, was_dir_now_not: bool) -> Delta {
        Delta {
            path: p.as_bytes().to_vec(),
            kind,
            keyword: None,
            was_dir_now_not,
        }
    }

    #[test]
    fn simplify_keeps_only_topmost_deletions() {
        use DeltaKind::*;
        let v = simplify(vec![
            d("a", Missing, false),
            d("a/b", Missing, false),
            d("a/b/c", Missing, false),
            d("a-b", Missing, false),
            d("f", Modified, true),
            d("f/x", Missing, false),
            d("g", Modified, false),
            d("g/x", Missing, false),
            d("g/y", Extra, false),
        ]);
        let got: Vec<_> = v.iter().map(|d| String::from_utf8_lossy(&d.path)).collect();
        assert_eq!(got, ["a", "a-b", "f", "g", "g/x", "g/y"]);
    }

    #[test]
    fn a_sibling_sorting_between_bytes_does_not_split_a_deleted_tree() {
        use DeltaKind::*;
        let mut v = vec![
            d("a", Missing, false),
            d("a/x", Missing, false),
            d("a-b", Modified, false),
        ];
        v.sort_by(|x, y| tree_order(&x.path, &y.path));
        let got: Vec<_> = simplify(v)
            .iter()
            .map(|d| String::from_utf8_lossy(&d.path).into_owned())
            .collect();
        assert_eq!(got, ["a", "a-b"]);
    }

    /// The streamed comparison finds what the in-memory one finds (after
    /// [`simplify`]), through every kind of change, with and without the
    /// stat cache.
    #[test]
    fn streaming_matches_in_memory() {
        use std::fs;
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path().join("root");
        let mk = |p: &str| fs::create_dir_all(root.join(p)).expect("mkdir");
        let put = |p: &str, d: &str| fs::write(root.join(p), d).expect("write");
        for d in ["a/sub", "c", "e/deep/er", "keep/k"] {
            mk(d);
        }
        for (f, d) in [
            ("a/f1", "1"),
            ("a/f2", "2"),
            ("a/sub/x", "x"),
            ("b", "b"),
            ("c/y", "y"),
            ("d", "dd"),
            ("e/deep/er/z", "z"),
            ("e/f", "f"),
            ("keep/k/same", "s"),
            ("h1", "h"),
        ] {
            put(f, d);
        }
        fs::hard_link(root.join("h1"), root.join("h2")).expect("link");
        std::os::unix::fs::symlink("a/f1", root.join("sym")).expect("symlink");
        // older than the racy margin, so the cache records entries
        std::thread::sleep(std::time::Duration::from_millis(120));
        let header = super::super::Header {
            user: "u".into(),
            machine: "m".into(),
            tree: "t".into(),
            date: "d".into(),
        };
        let mut manifest = Vec::new();
        let mut cache = Vec::new();
        super::super::write_manifest(
            &root,
            &header,
            &BTreeMap::new(),
            &mut manifest,
            Some(&mut cache),
        )
        .expect("manifest");
        fs::remove_file(root.join("a/f1")).expect("rm");
        put("a/f0", "0");
        put("a/f3", "3");
        fs::remove_file(root.join("b")).expect("rm");
        mk("b");
        put("b/z", "z");
        fs::remove_dir_all(root.join("c")).expect("rm");
        put("c", "now a file");
        fs::remove_dir_all(root.join("e")).expect("rm");
        mk("n/m");
        put("n/m/q", "q");
        put("d", "DD");
        put("zz", "new");
        fs::remove_file(root.join("h2")).expect("rm");
        fs::hard_link(root.join("h1"), root.join("h3")).expect("link");
        let grant = crate::fs::unpriv::TreeGrant::new(&root).expect("grant");
        let spec = super::super::parse::parse(&manifest[..]).expect("parse");
        let sc = StatCache::read(&cache[..]).expect("read").expect("valid");
        for with_cache in [false, true] {
            let (mem, _) =
                compare_granted(&root, &spec, with_cache.then_some(&sc), &grant).expect("compare");
            let stream_cache = with_cache.then(|| {
                StatCacheStream::new(&cache[..])
                    .expect("read")
                    .expect("valid")
            });
            let (streamed, stats) =
                compare_streaming(&root, &manifest[..], stream_cache, &grant).expect("stream");
            let show = |v: Vec<Delta>| -> Vec<String> {
                v.iter()
                    .map(|d| {
                        format!(
                            "{} {:?} {:?} {}",
                            String::from_utf8_lossy(&d.path),
                            d.kind,
                            d.keyword,
                            d.was_dir_now_not
                        )
                    })
                    .collect()
            };
            assert_eq!(
                show(simplify(streamed)),
                show(simplify(mem)),
                "cache {with_cache}"
            );
            assert_eq!(stats.cache_hits > 0, with_cache);
        }
        // a manifest naming entries by full path is not streamed
        let full = b". type=dir\n./a/f2 type=file\n..\n";
        assert!(matches!(
            compare_streaming(&root, &full[..], None::<StatCacheStream<&[u8]>>, &grant),
            Err(StreamError::Unordered(_))
        ));
        let unsorted = b". type=dir\n    zz type=file\n    d type=file\n..\n";
        assert!(matches!(
            compare_streaming(&root, &unsorted[..], None::<StatCacheStream<&[u8]>>, &grant),
            Err(StreamError::Unordered(_))
        ));
    }

    #[test]
    fn mask_is_lexical() {
        use DeltaKind::*;
        let v = mask(
            vec![
                d("var", Modified, false),
                d("var/cache", Extra, false),
                d("var/cache/x", Extra, false),
                d("var/cachex", Extra, false),
            ],
            &[b"var/cache".to_vec()],
        );
        assert_eq!(v.len(), 2);
    }
}
