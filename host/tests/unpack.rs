//! `unpack` against the Go umoci on real images built in the test: the same
//! rootfs file by file, an mtree go-mtree accepts, bundles runc runs and the
//! Go umoci repacks; zstd images converted by skopeo; rootless as a real
//! unprivileged user; failures that clean up.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn unpack_both(img: &str, tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let go = tmp.join("go");
    let ours = tmp.join("ours");
    run_ok("umoci", &["unpack", "--image", img, s(&go)]);
    rumoci_ok(&["unpack", "--image", img, s(&ours)]);
    (go, ours)
}

#[test]
fn unpack_matches_go_umoci() {
    if !have("umoci") || !have("setfattr") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (img, _l) = go_image(tmp.path());
    let (go, ours) = unpack_both(&img, tmp.path());
    assert_same_tree(&go.join("rootfs"), &ours.join("rootfs"));
    // the mtree is accepted by go-mtree with zero differences
    if let Some(chk) = go_tool("mtree-check") {
        let mtree = std::fs::read_dir(&ours)
            .expect("bundle")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "mtree"))
            .expect("mtree file");
        run_ok(
            chk.to_str().expect("path"),
            &[s(&mtree), s(&ours.join("rootfs"))],
        );
    }
    // umoci.json and config.json agree with the Go umoci's
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ours.join("umoci.json")).expect("meta"))
            .expect("json");
    let go_meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(go.join("umoci.json")).expect("meta")).expect("json");
    assert_eq!(
        meta["from_descriptor_path"],
        go_meta["from_descriptor_path"]
    );
    assert_eq!(meta["umoci_version"], "2");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ours.join("config.json")).expect("cfg"))
            .expect("json");
    let go_cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(go.join("config.json")).expect("cfg")).expect("json");
    assert_eq!(cfg["process"]["args"], go_cfg["process"]["args"]);
    assert_eq!(cfg["process"]["user"], go_cfg["process"]["user"]);
    assert_eq!(cfg["process"]["env"], go_cfg["process"]["env"]);
    assert_eq!(cfg["mounts"], go_cfg["mounts"]);
    // the Go umoci repacks a bundle rumoci unpacked
    std::fs::write(ours.join("rootfs/usr/added-after"), b"x").expect("w");
    run_ok(
        "umoci",
        &[
            "repack",
            "--image",
            &format!("{img}-repacked").replace(":t-repacked", ":r"),
            s(&ours),
        ],
    );
}

#[test]
fn unpack_resolves_users_inside_the_rootfs() {
    if !have("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    write_files(
        &src,
        &[
            (
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:A:/home/alice:/bin/sh\n",
            ),
            (
                "etc/group",
                b"root:x:0:\nstaff:x:50:alice\nwheel:x:10:bob,alice\n",
            ),
        ],
    );
    let img = go_new_layout(&tmp.path().join("l"));
    run_ok(
        "umoci",
        &["insert", "--image", &img, s(&src.join("etc")), "/etc"],
    );
    for user in ["alice", "1000", "alice:staff", "1000:50", "4242"] {
        go_config(
            &img,
            &[
                "--config.user",
                user,
                "--config.volume",
                "/data",
                "--config.env",
                "HOME=/override",
            ],
        );
        let go = tmp.path().join(format!("go-{user}"));
        let ours = tmp.path().join(format!("ours-{user}"));
        run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
        rumoci_ok(&["unpack", "--image", &img, s(&ours)]);
        let read = |p: &Path| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(p.join("config.json")).expect("cfg"))
                .expect("json")
        };
        let (a, b) = (read(&go), read(&ours));
        assert_eq!(a["process"]["user"], b["process"]["user"], "user {user}");
        // umoci 0.6 (#652) and rumoci keep an explicitly configured HOME;
        // Debian's 0.4.7 still overwrites it with the passwd home.
        let no_home = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            v.as_array()
                .expect("env")
                .iter()
                .filter(|e| !e.as_str().unwrap_or("").starts_with("HOME="))
                .cloned()
                .collect()
        };
        assert_eq!(
            no_home(&a["process"]["env"]),
            no_home(&b["process"]["env"]),
            "user {user}"
        );
        assert!(
            b["process"]["env"]
                .as_array()
                .expect("env")
                .contains(&"HOME=/override".into())
        );
        assert_eq!(a["mounts"], b["mounts"], "user {user}");
    }
    // a symlinked /etc/passwd pointing at the host's file is read inside
    let evil = tmp.path().join("evil");
    std::fs::create_dir_all(evil.join("etc")).expect("mkdir");
    std::os::unix::fs::symlink("/etc/hostname", evil.join("etc/passwd")).expect("symlink");
    std::fs::write(
        evil.join("etc/hostname"),
        "mallory:x:666:666::/evil:/bin/sh\n",
    )
    .expect("w");
    rumoci_ok(&["insert", "--image", &img, s(&evil.join("etc")), "/etc"]);
    rumoci_ok(&["config", "--image", &img, "--config.user", "mallory"]);
    let b = tmp.path().join("evil-bundle");
    rumoci_ok(&["unpack", "--image", &img, s(&b)]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).expect("cfg")).expect("json");
    assert_eq!(
        cfg["process"]["user"]["uid"], 666,
        "passwd was not read inside the rootfs"
    );
}

