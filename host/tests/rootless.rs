//! Rootless work on trees the owner cannot read, as a real unprivileged
//! user (`nobody`, through `setpriv`), not root with a flag: layers with
//! mode-000 directories and files (RHEL's `/etc/shadow`), bundles where the
//! user chmods things to 000, `insert` of such a source tree, and the
//! removal of a failed unpack's partial rootfs. The Go umoci, as root, reads
//! the results back.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A work directory owned by nobody, inside a temporary directory all can
/// reach; `None` (skipped) unless root with the Go umoci and setpriv.
fn setup() -> Option<(tempfile::TempDir, PathBuf)> {
    if !rustix::process::geteuid().is_root() || !have("umoci") || !have("setpriv") {
        eprintln!("skipped: needs root, umoci and setpriv");
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    chmod(tmp.path(), 0o755);
    let work = tmp.path().join("nobody");
    std::fs::create_dir(&work).expect("mkdir");
    Some((tmp, work))
}

/// Run `script` with `sh -e` as nobody, with `$R` the rumoci binary.
fn as_nobody(work: &Path, script: &str) -> Output {
    run_ok("chown", &["-R", "65534:65534", s(work)]);
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["sh", "-ec", script])
        .current_dir(work)
        .env("R", rumoci_bin())
        .env("HOME", work)
        .output()
        .expect("spawn setpriv")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "as nobody: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An image made by the Go umoci (as root) in `work/layout:t`, whose layer
/// holds a mode-000 `/etc/shadow`, a mode-000 directory holding a file, a
/// hardlink into it and a mode-000 directory beneath it, a mode-0500
/// directory and a mode-0300 one.
fn locked_image(work: &Path) -> String {
    let l = work.join("layout");
    run_ok("umoci", &["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    run_ok("umoci", &["new", "--image", &img]);
    let b = work.join("gobundle");
    run_ok("umoci", &["unpack", "--image", &img, s(&b)]);
    let r = b.join("rootfs");
    std::fs::create_dir_all(r.join("etc")).expect("mkdir");
    std::fs::write(r.join("etc/shadow"), "root:*:1::::::\n").expect("write");
    chmod(&r.join("etc/shadow"), 0o000);
    std::fs::create_dir_all(r.join("locked/inner")).expect("mkdir");
    std::fs::write(r.join("locked/inner/file"), "inner\n").expect("write");
    std::fs::write(r.join("locked/file"), "locked\n").expect("write");
    std::fs::hard_link(r.join("locked/file"), r.join("outside-link")).expect("link");
    chmod(&r.join("locked/inner"), 0o000);
    chmod(&r.join("locked"), 0o000);
    std::fs::create_dir(r.join("readonly")).expect("mkdir");
    std::fs::write(r.join("readonly/x"), "x\n").expect("write");
    chmod(&r.join("readonly"), 0o500);
    std::fs::create_dir(r.join("writeonly")).expect("mkdir");
    chmod(&r.join("writeonly"), 0o300);
    run_ok("umoci", &["repack", "--image", &img, s(&b)]);
    std::fs::remove_dir_all(&b).expect("rm");
    img
}

/// Compare two trees (owners aside: nobody against root) file by file:
/// type, mode, size, content, link target, hardlinks, mtime.
fn assert_same_but_owners(want: &Path, got: &Path) {
    let a = tree_facts(want);
    let b = tree_facts(got);
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same entries"
    );
    for (p, f) in &a {
        let g = &b[p];
        assert_eq!(
            (
                f.kind, f.mode, f.size, &f.content, &f.link, &f.links, f.mtime
            ),
            (
                g.kind, g.mode, g.size, &g.content, &g.link, &g.links, g.mtime
            ),
            "{}",
            p.display()
        );
    }
}

#[test]
fn mode_000_trees_unpack_change_and_repack_as_nobody() {
    let Some((_tmp, work)) = setup() else {
        return;
    };
    let img = locked_image(&work);
    // unpack as nobody: the modes on disk are the image's
    ok(as_nobody(
        &work,
        &format!(r#""$R" unpack --rootless --image "{img}" bundle"#),
    ));
    let go = work.join("go");
    run_ok("umoci", &["unpack", "--rootless", "--image", &img, s(&go)]);
    assert_same_but_owners(&go.join("rootfs"), &work.join("bundle/rootfs"));
    let meta = |p: &str| std::fs::symlink_metadata(work.join("bundle/rootfs").join(p));
    assert_eq!(
        meta("locked").expect("lstat").permissions().mode() & 0o7777,
        0
    );
    assert_eq!(
        meta("etc/shadow").expect("lstat").permissions().mode() & 0o7777,
        0
    );
    // raw unpack extracts over an existing rootfs whose restricted
    // directories this run did not make
    ok(as_nobody(
        &work,
        &format!(
            r#""$R" raw unpack --rootless --image "{img}" raw
            "$R" raw unpack --rootless --image "{img}" raw"#
        ),
    ));
    assert_same_but_owners(&go.join("rootfs"), &work.join("raw"));
    // the mtree records the real modes
    let mtree = std::fs::read_to_string(
        std::fs::read_dir(work.join("bundle"))
            .expect("bundle")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "mtree"))
            .expect("mtree"),
    )
    .expect("read mtree");
    assert!(
        mtree.contains("\nlocked size=") && mtree.contains(" mode=0 "),
        "{mtree}"
    );

    // change things as nobody, chmod files and directories to 000, repack
    ok(as_nobody(
        &work,
        r#"r=bundle/rootfs
        chmod 700 $r/locked
        echo added > $r/locked/added
        rm $r/locked/file
        chmod 000 $r/locked
        echo secret > $r/newfile
        chmod 000 $r/newfile
        mkdir -p $r/newlocked/sub
        echo z > $r/newlocked/sub/z
        chmod 000 $r/newlocked/sub $r/newlocked
        chmod 000 $r/readonly
        "$R" repack --image layout:t bundle"#,
    ));
    // the bundle keeps its modes
    assert_eq!(
        meta("newlocked").expect("lstat").permissions().mode() & 0o7777,
        0
    );
    assert_eq!(
        meta("newfile").expect("lstat").permissions().mode() & 0o7777,
        0
    );
    // the Go umoci unpacks the result with the modes intact
    let go2 = work.join("go2");
    run_ok("umoci", &["unpack", "--rootless", "--image", &img, s(&go2)]);
    assert_same_but_owners(&work.join("bundle/rootfs"), &go2.join("rootfs"));
    assert!(
        !go2.join("rootfs/locked/file").exists(),
        "deleted in a mode-000 dir"
    );
    assert_eq!(
        std::fs::read_to_string(go2.join("rootfs/newlocked/sub/z")).expect("read"),
        "z\n"
    );
    // and an unchanged bundle repacks to no new layer
    let before = index_entry(&work.join("layout"), "t");
    ok(as_nobody(
        &work,
        r#""$R" repack --image layout:t --refresh-bundle bundle
        "$R" repack --image layout:t bundle"#,
    ));
    let after = index_entry(&work.join("layout"), "t");
    let layers = |d: &serde_json::Value| {
        read_blob_json(&work.join("layout"), d["digest"].as_str().expect("digest"))["layers"]
            .as_array()
            .expect("layers")
            .len()
    };
    // the first repack of the old bundle again adds one layer onto its base
    // image (as before); the one after the refresh finds nothing to add
    assert_eq!(
        layers(&after),
        layers(&before),
        "no layer for an unchanged bundle"
    );
    let go3 = work.join("go3");
    run_ok("umoci", &["unpack", "--rootless", "--image", &img, s(&go3)]);
    assert_same_but_owners(&work.join("bundle/rootfs"), &go3.join("rootfs"));
}

#[test]
fn failed_rootless_unpack_removes_its_partial_rootfs() {
    let Some((_tmp, work)) = setup() else {
        return;
    };
    let img = locked_image(&work);
    // a second layer whose blob is corrupt (same size, bytes flipped near
    // the end): extraction of layer 1 (mode-000 directories) succeeds,
    // layer 2 fails
    let b = work.join("gobundle");
    run_ok("umoci", &["unpack", "--image", &img, s(&b)]);
    std::fs::write(b.join("rootfs/second"), vec![b'y'; 300_000]).expect("write");
    run_ok("umoci", &["repack", "--image", &img, s(&b)]);
    let idx = index_entry(&work.join("layout"), "t");
    let manifest = read_blob_json(
        &work.join("layout"),
        idx["digest"].as_str().expect("digest"),
    );
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let blob = blob_path(&work.join("layout"), &layer);
    let mut bytes = std::fs::read(&blob).expect("read");
    let n = bytes.len();
    for b in &mut bytes[n / 2..n - 8] {
        *b ^= 0x5a;
    }
    chmod(&blob, 0o644);
    std::fs::write(&blob, &bytes).expect("write");
    let out = as_nobody(
        &work,
        &format!(r#""$R" unpack --rootless --image "{img}" bundle"#),
    );
    assert!(!out.status.success(), "a corrupt layer fails");
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(e.contains(&layer), "names the layer: {e}");
    assert!(
        !work.join("bundle/rootfs").exists(),
        "the partial rootfs (mode-000 directories and all) is gone: {e}"
    );
}

#[test]
fn insert_rootless_of_a_source_tree_with_mode_000_directories() {
    let Some((_tmp, work)) = setup() else {
        return;
    };
    let img = locked_image(&work);
    ok(as_nobody(
        &work,
        r#"mkdir -p src/dir/sub
        echo a > src/dir/sub/a
        echo b > src/dir/b
        echo c > src/c
        chmod 000 src/c src/dir/sub src/dir
        "$R" insert --rootless --image layout:t src /opt/src
        # the source keeps its modes
        test "$(stat -c %a src/dir)" = 0
        test "$(stat -c %a src/c)" = 0"#,
    ));
    let go = work.join("go");
    run_ok("umoci", &["unpack", "--rootless", "--image", &img, s(&go)]);
    let r = go.join("rootfs/opt/src");
    let mode = |p: &str| {
        std::fs::symlink_metadata(r.join(p))
            .expect("lstat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        (mode("dir"), mode("dir/sub"), mode("c"), mode("dir/b")),
        (0, 0, 0, 0o644)
    );
    assert_eq!(
        std::fs::read_to_string(r.join("dir/sub/a")).expect("read"),
        "a\n"
    );
    assert_eq!(std::fs::read_to_string(r.join("c")).expect("read"), "c\n");
}

/// The layer-cache plugin as nobody (no user namespace): the store keeps
/// the restricted directories open for its owner (it must read them to
/// copy them) and records their modes, which the bundle's copy gets; cold
/// and warm unpacks give the Go umoci's tree, modes and all.
#[test]
fn layer_cache_as_nobody_keeps_mode_000_trees() {
    let Some((_tmp, work)) = setup() else {
        return;
    };
    let img = locked_image(&work);
    let wasm = work.join("layer_cache.wasm");
    std::fs::copy(plugin_wasm(&["layer-cache"], "layer-cache"), &wasm).expect("copy plugin");
    let go = work.join("go");
    run_ok("umoci", &["unpack", "--rootless", "--image", &img, s(&go)]);
    // one script: as_nobody's chown of the work directory would change the
    // store's trees between the runs, which the store's record refuses
    let driver = format!("{},dir=store", s(&wasm));
    ok(as_nobody(
        &work,
        &format!(
            r#"export XDG_CACHE_HOME="$HOME/cache"
            "$R" --driver "{driver}" unpack --rootless --image "{img}" b-cold
            "$R" --driver "{driver}" unpack --rootless --image "{img}" b-warm"#
        ),
    ));
    for run in ["cold", "warm"] {
        assert_same_but_owners(&go.join("rootfs"), &work.join(format!("b-{run}/rootfs")));
    }
}
