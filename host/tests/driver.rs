//! WebAssembly storage drivers end to end: the dir-cas plugin gives the same
//! layouts as the built-in driver (and the Go umoci reads them); hostile
//! plugins are stopped by the deadline, the memory limit, the sandbox and
//! the host's digest verification.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn plugin(name: &str) -> String {
    plugin_wasm(PLUGINS, name)
}

const PLUGINS: &[&str] = &[
    "dir-cas",
    "evil-loop",
    "evil-alloc",
    "evil-escape",
    "evil-bytes",
    "layer-cache",
    "evil-mount",
    "evil-open",
];

/// The scenario run once per driver; returns the outputs of ls and stat.
fn scenario(layout: &Path, driver: &[&str]) -> Vec<String> {
    let l = s(layout);
    let img = format!("{l}:v1");
    let with = |args: &[&str]| -> String {
        let mut a: Vec<&str> = args.to_vec();
        a.extend_from_slice(driver);
        rd_ok(&a)
    };
    with(&["init", "--layout", l]);
    with(&["new", "--image", &img]);
    with(&["tag", "--image", &img, "v2"]);
    with(&["tag", "--image", &img, "gone"]);
    with(&["rm", "--image", &format!("{l}:gone")]);
    with(&[
        "config",
        "--image",
        &img,
        "--config.env",
        "K=1",
        "--config.user",
        "1000",
        "--tag",
        "v3",
    ]);
    // v1 is replaced: its old config/manifest become garbage.
    with(&["config", "--image", &img, "--config.env", "A=2"]);
    let ls = with(&["ls", "--layout", l]);
    let stat = with(&["stat", "--image", &format!("{l}:v3")]);
    with(&["gc", "--layout", l]);
    let ls2 = with(&["ls", "--layout", l]);
    vec![ls, stat, ls2]
}

#[test]
fn dir_cas_plugin_writes_the_same_layout_as_the_builtin_driver() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = tmp.path().join("builtin");
    let b = tmp.path().join("plugin");
    let wasm = plugin("dir-cas");
    let spec = wasm.clone();
    let out_a = scenario(&a, &[]);
    let out_b = scenario(&b, &["--driver", &spec]);
    assert_eq!(out_a, out_b);
    assert_eq!(out_a[0], "v2\nv3\nv1\n");
    let snap_a = snapshot(&a);
    let snap_b = snapshot(&b);
    assert_eq!(snap_a, snap_b, "layouts differ");
    assert!(snap_b.keys().any(|k| k.starts_with("blobs/sha256")));

    // Reading through the plugin, e.g. the `dir=` key with any layout path.
    let other = format!("{},dir={}", wasm, s(&a));
    assert_eq!(
        rd_ok(&["ls", "--layout", "/nonexistent", "--driver", &other]),
        "v2\nv3\nv1\n"
    );
    // The built-in driver named explicitly.
    assert_eq!(
        rd_ok(&["ls", "--layout", s(&b), "--driver", "dir"]),
        "v2\nv3\nv1\n"
    );

    if have("umoci") {
        assert_eq!(run_ok("umoci", &["ls", "--layout", s(&b)]), "v2\nv3\nv1\n");
        run_ok("umoci", &["stat", "--image", &format!("{}:v3", s(&b))]);
        let bundle = tmp.path().join("bundle");
        run_ok(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{}:v3", s(&b)),
                s(&bundle),
            ],
        );
        let cfg = std::fs::read_to_string(bundle.join("config.json")).expect("config.json");
        assert!(cfg.contains("K=1"), "{cfg}");
    }
}

/// A content store learns what the host knows of a blob it creates: the
/// media type (`host.create-media-type`, a layer's says its compression),
/// and on `copy` the digest and size. dir-cas logs them at debug level.
#[test]
fn a_content_store_is_told_the_media_type_of_what_it_creates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    let spec = plugin("dir-cas");
    let img = format!("{}:t", s(&src));
    rd_ok(&["init", "--layout", s(&src)]);
    rd_ok(&["new", "--image", &img]);
    let tree = tmp.path().join("tree");
    write_files(&tree, &[("etc/motd", b"hello\n")]);
    rd_ok(&["insert", "--image", &img, s(&tree), "/"]);
    let debug = |args: &[&str]| {
        let out = Command::new(rumoci_bin())
            .args(args)
            .env("XDG_CACHE_HOME", cache_home())
            .env("RUMOCI_LOG", "debug")
            .output()
            .expect("run rumoci");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    rd_ok(&["init", "--layout", s(&dst), "--driver", &spec]);
    let dst_img = format!("{}:t", s(&dst));
    let copy_log = debug(&[
        "copy",
        "--from-driver",
        "dir",
        "--to-driver",
        &spec,
        &img,
        &dst_img,
    ]);
    let layer = read_blob_json(
        &src,
        index_entry(&src, "t")["digest"].as_str().expect("digest"),
    )["layers"][0]
        .clone();
    let want = format!(
        "create: expected {}, size {}, media type {}",
        layer["digest"].as_str().expect("digest"),
        layer["size"],
        layer["mediaType"].as_str().expect("media type")
    );
    assert!(copy_log.contains(&want), "{want} not in:\n{copy_log}");
    assert!(
        copy_log.contains("media type application/vnd.oci.image.manifest.v1+json"),
        "{copy_log}"
    );
    // a layer written through the store (gzip by default) says so too
    let insert_log = debug(&[
        "insert",
        "--image",
        &dst_img,
        s(&tree),
        "/again",
        "--driver",
        &spec,
    ]);
    assert!(
        insert_log.contains("media type application/vnd.oci.image.layer.v1.tar+gzip"),
        "{insert_log}"
    );
}

