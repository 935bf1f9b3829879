//! The mtree manifest parser never panics, and what it accepts can be
//! compared with a real (small, fixed) tree: `compare`, `simplify` and
//! `mask` never panic and keep their documented invariants (deltas in
//! tree order, each path once; `Missing` exactly for manifest entries absent
//! from the tree; `simplify` only drops `Missing` entries; `mask` drops
//! everything at or beneath a mask).
#![no_main]

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rumoci::mtree::diff::{self, DeltaKind};
use rumoci::mtree::parse;

struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Every path of the tree, relative (`""` is the root).
    paths: BTreeSet<Vec<u8>>,
}

#[path = "scratch.rs"]
mod scratch_dir;

fn scratch() -> &'static Path {
    scratch_dir::scratch(PREFIX)
}

/// Scratch directories are named `PREFIX<pid>-<random>`.
const PREFIX: &str = "rumoci-fuzz-mtree-";

fn prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

fn collect(host: &Path, rel: &[u8], out: &mut BTreeSet<Vec<u8>>) {
    out.insert(rel.to_vec());
    let md = std::fs::symlink_metadata(host).expect("lstat fixture");
    if md.is_dir() {
        for e in std::fs::read_dir(host).expect("read fixture") {
            let n = e.expect("fixture entry").file_name();
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(n.as_bytes());
            collect(&host.join(&n), &child, out);
        }
    }
}

/// The fixed tree: created once per process, never modified.
fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix(&prefix())
            .tempdir_in(scratch())
            .expect("tempdir");
        let root = dir.path().join("rootfs");
        let mk = |p: &str| std::fs::create_dir(root.join(p)).expect("mkdir");
        let wr = |p: &str, c: &str| std::fs::write(root.join(p), c).expect("write");
        std::fs::create_dir(&root).expect("mkdir root");
        mk("d");
        mk("d/e");
        mk("empty");
        wr("hello", "hello\n");
        wr("d/inner", "");
        wr("d/e/sp ace", "x");
        std::fs::hard_link(root.join("hello"), root.join("d/hl")).expect("hardlink");
        std::os::unix::fs::symlink("hello", root.join("link")).expect("symlink");
        std::os::unix::fs::symlink("/", root.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../nowhere", root.join("d/dangling")).expect("symlink");
        let mut paths = BTreeSet::new();
        collect(&root, b"", &mut paths);
        Tree {
            _dir: dir,
            root,
            paths,
        }
    })
}

fn is_at_or_under(path: &[u8], m: &[u8]) -> bool {
    path == m
        || (!m.is_empty() && path.len() > m.len() && path.starts_with(m) && path[m.len()] == b'/')
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = parse::parse(data) else {
        return;
    };
    for k in spec.entries.keys() {
        assert!(
            k.is_empty()
                || k.split(|&b| b == b'/')
                    .all(|c| !c.is_empty() && c != b"." && c != b".."),
            "manifest key not normalised: {:?}",
            String::from_utf8_lossy(k)
        );
    }
    let t = tree();
    let (deltas, stats) = match diff::compare(&t.root, &spec, None) {
        Ok(r) => r,
        // the tree is fixed and readable: comparing must not fail
        Err(e) => panic!("compare failed on the fixture tree: {e}"),
    };
    assert_eq!(stats.walked, t.paths.len());
    for w in deltas.windows(2) {
        assert!(
            diff::tree_order(&w[0].path, &w[1].path).is_lt(),
            "deltas not in tree order/unique: {w:?}"
        );
    }
    for d in &deltas {
        match d.kind {
            DeltaKind::Missing => assert!(
                !t.paths.contains(&d.path) && spec.entries.contains_key(&d.path),
                "bad Missing delta {d:?}"
            ),
            DeltaKind::Extra => assert!(
                t.paths.contains(&d.path) && !spec.entries.contains_key(&d.path),
                "bad Extra delta {d:?}"
            ),
            DeltaKind::Modified => assert!(t.paths.contains(&d.path), "bad Modified delta {d:?}"),
        }
    }

    let simple = diff::simplify(deltas.clone());
    // simplify keeps order and every non-Missing delta; it only drops Missing
    let mut it = deltas.iter();
    for s in &simple {
        assert!(it.any(|d| d == s), "simplify invented or reordered {s:?}");
    }
    let kept = simple
        .iter()
        .filter(|d| d.kind != DeltaKind::Missing)
        .count();
    let before = deltas
        .iter()
        .filter(|d| d.kind != DeltaKind::Missing)
        .count();
    assert_eq!(kept, before, "simplify dropped a non-Missing delta");

    // masks: a few manifest paths, their parents, and the root itself
    let mut masks: Vec<Vec<u8>> = Vec::new();
    for k in spec.entries.keys().take(4) {
        masks.push(k.clone());
        if let Some(i) = k.iter().rposition(|&b| b == b'/') {
            masks.push(k[..i].to_vec());
        }
    }
    if data.len().is_multiple_of(3) {
        masks.push(Vec::new());
    }
    let masked = diff::mask(simple.clone(), &masks);
    for d in &masked {
        assert!(
            !masks.iter().any(|m| is_at_or_under(&d.path, m)),
            "mask kept {d:?} (masks {masks:?})"
        );
    }
    assert_eq!(
        masked.len(),
        simple
            .iter()
            .filter(|d| !masks.iter().any(|m| is_at_or_under(&d.path, m)))
            .count()
    );
});
