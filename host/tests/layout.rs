//! End-to-end tests of the layout and tag commands against real peers:
//! Debian's Go umoci, skopeo and the image-spec JSON schemas.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Validate index.json, oci-layout, and the manifest/config of `tag`.
fn schema_check(layout: &Path, tag: &str) {
    let Some(chk) = go_tool("schema-check") else {
        return;
    };
    let chk = chk.to_str().expect("path");
    run_ok(chk, &["layout", s(&layout.join("oci-layout"))]);
    run_ok(chk, &["index", s(&layout.join("index.json"))]);
    let entry = index_entry(layout, tag);
    let mdigest = entry["digest"].as_str().expect("digest");
    let manifest = read_blob_json(layout, mdigest);
    let out = Command::new(chk)
        .args(["manifest", s(&blob_path(layout, mdigest))])
        .output()
        .expect("run schema-check");
    if !out.status.success() {
        // Debian ships the image-spec 1.1.0-rc2 schemas, which still demand
        // at least one layer; the Go umoci's own `new` fails identically.
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "[layers: Array must have at least 1 items]"
        );
        assert_eq!(manifest["layers"], serde_json::json!([]));
    }
    let cdigest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    run_ok(chk, &["config", s(&blob_path(layout, cdigest))]);
}

#[test]
fn rumoci_layouts_are_accepted_by_umoci_skopeo_and_schemas() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("deep/er/layout");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:v1", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    rumoci_ok(&["tag", "--image", &img, "v2"]);
    rumoci_ok(&["tag", "--image", &img, "ns/with:colon@x"]);
    assert_eq!(
        rumoci_ok(&["ls", "--layout", s(&l)]),
        "v1\nv2\nns/with:colon@x\n"
    );
    schema_check(&l, "v1");

    if have("umoci") {
        assert_eq!(
            run_ok("umoci", &["ls", "--layout", s(&l)]),
            "v1\nv2\nns/with:colon@x\n"
        );
        run_ok("umoci", &["stat", "--image", &format!("{}:v2", s(&l))]);
        let bundle = tmp.path().join("bundle");
        run_ok("umoci", &["unpack", "--image", &img, s(&bundle)]);
        assert!(bundle.join("config.json").is_file());
        assert!(bundle.join("rootfs").is_dir());
    }
    if have("skopeo") {
        let archive = tmp.path().join("img.tar");
        run_ok(
            "skopeo",
            &[
                "copy",
                &format!("oci:{}:v1", s(&l)),
                &format!("oci-archive:{}", s(&archive)),
            ],
        );
        assert!(archive.metadata().expect("archive").len() > 0);
        // skopeo sees the same config digest rumoci wrote
        let inspect = run_ok(
            "skopeo",
            &["inspect", "--raw", &format!("oci:{}:v2", s(&l))],
        );
        let m: serde_json::Value = serde_json::from_str(&inspect).expect("manifest json");
        let ours = read_blob_json(&l, index_entry(&l, "v2")["digest"].as_str().expect("d"));
        assert_eq!(m, ours);
    }
    // remove and gc: the blank image's blobs survive while v2 remains
    rumoci_ok(&["rm", "--image", &img]);
    rumoci_ok(&["rm", "--image", &img]); // a missing tag is not an error
    rumoci_ok(&["gc", "--layout", s(&l)]);
    rumoci_ok(&["stat", "--image", &format!("{}:v2", s(&l))]);
    rumoci_ok(&["rm", "--image", &format!("{}:v2", s(&l))]);
    rumoci_ok(&["rm", "--image", &format!("{}:ns/with:colon@x", s(&l))]);
    rumoci_ok(&["gc", "--layout", s(&l)]);
    let blobs: Vec<_> = std::fs::read_dir(l.join("blobs/sha256"))
        .expect("blobs")
        .collect();
    assert!(blobs.is_empty(), "gc left {} blobs", blobs.len());
}