/// A plugin built against the contract before `host.create-media-type`
/// and `host.wanted-refs` were added (a real build, kept in
/// tests/fixtures) still links, passes every check of `driver test` and
/// serves as a store: also for a command that tells it the one tag it
/// reads (the old plugin reads the whole index), and a write after.
#[test]
fn a_plugin_built_before_create_media_type_still_works() {
    let old = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/dir-cas-before-create-media-type.wasm");
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = format!("{},dir={}", s(&old), s(&tmp.path().join("store")));
    let work = tmp.path().join("work");
    let out = rd(&["driver", "test", s(&old), "--work", s(&work)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
    let img = format!("{}:t", s(&tmp.path().join("unused")));
    rd_ok(&[
        "init",
        "--layout",
        s(&tmp.path().join("unused")),
        "--driver",
        &spec,
    ]);
    rd_ok(&["new", "--image", &img, "--driver", &spec]);
    let unused = tmp.path().join("unused");
    let ls = || rd_ok(&["ls", "--layout", s(&unused), "--driver", &spec]);
    assert_eq!(ls(), "t\n");
    // `stat` reads one tag (wanted-refs, which the old plugin never asks)
    let stat = rd_ok(&["stat", "--image", &img, "--driver", &spec]);
    assert!(stat.contains("== MANIFEST =="), "{stat}");
    rd_ok(&["tag", "--image", &img, "--driver", &spec, "u"]);
    assert_eq!(ls(), "t\nu\n");
}

/// unpack → change → repack → gc on one layout through `driver`; returns the
/// bundle and the unpack of the repacked image.
fn bundle_scenario(layout: &Path, work: &Path, driver: &[&str]) -> (PathBuf, PathBuf) {
    let img = format!("{}:t", s(layout));
    let with = |args: &[&str]| -> String {
        let mut a: Vec<&str> = driver.to_vec();
        a.extend_from_slice(args);
        rd_ok(&a)
    };
    let bundle = work.join("bundle");
    with(&["unpack", "--image", &img, s(&bundle)]);
    let r = bundle.join("rootfs");
    std::fs::create_dir_all(r.join("added/dir")).expect("mkdir");
    std::fs::write(r.join("added/dir/file"), b"through a driver\n").expect("w");
    std::fs::remove_dir_all(r.join("usr/share")).expect("rm");
    run_ok("chmod", &["0700", s(&r.join("usr"))]);
    touch_at(
        "@1600000000",
        &[
            &r.join("added/dir/file"),
            &r.join("added/dir"),
            &r.join("added"),
            &r.join("usr"),
            &r,
        ],
    );
    with(&["repack", "--image", &img, s(&bundle)]);
    with(&["gc", "--layout", s(layout)]);
    let again = work.join("again");
    with(&["unpack", "--image", &img, s(&again)]);
    (bundle, again)
}

#[test]
fn unpack_repack_gc_through_the_plugin_match_the_builtin_driver() {
    let Some((tmp, _, base)) = go_fixture() else {
        return;
    };
    let mut results = Vec::new();
    for (name, driver) in [("builtin", None), ("plugin", Some(plugin("dir-cas")))] {
        let work = tmp.path().join(name);
        std::fs::create_dir_all(&work).expect("mkdir");
        let layout = work.join("layout");
        run_ok("cp", &["-a", s(&base), s(&layout)]);
        let flags: Vec<&str> = match &driver {
            Some(w) => vec!["--driver", w.as_str()],
            None => vec![],
        };
        let (bundle, again) = bundle_scenario(&layout, &work, &flags);
        assert_same_tree(&bundle.join("rootfs"), &again.join("rootfs"));
        results.push((layout, bundle, again));
    }
    let (la, ba, ua) = &results[0];
    let (lb, bb, ub) = &results[1];
    // identical layouts (same blobs, same index.json), bundles and trees
    assert_eq!(snapshot(la), snapshot(lb), "layouts differ");
    assert_same_tree(&ba.join("rootfs"), &bb.join("rootfs"));
    assert_same_tree(&ua.join("rootfs"), &ub.join("rootfs"));
    for f in ["config.json", "umoci.json"] {
        assert_eq!(
            std::fs::read(ua.join(f)).expect("read"),
            std::fs::read(ub.join(f)).expect("read"),
            "{f} differs"
        );
    }
    // and the Go umoci reads what the plugin wrote
    let go = tmp.path().join("go");
    run_ok(
        "umoci",
        &["unpack", "--image", &format!("{}:t", s(lb)), s(&go)],
    );
    assert_same_tree(&bb.join("rootfs"), &go.join("rootfs"));
}

#[test]
fn driver_info_and_spec_errors() {
    let wasm = plugin("dir-cas");
    let out = rd_ok(&["driver", "info", &wasm]);
    assert!(out.contains("name: dir-cas\n"), "{out}");
    assert!(out.contains("version: 0.1.0\n"), "{out}");
    assert!(
        out.contains("capabilities: cas, cas.init, cas.open-stream\n"),
        "{out}"
    );

    let e = rd_err(&[
        "ls",
        "--layout",
        "/x",
        "--driver",
        &format!("{wasm},colour=red"),
    ]);
    assert!(e.contains("unknown key \"colour\""), "{e}");
    let e = rd_err(&["ls", "--layout", "/x", "--driver", "nosuch"]);
    assert!(e.contains("unknown driver \"nosuch\""), "{e}");
    let e = rd_err(&["driver", "info", "/nonexistent/x.wasm"]);
    assert!(e.contains("x.wasm"), "{e}");
    // Not a component.
    let tmp = tempfile::tempdir().expect("tempdir");
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm junk").expect("write");
    let e = rd_err(&["driver", "info", s(&junk)]);
    assert!(
        e.contains("junk.wasm") && e.contains("not a valid component"),
        "{e}"
    );
    // A component built for the contract before this one: one line saying
    // so, for `driver info` and for a command using it as a store. (The
    // smallest such component: it imports the 0.1.0 `host` interface.)
    let old = tmp.path().join("old.wasm");
    let name = b"rumoci:driver/host@0.1.0";
    let mut bytes = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
    bytes.extend([0x07, 0x03, 0x01, 0x42, 0x00]); // type: an empty instance
    bytes.extend([0x0a, name.len() as u8 + 5, 0x01, 0x00, name.len() as u8]);
    bytes.extend_from_slice(name);
    bytes.extend([0x05, 0x00]); // import `name` as instance type 0
    std::fs::write(&old, &bytes).expect("write");
    let want = "rumoci: driver old.wasm: built for rumoci:driver@0.1.0; this rumoci speaks rumoci:driver@0.2.0: rebuild it against rumoci-driver-sdk 0.2\n";
    assert_eq!(rd_err(&["driver", "info", s(&old)]), want);
    assert_eq!(rd_err(&["ls", "--layout", "/x", "--driver", s(&old)]), want);
    // A plugin without `cas.init` cannot create layouts.
    let e = rd_err(&[
        "init",
        "--layout",
        s(&tmp.path().join("l")),
        "--driver",
        &plugin("evil-bytes"),
    ]);
    assert!(e.contains("evil-bytes") && e.contains("cas.init"), "{e}");
}

/// `rumoci --driver DRIVER ls --layout L`, which must fail; its stderr.
fn ls_err(l: &Path, driver: &str) -> String {
    rd_err(&["ls", "--layout", s(l), "--driver", driver])
}

fn builtin_layout(dir: &Path) -> PathBuf {
    let l = dir.join("layout");
    rd_ok(&["init", "--layout", s(&l)]);
    rd_ok(&["new", "--image", &format!("{}:v1", s(&l))]);
    l
}

/// `ls` of a fresh [`builtin_layout`] through `driver`, which must fail:
/// its error.
fn fresh_ls_err(driver: &str) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = builtin_layout(tmp.path());
    ls_err(&l, driver)
}

#[test]
fn endless_loop_is_stopped_by_the_deadline() {
    let driver = format!("{},timeout=0.3", plugin("evil-loop"));
    let t = Instant::now();
    let e = fresh_ls_err(&driver);
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert!(e.contains("driver evil-loop (evil_loop.wasm)"), "{e}");
    assert!(e.contains("deadline of 300ms per call exceeded"), "{e}");
}

#[test]
fn a_panicking_plugin_shows_its_panic_message() {
    let e = fresh_ls_err(&format!(
        "{},opt.panic=the store is on fire",
        plugin("evil-loop")
    ));
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("driver evil-loop (evil_loop.wasm)"), "{e}");
    assert!(e.contains("unreachable"), "the trap itself: {e}");
    assert!(
        e.contains("panicked at") && e.contains("src/lib.rs") && e.contains("the store is on fire"),
        "the panic message and where: {e}"
    );
}

