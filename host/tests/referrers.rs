//! Referrers travel with the image: `copy` carries every referrer of what
//! it copies by default — OCI 1.1 artifacts kept as untagged `index.json`
//! entries, the referrers tag schema (`sha256-<hex>`), cosign's tags
//! (`sha256-<hex>.sig`) — and the referrers of referrers (a signature of an
//! SBOM), writing them in the form the destination keeps: untagged entries
//! in a layout, the tag schema in a registry (Debian's docker-registry 2.8,
//! which has no referrers API), and back.

mod common;

use std::path::Path;
use std::process::Command;

use common::registry::Registry;
use common::*;

const PLUGINS: &[&str] = &["registry"];

/// rumoci with the test-local plugin cache and its own data directory.
fn run(data: &Path, args: &[&str]) -> String {
    let cache = cache_home();
    rumoci_env_ok(
        args,
        &[
            ("XDG_CACHE_HOME", s(&cache)),
            ("XDG_DATA_HOME", s(data)),
            ("SOURCE_DATE_EPOCH", "1700000000"),
        ],
    )
}

/// The digests `referrers list` prints, sorted.
fn listed(data: &Path, image: &str, driver: &[&str]) -> Vec<String> {
    let mut args = vec!["referrers", "list", "--image", image];
    args.extend_from_slice(driver);
    let mut v: Vec<String> = run(data, &args)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// The untagged entries of a layout's index.json.
fn untagged(layout: &Path) -> Vec<String> {
    let ij: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("json");
    let mut v: Vec<String> = ij["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"].is_null())
        .map(|m| m["digest"].as_str().expect("digest").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn referrers_travel_with_copy_in_every_form() {
    let Some((tmp, img, src)) = go_fixture() else {
        return;
    };
    let data = tmp.path().join("data");
    let image = tag_digest(&src, "t").expect("tag t");
    let hex = image.trim_start_matches("sha256:");

    // an SBOM about the image, and a signature about the SBOM
    let sbom = tmp.path().join("sbom.spdx.json");
    std::fs::write(&sbom, br#"{"spdxVersion":"SPDX-2.3","name":"fixture"}"#).expect("write");
    let a1 = run(&data, &attach_sbom_args(&img, &[s(&sbom)]))
        .trim()
        .to_string();
    let sig = tmp.path().join("sbom.sig");
    std::fs::write(&sig, b"a signature of the SBOM").expect("write");
    let entry = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": a1,
        "size": std::fs::metadata(blob_path(&src, &a1)).expect("a1").len(),
        "annotations": {"org.opencontainers.image.ref.name": "sbom"}
    });
    edit_index(&src, |m| m.push(entry));
    let a2 = run(
        &data,
        &[
            "referrers",
            "attach",
            "--image",
            &format!("{}:sbom", s(&src)),
            "--artifact-type",
            "application/vnd.example.signature",
            s(&sig),
        ],
    )
    .trim()
    .to_string();
    run(&data, &["rm", "--image", &format!("{}:sbom", s(&src))]);
    // a cosign-style tag: a manifest tagged sha256-<hex>.sig
    let cosign_tag = format!("sha256-{hex}.sig");
    run(&data, &["new", "--image", &format!("{}:tmp", s(&src))]);
    run(
        &data,
        &["tag", "--image", &format!("{}:tmp", s(&src)), &cosign_tag],
    );
    run(&data, &["rm", "--image", &format!("{}:tmp", s(&src))]);
    let c = tag_digest(&src, &cosign_tag).expect("cosign tag");

    let direct = {
        let mut v = vec![a1.clone(), c.clone()];
        v.sort();
        v
    };
    assert_eq!(listed(&data, &img, &[]), direct);
    assert_eq!(
        listed(&data, &format!("{}:t", s(&src)), &[]),
        listed(&data, &img, &[])
    );

    // layout → layout: everything, in the same forms
    let l2 = tmp.path().join("l2");
    let log = {
        let out = Command::new(rumoci_bin())
            .args(["--log", "info", "copy", &img, s(&l2)])
            .env("XDG_CACHE_HOME", cache_home())
            .output()
            .expect("copy");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(log.contains(", 3 referrers"), "{log}");
    assert_eq!(listed(&data, &format!("{}:t", s(&l2)), &[]), direct);
    let mut both = vec![a1.clone(), a2.clone()];
    both.sort();
    assert_eq!(untagged(&l2), both);
    assert_eq!(tag_digest(&l2, &cosign_tag), Some(c.clone()));
    run(&data, &["verify", "--layout", s(&l2)]);

    // --no-referrers: the image alone
    let bare = tmp.path().join("bare");
    run(&data, &["copy", "--no-referrers", &img, s(&bare)]);
    assert!(listed(&data, &format!("{}:t", s(&bare)), &[]).is_empty());
    assert!(!blob_path(&bare, &a1).exists());

    // layout → registry (no referrers API): the tag schema and the cosign tag
    if !have("docker-registry") {
        eprintln!("docker-registry missing: registry half skipped");
        return;
    }
    let reg = Registry::start();
    let driver = format!("{},url={}", plugin_wasm(PLUGINS, "registry"), reg.url());
    run(&data, &["copy", "--to-driver", &driver, &img, "app/img:t"]);
    let tags = Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false", &reg.docker("app/img")])
        .output()
        .expect("skopeo");
    let tags = String::from_utf8_lossy(&tags.stdout);
    let a1_hex = a1.trim_start_matches("sha256:");
    for t in [
        format!("\"sha256-{hex}\""),
        format!("\"sha256-{a1_hex}\""),
        format!("\"{cosign_tag}\""),
    ] {
        assert!(tags.contains(&t), "{t} not in {tags}");
    }
    assert_eq!(
        listed(&data, "app/img:t", &["--driver", &driver]),
        direct,
        "the registry lists the same referrers"
    );
    // skopeo reads the tag-schema index as an image index of the referrers
    let schema = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &reg.docker(&format!("app/img:sha256-{hex}")),
        ])
        .output()
        .expect("skopeo");
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).expect("index");
    assert_eq!(schema["manifests"][0]["digest"], a1.as_str());
    assert_eq!(
        schema["manifests"][0]["artifactType"],
        "application/spdx+json"
    );

    // registry → layout: back as untagged entries and the cosign tag
    let l3 = tmp.path().join("l3");
    run(
        &data,
        &[
            "copy",
            "--from-driver",
            &driver,
            "app/img:t",
            &format!("{}:t", s(&l3)),
        ],
    );
    assert_eq!(listed(&data, &format!("{}:t", s(&l3)), &[]), direct);
    assert_eq!(untagged(&l3), both);
    assert_eq!(tag_digest(&l3, &cosign_tag), Some(c));
    run(&data, &["verify", "--layout", s(&l3)]);
    // copying again adds nothing
    run(&data, &["copy", "--to-driver", &driver, &img, "app/img:t"]);
    assert_eq!(listed(&data, "app/img:t", &["--driver", &driver]), direct);
}