#[test]
fn new_honours_source_date_epoch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let out = Command::new(rumoci_bin())
        .args(["new", "--image", &format!("{}:t", s(&l))])
        .env("SOURCE_DATE_EPOCH", "1234567890")
        .output()
        .expect("run");
    assert!(out.status.success());
    let stat = rumoci_ok(&["stat", "--json", "--image", &format!("{}:t", s(&l))]);
    let v: serde_json::Value = serde_json::from_str(&stat).expect("json");
    assert_eq!(v["config"]["blob"]["created"], "2009-02-13T23:31:30Z");
    let bad = Command::new(rumoci_bin())
        .args(["new", "--image", &format!("{}:u", s(&l))])
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .expect("run");
    assert!(!bad.status.success());
}

#[test]
fn rumoci_reads_layouts_from_umoci_and_skopeo() {
    if !have("umoci") || !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("go");
    run_ok("umoci", &["init", "--layout", s(&l)]);
    let img = format!("{}:base", s(&l));
    run_ok("umoci", &["new", "--image", &img]);
    // a real layer, from the Go umoci
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::write(src.join("etc/hello"), "world\n").expect("write");
    run_ok(
        "umoci",
        &["insert", "--image", &img, s(&src.join("etc")), "/etc"],
    );
    run_ok(
        "umoci",
        &[
            "config",
            "--image",
            &img,
            "--config.cmd",
            "/bin/true",
            "--author",
            "Go <go@example.org>",
        ],
    );
    let stat: serde_json::Value =
        serde_json::from_str(&rumoci_ok(&["stat", "--json", "--image", &img])).expect("json");
    assert_eq!(stat["config"]["blob"]["author"], "Go <go@example.org>");
    assert_eq!(
        stat["manifest"]["blob"]["layers"]
            .as_array()
            .expect("layers")
            .len(),
        1
    );
    let hist = stat["history"].as_array().expect("history");
    assert!(hist.iter().any(|h| {
        h["created_by"]
            .as_str()
            .unwrap_or("")
            .contains("umoci config")
    }));
    rumoci_ok(&["tag", "--image", &img, "copy"]);
    assert_eq!(run_ok("umoci", &["ls", "--layout", s(&l)]), "base\ncopy\n");
    run_ok("umoci", &["stat", "--image", &format!("{}:copy", s(&l))]);

    // skopeo writes another layout from it
    let sk = tmp.path().join("sk");
    run_ok(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}", img),
            &format!("oci:{}:from-skopeo", s(&sk)),
        ],
    );
    let stat2: serde_json::Value = serde_json::from_str(&rumoci_ok(&[
        "stat",
        "--json",
        "--image",
        &format!("{}:from-skopeo", s(&sk)),
    ]))
    .expect("json");
    assert_eq!(stat2["config"]["blob"], stat["config"]["blob"]);
    assert_eq!(rumoci_ok(&["ls", "--layout", s(&sk)]), "from-skopeo\n");
    rumoci_ok(&["gc", "--layout", s(&sk)]);
    rumoci_ok(&["stat", "--image", &format!("{}:from-skopeo", s(&sk))]);
}

/// Write `bytes` as a blob of the layout; returns (digest, size).
fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let d = rumoci::oci::Digest::sha256_of(bytes);
    std::fs::write(layout.join("blobs/sha256").join(d.hex()), bytes).expect("write blob");
    (d.to_string(), bytes.len())
}

fn blank_manifest(layout: &Path, arch: &str, variant: &str) -> serde_json::Value {
    let cfg = serde_json::json!({
        "architecture": arch, "os": "linux", "variant": variant,
        "config": {}, "rootfs": {"type": "layers", "diff_ids": []}
    });
    let (cd, cs) = put_blob(layout, cfg.to_string().as_bytes());
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": []
    });
    let (md, ms) = put_blob(layout, m.to_string().as_bytes());
    let mut platform = serde_json::json!({"architecture": arch, "os": "linux"});
    if !variant.is_empty() {
        platform["variant"] = variant.into();
    }
    serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": ms, "platform": platform
    })
}