#[test]
fn unbounded_allocation_is_stopped_by_the_memory_limit() {
    let e = fresh_ls_err(&format!("{},memory=32M", plugin("evil-alloc")));
    assert!(e.contains("driver evil-alloc (evil_alloc.wasm)"), "{e}");
    assert!(e.contains("memory limit of 33554432 bytes exceeded"), "{e}");
}

#[test]
fn plugin_cannot_leave_its_directory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = builtin_layout(tmp.path());
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::fs::write(outside.join("secret"), b"secret").expect("write");
    std::os::unix::fs::symlink(&outside, l.join("link")).expect("symlink");
    let before = snapshot(tmp.path());
    let e = rd_err(&["ls", "--layout", s(&l), "--driver", &plugin("evil-escape")]);
    assert!(e.contains("driver evil-escape"), "{e}");
    assert!(e.contains("all escapes refused"), "{e}");
    assert!(!e.contains("ESCAPED"), "{e}");
    assert_eq!(before, snapshot(tmp.path()), "something outside changed");
    assert!(!Path::new("/tmp/pwned").exists());
}

/// A plugin opening a fifo, a device or a socket in its store is refused:
/// a fifo would block the host thread where no deadline reaches (this test
/// hung without the guard), a device node is the host's real device.
#[test]
fn plugin_cannot_open_special_files() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = builtin_layout(tmp.path());
    run_ok("mkfifo", &[s(&l.join("fifo"))]);
    run_ok("mknod", &[s(&l.join("null")), "c", "1", "3"]);
    run_ok("mknod", &[s(&l.join("zero")), "c", "1", "5"]);
    run_ok("mknod", &[s(&l.join("disk")), "b", "7", "0"]);
    let _sock = std::os::unix::net::UnixListener::bind(l.join("sock")).expect("bind");
    std::os::unix::fs::symlink("fifo", l.join("via-link")).expect("symlink");
    std::fs::write(l.join("plain"), b"plain").expect("write");
    let before = snapshot(tmp.path());
    // a hang here (the plugin blocked in a fifo's open) fails the test
    let spec = format!("{},timeout=5", plugin("evil-open"));
    let (ok, _, e) = rd_within(&["ls", "--layout", s(&l), "--driver", &spec], 60);
    assert!(!ok);
    assert!(e.contains("driver evil-open"), "{e}");
    // six special files, each opened for reading and for writing
    assert!(e.contains("special files refused: 12"), "{e}");
    assert!(!e.contains("OPENED") && !e.contains("REGULAR"), "{e}");
    assert!(
        e.contains("refused to open \"fifo\" in its store: a fifo"),
        "the refusal is logged: {e}"
    );
    assert_eq!(before, snapshot(tmp.path()), "something changed");
    let ft = std::fs::symlink_metadata(l.join("fifo"))
        .expect("stat")
        .file_type();
    assert!(ft.is_fifo());
}

