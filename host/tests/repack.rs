//! `repack` against the Go umoci on real images: rumoci unpacks, the rootfs
//! is changed in every way a layer can express, rumoci repacks, and the Go
//! umoci's unpack of the result is exactly the changed tree (and the
//! reverse); skopeo round trips gzip and zstd results; empty diffs, masks,
//! id maps, refused whiteout names, and deterministic layers.

mod common;

use std::path::Path;

use common::*;

/// Every kind of change: new files and directories, a deleted tree, chmod,
/// setuid, chown, symlinks, hardlinks (new, and to an existing file), a
/// user xattr on a file and a directory, a directory replaced by a file, a
/// file replaced by a directory, a directory emptied and refilled, a fifo.
fn change_tree(r: &Path) {
    std::fs::create_dir_all(r.join("new/dir")).expect("mkdir");
    std::fs::write(r.join("new/dir/file.txt"), b"fresh content\n").expect("w");
    std::fs::hard_link(r.join("new/dir/file.txt"), r.join("new/dir/link2")).expect("link");
    std::os::unix::fs::symlink("../usr/abs", r.join("new/sym")).expect("symlink");
    run_ok("mkfifo", &[s(&r.join("new/fifo2"))]);
    run_ok("chmod", &["4755", s(&r.join("new/dir/file.txt"))]);
    run_ok("chmod", &["0750", s(&r.join("new"))]);
    run_ok("chown", &["1234:5678", s(&r.join("new/dir"))]);
    run_ok(
        "setfattr",
        &[
            "-n",
            "user.added",
            "-v",
            "yes",
            s(&r.join("new/dir/file.txt")),
        ],
    );
    run_ok("setfattr", &["-n", "user.d", "-v", "1", s(&r.join("new"))]);
    // a deleted tree (one whiteout); usr/hard loses its other link
    std::fs::remove_dir_all(r.join("usr/share")).expect("rm");
    // a hardlink to a file that was in the image
    std::fs::hard_link(r.join("usr/hard"), r.join("usr/hard-again")).expect("link");
    // a directory replaced by a file, a file replaced by a directory
    std::fs::remove_dir_all(r.join("bin")).expect("rm");
    std::fs::write(r.join("bin"), b"bin is a file now\n").expect("w");
    std::fs::remove_file(r.join("etc")).expect("rm");
    std::fs::create_dir(r.join("etc")).expect("mkdir");
    std::fs::write(r.join("etc/hosts"), b"127.0.0.1 localhost\n").expect("w");
    // a directory emptied and refilled (a name comes back as another type)
    std::fs::create_dir_all(r.join("opt/app")).expect("mkdir");
    std::fs::remove_file(r.join("usr/abs")).expect("rm");
    std::fs::remove_file(r.join("usr/fifo")).expect("rm");
    std::fs::write(r.join("usr/abs"), b"a file where a symlink was\n").expect("w");
    std::fs::write(r.join("usr/refilled"), b"refill\n").expect("w");
    run_ok("chmod", &["0640", s(&r.join("usr/refilled"))]);
    // mtree compares mtimes in whole seconds, as umoci does: a directory
    // changed within the second the image was made would look unchanged,
    // so give the changed directories a distinct time
    run_ok("touch", &["-d", "@1600000000", s(&r.join("usr")), s(r)]);
}

fn layers(layout: &Path, tag: &str) -> Vec<serde_json::Value> {
    let m = read_blob_json(
        layout,
        index_entry(layout, tag)["digest"].as_str().expect("d"),
    );
    m["layers"].as_array().expect("layers").clone()
}

fn config_of(layout: &Path, tag: &str) -> serde_json::Value {
    let m = read_blob_json(
        layout,
        index_entry(layout, tag)["digest"].as_str().expect("d"),
    );
    read_blob_json(layout, m["config"]["digest"].as_str().expect("d"))
}

/// The tar entry names of a layer blob (any compression), via the system tar.
fn layer_names(layout: &Path, layer: &serde_json::Value) -> Vec<String> {
    let blob = blob_path(layout, layer["digest"].as_str().expect("digest"));
    let mt = layer["mediaType"].as_str().expect("mt");
    let flag = if mt.ends_with("+zstd") {
        "--zstd"
    } else if mt.ends_with("+gzip") {
        "-z"
    } else {
        "-a"
    };
    run_ok("tar", &[flag, "-tf", s(&blob)])
        .lines()
        .map(str::to_string)
        .collect()
}

