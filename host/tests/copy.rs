//! `rumoci copy`: images between layouts and plugin stores (registries in
//! `registry.rs`): every blob verified, present blobs skipped, the tag set
//! last, one platform or all, referrers on request.

mod common;

use std::path::Path;

use common::*;

/// The blob files of layout `l`.
fn blobs(l: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(l.join("blobs/sha256"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Copy with `--log info`; stderr.
fn copy(args: &[&str]) -> String {
    let mut all = vec!["--log", "info", "copy"];
    all.extend_from_slice(args);
    let out = rd(&all);
    assert!(
        out.status.success(),
        "rumoci copy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn copy_goes_through_a_plugin_store_and_back_and_the_go_umoci_unpacks_it() {
    let Some((tmp, img, src)) = go_fixture() else {
        return;
    };
    let t = tmp.path();
    let (d1, store, d3) = (t.join("d1"), t.join("store"), t.join("d3"));
    let err = copy(&[&img, s(&d1)]);
    assert_eq!(tag_digest(&d1, "t"), tag_digest(&src, "t"));
    // manifest, config, layers: exactly what the tag reaches
    let manifest = read_blob_json(&src, &tag_digest(&src, "t").expect("tag"));
    let n = 2 + manifest["layers"].as_array().expect("layers").len();
    assert_eq!(blobs(&d1).len(), n, "{:?}", blobs(&d1));
    assert!(blobs(&d1).is_subset(&blobs(&src)));
    assert!(err.contains(&format!("{n} blobs copied")), "{err}");

    // again: everything is there
    let err = copy(&[&img, &format!("{}:again", s(&d1))]);
    assert!(
        err.contains(&format!("0 blobs copied (0 bytes), {n} already there")),
        "{err}"
    );
    assert_eq!(tag_digest(&d1, "again"), tag_digest(&src, "t"));
    let summary: serde_json::Value = serde_json::from_str(&rd_ok(&[
        "copy",
        "--json",
        &img,
        &format!("{}:third", s(&d1)),
    ]))
    .expect("copy --json");
    assert_eq!(summary["tag"], "third");
    assert_eq!(summary["digest"].as_str(), tag_digest(&src, "t").as_deref());
    assert_eq!(
        (summary["copied"].as_u64(), summary["skipped"].as_u64()),
        (Some(0), Some(n as u64))
    );

    // into a dir-cas plugin store and back out of it
    let dir_cas = plugin_wasm(&["dir-cas"], "dir-cas");
    copy(&[
        "--to-driver",
        &dir_cas,
        &format!("{}:t", s(&d1)),
        &format!("{}:x", s(&store)),
    ]);
    copy(&[
        "--from-driver",
        &dir_cas,
        &format!("{}:x", s(&store)),
        &format!("{}:y", s(&d3)),
    ]);
    assert_eq!(tag_digest(&d3, "y"), tag_digest(&src, "t"));
    // the global --driver chooses the side without its own flag
    let d4 = t.join("d4");
    let out = rd(&[
        "--driver",
        &dir_cas,
        "copy",
        "--to-driver",
        "dir",
        &format!("{}:x", s(&store)),
        s(&d4),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tag_digest(&d4, "x"), tag_digest(&src, "t"));

    // the Go umoci unpacks the copy as it unpacks its own image
    let (a, b) = (t.join("go-src"), t.join("go-copy"));
    run_ok("umoci", &["unpack", "--image", &img, s(&a)]);
    run_ok(
        "umoci",
        &["unpack", "--image", &format!("{}:y", s(&d3)), s(&b)],
    );
    assert_same_tree(&a.join("rootfs"), &b.join("rootfs"));
}

#[test]
fn a_failed_copy_leaves_no_tag_and_a_second_copy_skips_what_arrived() {
    let Some((tmp, img, src)) = go_fixture() else {
        return;
    };
    let t = tmp.path();
    // corrupt the last layer (the config and other layers copy fine)
    let manifest = read_blob_json(&src, &tag_digest(&src, "t").expect("tag"));
    let layers = manifest["layers"].as_array().expect("layers");
    let layer = layers[layers.len() - 1]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    let path = blob_path(&src, &layer);
    let good = std::fs::read(&path).expect("read");
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    std::fs::write(&path, &bad).expect("write");
    let d = t.join("dst");
    let out = rd(&["copy", &img, s(&d)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("rumoci: copy ") && err.contains(&layer) && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(tag_digest(&d, "t"), None, "a failed copy tagged");
    assert!(
        !blobs(&d).contains(layer.trim_start_matches("sha256:")),
        "a corrupt blob arrived"
    );
    std::fs::write(&path, &good).expect("write");
    let err = copy(&[&img, s(&d)]);
    assert!(err.contains("already there"), "{err}");
    assert_eq!(tag_digest(&d, "t"), tag_digest(&src, "t"));
}

/// Write `doc` as a blob of `l`; its descriptor.
fn put(l: &Path, media_type: &str, doc: &[u8]) -> serde_json::Value {
    let d = rumoci::oci::Digest::sha256_of(doc).to_string();
    std::fs::write(blob_path(l, &d), doc).expect("write blob");
    serde_json::json!({"mediaType": media_type, "digest": d, "size": doc.len()})
}

#[test]
fn copy_takes_every_platform_or_one_and_referrers_unless_told_not_to() {
    let t = tempfile::tempdir().expect("tempdir");
    let l = t.path().join("src");
    let ls = s(&l);
    rd_ok(&["init", "--layout", ls]);
    rd_ok(&[
        "new",
        "--platform",
        "linux/amd64",
        "--image",
        &format!("{ls}:amd"),
    ]);
    rd_ok(&[
        "new",
        "--platform",
        "linux/arm64",
        "--image",
        &format!("{ls}:arm"),
    ]);
    let amd = tag_digest(&l, "amd").expect("amd");
    let arm = tag_digest(&l, "arm").expect("arm");
    let size = |d: &str| std::fs::metadata(blob_path(&l, d)).expect("blob").len();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": size(&amd), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": size(&arm), "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }))
    .expect("json");
    let idx = put(&l, "application/vnd.oci.image.index.v1+json", &index);
    // an SBOM artifact about the amd64 image, listed untagged
    let sbom = put(
        &l,
        "application/spdx+json",
        br#"{"spdxVersion":"SPDX-2.3"}"#,
    );
    let empty = put(&l, "application/vnd.oci.empty.v1+json", b"{}");
    let artifact = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": empty,
        "layers": [sbom],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": size(&amd)},
    }))
    .expect("json");
    let art = put(&l, "application/vnd.oci.image.manifest.v1+json", &artifact);
    let mut tagged = idx.clone();
    tagged["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "multi"});
    let mut untagged = art.clone();
    untagged["artifactType"] = serde_json::json!("application/spdx+json");
    edit_index(&l, |m| m.extend([tagged, untagged]));
    rd_ok(&["rm", "--image", &format!("{ls}:amd")]);
    rd_ok(&["rm", "--image", &format!("{ls}:arm")]);

    // everything (the referrers left out here; they are checked below)
    let all = t.path().join("all");
    copy(&["--no-referrers", &format!("{ls}:multi"), s(&all)]);
    assert_eq!(tag_digest(&all, "multi").as_deref(), idx["digest"].as_str());
    for d in [&amd, &arm] {
        assert!(blob_path(&all, d).is_file(), "{d} not copied");
    }
    assert!(
        !blob_path(&all, art["digest"].as_str().expect("d")).exists(),
        "referrer copied with --no-referrers"
    );

    // one platform: the tag names its manifest
    let one = t.path().join("one");
    copy(&[
        "--platform",
        "linux/arm64",
        &format!("{ls}:multi"),
        &format!("{}:arm", s(&one)),
    ]);
    assert_eq!(tag_digest(&one, "arm"), Some(arm.clone()));
    assert!(
        !blob_path(&one, &amd).exists(),
        "the other platform was copied"
    );
    assert!(!blob_path(&one, idx["digest"].as_str().expect("d")).exists());

    // referrers: the artifact, its blobs and its index.json entry
    let refs = t.path().join("refs");
    let err = copy(&["--referrers", &format!("{ls}:multi"), s(&refs)]);
    assert!(err.contains(", 1 referrers"), "{err}");
    for d in [&art, &sbom, &empty] {
        assert!(blob_path(&refs, d["digest"].as_str().expect("d")).is_file());
    }
    let ij: serde_json::Value =
        serde_json::from_slice(&std::fs::read(refs.join("index.json")).expect("index"))
            .expect("json");
    assert!(
        ij["manifests"]
            .as_array()
            .expect("array")
            .iter()
            .any(|m| m["digest"] == art["digest"]
                && m["artifactType"] == "application/spdx+json"
                && m.get("annotations").is_none()),
        "{ij}"
    );
    // the Go umoci's gc keeps what the copy tagged (nothing dangles)
    if have("umoci") {
        run_ok("umoci", &["gc", "--layout", s(&refs)]);
        rd_ok(&["verify", "--layout", s(&refs)]);
    }
}

/// `referrers attach` makes an OCI 1.1 artifact about the image (its file a
/// layer, the empty config, `subject` the image's manifest) kept as an
/// untagged index.json entry; `referrers list` finds it (also as the
/// referrers API's index with `--json`); the Go umoci's gc keeps it; `copy`
/// carries it (unless `--no-referrers`) and the copy lists it too.
#[test]
fn referrers_are_attached_listed_kept_and_copied() {
    let Some((tmp, img, src)) = go_fixture() else {
        return;
    };
    let sbom = tmp.path().join("sbom.spdx.json");
    std::fs::write(&sbom, br#"{"spdxVersion":"SPDX-2.3","name":"fixture"}"#).expect("write");
    let out = rd_ok(&attach_sbom_args(
        &img,
        &["--annotation", "org.example.tool=test", s(&sbom)],
    ));
    let art = out.trim().to_string();
    let manifest = read_blob_json(&src, &art);
    let image = tag_digest(&src, "t").expect("tag");
    assert_eq!(manifest["subject"]["digest"], image.as_str());
    assert_eq!(manifest["artifactType"], "application/spdx+json");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "sbom.spdx.json"
    );
    let layer = manifest["layers"][0]["digest"].as_str().expect("layer");
    assert_eq!(
        std::fs::read(blob_path(&src, layer)).expect("blob"),
        std::fs::read(&sbom).expect("sbom")
    );
    let listed = rd_ok(&["referrers", "list", "--image", &img]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.starts_with(&format!("{art}\tapplication/spdx+json\t")),
        "{listed}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&rd_ok(&["referrers", "list", "--json", "--image", &img]))
            .expect("json");
    assert_eq!(json["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        json["manifests"][0]["annotations"]["org.example.tool"],
        "test"
    );

    // the Go umoci's gc keeps the artifact (it is an index.json root)
    run_ok("umoci", &["gc", "--layout", s(&src)]);
    assert!(blob_path(&src, &art).is_file() && blob_path(&src, layer).is_file());
    rd_ok(&["verify", "--layout", s(&src)]);

    // carried by copy unless --no-referrers (--referrers still accepted)
    let plain = tmp.path().join("plain");
    copy(&["--no-referrers", &img, s(&plain)]);
    assert_eq!(
        rd_ok(&["referrers", "list", "--image", &format!("{}:t", s(&plain))]),
        ""
    );
    for (name, flags) in [("with", &[][..]), ("asked", &["--referrers"][..])] {
        let with = tmp.path().join(name);
        let mut args = flags.to_vec();
        let dst = s(&with).to_string();
        args.extend([img.as_str(), dst.as_str()]);
        copy(&args);
        assert_eq!(
            rd_ok(&["referrers", "list", "--image", &format!("{dst}:t")]),
            listed
        );
    }

    // a subject that is not a manifest, a bad type: one line, nothing written
    let before = snapshot(&src);
    let err = rd_err(&[
        "referrers",
        "attach",
        "--image",
        &img,
        "--artifact-type",
        "sbom",
        s(&sbom),
    ]);
    assert!(
        err.contains("artifact type \"sbom\": not a media type") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(snapshot(&src), before);
}