#[test]
fn wrong_bytes_are_refused_by_host_verification() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = builtin_layout(tmp.path());
    let evil = plugin("evil-bytes");
    // The index is fine, so listing works ...
    assert_eq!(rd_ok(&["ls", "--layout", s(&l), "--driver", &evil]), "v1\n");
    // ... but every blob read is corrupted and refused.
    let e = rd_err(&[
        "stat",
        "--image",
        &format!("{}:v1", s(&l)),
        "--driver",
        &evil,
    ]);
    assert!(e.contains("digest mismatch"), "{e}");
    // the plugin the bad bytes came through is named
    assert!(e.contains("read through driver evil-bytes"), "{e}");
}

/// Plugin start from the compiled cache: load (read + hash + deserialize),
/// instantiate, `meta.info`. Run with `cargo test --test driver -- --ignored
/// --nocapture start_time`.
#[test]
#[ignore = "benchmark; prints the figure"]
fn start_time_from_cache() {
    use rumoci::driver::bindings::CasDriver;
    use rumoci::driver::{DriverSpec, Plugin};
    type P = Plugin<CasDriver>;
    let wasm = PathBuf::from(plugin("dir-cas"));
    let spec = DriverSpec::wasm(&wasm);
    let t = Instant::now();
    P::load(&wasm, &spec, None).expect("first load");
    let first = t.elapsed();
    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        P::load(&wasm, &spec, None).expect("load");
    }
    let per = t.elapsed() / n;
    println!(
        "plugin start: first (engine + cache fill or hit) {first:?}, from cache {per:?} per start"
    );
}

