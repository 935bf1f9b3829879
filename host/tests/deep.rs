//! Layouts shaped to break walks: a tag pointing at thousands of nested
//! indexes (each a valid, distinct blob), through the built-in driver and
//! the dir-cas plugin; plugins whose answers are hostile in shape (endless
//! listings, snapshot chains that loop or run 10,000 deep); paths too long
//! to print whole. Every command either succeeds or fails with a clean,
//! one-line error naming the object and the limit: never an abort (134), a
//! panic (101), a half-written `index.json` or a changed layout.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use rumoci::limits::MAX_INDEX_DEPTH;
use rumoci::oci::Digest;

const PLUGINS: &[&str] = &["dir-cas", "evil-shape"];
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn plugin(name: &str) -> String {
    plugin_wasm(PLUGINS, name)
}

/// A scratch directory, on tmpfs when there is one (thousands of fsyncs).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

/// Store `bytes` as a blob of layout `l`; its digest and size.
fn put_blob(l: &Path, bytes: &[u8]) -> (String, u64) {
    let d = Digest::sha256_of(bytes).to_string();
    std::fs::write(blob_path(l, &d), bytes).expect("write blob");
    (d, bytes.len() as u64)
}

/// Tag `tag` in `l` as `depth` nested indexes above the manifest `base`
/// points at (each index names the next; all distinct blobs).
fn nest(l: &Path, base: &str, tag: &str, depth: usize) {
    let entry = index_entry(l, base);
    let mut child = serde_json::json!({
        "mediaType": entry["mediaType"],
        "digest": entry["digest"],
        "size": entry["size"],
    });
    for _ in 0..depth {
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [child],
        });
        let (digest, size) = put_blob(l, &serde_json::to_vec(&doc).expect("json"));
        child = serde_json::json!({"mediaType": INDEX, "digest": digest, "size": size});
    }
    child["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    edit_index(l, |m| m.push(child));
}

/// A layout in `dir` with `base` (one layer holding `/hello`) and `deep`,
/// `depth` nested indexes above base's manifest.
fn deep_layout(dir: &Path, depth: usize) -> PathBuf {
    let l = dir.join("layout");
    rd_ok(&["init", "--layout", s(&l)]);
    let base = format!("{}:base", s(&l));
    rd_ok(&["new", "--image", &base]);
    let hello = dir.join("hello");
    std::fs::write(&hello, b"hello\n").expect("write");
    rd_ok(&["insert", "--image", &base, s(&hello), "/hello"]);
    nest(&l, "base", "deep", depth);
    l
}

/// The run ended by itself (exit 0 or 1), said nothing of a panic or an
/// abort, and left a whole `index.json`.
fn assert_clean(args: &[String], out: &Output, layout: &Path) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{args:?}: ended with {:?}: {err}",
        out.status
    );
    for bad in ["panicked", "overflow", "RUST_BACKTRACE", "abort"] {
        assert!(!err.contains(bad), "{args:?}: {err}");
    }
    let raw = std::fs::read(layout.join("index.json")).expect("read index.json");
    serde_json::from_slice::<serde_json::Value>(&raw).expect("index.json is whole");
}

fn run(args: &[String], driver: &[String]) -> Output {
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    a.extend(driver.iter().map(String::as_str));
    rd(&a)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Every command that reads a layout, on the tag `deep`. Each command that
/// makes an image names it with a new tag, so `deep` stays as it was.
fn every_command(l: &Path, work: &Path) -> Vec<Vec<String>> {
    let img = format!("{}:deep", s(l));
    let hello = work.join("hello");
    let tar = work.join("layer.tar");
    if !tar.exists() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "added", &b"new"[..]).expect("tar");
        std::fs::write(&tar, b.into_inner().expect("tar")).expect("write tar");
    }
    let w = |p: &str| s(&work.join(p)).to_string();
    vec![
        strs(&["stat", "--image", &img]),
        strs(&["verify", "--layout", s(l)]),
        strs(&["ls", "--layout", s(l)]),
        strs(&["tag", "--image", &img, "deep-tag"]),
        strs(&["rm", "--image", &format!("{}:deep-tag", s(l))]),
        strs(&[
            "config",
            "--image",
            &img,
            "--config.env",
            "DEEP=1",
            "--tag",
            "deep-config",
        ]),
        strs(&["unpack", "--image", &img, &w("bundle")]),
        strs(&[
            "repack",
            "--image",
            &format!("{}:deep-repack", s(l)),
            &w("bundle"),
        ]),
        strs(&[
            "insert",
            "--image",
            &img,
            "--tag",
            "deep-insert",
            s(&hello),
            "/again",
        ]),
        strs(&[
            "raw",
            "add-layer",
            "--image",
            &img,
            "--tag",
            "deep-layer",
            s(&tar),
        ]),
        strs(&["raw", "unpack", "--image", &img, &w("rootfs")]),
        strs(&["raw", "runtime-config", "--image", &img, &w("config.json")]),
        strs(&["new", "--image", &format!("{}:fresh", s(l))]),
        strs(&["gc", "--layout", s(l)]),
    ]
}