#[test]
fn zstd_images_from_skopeo() {
    if !have("umoci") || !have("skopeo") || !have("setfattr") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (img, l) = go_image(tmp.path());
    let z = tmp.path().join("zstd");
    run_ok(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            &format!("oci:{img}"),
            &format!("oci:{}:z", s(&z)),
        ],
    );
    let m = read_blob_json(&z, index_entry(&z, "z")["digest"].as_str().expect("digest"));
    assert!(
        m["layers"][0]["mediaType"]
            .as_str()
            .expect("mt")
            .ends_with("+zstd")
    );
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    let ours = tmp.path().join("ours");
    rumoci_ok(&["unpack", "--image", &format!("{}:z", s(&z)), s(&ours)]);
    assert_same_tree(&go.join("rootfs"), &ours.join("rootfs"));
    let _ = l;
}

#[test]
fn runc_runs_a_rumoci_bundle() {
    if !have("umoci") || !have("runc") || !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED: needs umoci, runc and /bin/busybox (busybox-static)");
        if std::env::var_os("CI").is_some() {
            panic!("runc test requires busybox-static in CI");
        }
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: runc test needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", src.join("bin/busybox")).expect("copy");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    rumoci_ok(&["insert", "--image", &img, s(&src.join("bin")), "/bin"]);
    rumoci_ok(&[
        "config",
        "--image",
        &img,
        "--config.cmd",
        "/bin/busybox",
        "--config.cmd",
        "echo",
        "--config.cmd",
        "hello from runc",
    ]);
    let b = tmp.path().join("bundle");
    rumoci_ok(&["unpack", "--image", &img, s(&b)]);
    let cfg_path = b.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).expect("cfg")).expect("json");
    cfg["process"]["terminal"] = false.into();
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).expect("ser")).expect("write");
    let id = format!("rumoci-test-{}", std::process::id());
    let out = Command::new("runc")
        .args(["run", "--bundle", s(&b), &id])
        .output()
        .expect("runc");
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    assert!(
        out.status.success(),
        "runc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello from runc"
    );
}