/// Every (device, inode) under `root`.
fn inodes(root: &Path) -> std::collections::BTreeSet<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        out.insert((md.dev(), md.ino()));
        if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    out
}

/// Regular files under `root` that are `name`.
fn find_file(root: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).ok()?;
        if md.is_file() && p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p).ok()? {
                stack.push(e.ok()?.path());
            }
        }
    }
    None
}

/// Two more layers on [`go_fixture`]'s one-layer image, made by the Go
/// umoci: `/usr/inserted` added, then `/usr/new` whited out.
fn add_two_layers(tmp: &Path, img: &str) {
    let extra = tmp.join("extra");
    std::fs::write(&extra, b"inserted\n").expect("w");
    run_ok(
        "umoci",
        &["insert", "--image", img, s(&extra), "/usr/inserted"],
    );
    run_ok(
        "umoci",
        &["insert", "--image", img, "--whiteout", "/usr/new"],
    );
}

#[test]
fn layer_cache_unpacks_what_a_plain_unpack_does_and_reuses_it() {
    let Some((tmp, img, layout)) = go_fixture() else {
        return;
    };
    // a second and a third layer, so that chains build on cached parents
    add_two_layers(tmp.path(), &img);
    let store = tmp.path().join("store");
    let driver = format!("{},dir={}", plugin("layer-cache"), s(&store));
    let plain = tmp.path().join("plain");
    rd_ok(&["unpack", "--image", &img, s(&plain)]);
    assert!(plain.join("rootfs/usr/inserted").is_file());
    assert!(!plain.join("rootfs/usr/new").exists());

    // cold: layers extracted into the store, then copied out
    let cold = tmp.path().join("cold");
    rd_ok(&["--driver", &driver, "unpack", "--image", &img, s(&cold)]);
    assert_same_tree(&plain.join("rootfs"), &cold.join("rootfs"));
    assert_eq!(mtree_body(&plain), mtree_body(&cold));
    for f in ["config.json", "umoci.json"] {
        assert_eq!(
            std::fs::read(plain.join(f)).expect("read"),
            std::fs::read(cold.join(f)).expect("read"),
            "{f} differs"
        );
    }
    // one snapshot per layer chain
    let manifest = read_blob_json(
        &layout,
        index_entry(&layout, "t")["digest"]
            .as_str()
            .expect("digest"),
    );
    let layers = manifest["layers"].as_array().expect("layers").len();
    assert_eq!(layers, 3);
    let snaps = std::fs::read_dir(store.join("snapshots"))
        .expect("snapshots")
        .count();
    assert_eq!(snaps, layers, "one committed snapshot per layer");

    // keep a complete copy for the repack below
    let full = tmp.path().join("full");
    run_ok("cp", &["-a", s(&layout), s(&full)]);
    // warm: the layer blobs are not even read any more
    for l in manifest["layers"].as_array().expect("layers") {
        std::fs::remove_file(blob_path(&layout, l["digest"].as_str().expect("digest")))
            .expect("rm blob");
    }
    let warm = tmp.path().join("warm");
    rd_ok(&["--driver", &driver, "unpack", "--image", &img, s(&warm)]);
    assert_same_tree(&plain.join("rootfs"), &warm.join("rootfs"));
    assert_eq!(mtree_body(&plain), mtree_body(&warm));
    // without the cache the blobs are missed: the warm unpack really used it
    let e = rd_err(&["unpack", "--image", &img, s(&tmp.path().join("nocache"))]);
    assert!(e.contains("blob") || e.contains("No such file"), "{e}");

    // the bundle shares no inode with the cache, so writing in it cannot
    // corrupt the cache
    let bundle_inodes = inodes(&warm.join("rootfs"));
    let store_inodes = inodes(&store);
    assert!(
        bundle_inodes.is_disjoint(&store_inodes),
        "bundle shares inodes with the cache"
    );
    let passwd = warm.join("rootfs/usr/inserted");
    std::fs::write(&passwd, b"scribbled\n").expect("write in bundle");
    let again = tmp.path().join("again");
    rd_ok(&["--driver", &driver, "unpack", "--image", &img, s(&again)]);
    assert_same_tree(&plain.join("rootfs"), &again.join("rootfs"));

    // a bundle from the cache repacks like any other (its mtree is right):
    // the new layer holds just the change, and the Go umoci unpacks it
    std::fs::write(again.join("rootfs/added"), b"after a cached unpack\n").expect("w");
    touch_at(
        "@1600000000",
        &[&again.join("rootfs/added"), &again.join("rootfs")],
    );
    let full_img = format!("{}:t", s(&full));
    rd_ok(&["repack", "--image", &full_img, s(&again)]);
    let m = read_blob_json(
        &full,
        index_entry(&full, "t")["digest"].as_str().expect("digest"),
    );
    let top = m["layers"]
        .as_array()
        .expect("layers")
        .last()
        .expect("a layer")
        .clone();
    let listing = run_ok(
        "tar",
        &[
            "-tzf",
            s(&blob_path(&full, top["digest"].as_str().expect("digest"))),
        ],
    );
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("./"))
        .collect();
    assert!(
        names.iter().all(|n| n.is_empty() || *n == "added"),
        "new layer holds more than the change: {names:?}"
    );
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &full_img, s(&go)]);
    assert_same_tree(&again.join("rootfs"), &go.join("rootfs"));
}

