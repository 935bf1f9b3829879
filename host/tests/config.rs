//! `config` and `raw add-layer` against the Go umoci: the same change gives
//! byte-identical blobs, and the Go umoci sees rumoci's changes.

mod common;

use std::path::Path;

use common::*;

fn config_of(layout: &Path, tag: &str) -> (String, serde_json::Value) {
    let m = read_blob_json(
        layout,
        index_entry(layout, tag)["digest"].as_str().expect("d"),
    );
    let cd = m["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    let cfg = read_blob_json(layout, &cd);
    (cd, cfg)
}

const CHANGE: &[&str] = &[
    "--config.user",
    "1000:1000",
    "--config.env",
    "A=1",
    "--config.env",
    "PATH=/x:/y",
    "--config.entrypoint",
    "/bin/sh",
    "--config.entrypoint",
    "-c",
    "--config.cmd",
    "echo hi",
    "--config.volume",
    "/data",
    "--config.label",
    "l=v<&>",
    "--config.workingdir",
    "/w",
    "--config.exposedports",
    "80/tcp",
    "--author",
    "Me <me@example.org>",
    "--history.comment",
    "a comment",
    "--history.created",
    "2020-01-02T03:04:05.5+01:00",
    "--created",
    "2019-01-01T00:00:00Z",
];

#[test]
fn same_config_change_gives_same_blob_as_go_umoci() {
    if !have("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    run_ok("umoci", &["init", "--layout", s(&l)]);
    let base = format!("{}:base", s(&l));
    run_ok("umoci", &["new", "--image", &base]);
    let mut go = vec!["config", "--image", &base, "--tag", "go"];
    go.extend_from_slice(CHANGE);
    run_ok("umoci", &go);
    let mut ours = vec!["config", "--image", &base, "--tag", "ours"];
    ours.extend_from_slice(CHANGE);
    rumoci_ok(&ours);
    let (go_digest, go_cfg) = config_of(&l, "go");
    let (our_digest, our_cfg) = config_of(&l, "ours");
    assert_eq!(go_cfg, our_cfg);
    assert_eq!(go_digest, our_digest, "config blobs differ in bytes");

    // and the Go umoci's runtime config reflects rumoci's change
    let rt = tmp.path().join("config.json");
    run_ok(
        "umoci",
        &[
            "raw",
            "runtime-config",
            "--image",
            &format!("{}:ours", s(&l)),
            s(&rt),
        ],
    );
    let rt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rt).expect("read")).expect("json");
    // rumoci's own runtime config carries the same process
    let ours_rt = tmp.path().join("ours-config.json");
    rumoci_ok(&[
        "raw",
        "runtime-config",
        "--image",
        &format!("{}:ours", s(&l)),
        s(&ours_rt),
    ]);
    let ours_rt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ours_rt).expect("read")).expect("json");
    for k in ["args", "cwd", "user", "env"] {
        assert_eq!(rt["process"][k], ours_rt["process"][k], "process.{k}");
    }
    // Debian's umoci 0.4.7 also writes an empty stopSignal annotation
    let mut go_ann = rt["annotations"].clone();
    if go_ann["org.opencontainers.image.stopSignal"] == "" {
        go_ann
            .as_object_mut()
            .expect("annotations")
            .remove("org.opencontainers.image.stopSignal");
    }
    assert_eq!(go_ann, ours_rt["annotations"]);
    assert_eq!(
        rt["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", "echo hi"])
    );
    assert_eq!(rt["process"]["cwd"], "/w");
    assert_eq!(rt["process"]["user"]["uid"], 1000);
    let env = rt["process"]["env"].as_array().expect("env");
    assert!(env.contains(&"PATH=/x:/y".into()) && env.contains(&"A=1".into()));
    assert_eq!(
        rt["annotations"]["org.opencontainers.image.author"],
        "Me <me@example.org>"
    );
    assert!(
        rt["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["destination"] == "/data")
    );
}

