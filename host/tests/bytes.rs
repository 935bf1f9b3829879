//! File names are bytes: images carrying names that are not UTF-8
//! (Latin-1 file and directory names, symlink targets, hardlinks, names
//! with spaces and newlines) unpack, repack and insert exactly as with the
//! Go umoci, through every driver.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::*;

const PLUGINS: &[&str] = &["layer-cache", "overlay"];

/// `root/<bytes>`.
fn at(root: &Path, name: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(name))
}

/// Put names that are not UTF-8 (and other awkward bytes) into `root`:
/// a directory and a file in it, a hardlink to that file, a symlink whose
/// target is not UTF-8, a name with a space, a tab and a newline, and a
/// long (> 100 bytes) non-ASCII name.
fn add_byte_names(root: &Path) {
    std::fs::create_dir_all(at(root, b"caf\xe9/sub\xff")).expect("mkdir");
    std::fs::write(at(root, b"caf\xe9/men\xfc.txt"), b"menu\n").expect("write");
    std::fs::write(at(root, b"caf\xe9/sub\xff/deep\x80"), b"deep\n").expect("write");
    std::fs::hard_link(at(root, b"caf\xe9/men\xfc.txt"), at(root, b"hard\xe4")).expect("link");
    std::os::unix::fs::symlink(
        OsStr::from_bytes(b"caf\xe9/men\xfc.txt"),
        at(root, b"sym\xf6"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(OsStr::from_bytes(b"/abs/\xf1o"), at(root, b"abs\xf1"))
        .expect("symlink");
    std::fs::write(at(root, b"sp ace\ttab\nnl"), b"x").expect("write");
    let mut long = b"l\xe9".repeat(60);
    long.extend_from_slice(b".txt");
    std::fs::write(at(root, &long), b"long\n").expect("write");
}

/// An image made by the Go umoci holding [`add_byte_names`] on top of
/// [`make_tree`].
fn go_byte_image(tmp: &Path) -> String {
    let (img, _, _) = go_new_image(tmp, |r| {
        make_tree(r);
        add_byte_names(r);
    });
    img
}

fn mtree_file(bundle: &Path) -> PathBuf {
    std::fs::read_dir(bundle)
        .expect("bundle")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "mtree"))
        .expect("mtree file")
}

fn ready() -> bool {
    if !have("umoci") || !have("setfattr") {
        eprintln!("skipped: umoci or setfattr missing");
        return false;
    }
    true
}

#[test]
fn go_image_with_byte_names_unpacks_as_go_umoci_unpacks_it() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = go_byte_image(tmp.path());
    let (go, ours) = (tmp.path().join("go"), tmp.path().join("ours"));
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    rumoci_ok(&["unpack", "--image", &img, s(&ours)]);
    assert!(at(&ours.join("rootfs"), b"caf\xe9/men\xfc.txt").is_file());
    assert_same_tree(&go.join("rootfs"), &ours.join("rootfs"));
    // go-mtree reads our manifest (vis-encoded names) with no difference
    if let Some(chk) = go_tool("mtree-check") {
        let m = mtree_file(&ours);
        run_ok(
            chk.to_str().expect("path"),
            &[s(&m), s(&ours.join("rootfs"))],
        );
        let text = std::fs::read(&m).expect("mtree");
        assert!(
            text.windows(b"caf\\351".len()).any(|w| w == b"caf\\351"),
            "names are vis-encoded in the manifest"
        );
    }
    // and the Go umoci repacks our bundle without seeing a change
    run_ok("umoci", &["repack", "--image", &img, s(&ours)]);
    let idx = index_entry(&tmp.path().join("layout"), "t");
    let manifest = read_blob_json(
        &tmp.path().join("layout"),
        idx["digest"].as_str().expect("digest"),
    );
    assert_eq!(
        manifest["layers"].as_array().expect("layers").len(),
        1,
        "the Go umoci found nothing to repack in our bundle"
    );
}