#[test]
fn layer_cache_refuses_a_tree_changed_behind_its_back() {
    let Some((tmp, img, _layout)) = go_fixture() else {
        return;
    };
    let store = tmp.path().join("store");
    let driver = format!("{},dir={}", plugin("layer-cache"), s(&store));
    rd_ok(&[
        "--driver",
        &driver,
        "unpack",
        "--image",
        &img,
        s(&tmp.path().join("first")),
    ]);
    // change a cached file without touching rumoci's record of it
    let victim = find_file(&store.join("snapshots"), "new").expect("usr/new in a snapshot");
    std::fs::write(&victim, b"evil\n").expect("tamper");
    let b = tmp.path().join("second");
    let e = rd_err(&["--driver", &driver, "unpack", "--image", &img, s(&b)]);
    assert!(e.contains("changed after the tree was recorded"), "{e}");
    assert!(e.contains("layer-cache"), "error names the driver: {e}");
    assert!(!b.join("rootfs").exists(), "partial rootfs left behind");
}

/// The Go-umoci fixture with two more layers (the first with a fifo),
/// unpacked once plainly (`plain`) and once, cold, through layer-cache
/// with `extra` options (`cold`); the trees are the same.
struct ColdCache {
    tmp: tempfile::TempDir,
    img: String,
    layout: PathBuf,
    store: PathBuf,
    driver: String,
    plain: PathBuf,
}

fn cold_three_layers(extra: &str) -> Option<ColdCache> {
    let (tmp, img, layout) = go_fixture()?;
    add_two_layers(tmp.path(), &img);
    let store = tmp.path().join("store");
    let driver = format!("{},dir={}{extra}", plugin("layer-cache"), s(&store));
    let plain = tmp.path().join("plain");
    rd_ok(&["unpack", "--image", &img, s(&plain)]);
    let cold = tmp.path().join("cold");
    rd_ok(&["--driver", &driver, "unpack", "--image", &img, s(&cold)]);
    assert_same_tree(&plain.join("rootfs"), &cold.join("rootfs"));
    Some(ColdCache {
        tmp,
        img,
        layout,
        store,
        driver,
        plain,
    })
}

#[test]
fn layer_cache_evicts_by_size() {
    // three layers, the first with a fifo (evicting a tree with a fifo must
    // not open it: that would block forever)
    let Some(c) = cold_three_layers(",opt.max-size=1") else {
        return;
    };
    let ColdCache {
        tmp, img, store, ..
    } = c;
    // only the snapshot committed last survives a 1-byte budget
    let snaps = std::fs::read_dir(store.join("snapshots"))
        .expect("snapshots")
        .count();
    assert_eq!(snaps, 1, "older snapshots evicted");
    let bad = format!(
        "{},dir={},opt.colour=blue",
        plugin("layer-cache"),
        s(&store)
    );
    let e = rd_err(&[
        "--driver",
        &bad,
        "unpack",
        "--image",
        &img,
        s(&tmp.path().join("c")),
    ]);
    assert!(e.contains("colour"), "unknown option named: {e}");
}

