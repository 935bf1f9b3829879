//! `insert` against the Go umoci: the same insert, unpacked by the Go umoci,
//! gives the same tree file by file; the layer is reproducible.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A source tree with every kind of entry umoci can insert.
fn make_source(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
    write_files(
        root,
        &[
            ("sub/file", b"hello\n"),
            ("empty", b""),
            (&format!("{}long", "n".repeat(120)), b"long name\n"),
            ("sub/deeper/big", &vec![7u8; 300_000]),
        ],
    );
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).expect("symlink");
    std::os::unix::fs::symlink("sub/file", root.join("rel-link")).expect("symlink");
    std::fs::hard_link(root.join("sub/file"), root.join("hard")).expect("link");
    run_ok("mkfifo", &[s(&root.join("fifo"))]);
    run_ok("chmod", &["4755", s(&root.join("sub/file"))]);
    run_ok("chmod", &["1777", s(&root.join("sub/deeper"))]);
    run_ok(
        "setfattr",
        &["-n", "user.k", "-v", "v", s(&root.join("sub/file"))],
    );
    run_ok("chown", &["123:456", s(&root.join("empty"))]);
    run_ok(
        "touch",
        &[
            "-h",
            "-d",
            "2001-02-03 04:05:06.7",
            s(&root.join("rel-link")),
        ],
    );
    run_ok(
        "touch",
        &[
            "-d",
            "2011-02-03 04:05:06.7",
            s(&root.join("sub/deeper/big")),
        ],
    );
    if rustix::process::geteuid().is_root() {
        run_ok("mknod", &[s(&root.join("null")), "c", "1", "3"]);
    }
}

#[test]
fn insert_matches_go_umoci() {
    if !have("umoci") || !have("setfattr") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    make_source(&src);
    // Debian's umoci 0.4.7 rounds sub-second mtimes (0.6 and rumoci truncate):
    // give every file a whole-second mtime so the trees are comparable.
    run_ok(
        "find",
        &[
            s(&src),
            "-exec",
            "touch",
            "-h",
            "-d",
            "2001-02-03 04:05:06",
            "{}",
            "+",
        ],
    );
    let l = tmp.path().join("l");
    run_ok("umoci", &["init", "--layout", s(&l)]);
    run_ok("umoci", &["new", "--image", &format!("{}:base", s(&l))]);
    run_ok(
        "umoci",
        &["tag", "--image", &format!("{}:base", s(&l)), "go"],
    );
    run_ok(
        "umoci",
        &["tag", "--image", &format!("{}:base", s(&l)), "ours"],
    );
    run_ok(
        "umoci",
        &[
            "insert",
            "--image",
            &format!("{}:go", s(&l)),
            s(&src),
            "/opt/app",
        ],
    );
    rumoci_ok(&[
        "insert",
        "--image",
        &format!("{}:ours", s(&l)),
        s(&src),
        "/opt/app",
    ]);
    let go = tmp.path().join("go");
    let ours = tmp.path().join("ours");
    run_ok(
        "umoci",
        &["unpack", "--image", &format!("{}:go", s(&l)), s(&go)],
    );
    run_ok(
        "umoci",
        &["unpack", "--image", &format!("{}:ours", s(&l)), s(&ours)],
    );
    // The root and /opt have no tar entry: unpack creates them "now".
    for tree in [&go, &ours] {
        for d in ["rootfs", "rootfs/opt"] {
            run_ok("touch", &["-d", "@0", s(&tree.join(d))]);
        }
    }
    assert_same_tree(&go.join("rootfs"), &ours.join("rootfs"));

    // --whiteout and --opaque
    rumoci_ok(&[
        "insert",
        "--image",
        &format!("{}:ours", s(&l)),
        "--whiteout",
        "/opt/app/sub",
    ]);
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("only"), b"x").expect("write");
    rumoci_ok(&[
        "insert",
        "--image",
        &format!("{}:ours", s(&l)),
        "--opaque",
        s(&other),
        "/opt/app/",
    ]);
    let after = tmp.path().join("after");
    run_ok(
        "umoci",
        &["unpack", "--image", &format!("{}:ours", s(&l)), s(&after)],
    );
    let names: Vec<_> = std::fs::read_dir(after.join("rootfs/opt/app"))
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("only")]);

    // a file named like a whiteout is refused, and nothing changes
    std::fs::write(src.join(".wh.sneaky"), b"").expect("write");
    let before = snapshot(&l);
    let out = rumoci(&[
        "insert",
        "--image",
        &format!("{}:ours", s(&l)),
        s(&src),
        "/x",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(".wh.sneaky"));
    let blobs_before: Vec<_> = before.keys().filter(|k| k.starts_with("blobs")).collect();
    let after_snap = snapshot(&l);
    let blobs_after: Vec<_> = after_snap
        .keys()
        .filter(|k| k.starts_with("blobs"))
        .collect();
    assert_eq!(blobs_before, blobs_after, "a partial blob survived");
    assert_eq!(
        before.get(Path::new("index.json")),
        after_snap.get(Path::new("index.json"))
    );
}