#[test]
fn byte_names_added_renamed_and_deleted_repack_for_the_go_umoci() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = go_byte_image(tmp.path());
    let ours = tmp.path().join("ours");
    rumoci_ok(&["unpack", "--image", &img, s(&ours)]);
    let r = ours.join("rootfs");
    std::fs::rename(at(&r, b"caf\xe9"), at(&r, b"d\xe9j\xe0")).expect("rename");
    std::fs::remove_file(at(&r, b"sym\xf6")).expect("rm");
    std::fs::remove_file(at(&r, b"hard\xe4")).expect("rm");
    std::fs::write(at(&r, b"n\xe8w"), b"new\n").expect("write");
    std::fs::hard_link(at(&r, b"n\xe8w"), at(&r, b"n\xe8w-link")).expect("link");
    std::os::unix::fs::symlink(OsStr::from_bytes(b"d\xe9j\xe0"), at(&r, b"to-d\xe9j\xe0"))
        .expect("symlink");
    rumoci_ok(&["repack", "--image", &img, s(&ours)]);
    // the layer carries the raw bytes in PAX records, as Go writes them
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    assert!(
        !at(&go.join("rootfs"), b"caf\xe9").exists(),
        "whiteout applied"
    );
    assert_same_tree(&r, &go.join("rootfs"));
    // and rumoci reads its own layer back the same way
    let again = tmp.path().join("again");
    rumoci_ok(&["unpack", "--image", &img, s(&again)]);
    assert_same_tree(&r, &again.join("rootfs"));
}

#[test]
fn insert_of_a_tree_with_byte_names() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("layout");
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["init", "--layout", s(&l)]);
    rumoci_ok(&["new", "--image", &img]);
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    add_byte_names(&src);
    // the target inside the image need not be UTF-8 either
    command_ok(
        std::process::Command::new(rumoci_bin())
            .args(["insert", "--image", &img])
            .arg(&src)
            .arg(OsStr::from_bytes(b"/opt/\xe9t\xe9")),
    );
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    let got = at(&go.join("rootfs"), b"opt/\xe9t\xe9");
    let want_facts = tree_facts(&src);
    let got_facts = tree_facts(&got);
    let names =
        |m: &std::collections::BTreeMap<PathBuf, FileFacts>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&want_facts), names(&got_facts));
    for (p, f) in &want_facts {
        let g = &got_facts[p];
        assert_eq!((f.kind, f.mode, f.size), (g.kind, g.mode, g.size), "{p:?}");
        assert_eq!(
            (&f.content, &f.link, &f.links),
            (&g.content, &g.link, &g.links),
            "{p:?}"
        );
    }
}

#[test]
fn byte_names_through_layer_cache_and_overlay_drivers() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let img = go_byte_image(tmp.path());
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    // layer-cache: cold, then warm (the record is read back)
    let store = tmp.path().join("cache-store");
    let driver = format!("{},dir={}", plugin_wasm(PLUGINS, "layer-cache"), s(&store));
    for run in ["cold", "warm"] {
        let b = tmp.path().join(format!("lc-{run}"));
        rd_ok(&["--driver", &driver, "unpack", "--image", &img, s(&b)]);
        assert_same_tree(&go.join("rootfs"), &b.join("rootfs"));
    }
    // the store's trees (names WASI cannot list) are measured and removed
    // by the host for the plugin
    let rows = snapshot_rows(&driver);
    let committed: Vec<&str> = rows
        .iter()
        .filter(|r| r[1] == "committed")
        .map(|r| r[0].as_str())
        .collect();
    assert!(!committed.is_empty(), "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r[3] != "0" && r[3] != "-" || r[1] != "committed"),
        "usage measured: {rows:?}"
    );
    let mut args = vec!["--driver", driver.as_str(), "driver", "rm"];
    args.extend(committed.iter().copied());
    rd_ok(&args);
    assert!(snapshot_rows(&driver).iter().all(|r| r[1] != "committed"));
    let left: Vec<_> = walk_names(&store);
    assert!(
        !left.iter().any(|n| n.windows(1).any(|w| w[0] >= 0x80)),
        "no byte-named file left in the store: {left:?}"
    );
    // overlay (root only: trusted.* xattrs and overlay mounts)
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let ostore = tmp.path().join("overlay-store");
    let odriver = format!("{},dir={}", plugin_wasm(PLUGINS, "overlay"), s(&ostore));
    let b = tmp.path().join("ov");
    rd_ok(&["--driver", &odriver, "unpack", "--image", &img, s(&b)]);
    let unmount = || {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(b.join("rootfs"))
            .status();
    };
    let res = std::panic::catch_unwind(|| {
        assert_same_tree(&go.join("rootfs"), &b.join("rootfs"));
        // a change with byte names repacks from the upper directory
        let r = b.join("rootfs");
        std::fs::write(at(&r, b"caf\xe9/men\xfc.txt"), b"changed\n").expect("write");
        std::fs::remove_file(at(&r, b"sym\xf6")).expect("rm");
        std::fs::write(at(&r, b"ov-n\xe8w"), b"new\n").expect("write");
        // (without rd: its SOURCE_DATE_EPOCH would clamp the new mtimes)
        rumoci_ok(&["repack", "--image", &img, s(&b)]);
        let go2 = tmp.path().join("go2");
        run_ok("umoci", &["unpack", "--image", &img, s(&go2)]);
        assert_same_tree(&r, &go2.join("rootfs"));
    });
    unmount();
    if let Err(e) = res {
        std::panic::resume_unwind(e);
    }
}