#[test]
fn layer_plugin_cannot_make_rumoci_read_or_write_outside_its_store() {
    let Some((tmp, img, _layout)) = go_fixture() else {
        return;
    };
    let wasm = plugin("evil-mount");
    // what lies around the store, to check nothing outside changes
    let around = tmp.path().join("around");
    std::fs::create_dir_all(around.join("etc")).expect("mkdir");
    std::fs::write(around.join("etc/secret"), b"secret\n").expect("w");
    let store = around.join("a/store");
    for (mode, why) in [
        ("dir", "leaves the store directory"),
        ("meta", "leaves the store directory"),
        ("copy-abs", "leaves the store directory"),
        ("copy-up", "leaves the store directory"),
        ("copy-link", "is a symlink"),
        ("overlay-abs", "leaves the store directory"),
        ("overlay-up", "leaves the store directory"),
        ("overlay-link", "is a symlink"),
        ("overlay-count", "9 lower directories for a chain of"),
        (
            "several",
            r#"answered [copy("fs"), copy("fs")]: rumoci takes one copy mount or one overlay mount"#,
        ),
        (
            "mixed",
            r#"answered [copy("fs"), overlay(["fs"])]: rumoci takes one copy mount or one overlay mount"#,
        ),
        ("prepare-up", "leaves the store directory"),
        (
            "prepare-count",
            "1 lower directories for a chain of 0 layers",
        ),
        ("mixed-forms", "a store keeps every layer in one form"),
    ] {
        let _ = std::fs::remove_dir_all(&store);
        std::fs::create_dir_all(store.join("fs")).expect("mkdir");
        if mode == "copy-link" || mode == "overlay-link" {
            std::os::unix::fs::symlink(around.join("etc"), store.join("esc")).expect("symlink");
            std::fs::write(
                store.join("record"),
                br#"{"version":1,"entries":{"":[1,0,0,null],"secret":[2,0,0,null]}}"#,
            )
            .expect("forged record");
        }
        let names = |d: &Path| {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .expect("readdir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let before = snapshot(&around.join("etc"));
        let bundle = tmp.path().join(format!("b-{mode}"));
        let spec = format!("{wasm},dir={},opt.mode={mode}", s(&store));
        let e = rd_err(&["--driver", &spec, "unpack", "--image", &img, s(&bundle)]);
        assert!(
            e.contains("evil-mount"),
            "{mode}: error names the plugin: {e}"
        );
        assert!(e.contains(why), "{mode}: {e}");
        assert!(!bundle.exists(), "{mode}: partial bundle left");
        // nothing appeared beside the store, nothing changed in etc/
        assert_eq!(names(&around), ["a", "etc"], "{mode}");
        assert_eq!(names(&around.join("a")), ["store"], "{mode}");
        assert_eq!(
            before,
            snapshot(&around.join("etc")),
            "{mode}: etc/ changed"
        );
    }
}

/// Through a plugin too, writers and gc exclude each other: rumoci locks
/// the plugin's store directory as it locks a layout, so `tag` waits while
/// gc's lock is held (here by the test).
#[test]
fn writers_through_a_plugin_wait_for_gc() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = builtin_layout(tmp.path());
    let wasm = plugin("dir-cas");
    let img = format!("{}:v1", s(&l));
    waits_for_gc_lock(
        &l,
        Command::new(rumoci_bin())
            .args(["--driver", &wasm, "tag", "--image", &img, "copy"])
            .env("XDG_CACHE_HOME", cache_home()),
        "store",
        || {},
    );
    assert!(rd_ok(&["--driver", &wasm, "ls", "--layout", s(&l)]).contains("copy"));
}

/// [`rd`] that must finish within `secs` seconds (killed and failed if
/// not); returns the exit status's success, stdout and stderr.
fn rd_within(args: &[&str], secs: u64) -> (bool, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(rumoci_bin())
        .args(args)
        .env("XDG_CACHE_HOME", cache_home())
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rumoci");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rumoci {args:?} still running after {secs}s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).expect("stderr");
    }
    (status.success(), out, err)
}

/// The OCI chain ids of `diff_ids`, computed with `sha256sum`.
fn chain_ids_by_sha256sum(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => {
                let line = run_ok(
                    "sh",
                    &[
                        "-c",
                        "printf '%s %s' \"$1\" \"$2\" | sha256sum",
                        "-",
                        prev,
                        d,
                    ],
                );
                let hex = line.split_whitespace().next().expect("sha256sum output");
                format!("sha256:{hex}")
            }
        };
        out.push(next);
    }
    out
}