#[test]
fn clear_variant_annotations_and_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    rumoci_ok(&[
        "config",
        "--image",
        &img,
        "--platform.variant",
        "v9",
        "--config.env",
        "K=1",
        "--config.label",
        "a=b",
        "--manifest.annotation",
        "x=y",
    ]);
    // a later change keeps the variant (umoci would drop it)
    rumoci_ok(&["config", "--image", &img, "--config.env", "K=2"]);
    let (_, cfg) = config_of(&l, "t");
    assert_eq!(cfg["variant"], "v9");
    assert_eq!(cfg["config"]["Env"], serde_json::json!(["K=2"]));
    assert_eq!(cfg["history"].as_array().expect("history").len(), 2);
    let m = read_blob_json(&l, index_entry(&l, "t")["digest"].as_str().expect("d"));
    assert_eq!(m["annotations"]["x"], "y");
    rumoci_ok(&[
        "config",
        "--image",
        &img,
        "--clear",
        "config.labels",
        "--clear",
        "manifest.annotations",
        "--no-history",
    ]);
    let (_, cfg) = config_of(&l, "t");
    assert!(cfg["config"].get("Labels").is_none());
    assert_eq!(cfg["history"].as_array().expect("history").len(), 2);
    let m = read_blob_json(&l, index_entry(&l, "t")["digest"].as_str().expect("d"));
    assert!(m.get("annotations").is_none());

    for (args, needle) in [
        (vec!["--manifest.annotation", "novalue"], "novalue"),
        (vec!["--config.env", "=x"], "KEY=VALUE"),
        (vec!["--clear", "rootfs.diffids"], "not safe"),
        (vec!["--clear", "bogus"], "bogus"),
        (vec!["--created", "yesterday"], "yesterday"),
        (vec!["--tag", ".bad"], ".bad"),
    ] {
        let before = snapshot(&l);
        let mut a = vec!["config", "--image", &img];
        a.extend(args);
        let out = rumoci(&a);
        assert_eq!(out.status.code(), Some(1), "{a:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{a:?}: {err}");
        assert_eq!(before, snapshot(&l), "{a:?} changed the layout");
    }
}

#[test]
fn raw_add_layer_is_read_by_go_umoci() {
    if !have("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:t", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("dir")).expect("mkdir");
    std::fs::write(src.join("dir/file"), b"content\n").expect("write");
    let tar = tmp.path().join("layer.tar");
    run_ok("tar", &["-C", s(&src), "-cf", s(&tar), "dir"]);
    for (compress, media) in [
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        rumoci_ok(&[
            "raw",
            "add-layer",
            "--image",
            &img,
            "--compress",
            compress,
            s(&tar),
        ]);
        let m = read_blob_json(&l, index_entry(&l, "t")["digest"].as_str().expect("d"));
        let last = m["layers"]
            .as_array()
            .expect("layers")
            .last()
            .cloned()
            .expect("layer");
        assert_eq!(last["mediaType"], media);
    }
    let (_, cfg) = config_of(&l, "t");
    let want = rumoci::oci::Digest::sha256_of(&std::fs::read(&tar).expect("tar")).to_string();
    assert_eq!(cfg["rootfs"]["diff_ids"], serde_json::json!([want, want]));
    assert_eq!(cfg["history"][1]["created_by"], "umoci raw add-layer");
    let bundle = tmp.path().join("bundle");
    run_ok("umoci", &["unpack", "--image", &img, s(&bundle)]);
    assert_eq!(
        std::fs::read(bundle.join("rootfs/dir/file")).expect("file"),
        b"content\n"
    );
    // auto follows the last layer (none), so a third layer stays plain
    rumoci_ok(&["raw", "add-layer", "--image", &img, s(&tar)]);
    let m = read_blob_json(&l, index_entry(&l, "t")["digest"].as_str().expect("d"));
    assert_eq!(
        m["layers"][2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
}