/// 3,000 nested indexes are within the limits: every command works on
/// them, as the Go umoci's do.
fn within_the_limit(driver: &[String]) {
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 3000);
    let before = std::fs::read_dir(l.join("blobs/sha256"))
        .expect("blobs")
        .count();
    for args in every_command(&l, tmp.path()) {
        let out = run(&args, driver);
        assert_clean(&args, &out, &l);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "unpack" {
            // something for repack to find
            std::fs::write(tmp.path().join("bundle/rootfs/changed"), b"x").expect("write");
        }
    }
    // the images made on top of the chain are 3,000 deep too
    for tag in ["deep-config", "deep-repack", "deep-insert", "deep-layer"] {
        let args = strs(&["stat", "--image", &format!("{}:{tag}", s(&l))]);
        let out = run(&args, driver);
        assert_clean(&args, &out, &l);
        assert!(out.status.success(), "{args:?}");
    }
    // gc kept the chain (and each rewritten chain)
    let after = std::fs::read_dir(l.join("blobs/sha256"))
        .expect("blobs")
        .count();
    assert!(after >= before + 4 * 3000, "{before} → {after}");
    let args = strs(&["verify", "--layout", s(&l)]);
    let out = run(&args, driver);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn three_thousand_nested_indexes_work_everywhere() {
    within_the_limit(&[]);
}

#[test]
fn three_thousand_nested_indexes_work_through_the_dir_cas_plugin() {
    within_the_limit(&strs(&["--driver", &plugin("dir-cas")]));
}

/// The Go umoci (which has no limit: its walks recurse on a growable
/// stack) reads the same 3,000-deep layout, so rumoci must not refuse it.
#[test]
fn go_umoci_reads_three_thousand_nested_indexes_too() {
    if !have("umoci") {
        eprintln!("skipped: no umoci");
        return;
    }
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 3000);
    let img = format!("{}:deep", s(&l));
    let go = run_ok("umoci", &["stat", "--image", &img, "--json"]);
    assert!(go.contains("history"), "{go}");
    rd_ok(&["stat", "--image", &img]);
}

/// Beyond the limit every command refuses cleanly, naming the tag and the
/// limit, and changes nothing; commands that do not resolve the tag work.
fn beyond_the_limit(driver: &[String]) {
    let tmp = scratch();
    // the path is the indexes plus the manifest
    let l = deep_layout(tmp.path(), MAX_INDEX_DEPTH);
    for args in every_command(&l, tmp.path()) {
        let before = snapshot(&l);
        let out = run(&args, driver);
        assert_clean(&args, &out, &l);
        let err = String::from_utf8_lossy(&out.stderr);
        match args[0].as_str() {
            "ls" | "rm" | "new" => {
                assert!(out.status.success(), "{args:?}: {err}");
                continue;
            }
            // the bundle was never unpacked
            "repack" => {}
            "verify" => {
                assert!(!out.status.success(), "{args:?}");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("MAX_INDEX_DEPTH"), "{text}");
                // the path is shortened
                assert!(text.contains("more)…"), "{text}");
                assert!(text.lines().all(|x| x.len() < 1000), "{text}");
            }
            _ => {
                assert!(!out.status.success(), "{args:?}");
                assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
                assert!(err.contains("MAX_INDEX_DEPTH"), "{args:?}: {err}");
                if args[0] != "gc" {
                    assert!(err.contains("tag deep"), "{args:?}: {err}");
                }
                // through a plugin, the error names it
                if !driver.is_empty() {
                    assert!(err.contains("driver dir-cas"), "{args:?}: {err}");
                }
            }
        }
        assert_eq!(before, snapshot(&l), "{args:?} changed the layout");
        for out in ["bundle", "rootfs", "config.json"] {
            assert!(!tmp.path().join(out).exists(), "{args:?} left {out}");
        }
    }
}