#[test]
fn layer_cache_snapshots_are_listed_and_removed() {
    let Some(c) = cold_three_layers("") else {
        return;
    };
    // the store holds the image's fifo (removing it must not open it)
    let fifo = {
        use std::os::unix::fs::FileTypeExt;
        let mut stack = vec![c.store.join("snapshots")];
        let mut found = false;
        while let Some(p) = stack.pop() {
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            found |= md.file_type().is_fifo();
            if md.is_dir() {
                for e in std::fs::read_dir(&p).expect("readdir") {
                    stack.push(e.expect("entry").path());
                }
            }
        }
        found
    };
    assert!(fifo, "the fixture's fifo is in the store");

    // one committed snapshot per layer, named by chain id, parent below
    let manifest = read_blob_json(
        &c.layout,
        index_entry(&c.layout, "t")["digest"]
            .as_str()
            .expect("digest"),
    );
    let config = read_blob_json(
        &c.layout,
        manifest["config"]["digest"].as_str().expect("digest"),
    );
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("diff_ids")
        .iter()
        .map(|d| d.as_str().expect("diff id").to_string())
        .collect();
    assert_eq!(diff_ids.len(), 3);
    let chain = chain_ids_by_sha256sum(&diff_ids);
    let rows = snapshot_rows(&c.driver);
    let mut names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    names.sort();
    let mut want: Vec<&str> = chain.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(names, want, "{rows:?}");
    for r in &rows {
        let i = chain.iter().position(|c| *c == r[0]).expect("a chain id");
        assert_eq!(r[1], "committed", "{r:?}");
        let parent = if i == 0 { "-" } else { chain[i - 1].as_str() };
        assert_eq!(r[2], parent, "{r:?}");
        let size: u64 = r[3].parse().expect("size");
        let inodes: u64 = r[4].parse().expect("inodes");
        assert!(size > 0 && inodes > 0, "{r:?}");
    }
    // the same names as the store's own records
    let db: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.store.join("db.json")).expect("db.json"))
            .expect("json");
    let mut db_names: Vec<String> = db["snapshots"]
        .as_object()
        .expect("snapshots")
        .keys()
        .cloned()
        .collect();
    db_names.sort();
    assert_eq!(db_names, want);

    // a snapshot with children is refused, and nothing changes
    let before = std::fs::read(c.store.join("db.json")).expect("db.json");
    let e = rd_err(&["--driver", &c.driver, "driver", "rm", &chain[1]]);
    assert!(
        e.contains("layer-cache") && e.contains(&chain[1]) && e.contains(&chain[2]),
        "{e}"
    );
    assert!(e.contains("remove those first"), "{e}");
    assert_eq!(
        std::fs::read(c.store.join("db.json")).expect("db.json"),
        before
    );
    assert_eq!(snapshot_rows(&c.driver).len(), 3);
    // an unknown name fails like rm without -f, and removes nothing
    let e = rd_err(&[
        "--driver",
        &c.driver,
        "driver",
        "rm",
        &chain[2],
        "sha256:nosuch",
    ]);
    assert!(e.contains("no snapshot \"sha256:nosuch\""), "{e}");
    assert_eq!(snapshot_rows(&c.driver).len(), 3);

    // the top one goes (quickly, though its tree holds a fifo)
    let (ok, _, err) = rd_within(&["--driver", &c.driver, "driver", "rm", &chain[2]], 120);
    assert!(ok, "driver rm failed: {err}");
    let rows = snapshot_rows(&c.driver);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r[0] != chain[2]), "{rows:?}");

    // the next unpack extracts that layer again, to the same tree
    let again = c.tmp.path().join("again");
    rd_ok(&[
        "--driver",
        &c.driver,
        "unpack",
        "--image",
        &c.img,
        s(&again),
    ]);
    assert_same_tree(&c.plain.join("rootfs"), &again.join("rootfs"));
    let rows = snapshot_rows(&c.driver);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().any(|r| r[0] == chain[2] && r[1] == "committed"));

    // rm waits for the store lock an unpack holds, removing nothing meanwhile
    waits_for_gc_lock(
        &c.store,
        Command::new(rumoci_bin())
            .args(["--driver", &c.driver, "driver", "rm", &chain[2]])
            .env("XDG_CACHE_HOME", cache_home()),
        "store",
        || {
            let db = std::fs::read_to_string(c.store.join("db.json")).expect("db.json");
            assert!(db.contains(&chain[2]), "removed while the lock was held");
        },
    );
    assert_eq!(snapshot_rows(&c.driver).len(), 2);

    // a parent and its child go together, in any order given
    let (ok, _, err) = rd_within(
        &["--driver", &c.driver, "driver", "rm", &chain[0], &chain[1]],
        120,
    );
    assert!(ok, "driver rm failed: {err}");
    assert!(snapshot_rows(&c.driver).is_empty());
}

#[test]
fn driver_snapshots_and_rm_need_a_layer_store_driver() {
    for args in [&["driver", "snapshots"][..], &["driver", "rm", "x"][..]] {
        let e = rd_err(args);
        assert!(e.contains("no layer-store driver given"), "{e}");
        let mut a = args.to_vec();
        let wasm = plugin("dir-cas");
        a.extend_from_slice(&["--driver", &wasm]);
        let e = rd_err(&a);
        assert!(e.contains("no layer-store driver given"), "{e}");
    }
    let e = rd_err(&["driver", "rm"]);
    assert!(e.contains("NAME"), "{e}");
}