#[test]
fn multi_platform_nested_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let amd = blank_manifest(&l, "amd64", "");
    let arm = blank_manifest(&l, "arm64", "v8");
    let armv7 = blank_manifest(&l, "arm", "v7");
    // a nested index: outer → inner(arm64, arm/v7) + amd64
    let inner = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm, armv7]
    });
    let (id, is) = put_blob(&l, inner.to_string().as_bytes());
    let outer = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [amd, {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": id, "size": is}]
    });
    let (od, os) = put_blob(&l, outer.to_string().as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": od, "size": os,
                       "annotations": {"org.opencontainers.image.ref.name": "multi"}}]
    });
    std::fs::write(l.join("index.json"), index.to_string()).expect("index");
    let img = format!("{}:multi", s(&l));

    let stat_arch = |extra: &[&str]| -> String {
        let mut args = vec!["stat", "--json", "--image", &img];
        args.extend_from_slice(extra);
        let v: serde_json::Value = serde_json::from_str(&rumoci_ok(&args)).expect("json");
        format!(
            "{}/{}",
            v["config"]["blob"]["architecture"].as_str().expect("arch"),
            v["config"]["blob"]["variant"].as_str().unwrap_or("")
        )
    };
    let host = rumoci::cas::refs::PlatformSpec::host();
    if ["amd64", "arm64"].contains(&host.architecture.as_str()) {
        assert!(stat_arch(&[]).starts_with(&format!("{}/", host.architecture)));
    }
    assert_eq!(stat_arch(&["--platform", "linux/arm64"]), "arm64/v8");
    assert_eq!(stat_arch(&["--platform", "linux/arm/v7"]), "arm/v7");
    assert_eq!(stat_arch(&["--platform", "linux/amd64"]), "amd64/");
    let out = rumoci(&["stat", "--image", &img, "--platform", "linux/s390x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no manifest for platform linux/s390x"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // tag flattens to the chosen manifest, as umoci does
    rumoci_ok(&[
        "tag",
        "--image",
        &img,
        "--platform",
        "linux/arm/v7",
        "armv7",
    ]);
    assert_eq!(index_entry(&l, "armv7")["digest"], armv7["digest"]);
    if have("umoci") {
        // the Go umoci can use the flattened tag (it cannot use "multi")
        run_ok("umoci", &["stat", "--image", &format!("{}:armv7", s(&l))]);
    }
    // gc keeps everything reachable through the nested indexes
    let before = snapshot(&l);
    rumoci_ok(&["gc", "--layout", s(&l)]);
    assert_eq!(before, snapshot(&l));
}

#[test]
fn parallel_taggers_lose_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:base", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    let script = format!(
        "for i in $(seq 1 25); do {} tag --image {} p$1-t$i || exit 1; done",
        rumoci_bin(),
        img
    );
    let children: Vec<_> = (0..8)
        .map(|p| {
            Command::new("sh")
                .args(["-c", &script, "sh", &p.to_string()])
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    let tags = rumoci_ok(&["ls", "--layout", s(&l)]);
    let tags: std::collections::BTreeSet<&str> = tags.lines().collect();
    assert_eq!(tags.len(), 201, "lost tags: have {}", tags.len());
    for p in 0..8 {
        for i in 1..=25 {
            assert!(tags.contains(format!("p{p}-t{i}").as_str()));
        }
    }
}

/// Run rumoci expecting failure: exactly one line of error naming `needle`,
/// and the layout unchanged.
fn expect_clean_failure(layout: &Path, args: &[&str], needle: &str) {
    let before = snapshot(layout);
    let out = rumoci(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} does not mention {needle:?}"
    );
    assert_eq!(before, snapshot(layout), "{args:?} changed the layout");
}