#[test]
fn nesting_beyond_the_limit_is_refused_cleanly() {
    beyond_the_limit(&[]);
}

#[test]
fn nesting_beyond_the_limit_is_refused_cleanly_through_the_dir_cas_plugin() {
    beyond_the_limit(&strs(&["--driver", &plugin("dir-cas")]));
}

/// A content store answering an index nested 10,000 deep: refused at the
/// limit, long before the end.
#[test]
fn plugin_answering_ten_thousand_nested_indexes() {
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 10_000);
    let dir_cas = plugin("dir-cas");
    let img = format!("{}:deep", s(&l));
    for args in [
        strs(&["stat", "--image", &img]),
        strs(&["gc", "--layout", s(&l)]),
    ] {
        let out = run(&args, &strs(&["--driver", &dir_cas]));
        assert_clean(&args, &out, &l);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("MAX_INDEX_DEPTH"),
            "{err}"
        );
        assert!(err.contains("driver dir-cas (dir_cas.wasm)"), "{err}");
    }
}

#[test]
fn exactly_at_the_limit() {
    let tmp = scratch();
    // MAX_INDEX_DEPTH - 1 indexes and the manifest: the longest path
    let l = deep_layout(tmp.path(), MAX_INDEX_DEPTH - 1);
    // the manifest is reached first through `base`, at depth 1, and again
    // at the end of the longest path
    rd_ok(&["stat", "--image", &format!("{}:deep", s(&l))]);
    rd_ok(&["verify", "--layout", s(&l)]);
    rd_ok(&["gc", "--layout", s(&l)]);
    // one more index is one too many for all three
    nest(&l, "deep", "over", 1);
    fail_naming(
        &[
            vec!["stat", "--image", &format!("{}:over", s(&l))],
            vec!["verify", "--layout", s(&l)],
            vec!["gc", "--layout", s(&l)],
        ],
        &["MAX_INDEX_DEPTH"],
    );
}

/// A bundle whose `umoci.json` claims a descriptor path longer than the
/// limit: repack refuses before writing anything.
#[test]
fn repack_refuses_a_descriptor_path_beyond_the_limit() {
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 2);
    let bundle = tmp.path().join("bundle");
    rd_ok(&["unpack", "--image", &format!("{}:deep", s(&l)), s(&bundle)]);
    let meta_path = bundle.join("umoci.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).expect("read")).expect("parse");
    let walk = meta["from_descriptor_path"]["descriptor_walk"]
        .as_array_mut()
        .expect("descriptor_walk");
    let first = walk[0].clone();
    while walk.len() <= MAX_INDEX_DEPTH {
        walk.insert(0, first.clone());
    }
    std::fs::write(&meta_path, serde_json::to_vec(&meta).expect("json")).expect("write");
    std::fs::write(bundle.join("rootfs/changed"), b"x").expect("write");
    let before = snapshot(&l);
    let args = strs(&["repack", "--image", &format!("{}:r", s(&l)), s(&bundle)]);
    let out = run(&args, &[]);
    assert_clean(&args, &out, &l);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("MAX_INDEX_DEPTH"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // no tag was added (blobs written before the refusal are garbage)
    assert_eq!(
        before[Path::new("index.json")],
        snapshot(&l)[Path::new("index.json")]
    );
}

/// A content store whose listing never ends: gc stops at the limit with an
/// error naming the plugin, and deletes nothing.
#[test]
fn endless_blob_listing_is_cut_off() {
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 1);
    let before = snapshot(&l);
    let spec = format!("{},opt.mode=list", plugin("evil-shape"));
    let args = strs(&["gc", "--layout", s(&l), "--driver", &spec]);
    let out = run(&args, &[]);
    assert_clean(&args, &out, &l);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("driver evil-shape"), "{err}");
    assert!(err.contains("MAX_LISTED_BLOBS"), "{err}");
    assert_eq!(before, snapshot(&l));
}