#[test]
fn rootless_unpack_as_an_unprivileged_user() {
    if !have("umoci") || !have("setpriv") || !have("setfattr") {
        return;
    }
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let (img, l) = go_image(tmp.path());
    // the unprivileged user needs to reach the layout and the binary
    run_ok("chmod", &["-R", "a+rX", s(tmp.path())]);
    let work = tmp.path().join("nobody");
    std::fs::create_dir(&work).expect("mkdir");
    run_ok("chown", &["65534:65534", s(&work)]);
    let bundle = work.join("bundle");
    let bin = rumoci_bin();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin,
            "unpack",
            "--rootless",
            "--image",
            &img,
            s(&bundle),
        ])
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "rootless unpack failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let go = tmp.path().join("go-rootless");
    run_ok("umoci", &["unpack", "--rootless", "--image", &img, s(&go)]);
    let ours = tree_facts(&bundle.join("rootfs"));
    let theirs = tree_facts(&go.join("rootfs"));
    // owners differ (nobody vs root running umoci --rootless); compare the rest
    assert_eq!(ours.len(), theirs.len());
    for (p, f) in &ours {
        let g = theirs
            .get(p)
            .unwrap_or_else(|| panic!("{} missing", p.display()));
        assert_eq!(f.uid, 65534, "{}", p.display());
        assert_eq!(
            (f.kind, f.mode, f.size, &f.content, &f.link),
            (g.kind, g.mode, g.size, &g.content, &g.link),
            "{}",
            p.display()
        );
        assert_eq!(
            f.xattrs.get("user.rootlesscontainers"),
            g.xattrs.get("user.rootlesscontainers"),
            "{}",
            p.display()
        );
    }
    let _ = l;
}

/// Most images built by other tools have layers without a `./` entry. umoci
/// sets the root's times to the Unix epoch before the first layer, so the
/// root of such an unpack (and of an image without layers) is at 0, not at
/// the time of the unpack: the same through `raw unpack`, twice over one
/// rootfs, and through the layer cache, cold and warm.
#[test]
fn layers_without_a_root_entry_leave_the_root_at_the_epoch() {
    use std::os::unix::fs::MetadataExt;
    if !have("umoci") || !have("tar") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    std::fs::create_dir_all(src.join("etc/app")).expect("mkdir");
    std::fs::write(src.join("etc/app/hello"), "hi\n").expect("write");
    let layer = t.join("layer.tar");
    // names only: no `./` entry for the root
    run_ok("tar", &["-C", s(&src), "-cf", s(&layer), "etc"]);
    assert!(
        !run_ok("tar", &["-tf", s(&layer)])
            .lines()
            .any(|l| l == "./")
    );
    let l = t.join("layout");
    run_ok("umoci", &["init", "--layout", s(&l)]);
    for tag in ["t", "empty"] {
        run_ok("umoci", &["new", "--image", &format!("{}:{tag}", s(&l))]);
    }
    run_ok(
        "umoci",
        &[
            "raw",
            "add-layer",
            "--image",
            &format!("{}:t", s(&l)),
            s(&layer),
        ],
    );
    let mtime = |p: &Path| std::fs::symlink_metadata(p).expect("lstat").mtime();
    for tag in ["t", "empty"] {
        let dir = t.join(tag);
        std::fs::create_dir(&dir).expect("mkdir");
        let (go, ours) = unpack_both(&format!("{}:{tag}", s(&l)), &dir);
        assert_eq!(mtime(&go.join("rootfs")), 0, "Go umoci's root of {tag}");
        assert_eq!(mtime(&ours.join("rootfs")), 0, "root of {tag}");
        assert_same_tree(&go.join("rootfs"), &ours.join("rootfs"));
    }
    let raw = t.join("raw");
    for _ in 0..2 {
        rumoci_ok(&["raw", "unpack", "--image", &format!("{}:t", s(&l)), s(&raw)]);
        assert_eq!(mtime(&raw), 0, "raw unpack's root");
    }
    let driver = format!(
        "{},dir={}",
        plugin_wasm(&["layer-cache"], "layer-cache"),
        s(&t.join("store"))
    );
    for run in ["cold", "warm"] {
        let b = t.join(format!("cache-{run}"));
        rumoci_ok(&[
            "--driver",
            &driver,
            "unpack",
            "--image",
            &format!("{}:t", s(&l)),
            s(&b),
        ]);
        assert_eq!(mtime(&b.join("rootfs")), 0, "{run} layer-cache root");
        assert_same_tree(&t.join("t/go/rootfs"), &b.join("rootfs"));
    }
}