#[test]
fn insert_layer_is_reproducible() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
    std::fs::write(src.join("a/b/c"), b"data").expect("write");
    std::fs::write(src.join("z"), b"zz").expect("write");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let mut diff_ids = Vec::new();
    for tag in ["one", "two"] {
        let img = format!("{}:{tag}", s(&l));
        let out = Command::new(rumoci_bin())
            .args(["new", "--image", &img])
            .env("SOURCE_DATE_EPOCH", "0")
            .output()
            .expect("run");
        assert!(out.status.success());
        // touch the tree in between: clamped mtimes make no difference
        run_ok("touch", &[s(&src.join("z"))]);
        let out = Command::new(rumoci_bin())
            .args([
                "insert",
                "--image",
                &img,
                "--history.created",
                "2000-01-01T00:00:00Z",
                s(&src),
                "/x",
            ])
            .env("SOURCE_DATE_EPOCH", "1000")
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stat: serde_json::Value =
            serde_json::from_str(&rumoci_ok(&["stat", "--json", "--image", &img])).expect("json");
        diff_ids.push(stat["config"]["blob"]["rootfs"]["diff_ids"].clone());
        diff_ids.push(stat["manifest"]["descriptor"]["digest"].clone());
    }
    assert_eq!(diff_ids[0], diff_ids[2], "diff_id changed between runs");
    assert_eq!(diff_ids[1], diff_ids[3], "manifest changed between runs");
}

#[test]
fn insert_maps_owners_back_into_the_container() {
    if !have("umoci") {
        eprintln!("skipped: umoci missing");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("mapped"), b"m").expect("write");
    run_ok("chown", &["100033:200044", s(&src.join("mapped"))]);
    std::fs::write(src.join("rootless"), b"r").expect("write");
    // umoci's encoding of 992:123
    run_ok(
        "setfattr",
        &[
            "-n",
            "user.rootlesscontainers",
            "-v",
            "0x08e007107b",
            s(&src.join("rootless")),
        ],
    );
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    rumoci_ok(
        &[
            &["insert"][..],
            &ID_MAPS,
            &["--image", &img, s(&src.join("mapped")), "/mapped"],
        ]
        .concat(),
    );
    rumoci_ok(&[
        "insert",
        "--rootless",
        "--image",
        &img,
        s(&src.join("rootless")),
        "/rootless",
    ]);
    // a host owner outside the map is refused
    let out = rumoci(&[
        "insert",
        "--uid-map",
        "0:5:1",
        "--image",
        &img,
        s(&src.join("mapped")),
        "/bad",
    ]);
    assert!(!out.status.success());
    let b = tmp.path().join("b");
    run_ok("umoci", &["unpack", "--image", &img, s(&b)]);
    assert_eq!(owner(&b.join("rootfs/mapped")), (33, 44));
    assert_eq!(owner(&b.join("rootfs/rootless")), (992, 123));
    assert!(
        xattr::get(b.join("rootfs/rootless"), "user.rootlesscontainers")
            .expect("xattr")
            .is_none(),
        "the rootless xattr never reaches a layer"
    );
}