/// Every file name beneath `root`.
fn walk_names(root: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let e = e.expect("entry");
            out.push(e.file_name().as_bytes().to_vec());
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

/// A tree 1,900 directories deep (a 3,800-byte path, within `PATH_MAX`;
/// layers from GNU tar): every walk is iterative, and the layer-store
/// record descriptor based, so unpack (built-in and layer-cache), mtree
/// and repack all handle it (the recursive walks overflowed the stack at
/// this depth). The Go umoci handles it too, but takes about a minute per
/// unpack, so it is left out here.
#[test]
fn trees_thousands_of_directories_deep() {
    if !have("tar") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let deep = "a/".repeat(1900);
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    // relative paths: the absolute ones are too long for one syscall
    let sh = |dir: &Path, cmd: &str| run_ok("sh", &["-c", &format!("cd {} && {cmd}", s(dir))]);
    sh(&src, &format!("mkdir -p {deep} && echo deep > {deep}f"));
    let layer = tmp.path().join("layer.tar");
    run_ok("tar", &["-C", s(&src), "-cf", s(&layer), "a"]);
    let l = tmp.path().join("layout");
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["init", "--layout", s(&l)]);
    rumoci_ok(&["new", "--image", &img]);
    rumoci_ok(&["raw", "add-layer", "--image", &img, s(&layer)]);
    let ours = tmp.path().join("ours");
    rumoci_ok(&["unpack", "--image", &img, s(&ours)]);
    let count = |b: &Path| sh(&b.join("rootfs"), "find . | wc -l").trim().to_string();
    assert_eq!(count(&ours), "1902");
    assert_eq!(sh(&ours.join("rootfs"), &format!("cat {deep}f")), "deep\n");
    // the mtree lists every level
    assert_eq!(mtree_body(&ours).matches("\n..").count(), 1901);
    // a change at the bottom repacks, and reads back
    sh(&ours.join("rootfs"), &format!("echo new > {deep}g"));
    rumoci_ok(&["repack", "--image", &img, s(&ours)]);
    let again = tmp.path().join("again");
    rumoci_ok(&["unpack", "--image", &img, s(&again)]);
    assert_eq!(sh(&again.join("rootfs"), &format!("cat {deep}g")), "new\n");
    assert_eq!(count(&again), "1903");
    // through the layer-cache plugin, cold and warm
    let store = tmp.path().join("store");
    let driver = format!("{},dir={}", plugin_wasm(PLUGINS, "layer-cache"), s(&store));
    for run in ["cold", "warm"] {
        let b = tmp.path().join(format!("lc-{run}"));
        rd_ok(&["--driver", &driver, "unpack", "--image", &img, s(&b)]);
        assert_eq!(count(&b), "1903", "{run}");
    }
}

/// A directory with 3,000 subdirectories through the layer-cache plugin,
/// with only 64 descriptors allowed: the store record's walk opens a
/// directory only when it visits it (it used to hold one descriptor per
/// pending directory and failed with "Too many open files").
#[test]
fn wide_trees_within_a_small_open_file_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..3000 {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, format!("wide/d{i}/"), &[][..])
            .expect("dir");
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(1);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, format!("wide/d{i}/f"), &b"x"[..])
            .expect("file");
    }
    let layer = tmp.path().join("layer.tar");
    std::fs::write(&layer, b.into_inner().expect("tar")).expect("write");
    let l = tmp.path().join("layout");
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["init", "--layout", s(&l)]);
    rumoci_ok(&["new", "--image", &img]);
    rumoci_ok(&["raw", "add-layer", "--image", &img, s(&layer)]);
    let store = tmp.path().join("store");
    let driver = format!("{},dir={}", plugin_wasm(PLUGINS, "layer-cache"), s(&store));
    for run in ["cold", "warm"] {
        let b = tmp.path().join(format!("b-{run}"));
        let script = format!(
            "ulimit -n 64 && exec \"$R\" --driver \"$D\" unpack --image \"$I\" \"{}\"",
            s(&b)
        );
        command_ok(
            std::process::Command::new("sh")
                .args(["-c", &script])
                .env("R", rumoci_bin())
                .env("D", &driver)
                .env("I", &img)
                .env("XDG_CACHE_HOME", cache_home()),
        );
        assert!(b.join("rootfs/wide/d2999/f").is_file(), "{run}");
    }
}
