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
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::parse::{Keywords, Spec};
use super::statcache::StatCache;
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

fn num<T: std::str::FromStr>(kw: &Keywords, k: &str) -> Option<Option<T>> {
    kw.get(k).map(|v| v.parse().ok())
}

impl<'a> Walker<'a> {
    /// Whether the entry at `host` differs from `kw`.
    fn modified(
        &mut self,
        host: &Path,
        kw: &Keywords,
        md: &std::fs::Metadata,
    ) -> Result<Option<&'static str>, DiffError> {
        let ty = type_name(md);
        if let Some(t) = kw.get("type")
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
        if let Some(m) = kw.get("mode")
            && u32::from_str_radix(m, 8).ok() != Some(self.modes.mode(host, md))
        {
            return Ok(Some("mode"));
        }
        if ty != "dir" && num::<u64>(kw, "size").is_some_and(|v| v != Some(md.size())) {
            return Ok(Some("size"));
        }
        if ty != "dir" && num::<u64>(kw, "nlink").is_some_and(|v| v != Some(md.nlink())) {
            return Ok(Some("nlink"));
        }
        if let Some(t) = kw.get("tar_time") {
            let secs = t.split('.').next().unwrap_or_default();
            if secs.parse::<i64>().ok() != Some(md.mtime()) {
                return Ok(Some("tar_time"));
            }
        }
        if let Some(t) = kw.get("time") {
            let (s, ns) = t.split_once('.').unwrap_or((t, "0"));
            if s.parse::<i64>().ok() != Some(md.mtime())
                || ns.parse::<i64>().ok() != Some(md.mtime_nsec())
            {
                return Ok(Some("time"));
            }
        }
        if ty == "link"
            && let Some(l) = kw.get("link")
        {
            let target = std::fs::read_link(host).map_err(err(host))?;
            if unvis(l).as_deref() != Some(target.as_os_str().as_bytes()) {
                return Ok(Some("link"));
            }
        }
        if (ty == "file" || ty == "dir") && self.spec.uses("xattr") {
            let want: BTreeMap<Vec<u8>, &str> = kw
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.strip_prefix("xattr.")?;
                    Some((unvis(name).unwrap_or_else(|| name.into()), v.as_str()))
                })
                .collect();
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
            && let Some(d) = kw.get("sha256digest")
        {
            self.stats.hashed += 1;
            let h = sha256_file(host).map_err(err(host))?;
            if hex::encode(h) != *d {
                return Ok(Some("sha256digest"));
            }
        }
        Ok(None)
    }

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
        self.stats.walked += 1;
        if !md.is_dir() && md.nlink() > 1 {
            self.links
                .entry((md.dev(), md.ino()))
                .or_default()
                .push(rel.to_vec());
        }
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
    let in_delta: HashSet<Vec<u8>> = out.iter().map(|d| d.path.clone()).collect();
    let mut extra_links: Vec<Delta> = Vec::new();
    for group in links.values() {
        if group.len() > 1 && group.iter().any(|p| in_delta.contains(p)) {
            for p in group.iter().filter(|p| !in_delta.contains(*p)) {
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
    out.sort_by(|a, b| tree_order(&a.path, &b.path));
    Ok((out, stats))
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