/// Snapshot chains from a layer store: a loop is refused naming the plugin;
/// 10,000 deep is one image's worth of layers and is listed and removed in
/// linear time; beyond the limit is refused.
#[test]
fn snapshot_chains_that_loop_or_run_deep() {
    let tmp = scratch();
    let store = tmp.path().join("store");
    let wasm = plugin("evil-shape");
    let spec = |opts: &str| format!("{wasm},dir={},{opts}", s(&store));

    for cmd in [
        &["driver", "snapshots"][..],
        &["driver", "rm", "s000001"][..],
    ] {
        let mut args = strs(cmd);
        args.extend(strs(&["--driver", &spec("opt.mode=loop")]));
        let out = run(&args, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("evil-shape") && err.contains("cycle"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }

    let deep = spec("opt.mode=deep,opt.depth=10000");
    let list = rd_ok(&["driver", "snapshots", "--driver", &deep]);
    assert_eq!(list.lines().count(), 10_001);
    // the root has a child left
    let e = rd_err(&["driver", "rm", "s000000", "--driver", &deep]);
    assert!(
        e.contains("s000001") && e.contains("remove those first"),
        "{e}"
    );
    // all of them, children first
    let names: Vec<String> = (0..10_000).map(|i| format!("s{i:06}")).collect();
    let mut args = strs(&["driver", "rm"]);
    args.extend(names);
    args.extend(strs(&["--driver", &deep]));
    let started = std::time::Instant::now();
    let out = run(&args, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed().as_secs() < 60, "{:?}", started.elapsed());

    let deeper = spec("opt.mode=deep,opt.depth=70000");
    let e = rd_err(&["driver", "snapshots", "--driver", &deeper]);
    assert!(
        e.contains("evil-shape") && e.contains("MAX_DOCUMENT_DESCRIPTORS"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}

/// An error about a 6,000-byte path shows its start and end, not all of it.
#[test]
fn long_paths_are_shortened_in_errors() {
    let tmp = scratch();
    let mut long = format!("{}/start", s(tmp.path()));
    while long.len() < 6000 {
        long.push_str("/dir");
    }
    long.push_str("/the-end");
    for args in [
        vec!["stat".to_string(), "--image".into(), format!("{long}:t")],
        vec!["gc".to_string(), "--layout".into(), long.clone()],
        vec!["ls".to_string(), "--layout".into(), long.clone()],
        vec![
            "ls".to_string(),
            "--layout".into(),
            long.clone(),
            "--driver".into(),
            plugin("dir-cas"),
        ],
    ] {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = rd(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.len() < 1200, "{} bytes: {err}", err.len());
        assert!(err.contains("/start/dir/dir"), "{err}");
        assert!(err.contains("/dir/the-end"), "{err}");
        assert!(err.contains(" bytes)…"), "{err}");
    }
}

/// A tag whose path runs through another tag's chain and past the limit:
/// the longer path is found whichever tag a walk meets first (walks that
/// visit each document once must still look at the longest path).
#[test]
fn a_longer_path_through_a_shared_chain_is_found() {
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 3000);
    nest(&l, "deep", "deeper", MAX_INDEX_DEPTH - 3000 + 10);
    for round in 0..2 {
        let before = snapshot(&l);
        let e = rd_err(&["gc", "--layout", s(&l)]);
        assert!(e.contains("MAX_INDEX_DEPTH"), "round {round}: {e}");
        assert_eq!(before, snapshot(&l), "gc changed the layout");
        let out = rd(&["verify", "--layout", s(&l)]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "round {round}");
        assert!(
            text.contains("(tag deeper)") && text.contains("MAX_INDEX_DEPTH"),
            "round {round}: {text}"
        );
        rd_ok(&["stat", "--image", &format!("{}:deep", s(&l))]);
        let e = rd_err(&["stat", "--image", &format!("{}:deeper", s(&l))]);
        assert!(e.contains("MAX_INDEX_DEPTH"), "{e}");
        // the other order of index.json
        edit_index(&l, |m| m.reverse());
    }
}

/// Add `manifests` to `index.json` as tag `tag` in an index blob; returns
/// nothing (the tag is appended to `index.json`).
fn tag_index(l: &Path, tag: &str, manifests: Vec<serde_json::Value>) {
    let doc = serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests});
    let (digest, size) = put_blob(l, &serde_json::to_vec(&doc).expect("json"));
    let entry = serde_json::json!({
        "mediaType": INDEX, "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": tag},
    });
    edit_index(l, |m| m.push(entry));
}