fn schema_check(layout: &Path, tag: &str) {
    let Some(chk) = go_tool("schema-check") else {
        return;
    };
    let chk = chk.to_str().expect("path");
    let m = index_entry(layout, tag)["digest"]
        .as_str()
        .expect("d")
        .to_string();
    run_ok(chk, &["manifest", s(&blob_path(layout, &m))]);
    let c = read_blob_json(layout, &m)["config"]["digest"]
        .as_str()
        .expect("d")
        .to_string();
    run_ok(chk, &["config", s(&blob_path(layout, &c))]);
}

#[test]
fn repack_round_trips_through_the_go_umoci() {
    let Some((tmp, img, l)) = go_fixture() else {
        return;
    };
    let b = tmp.path().join("bundle");
    rumoci_ok(&["unpack", "--image", &img, s(&b)]);
    let before = layers(&l, "t").len();
    change_tree(&b.join("rootfs"));
    rumoci_ok(&["repack", "--image", &img, s(&b)]);

    let after = layers(&l, "t");
    assert_eq!(after.len(), before + 1);
    let names = layer_names(&l, &after[before]);
    // one whiteout for the deleted tree, none for its children
    assert!(names.contains(&"usr/.wh.share".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("usr/share/")),
        "{names:?}"
    );
    // only what changed: untouched files are not in the layer
    assert!(!names.iter().any(|n| n.contains("passwd")), "{names:?}");
    let cfg = config_of(&l, "t");
    let h = cfg["history"].as_array().expect("history");
    assert_eq!(h.last().expect("entry")["created_by"], "umoci repack");

    // the Go umoci sees exactly the changed tree
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    assert_same_tree(&b.join("rootfs"), &go.join("rootfs"));
    // and so does rumoci
    let again = tmp.path().join("again");
    rumoci_ok(&["unpack", "--image", &img, s(&again)]);
    assert_same_tree(&b.join("rootfs"), &again.join("rootfs"));
    rumoci_ok(&["verify", "--layout", s(&l)]);
    schema_check(&l, "t");

    // the reverse: the Go umoci repacks a change, rumoci unpacks it
    std::fs::write(go.join("rootfs/by-go"), b"go wrote this\n").expect("w");
    std::fs::remove_dir_all(go.join("rootfs/new/dir")).expect("rm");
    // whole seconds: Debian's umoci 0.4.7 rounds mtimes (umoci 0.6 truncates)
    touch_at(
        "@1650000000",
        &[
            &go.join("rootfs/by-go"),
            &go.join("rootfs/new"),
            &go.join("rootfs"),
        ],
    );
    run_ok("umoci", &["repack", "--image", &img, s(&go)]);
    let ours = tmp.path().join("ours");
    rumoci_ok(&["unpack", "--image", &img, s(&ours)]);
    assert_same_tree(&go.join("rootfs"), &ours.join("rootfs"));
}

