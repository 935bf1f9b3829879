//! Image surgery end to end: `squash`, `export` and `import` on images the
//! Go umoci and hand-made layers build (deletions, opaque directories,
//! hard links whose target is overridden later, hard links to base files,
//! xattrs, devices, non-UTF-8 names, sparse files), checked by unpacking
//! with rumoci and the Go umoci and comparing trees file by file, by
//! extracting exports with bsdtar, and through the dir-cas plugin.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Run rumoci with the test-local plugin cache and without
/// `SOURCE_DATE_EPOCH` (a squash clamps mtimes to it).
fn ru(args: &[&str]) -> std::process::Output {
    Command::new(rumoci_bin())
        .args(args)
        .env("XDG_CACHE_HOME", cache_home())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("spawn rumoci")
}

/// [`ru`], requiring success; returns stdout.
fn ru_ok(args: &[&str]) -> String {
    let out = ru(args);
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tools_present() -> bool {
    ["umoci", "bsdtar", "setfattr", "mknod", "tar"]
        .iter()
        .all(|t| have(t))
}

/// A scratch directory; None (the test is skipped) without the tools.
fn scratch() -> Option<tempfile::TempDir> {
    tools_present().then(|| tempfile::tempdir().expect("tmp"))
}

/// One member of a hand-made layer.
enum M<'a> {
    Dir(&'a [u8]),
    File(&'a [u8], &'a [u8]),
    /// A file with one xattr.
    FileX(&'a [u8], &'a [u8], &'a str, &'a [u8]),
    Link(&'a [u8], &'a [u8]),
    Sym(&'a [u8], &'a [u8]),
    /// A whiteout (or opaque) marker, written as Go's umoci writes them.
    Wh(&'a [u8]),
}

/// Write a tar of `members` (GNU headers, fixed times) to `path`.
fn make_tar(path: &Path, members: &[M<'_>]) {
    let f = std::fs::File::create(path).expect("create tar");
    let mut b = tar::Builder::new(f);
    for m in members {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        let name = |n: &[u8]| PathBuf::from(OsStr::from_bytes(n));
        match m {
            M::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o750);
                b.append_data(&mut h, name(n), std::io::empty())
                    .expect("dir");
            }
            M::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o640);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, name(n), *d).expect("file");
            }
            M::Wh(n) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0);
                b.append_data(&mut h, name(n), std::io::empty())
                    .expect("marker");
            }
            M::FileX(n, d, k, v) => {
                b.append_pax_extensions([(format!("SCHILY.xattr.{k}").as_str(), *v)])
                    .expect("pax");
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o600);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, name(n), *d).expect("file");
            }
            M::Link(n, t) | M::Sym(n, t) => {
                h.set_entry_type(if matches!(m, M::Link(..)) {
                    tar::EntryType::Link
                } else {
                    tar::EntryType::Symlink
                });
                h.set_mode(0o777);
                b.append_link(&mut h, name(n), name(t)).expect("link");
            }
        }
    }
    b.into_inner().expect("finish tar");
}