/// 30 levels of indexes each naming the level below twice: 2^30 paths
/// from 31 small blobs. Resolving is cut off at MAX_WALK_DESCRIPTORS
/// (reading each blob once); verify and gc, which visit each document once,
/// finish quickly.
#[test]
fn exponentially_many_paths_are_cut_off() {
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 1);
    let entry = index_entry(&l, "base");
    let mut child = serde_json::json!({
        "mediaType": entry["mediaType"], "digest": entry["digest"], "size": entry["size"],
    });
    for _ in 0..29 {
        let doc = serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX, "manifests": [child, child],
        });
        let (digest, size) = put_blob(&l, &serde_json::to_vec(&doc).expect("json"));
        child = serde_json::json!({"mediaType": INDEX, "digest": digest, "size": size});
    }
    tag_index(&l, "laughs", vec![child.clone(), child]);
    let started = std::time::Instant::now();
    let e = rd_err(&["stat", "--image", &format!("{}:laughs", s(&l))]);
    assert!(
        e.contains("tag laughs") && e.contains("MAX_WALK_DESCRIPTORS"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    rd_ok(&["verify", "--layout", s(&l)]);
    rd_ok(&["gc", "--layout", s(&l)]);
    assert!(started.elapsed().as_secs() < 120, "{:?}", started.elapsed());
}

/// An index holding more than MAX_DOCUMENT_DESCRIPTORS descriptors is
/// refused by name, by every walk.
#[test]
fn too_many_descriptors_in_one_document() {
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 1);
    let entry = index_entry(&l, "base");
    let one = serde_json::json!({
        "mediaType": entry["mediaType"], "digest": entry["digest"], "size": entry["size"],
    });
    tag_index(
        &l,
        "wide",
        vec![one; rumoci::limits::MAX_DOCUMENT_DESCRIPTORS + 1],
    );
    let before = snapshot(&l);
    fail_naming(
        &[
            vec!["stat", "--image", &format!("{}:wide", s(&l))],
            vec!["gc", "--layout", s(&l)],
            vec!["verify", "--layout", s(&l)],
        ],
        &["MAX_DOCUMENT_DESCRIPTORS", "index sha256:"],
    );
    assert_eq!(before, snapshot(&l));
}

/// A fifo where `index.json` or a blob should be: refused at once (an open
/// would block for good), and `/dev/zero` as a blob is cut at its size.
#[test]
fn special_files_in_a_layout_are_refused_without_blocking() {
    let tmp = scratch();
    let l = deep_layout(tmp.path(), 1);
    let img = format!("{}:deep", s(&l));
    let mdigest = index_entry(&l, "base")["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let manifest = blob_path(&l, &mdigest);
    let saved = std::fs::read(&manifest).expect("read manifest");
    std::fs::remove_file(&manifest).expect("rm");
    run_ok("mkfifo", &[s(&manifest)]);
    let (done, _, err) = rd_within(&["stat", "--image", &img], 20);
    assert!(done, "stat blocked on a fifo blob");
    assert!(err.contains("not a regular file"), "{err}");
    std::fs::remove_file(&manifest).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &manifest).expect("symlink");
    let (done, _, err) = rd_within(&["stat", "--image", &img], 20);
    assert!(done, "stat read /dev/zero for ever");
    assert!(err.contains("not a regular file"), "{err}");
    std::fs::remove_file(&manifest).expect("rm");
    std::fs::write(&manifest, saved).expect("restore");

    let index = l.join("index.json");
    std::fs::rename(&index, tmp.path().join("index.json.saved")).expect("mv");
    run_ok("mkfifo", &[s(&index)]);
    for args in [
        vec!["stat", "--image", img.as_str()],
        vec!["ls", "--layout", s(&l)],
        vec!["gc", "--layout", s(&l)],
    ] {
        let (done, code, err) = rd_within(&args, 20);
        assert!(done, "{args:?} blocked on a fifo index.json");
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Run rumoci, killing it after `secs`: whether it ended by itself, its
/// exit code and its stderr.
fn rd_within(args: &[&str], secs: u64) -> (bool, Option<i32>, String) {
    let mut child = std::process::Command::new(rumoci_bin())
        .args(args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn rumoci");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).expect("read stderr");
            }
            return (true, status.code(), err);
        }
        if std::time::Instant::now() > deadline {
            child.kill().expect("kill");
            child.wait().expect("wait");
            return (false, None, String::new());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Each command exits 1 and says every one of `needles` (stdout or stderr).
fn fail_naming(cmds: &[Vec<&str>], needles: &[&str]) {
    for args in cmds {
        let out = rd(args);
        let err = String::from_utf8_lossy(&out.stderr);
        let text = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for n in needles {
            assert!(text.contains(n), "{args:?}: {text}");
        }
    }
}