#[test]
fn bad_input_fails_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:good", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    let good = index_entry(&l, "good");
    let mdigest = good["digest"].as_str().expect("digest").to_string();
    let manifest = read_blob_json(&l, &mdigest);
    let cdigest = manifest["config"]["digest"]
        .as_str()
        .expect("cfg")
        .to_string();
    let index_path = l.join("index.json");
    let original_index = std::fs::read(&index_path).expect("index");
    let set_entry = |entry: serde_json::Value| {
        let mut idx: serde_json::Value = serde_json::from_slice(&original_index).expect("json");
        idx["manifests"].as_array_mut().expect("arr").push(entry);
        std::fs::write(&index_path, idx.to_string()).expect("write");
    };
    let tagged = |digest: &str, size: u64, tag: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag}
        })
    };
    let stat = |tag: &str| format!("{}:{}", s(&l), tag);

    // invalid tag names and unknown tags
    expect_clean_failure(&l, &["tag", "--image", &img, ".AZ94n18s"], ".AZ94n18s");
    expect_clean_failure(&l, &["stat", "--image", &stat(".bad")], ".bad");
    expect_clean_failure(&l, &["stat", "--image", &stat("nope")], "tag nope");
    expect_clean_failure(
        &l,
        &["new", "--image", &format!("{}/missing:x", s(&l))],
        "missing",
    );

    // a path-traversal digest and an unknown algorithm in index.json
    set_entry(tagged("sha256:../../x", 10, "evil"));
    expect_clean_failure(&l, &["stat", "--image", &stat("good")], "sha256:../../x");
    expect_clean_failure(&l, &["gc", "--layout", s(&l)], "sha256:../../x");
    set_entry(tagged("md5:d41d8cd98f00b204e9800998ecf8427e", 10, "md5"));
    expect_clean_failure(&l, &["ls", "--layout", s(&l)], "md5:");

    // a missing blob
    let missing = format!("sha256:{}", "ab".repeat(32));
    set_entry(tagged(&missing, 10, "missing"));
    expect_clean_failure(&l, &["stat", "--image", &stat("missing")], &missing);
    expect_clean_failure(&l, &["gc", "--layout", s(&l)], &missing);

    // a descriptor that lies about size (truncated / oversized content)
    let msize = std::fs::metadata(blob_path(&l, &mdigest))
        .expect("meta")
        .len();
    set_entry(tagged(&mdigest, msize + 5, "short"));
    expect_clean_failure(&l, &["stat", "--image", &stat("short")], "size mismatch");
    // (only the first bytes are read, so, as in umoci, the digest of what
    // was read fails first)
    set_entry(tagged(&mdigest, msize - 5, "long"));
    expect_clean_failure(&l, &["stat", "--image", &stat("long")], "digest mismatch");

    // a blob whose content does not match its digest
    std::fs::write(&index_path, &original_index).expect("restore");
    let cpath = blob_path(&l, &cdigest);
    let mut cfg = std::fs::read(&cpath).expect("config");
    let pos = cfg.iter().position(|&b| b == b'{').expect("brace");
    cfg[pos + 1] = b' ';
    std::fs::write(&cpath, &cfg).expect("corrupt");
    expect_clean_failure(&l, &["stat", "--image", &img], "digest mismatch");

    // malformed JSON: index.json and a manifest
    std::fs::write(&index_path, b"{\"schemaVersion\":2,\"manifests\":[").expect("write");
    expect_clean_failure(&l, &["ls", "--layout", s(&l)], "index.json");
    expect_clean_failure(&l, &["tag", "--image", &img, "x"], "index.json");
    let (bd, bs) = put_blob(&l, b"{\"schemaVersion\":2,\"config\":");
    set_entry(tagged(&bd, bs as u64, "malformed"));
    expect_clean_failure(&l, &["stat", "--image", &stat("malformed")], &bd);

    // not a layout at all
    let not = tmp.path().join("not");
    std::fs::create_dir(&not).expect("mkdir");
    expect_clean_failure(&not, &["ls", "--layout", s(&not)], "oci-layout");
    expect_clean_failure(&l, &["init", "--layout", s(&l)], "already exists");
}