/// Write a tar of `members` to `path` and add it to `img` as a layer with
/// the Go umoci.
fn umoci_add_layer(img: &str, path: &Path, members: &[M<'_>]) {
    make_tar(path, members);
    run_ok("umoci", &["raw", "add-layer", "--image", img, s(path)]);
}

/// An image of 4 layers: 0 and 1 by the Go umoci (the `make_tree` tree:
/// devices, a fifo, xattrs, hard links, long names; then deletions and a
/// directory replaced by a file), 2 and 3 hand-made (an opaque directory,
/// a hard link whose target is overridden, hard links to base files, a
/// whiteout of a directory layer 2 made, whiteouts of base files, a
/// whiteout of nothing, a non-UTF-8 name).
fn build_image(tmp: &Path) -> (String, PathBuf) {
    let l = tmp.join("layout");
    run_ok("umoci", &["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    run_ok("umoci", &["new", "--image", &img]);
    let b = tmp.join("gobundle");
    run_ok("umoci", &["unpack", "--image", &img, s(&b)]);
    let r = b.join("rootfs");
    make_tree(&r);
    run_ok(
        "umoci",
        &["repack", "--refresh-bundle", "--image", &img, s(&b)],
    );
    std::fs::remove_dir_all(r.join("usr/share/deep")).expect("rm");
    std::fs::remove_file(r.join("usr/null")).expect("rm");
    std::fs::remove_dir_all(r.join("etc")).expect("rm");
    std::fs::write(r.join("etc"), b"now a file\n").expect("w");
    std::fs::write(r.join("usr/new"), b"new\n").expect("w");
    run_ok(
        "touch",
        &[
            "-d",
            "2021-01-01 00:00:00",
            s(&r.join("usr/new")),
            s(&r.join("etc")),
            s(&r.join("usr")),
        ],
    );
    run_ok(
        "umoci",
        &["repack", "--refresh-bundle", "--image", &img, s(&b)],
    );
    let l2 = [
        M::Dir(b"opq"),
        M::File(b"opq/keep", b"keep\n"),
        M::File(b"opq/old1", b"old\n"),
        M::Dir(b"hl"),
        M::File(b"hl/a", b"A1\n"),
        M::Link(b"hl/b", b"hl/a"),
        M::Dir(b"gone"),
        M::File(b"gone/f", b"f\n"),
        M::FileX(b"caf\xe9", b"latin-1\n", "user.k", b"v\xff"),
        M::Link(b"basefile-link", b"usr/share/file"),
        M::Sym(b"sym", b"hl/a"),
    ];
    umoci_add_layer(&img, &tmp.join("l2.tar"), &l2);
    let l3 = [
        M::Wh(b"opq/.wh..wh..opq"),
        M::File(b"opq/new", b"new\n"),
        M::File(b"hl/a", b"A2, longer\n"),
        M::Wh(b".wh.gone"),
        M::Wh(b"usr/.wh.fifo"),
        M::Wh(b".wh.nothing"),
        M::Link(b"newlink", b"basefile-link"),
        M::Wh(b"usr/share/.wh.file"),
        M::Wh(b"usr/.wh.hard"),
        M::File(b"new\xff-name", b"x\n"),
    ];
    umoci_add_layer(&img, &tmp.join("l3.tar"), &l3);
    (img, l)
}

/// A new layout `tmp/layout` holding `t`, a new image (no layers), by
/// rumoci; returns the layout and `LAYOUT:t`.
fn new_layout(tmp: &Path) -> (PathBuf, String) {
    let l = tmp.join("layout");
    let img = format!("{}:t", s(&l));
    ru_ok(&["init", "--layout", s(&l)]);
    ru_ok(&["new", "--image", &img]);
    (l, img)
}

/// Unpack `img` with rumoci and the Go umoci into `dir/{r,g}-NAME`.
fn unpack_both(img: &str, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let r = dir.join(format!("r-{name}"));
    let g = dir.join(format!("g-{name}"));
    ru_ok(&["unpack", "--image", img, s(&r)]);
    run_ok("umoci", &["unpack", "--image", img, s(&g)]);
    (r.join("rootfs"), g.join("rootfs"))
}

/// [`unpack_both`], requiring the trees to be the same as `orig`'s
/// (rumoci's, the Go umoci's); returns rumoci's.
fn unpack_both_same(img: &str, dir: &Path, name: &str, orig: (&Path, &Path)) -> PathBuf {
    let (r, g) = unpack_both(img, dir, name);
    assert_same_tree(orig.0, &r);
    assert_same_tree(orig.1, &g);
    r
}

/// The manifest of `tag`.
fn manifest(layout: &Path, tag: &str) -> serde_json::Value {
    let d = index_entry(layout, tag);
    read_blob_json(layout, d["digest"].as_str().expect("digest"))
}

fn config(layout: &Path, tag: &str) -> serde_json::Value {
    let m = manifest(layout, tag);
    read_blob_json(layout, m["config"]["digest"].as_str().expect("digest"))
}

/// The member names of layer `i` of `tag` (gzip).
fn layer_names(layout: &Path, tag: &str, i: usize) -> Vec<Vec<u8>> {
    let m = manifest(layout, tag);
    let d = m["layers"][i]["digest"].as_str().expect("digest");
    let f = std::fs::File::open(blob_path(layout, d)).expect("blob");
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
    a.entries()
        .expect("entries")
        .map(|e| e.expect("entry").path_bytes().into_owned())
        .collect()
}

/// `names` as a set of owned strings.
fn strings(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn whiteouts(names: &[Vec<u8>]) -> BTreeSet<String> {
    names
        .iter()
        .filter(|n| {
            n.split(|&b| b == b'/')
                .next_back()
                .is_some_and(|b| b.starts_with(b".wh."))
        })
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

#[test]
fn squash_all_gives_the_same_tree_to_rumoci_and_the_go_umoci() {
    let Some(tmp) = scratch() else { return };
    let (img, l) = build_image(tmp.path());
    ru_ok(&["squash", "--image", &img, "--tag", "flat"]);
    let flat = format!("{}:flat", s(&l));
    let m = manifest(&l, "flat");
    assert_eq!(m["layers"].as_array().expect("layers").len(), 1);
    // no whiteout in a squash of everything
    assert!(whiteouts(&layer_names(&l, "flat", 0)).is_empty());
    let (ro, go) = unpack_both(&img, tmp.path(), "orig");
    let rf = unpack_both_same(&flat, tmp.path(), "flat", (&ro, &go));
    // the overridden link target: the link keeps the old content
    assert_eq!(std::fs::read(rf.join("hl/b")).expect("b"), b"A1\n");
    assert_eq!(std::fs::read(rf.join("hl/a")).expect("a"), b"A2, longer\n");
    // history: one entry naming the merged ones, empty_layer entries kept
    let c = config(&l, "flat");
    let h = c["history"].as_array().expect("history");
    let layers: Vec<_> = h.iter().filter(|e| e["empty_layer"] != true).collect();
    assert_eq!(layers.len(), 1, "{h:?}");
    let by = layers[0]["created_by"].as_str().expect("created_by");
    assert!(
        by.starts_with("rumoci squash (layers 0:4): umoci repack && umoci repack"),
        "{by}"
    );
    let v = ru(&["verify", "--layout", s(&l)]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn squash_a_range_keeps_exactly_the_whiteouts_the_base_needs() {
    let Some(tmp) = scratch() else { return };
    let (img, l) = build_image(tmp.path());
    let (ro, go) = unpack_both(&img, tmp.path(), "orig");

    // layers 2 and 3 over the Go umoci's two
    ru_ok(&["squash", "--image", &img, "--from", "2", "--tag", "top"]);
    let m = manifest(&l, "top");
    let orig = manifest(&l, "t");
    assert_eq!(m["layers"].as_array().expect("l").len(), 3);
    assert_eq!(m["layers"][0], orig["layers"][0]);
    assert_eq!(m["layers"][1], orig["layers"][1]);
    // opq, gone and nothing hide nothing of layers 0-1
    let want = strings(&["usr/.wh.fifo", "usr/.wh.hard", "usr/share/.wh.file"]);
    assert_eq!(whiteouts(&layer_names(&l, "top", 2)), want);
    unpack_both_same(&format!("{}:top", s(&l)), tmp.path(), "top", (&ro, &go));

    // layer 3 alone over 0-2: its opaque directory and whiteouts hide
    // what layer 2 made, all but the whiteout of nothing
    ru_ok(&["squash", "--image", &img, "--layers", "3:4", "--tag", "one"]);
    let want = strings(&[
        ".wh.gone",
        "opq/.wh..wh..opq",
        "usr/.wh.fifo",
        "usr/.wh.hard",
        "usr/share/.wh.file",
    ]);
    assert_eq!(whiteouts(&layer_names(&l, "one", 3)), want);
    unpack_both_same(&format!("{}:one", s(&l)), tmp.path(), "one", (&ro, &go));

    // a middle range: layers 1-2, with layer 3 kept above
    ru_ok(&["squash", "--image", &img, "--layers", "1:3", "--tag", "mid"]);
    assert_eq!(
        manifest(&l, "mid")["layers"].as_array().expect("l").len(),
        3
    );
    assert_eq!(manifest(&l, "mid")["layers"][2], orig["layers"][3]);
    unpack_both_same(&format!("{}:mid", s(&l)), tmp.path(), "mid", (&ro, &go));
    // diff_ids and history entries follow the layers
    let c = config(&l, "mid");
    assert_eq!(c["rootfs"]["diff_ids"].as_array().expect("d").len(), 3);
    let h = c["history"].as_array().expect("history");
    assert_eq!(h.iter().filter(|e| e["empty_layer"] != true).count(), 3);
    // the Go umoci's config entry (empty_layer) stays in order
    let oc = config(&l, "t");
    assert_eq!(
        h.iter().filter(|e| e["empty_layer"] == true).count(),
        oc["history"]
            .as_array()
            .expect("h")
            .iter()
            .filter(|e| e["empty_layer"] == true)
            .count()
    );
}

#[test]
fn a_base_file_linked_in_the_range_and_deleted_later_keeps_its_content() {
    let Some(tmp) = scratch() else { return };
    let (l, img) = new_layout(tmp.path());
    let add = |name: &str, members: &[M<'_>]| {
        let p = tmp.path().join(name);
        make_tar(&p, members);
        ru_ok(&["raw", "add-layer", "--image", &img, s(&p)]);
    };
    add(
        "0.tar",
        &[
            M::Dir(b"d"),
            M::File(b"d/base", b"base content\n"),
            M::File(b"d/other", b"o\n"),
        ],
    );
    // a link to a base file, then the base file deleted and replaced by
    // a directory; a file replaced by a directory in the range
    add(
        "1.tar",
        &[M::Link(b"keep", b"d/base"), M::File(b"x", b"file\n")],
    );
    add(
        "2.tar",
        &[
            M::Wh(b"d/.wh.base"),
            M::Dir(b"d/base"),
            M::File(b"d/base/in", b"in\n"),
            M::Dir(b"x"),
        ],
    );
    // d replaced by a file, then by a directory again: no whiteout in
    // the range says so, the squash must add one
    add("3.tar", &[M::File(b"d", b"flat\n")]);
    add("4.tar", &[M::Dir(b"d"), M::File(b"d/again", b"again\n")]);
    let (ro, go) = unpack_both(&img, tmp.path(), "orig");
    assert_eq!(
        std::fs::read(ro.join("keep")).expect("keep"),
        b"base content\n"
    );
    assert!(!ro.join("d/other").exists());
    ru_ok(&["squash", "--image", &img, "--from", "1", "--tag", "sq"]);
    let sq = format!("{}:sq", s(&l));
    assert_eq!(
        whiteouts(&layer_names(&l, "sq", 1)),
        BTreeSet::from(["d/.wh.base".to_string(), ".wh.d".to_string()])
    );
    unpack_both_same(&sq, tmp.path(), "sq", (&ro, &go));
}

#[test]
fn sparse_files_are_squashed_as_plain_files() {
    let Some(tmp) = scratch() else { return };
    let (l, img) = new_layout(tmp.path());
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    run_ok("truncate", &["-s", "8M", s(&src.join("sparse.img"))]);
    run_ok(
        "sh",
        &[
            "-c",
            &format!(
                "printf data | dd of={} bs=1 seek=4194304 conv=notrunc 2>/dev/null",
                s(&src.join("sparse.img"))
            ),
        ],
    );
    let t = tmp.path().join("sparse.tar");
    run_ok(
        "tar",
        &[
            "--format=gnu",
            "--sparse",
            "-cf",
            s(&t),
            "-C",
            s(&src),
            "sparse.img",
        ],
    );
    ru_ok(&["raw", "add-layer", "--image", &img, s(&t)]);
    ru_ok(&["squash", "--image", &img, "--tag", "sq"]);
    let ro = tmp.path().join("ro");
    ru_ok(&["unpack", "--image", &img, s(&ro)]);
    // the Go umoci refuses old GNU sparse members, but reads the squash
    let gs = tmp.path().join("gs");
    run_ok(
        "umoci",
        &["unpack", "--image", &format!("{}:sq", s(&l)), s(&gs)],
    );
    assert_same_tree(&ro.join("rootfs"), &gs.join("rootfs"));
}

/// `tree_facts` of both, the root's time left out (the directory an
/// archive is extracted into has its own).
fn assert_same_tree_but_root_time(want: &Path, got: &Path) {
    let mut fa = tree_facts(want);
    let mut fb = tree_facts(got);
    if let (Some(x), Some(y)) = (fa.get_mut(Path::new("")), fb.get_mut(Path::new(""))) {
        x.mtime = 0;
        y.mtime = 0;
    }
    assert_same_facts(&fa, &fb);
}

fn bsdtar_x(tar: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let out = Command::new("bsdtar")
        .env("LC_ALL", "C.UTF-8")
        .args([
            "--xattrs",
            "--same-owner",
            "--numeric-owner",
            "-xpf",
            s(tar),
            "-C",
            s(dir),
        ])
        .output()
        .expect("bsdtar");
    assert!(
        out.status.success(),
        "bsdtar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn export_extracts_to_the_go_umocis_unpack_and_import_takes_it_back() {
    let Some(tmp) = scratch() else { return };
    let (img, _l) = build_image(tmp.path());
    let (ro, go) = unpack_both(&img, tmp.path(), "orig");
    let t = tmp.path().join("root.tar");
    ru_ok(&["export", "--image", &img, "-o", s(&t)]);
    let x = tmp.path().join("x");
    bsdtar_x(&t, &x);
    assert_same_tree_but_root_time(&go, &x);
    // to standard output: the same bytes
    let out = ru(&["export", "--image", &img]);
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&t).expect("read"));

    // import: the tar as a single-layer image, config flags applied
    let il = tmp.path().join("imported");
    ru_ok(&["init", "--layout", s(&il)]);
    let iimg = format!("{}:imp", s(&il));
    ru_ok(&[
        "import",
        "--image",
        &iimg,
        "--platform",
        "linux/arm64/v8",
        "--config.env",
        "K=V",
        "--config.cmd",
        "/bin/sh",
        s(&t),
    ]);
    let c = config(&il, "imp");
    assert_eq!(c["architecture"], "arm64");
    assert_eq!(c["variant"], "v8");
    assert_eq!(c["config"]["Env"][0], "K=V");
    assert_eq!(c["history"][0]["created_by"], "rumoci import");
    let ri = tmp.path().join("ri");
    ru_ok(&[
        "unpack",
        "--platform",
        "linux/arm64/v8",
        "--image",
        &iimg,
        s(&ri),
    ]);
    assert_same_tree(&ro, &ri.join("rootfs"));
    // and the Go umoci reads the imported image as it read the original
    let gi = tmp.path().join("gi");
    run_ok("umoci", &["unpack", "--image", &iimg, s(&gi)]);
    assert_same_tree(&go, &gi.join("rootfs"));
    // from standard input
    let mut child = Command::new(rumoci_bin())
        .args([
            "import",
            "--image",
            &format!("{}:stdin", s(&il)),
            "--platform",
            "linux/arm64/v8",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::copy(&mut std::fs::File::open(&t).expect("open"), &mut stdin).expect("pipe");
    }
    assert!(child.wait().expect("wait").success());
    assert_eq!(
        manifest(&il, "stdin")["layers"][0]["digest"],
        manifest(&il, "imp")["layers"][0]["digest"]
    );
}

/// A tar with one member whose raw name is `name` (no checks).
fn raw_tar(path: &Path, name: &[u8], kind: tar::EntryType, link: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(if kind == tar::EntryType::Regular {
        2
    } else {
        0
    });
    h.set_mtime(0);
    h.set_cksum();
    let mut b = tar::Builder::new(std::fs::File::create(path).expect("create"));
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"x\n"
    } else {
        b""
    };
    b.append(&h, data).expect("append");
    b.into_inner().expect("finish");
}

fn one_line_failure(args: &[&str]) -> String {
    let out = ru(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("rumoci: "), "{err}");
    err
}

#[test]
fn bad_input_fails_with_one_line_and_changes_nothing() {
    let Some(tmp) = scratch() else { return };
    let (l, img) = new_layout(tmp.path());
    let before = snapshot(&l);
    // an image without layers
    let e = one_line_failure(&["squash", "--image", &img]);
    assert!(e.contains("no layers"), "{e}");
    let e = one_line_failure(&[
        "export",
        "--image",
        &img,
        "-o",
        s(&tmp.path().join("o.tar")),
    ]);
    assert!(e.contains("no layers"), "{e}");
    assert!(!tmp.path().join("o.tar").exists());
    let p = tmp.path().join("a.tar");
    make_tar(&p, &[M::File(b"a", b"a\n")]);
    ru_ok(&["raw", "add-layer", "--image", &img, s(&p)]);
    let before_range = snapshot(&l);
    for range in ["1:2", "0:0", "3:"] {
        let e = one_line_failure(&["squash", "--image", &img, "--layers", range]);
        assert!(e.contains("outside the image"), "{e}");
    }
    let e = one_line_failure(&["squash", "--image", &img, "--from", "5"]);
    assert!(e.contains("outside the image"), "{e}");
    let e = one_line_failure(&["squash", "--image", &img, "--layers", "x"]);
    assert!(e.contains("--layers"), "{e}");
    assert_eq!(snapshot(&l), before_range);
    let _ = before;
    // a layer writing through a symlink cannot be replayed by path
    let p = tmp.path().join("sym.tar");
    make_tar(&p, &[M::Dir(b"real"), M::Sym(b"link", b"real")]);
    ru_ok(&["raw", "add-layer", "--image", &img, s(&p)]);
    make_tar(&p, &[M::File(b"link/through", b"x\n")]);
    ru_ok(&["raw", "add-layer", "--image", &img, s(&p)]);
    let before_sym = snapshot(&l);
    let e = one_line_failure(&["squash", "--image", &img]);
    assert!(e.contains("symbolic link link"), "{e}");
    assert_eq!(snapshot(&l), before_sym);

    // import: escaping names, hard links out of the root, whiteouts
    for (name, kind, link, why) in [
        (&b"../x"[..], tar::EntryType::Regular, &b""[..], "escapes"),
        (b"/abs", tar::EntryType::Regular, b"", "absolute"),
        (b"a/../../x", tar::EntryType::Regular, b"", "escapes"),
        (b"l", tar::EntryType::Link, b"../../etc/passwd", "escapes"),
        (
            b"l",
            tar::EntryType::Link,
            b"missing",
            "not an earlier file",
        ),
        (b"d/.wh.x", tar::EntryType::Regular, b"", "whiteout"),
    ] {
        let t = tmp.path().join("bad.tar");
        raw_tar(&t, name, kind, link);
        let before = snapshot(&l);
        let e = one_line_failure(&["import", "--image", &format!("{}:imp", s(&l)), s(&t)]);
        assert!(e.contains(why), "{e}");
        assert_eq!(snapshot(&l), before, "{e}");
    }
}

#[test]
fn squash_is_deterministic_and_honours_source_date_epoch() {
    let Some(tmp) = scratch() else { return };
    let (img, l) = build_image(tmp.path());
    ru_ok(&["squash", "--image", &img, "--tag", "a"]);
    // on one CPU
    let out = Command::new("taskset")
        .args([
            "-c",
            "0",
            rumoci_bin(),
            "squash",
            "--image",
            &img,
            "--tag",
            "b",
        ])
        .output()
        .expect("taskset");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for c in ["none", "zstd"] {
        for n in 1..=2 {
            let tag = format!("{c}{n}");
            ru_ok(&["squash", "--image", &img, "--compress", c, "--tag", &tag]);
        }
        assert_eq!(
            manifest(&l, &format!("{c}1"))["layers"][0],
            manifest(&l, &format!("{c}2"))["layers"][0]
        );
    }
    let (a, b) = (manifest(&l, "a"), manifest(&l, "b"));
    assert_eq!(a["layers"][0], b["layers"][0]);
    assert_eq!(config(&l, "a")["rootfs"], config(&l, "b")["rootfs"]);
    assert_eq!(
        config(&l, "a")["rootfs"]["diff_ids"][0],
        config(&l, "none1")["rootfs"]["diff_ids"][0]
    );
    // SOURCE_DATE_EPOCH: mtimes clamped, history dated
    rumoci_env_ok(
        &["squash", "--image", &img, "--tag", "epoch"],
        &[("SOURCE_DATE_EPOCH", "1500000000")],
    );
    let c = config(&l, "epoch");
    let h = c["history"].as_array().expect("h");
    let entry = h.iter().find(|e| e["empty_layer"] != true).expect("entry");
    assert_eq!(entry["created"], "2017-07-14T02:40:00Z");
    let r = tmp.path().join("re");
    ru_ok(&["unpack", "--image", &format!("{}:epoch", s(&l)), s(&r)]);
    for (p, f) in tree_facts(&r.join("rootfs")) {
        assert!(
            f.mtime <= 1_500_000_000 || p.as_os_str().is_empty(),
            "{}: {}",
            p.display(),
            f.mtime
        );
    }
}

const PLUGINS: &[&str] = &["dir-cas"];

#[test]
fn squash_export_and_import_work_through_a_plugin_store() {
    let Some(tmp) = scratch() else { return };
    let (img, l) = build_image(tmp.path());
    let copy = tmp.path().join("copy");
    run_ok("cp", &["-a", s(&l), s(&copy)]);
    let driver = format!("{},dir={}", plugin_wasm(PLUGINS, "dir-cas"), s(&copy));
    let cimg = format!("{}:t", s(&copy));
    ru_ok(&[
        "--driver", &driver, "squash", "--image", &cimg, "--from", "1", "--tag", "sq",
    ]);
    ru_ok(&["squash", "--image", &img, "--from", "1", "--tag", "sq"]);
    assert_eq!(
        manifest(&copy, "sq")["layers"],
        manifest(&l, "sq")["layers"]
    );
    let out = ru(&["--driver", &driver, "export", "--image", &cimg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let direct = ru(&["export", "--image", &img]);
    assert_eq!(out.stdout, direct.stdout);
    let t = tmp.path().join("root.tar");
    std::fs::write(&t, &out.stdout).expect("write");
    ru_ok(&[
        "--driver",
        &driver,
        "import",
        "--image",
        &format!("{}:imp", s(&copy)),
        s(&t),
    ]);
    ru_ok(&["import", "--image", &format!("{}:imp", s(&l)), s(&t)]);
    assert_eq!(
        manifest(&copy, "imp")["layers"],
        manifest(&l, "imp")["layers"]
    );
    let mut buf = Vec::new();
    std::fs::File::open(&t)
        .expect("open")
        .read_to_end(&mut buf)
        .expect("read");
    assert!(!buf.is_empty());
}

#[test]
fn a_corrupt_layer_fails_the_squash_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (l, img) = new_layout(tmp.path());
    for (i, body) in [&b"one\n"[..], b"two\n"].iter().enumerate() {
        let p = tmp.path().join(format!("{i}.tar"));
        make_tar(&p, &[M::File(format!("f{i}").as_bytes(), body)]);
        ru_ok(&["raw", "add-layer", "--image", &img, s(&p)]);
    }
    let d = manifest(&l, "t")["layers"][1]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let blob = blob_path(&l, &d);
    let mut bytes = std::fs::read(&blob).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, &bytes).expect("write");
    let before = snapshot(&l);
    for args in [
        vec!["squash", "--image", &img],
        vec!["squash", "--image", &img, "--from", "1"],
    ] {
        let e = one_line_failure(&args);
        assert!(e.contains(&d[7..19]) || e.contains("digest"), "{e}");
        assert_eq!(snapshot(&l), before);
    }
    let out = tmp.path().join("o.tar");
    one_line_failure(&["export", "--image", &img, "-o", s(&out)]);
    assert!(!out.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 3);
}

/// A layer blob damaged on disk (its gzip trailer) fails `export` and
/// `squash` with one line naming the layer, leaves no output archive and
/// changes nothing in the layout — also when the damaged layer is the one
/// being inflated ahead while an earlier one is copied.
#[test]
fn a_damaged_layer_fails_export_and_squash_with_one_line() {
    let Some(tmp) = scratch() else { return };
    let (l, img) = new_layout(tmp.path());
    let big = vec![b'x'; 3 << 20];
    let p = tmp.path().join("a.tar");
    make_tar(&p, &[M::File(b"a", &big), M::File(b"b", b"b\n")]);
    ru_ok(&["raw", "add-layer", "--image", &img, s(&p)]);
    make_tar(&p, &[M::File(b"c", &big)]);
    ru_ok(&["raw", "add-layer", "--image", &img, s(&p)]);
    let layer = manifest(&l, "t")["layers"][1]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let blob = l.join("blobs/sha256").join(&layer["sha256:".len()..]);
    let mut bytes = std::fs::read(&blob).expect("read blob");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40; // the uncompressed length in the gzip trailer
    std::fs::write(&blob, &bytes).expect("write blob");
    let before = snapshot(&l);
    let out = tmp.path().join("o.tar");
    let e = one_line_failure(&["export", "--image", &img, "-o", s(&out)]);
    assert!(e.contains(&layer), "{e}");
    assert!(!out.exists());
    let e = one_line_failure(&["squash", "--image", &img, "--tag", "sq"]);
    assert!(e.contains(&layer), "{e}");
    assert_eq!(snapshot(&l), before);
}