#[test]
fn empty_diff_adds_history_only_and_refresh_moves_the_bundle() {
    let Some((tmp, img, l)) = go_fixture() else {
        return;
    };
    let b = tmp.path().join("bundle");
    rumoci_ok(&["unpack", "--image", &img, s(&b)]);
    let n = layers(&l, "t").len();
    let h = config_of(&l, "t")["history"].as_array().expect("h").len();
    rumoci_ok(&["repack", "--image", &img, s(&b)]);
    assert_eq!(layers(&l, "t").len(), n, "an empty diff adds no layer");
    let cfg = config_of(&l, "t");
    let hist = cfg["history"].as_array().expect("h");
    assert_eq!(hist.len(), h + 1);
    assert_eq!(hist[h]["empty_layer"], true);
    // --no-history: nothing added at all, same layers
    rumoci_ok(&["repack", "--no-history", "--image", &img, s(&b)]);
    assert_eq!(
        config_of(&l, "t")["history"].as_array().expect("h").len(),
        h
    );

    // --refresh-bundle: the next repack diffs against the new image
    std::fs::write(b.join("rootfs/one"), b"1\n").expect("w");
    rumoci_ok(&["repack", "--refresh-bundle", "--image", &img, s(&b)]);
    assert_eq!(layers(&l, "t").len(), n + 1);
    let manifest = index_entry(&l, "t")["digest"]
        .as_str()
        .expect("d")
        .to_string();
    let hex = manifest.trim_start_matches("sha256:");
    assert!(b.join(format!("sha256_{hex}.mtree")).exists());
    let mtrees: Vec<_> = std::fs::read_dir(&b)
        .expect("bundle")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mtree"))
        .collect();
    assert_eq!(mtrees.len(), 1, "{mtrees:?}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("umoci.json")).expect("meta")).expect("json");
    assert_eq!(
        meta["from_descriptor_path"]["descriptor_walk"][0]["digest"],
        manifest.as_str()
    );
    std::fs::write(b.join("rootfs/two"), b"2\n").expect("w");
    rumoci_ok(&["repack", "--image", &img, s(&b)]);
    let ls = layers(&l, "t");
    assert_eq!(ls.len(), n + 2);
    let names = layer_names(&l, &ls[n + 1]);
    assert!(names.iter().any(|x| x == "two"), "{names:?}");
    assert!(!names.iter().any(|x| x == "one"), "{names:?}");
    // the Go umoci accepts a refreshed bundle too
    std::fs::write(b.join("rootfs/three"), b"3\n").expect("w");
    // Debian's umoci 0.4.7 rounds mtimes to the nearest second (Go's ustar
    // writer) where umoci 0.6 truncates: use whole seconds here
    touch_at(
        "@1700000000",
        &[&b.join("rootfs/two"), &b.join("rootfs/three")],
    );
    run_ok("umoci", &["repack", "--image", &img, s(&b)]);
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    assert_same_tree(&b.join("rootfs"), &go.join("rootfs"));
}

#[test]
fn masks_whiteout_names_and_mapped_owners() {
    let Some((tmp, img, l)) = go_fixture() else {
        return;
    };
    run_ok(
        "umoci",
        &["config", "--image", &img, "--config.volume", "/data"],
    );
    let b = tmp.path().join("bundle");
    rumoci_ok(&[&["unpack"][..], &ID_MAPS, &["--image", &img, s(&b)]].concat());
    let r = b.join("rootfs");
    // a file whose name would be read as a whiteout is refused, nothing changes
    std::fs::write(r.join(".wh.evil"), b"x").expect("w");
    let index_before = std::fs::read(l.join("index.json")).expect("index");
    let out = rumoci(&["repack", "--image", &img, s(&b)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".wh.evil") && err.lines().count() <= 2,
        "{err}"
    );
    assert_eq!(
        std::fs::read(l.join("index.json")).expect("index"),
        index_before
    );
    std::fs::remove_file(r.join(".wh.evil")).expect("rm");

    std::fs::create_dir_all(r.join("data")).expect("mkdir");
    std::fs::write(r.join("data/volume-file"), b"v").expect("w");
    std::fs::create_dir_all(r.join("tmp/cache")).expect("mkdir");
    std::fs::write(r.join("tmp/cache/junk"), b"j").expect("w");
    std::fs::write(r.join("owned"), b"o").expect("w");
    run_ok("chown", &["101000:200050", s(&r.join("owned"))]);
    // new entries must be owned by mapped ids (as created inside the container)
    for p in ["data", "tmp"] {
        run_ok("chown", &["-R", "100000:200000", s(&r.join(p))]);
    }
    rumoci_ok(&[
        "repack",
        "--mask-path",
        "/tmp/cache",
        "--image",
        &img,
        s(&b),
    ]);
    let ls = layers(&l, "t");
    let names = layer_names(&l, ls.last().expect("layer"));
    assert!(names.iter().any(|n| n == "owned"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("data/")), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("tmp/cache")),
        "{names:?}"
    );
    // host ids are mapped back into the container
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    assert_eq!(owner(&go.join("rootfs/owned")), (1000, 50));
    // an owner outside the map is an error naming the file
    run_ok("chown", &["7:7", s(&r.join("owned"))]);
    let out = rumoci(&["repack", "--image", &img, s(&b)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("owned"));
    // --no-mask-volumes includes the volume
    run_ok("chown", &["100000:200000", s(&r.join("owned"))]);
    rumoci_ok(&["repack", "--no-mask-volumes", "--image", &img, s(&b)]);
    let names = layer_names(&l, layers(&l, "t").last().expect("layer"));
    assert!(names.iter().any(|n| n == "data/volume-file"), "{names:?}");
}

#[test]
fn same_change_same_layer_and_skopeo_round_trips() {
    let Some((tmp, img, l)) = go_fixture() else {
        return;
    };
    let mut diff_ids = Vec::new();
    let mut manifests = Vec::new();
    for (i, compress) in ["gzip", "gzip", "zstd"].iter().enumerate() {
        let b = tmp.path().join(format!("b{i}"));
        rumoci_ok(&["unpack", "--image", &img, s(&b)]);
        change_tree(&b.join("rootfs"));
        let tag = format!("{}:r{i}", s(&l));
        rumoci_env_ok(
            &["repack", "--compress", compress, "--image", &tag, s(&b)],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        let cfg = config_of(&l, &format!("r{i}"));
        diff_ids.push(
            cfg["rootfs"]["diff_ids"]
                .as_array()
                .expect("d")
                .last()
                .cloned(),
        );
        manifests.push(index_entry(&l, &format!("r{i}"))["digest"].clone());
    }
    // the same change gives the same diff_id whatever the compression, and
    // the same manifest for the same compression
    assert_eq!(diff_ids[0], diff_ids[1]);
    assert_eq!(diff_ids[0], diff_ids[2]);
    assert_eq!(manifests[0], manifests[1]);
    assert_ne!(manifests[0], manifests[2]);
    let ls = layers(&l, "r2");
    assert_eq!(
        ls.last().expect("l")["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // --compress auto follows the last layer (zstd here)
    let b3 = tmp.path().join("b3");
    rumoci_ok(&["unpack", "--image", &format!("{}:r2", s(&l)), s(&b3)]);
    std::fs::write(b3.join("rootfs/x"), b"x").expect("w");
    rumoci_ok(&["repack", "--image", &format!("{}:r2", s(&l)), s(&b3)]);
    assert_eq!(
        layers(&l, "r2").last().expect("l")["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );

    if !have("skopeo") {
        eprintln!("skopeo part skipped: skopeo missing");
        return;
    }
    for tag in ["r0", "r2"] {
        schema_check(&l, tag);
        let archive = tmp.path().join(format!("{tag}.tar"));
        run_ok(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &format!("oci:{}:{tag}", s(&l)),
                &format!("oci-archive:{}", s(&archive)),
            ],
        );
        let back = tmp.path().join(format!("back-{tag}"));
        run_ok(
            "skopeo",
            &[
                "copy",
                "--quiet",
                &format!("oci-archive:{}", s(&archive)),
                &format!("oci:{}:{tag}", s(&back)),
            ],
        );
        let ub = tmp.path().join(format!("unpacked-{tag}"));
        rumoci_ok(&["unpack", "--image", &format!("{}:{tag}", s(&back)), s(&ub)]);
        // mtimes were clamped to SOURCE_DATE_EPOCH in the layer; compare
        // with a rumoci unpack of the original instead of the bundle
        let orig = tmp.path().join(format!("orig-{tag}"));
        rumoci_ok(&["unpack", "--image", &format!("{}:{tag}", s(&l)), s(&orig)]);
        assert_same_tree(&orig.join("rootfs"), &ub.join("rootfs"));
    }
}

fn mtree_file(bundle: &Path) -> std::path::PathBuf {
    std::fs::read_dir(bundle)
        .expect("bundle")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "mtree"))
        .expect("an mtree file")
}

#[test]
fn mtree_validate_reads_both_umocis_manifests() {
    let Some((tmp, img, _)) = go_fixture() else {
        return;
    };
    let go = tmp.path().join("go");
    let ours = tmp.path().join("ours");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    rumoci_ok(&["unpack", "--image", &img, s(&ours)]);
    // the Go umoci's manifest (go-mtree's own writer, /set lines) and ours
    // both describe their tree with zero differences
    for b in [&go, &ours] {
        let m = mtree_file(b);
        rumoci_ok(&[
            "raw",
            "mtree-validate",
            "-f",
            s(&m),
            "-p",
            s(&b.join("rootfs")),
        ]);
    }
    // and each describes the other's tree too (identical unpacks)
    rumoci_ok(&[
        "raw",
        "mtree-validate",
        "-f",
        s(&mtree_file(&go)),
        "-p",
        s(&ours.join("rootfs")),
    ]);
    // a change is reported, with the path, and fails
    std::fs::write(ours.join("rootfs/usr/new"), b"changed\n").expect("w");
    run_ok("touch", &["-d", "@1000", s(&ours.join("rootfs/usr/new"))]);
    let m = mtree_file(&ours);
    let out = rumoci(&[
        "raw",
        "mtree-validate",
        "-f",
        s(&m),
        "-p",
        s(&ours.join("rootfs")),
    ]);
    assert!(!out.status.success());
    // go-mtree's wording: the path quoted
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\"usr/new\": modified\n"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("validation failed: 1 differences found")
    );
    // restricted to keywords that did not change, it passes
    rumoci_ok(&[
        "raw",
        "mtree-validate",
        "-k",
        "type,uid,gid,mode",
        "-f",
        s(&m),
        "-p",
        s(&ours.join("rootfs")),
    ]);
}
