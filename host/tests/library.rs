//! The library behaves like the command line: the same change repacked
//! with the defaults of `RepackOptions` makes the image `rumoci repack`
//! makes (reproducible with `SOURCE_DATE_EPOCH`); errors say why; a
//! content-store plugin given where a layer store is asked for is refused;
//! an unpack says which layers came from the layer store's cache.
//!
//! One test function: it sets `SOURCE_DATE_EPOCH` in this process, which
//! must not race with another test reading the environment.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rumoci::image::{Drivers, ExtractOptions, LayerUnpack, RepackOptions, Store};

const EPOCH: &str = "1700000000";
const PLUGINS: &[&str] = &["dir-cas", "layer-cache"];

/// Unpack `base` from `layout` into `bundle` through the library, write the
/// same change, repack it with the default options into `tag`; the new
/// manifest's digest.
fn library_build(layout: &Path, bundle: &Path, tag: &str) -> String {
    let store = Store::open(layout).expect("open");
    let out = store
        .unpack("base", None, bundle, ExtractOptions::rootless(), None)
        .expect("unpack");
    // no layer store: every layer read and extracted
    assert!(out.layers.iter().all(|l| *l == LayerUnpack::Extracted));
    assert_eq!(out.layers.len(), 1);
    std::fs::write(bundle.join("rootfs/etc/changed"), "a change\n").expect("write");
    let lock = store.lock().expect("lock");
    let done = store
        .repack(&lock, bundle, tag, &RepackOptions::default())
        .expect("repack");
    done.path.root().digest.to_string()
}

fn manifest_digest(layout: &Path, tag: &str) -> String {
    index_entry(layout, tag)["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

#[test]
fn library_behaves_like_the_cli() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("img");
    let tree = tmp.path().join("tree");
    write_files(
        &tree,
        &[
            ("etc/motd", b"base\n"),
            ("usr/share/doc/readme", b"read me\n"),
            ("usr/bin/tool", &[7u8; 100_000]),
        ],
    );
    std::os::unix::fs::symlink("../share/doc/readme", tree.join("usr/bin/link")).expect("symlink");
    std::fs::hard_link(tree.join("etc/motd"), tree.join("etc/motd.hard")).expect("link");
    let img = |t: &str| format!("{}:{t}", s(&l));
    let with_epoch = |args: &[&str]| rumoci_env_ok(args, &[("SOURCE_DATE_EPOCH", EPOCH)]);
    with_epoch(&["init", "--layout", s(&l)]);
    with_epoch(&["new", "--image", &img("base")]);
    with_epoch(&[
        "insert",
        "--rootless",
        "--image",
        &img("base"),
        s(&tree),
        "/",
    ]);
    // SAFETY: the only test of this binary; no other thread reads the
    // environment while it is set.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var("SOURCE_DATE_EPOCH", EPOCH);
        std::env::set_var("XDG_CACHE_HOME", cache_home());
    }

    // the library, twice: the same image although the change's mtimes differ
    let a = library_build(&l, &tmp.path().join("b1"), "lib1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = library_build(&l, &tmp.path().join("b2"), "lib2");
    assert_eq!(a, b, "the same change repacked twice through the library");

    // the command line makes the same image from the same change
    let b3 = tmp.path().join("b3");
    with_epoch(&["unpack", "--rootless", "--image", &img("base"), s(&b3)]);
    std::fs::write(b3.join("rootfs/etc/changed"), "a change\n").expect("write");
    with_epoch(&["repack", "--image", &img("cli"), s(&b3)]);
    assert_eq!(
        manifest_digest(&l, "cli"),
        a,
        "library and CLI repack differ"
    );
    let config = Store::open(&l)
        .expect("open")
        .config("lib1", None)
        .expect("config");
    let last = config.history.last().expect("a history entry");
    assert_eq!(last.created_by, "umoci repack");
    assert_eq!(last.created.as_deref(), Some("2023-11-14T22:13:20Z"));

    // an error says what was being done and why, on one line
    let store = Store::open(&l).expect("open");
    let e = store.resolve("nosuch", None).expect_err("no such tag");
    let shown = e.to_string();
    let what = e.what().expect("what was being done").to_string();
    assert!(
        shown.starts_with(&what) && shown.len() > what.len() + 2,
        "{shown}"
    );
    assert!(shown.contains("nosuch") && !shown.contains('\n'), "{shown}");
    let debug = format!("{e:?}");
    assert!(
        debug.starts_with(&shown) && debug.ends_with("(not found)"),
        "{debug}"
    );

    // a file that is not a component: one line, no bytes dumped
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, "not a component\n").expect("write");
    let e = Drivers::parse(&[s(&junk)])
        .and_then(|d| d.layer_store().map(|_| ()))
        .expect_err("not a component");
    let shown = e.to_string();
    assert!(shown.contains("junk.wasm"), "{shown}");
    assert!(!shown.contains('\n') && shown.len() < 400, "{shown}");

    // a content store where a layer store is asked for: refused, not None
    let dir_cas = plugin_wasm(PLUGINS, "dir-cas");
    let spec = format!("{dir_cas},dir={}", s(&tmp.path().join("cas-store")));
    let e = Drivers::parse(&[spec.as_str()])
        .and_then(|d| d.layer_store().map(|_| ()))
        .expect_err("a content store is not a layer store");
    assert!(e.to_string().contains("not a layer store"), "{e}");

    // through a layer cache: extracted the first time, cached the second
    let cache = plugin_wasm(PLUGINS, "layer-cache");
    let spec = format!("{cache},dir={}", s(&tmp.path().join("cache")));
    let drivers = Drivers::parse(&[spec.as_str()]).expect("parse");
    let layers = drivers.layer_store().expect("open").expect("a layer store");
    let opts = || ExtractOptions::rootless();
    let first = store
        .unpack("lib1", None, tmp.path().join("c1"), opts(), Some(&*layers))
        .expect("unpack");
    assert_eq!(
        first.layers,
        [LayerUnpack::Extracted, LayerUnpack::Extracted]
    );
    let second = store
        .unpack("cli", None, tmp.path().join("c2"), opts(), Some(&*layers))
        .expect("unpack");
    assert_eq!(second.layers, [LayerUnpack::Cached, LayerUnpack::Cached]);
    assert_eq!(second.cached(), 2);
    assert_same_tree(&tmp.path().join("c1/rootfs"), &tmp.path().join("c2/rootfs"));

    // the Go umoci reads what the library wrote
    if have("umoci") {
        let go = tmp.path().join("go");
        let out = Command::new("umoci")
            .args(["unpack", "--rootless", "--image", &img("lib1"), s(&go)])
            .output()
            .expect("run umoci");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_tree(&tmp.path().join("c1/rootfs"), &go.join("rootfs"));
    }
}
