//! `rumoci index create|add|remove|annotate`: multi-platform indexes over
//! single-platform images of one layout, unpacked per platform, kept by gc,
//! accepted by `verify` and by skopeo.

mod common;

use std::path::Path;

use common::*;

/// A single-platform image `tag` for `platform` with one file saying which.
fn image(l: &Path, tag: &str, platform: &str, tmp: &Path) {
    let img = format!("{}:{tag}", s(l));
    rd_ok(&["new", "--image", &img, "--platform", platform]);
    let f = tmp.join(format!("{tag}.txt"));
    std::fs::write(&f, platform).expect("write");
    rd_ok(&["insert", "--image", &img, s(&f), "/which"]);
}

fn root(l: &Path, tag: &str) -> serde_json::Value {
    let d = index_entry(l, tag);
    read_blob_json(l, d["digest"].as_str().expect("digest"))
}

fn one_line_failure(args: &[&str]) -> String {
    let out = rd(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn an_index_is_made_edited_and_unpacked_per_platform() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = tmp.path().join("layout");
    rd_ok(&["init", "--layout", s(&l)]);
    image(&l, "amd", "linux/amd64", tmp.path());
    image(&l, "arm", "linux/arm64/v8", tmp.path());
    image(&l, "arm2", "linux/arm64/v8", tmp.path());
    image(&l, "ppc", "linux/ppc64le", tmp.path());
    let multi = format!("{}:multi", s(&l));
    rd_ok(&["index", "create", "--image", &multi, "amd", "arm"]);
    let idx = root(&l, "multi");
    assert_eq!(idx["mediaType"], "application/vnd.oci.image.index.v1+json");
    let m = idx["manifests"].as_array().expect("manifests");
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["platform"]["architecture"], "amd64");
    assert_eq!(m[1]["platform"]["variant"], "v8");
    assert_eq!(m[0]["digest"], index_entry(&l, "amd")["digest"]);
    for (p, want) in [
        ("linux/amd64", "linux/amd64"),
        ("linux/arm64/v8", "linux/arm64/v8"),
    ] {
        let b = tmp.path().join(format!("b-{}", p.replace('/', "-")));
        rd_ok(&["unpack", "--platform", p, "--image", &multi, s(&b)]);
        assert_eq!(
            std::fs::read_to_string(b.join("rootfs/which")).expect("which"),
            want
        );
    }
    // the same platform twice is refused, unless replaced
    let e = one_line_failure(&["index", "add", "--image", &multi, "arm2"]);
    assert!(e.contains("--replace"), "{e}");
    rd_ok(&["index", "add", "--image", &multi, "ppc"]);
    rd_ok(&["index", "add", "--replace", "--image", &multi, "arm2"]);
    let m = root(&l, "multi")["manifests"]
        .as_array()
        .expect("m")
        .clone();
    assert_eq!(m.len(), 3);
    assert_eq!(m[1]["digest"], index_entry(&l, "arm2")["digest"]);
    // remove and annotate
    rd_ok(&[
        "index",
        "remove",
        "--image",
        &multi,
        "--platform",
        "linux/arm64",
    ]);
    let e = one_line_failure(&[
        "index",
        "remove",
        "--image",
        &multi,
        "--platform",
        "linux/s390x",
    ]);
    assert!(e.contains("no image for linux/s390x"), "{e}");
    rd_ok(&[
        "index",
        "annotate",
        "--image",
        &multi,
        "--annotation",
        "org.example.k=v",
    ]);
    rd_ok(&[
        "index",
        "annotate",
        "--image",
        &multi,
        "--platform",
        "linux/ppc64le",
        "--annotation",
        "p=1",
    ]);
    let idx = root(&l, "multi");
    assert_eq!(idx["annotations"]["org.example.k"], "v");
    let m = idx["manifests"].as_array().expect("m");
    assert_eq!(m.len(), 2);
    assert_eq!(m[1]["annotations"]["p"], "1");
    rd_ok(&[
        "index",
        "annotate",
        "--image",
        &multi,
        "--remove-annotation",
        "org.example.k",
    ]);
    assert!(root(&l, "multi").get("annotations").is_none());
    // gc keeps what the index names, verify is happy
    for t in ["amd", "arm", "arm2", "ppc"] {
        rd_ok(&["rm", "--image", &format!("{}:{t}", s(&l))]);
    }
    rd_ok(&["gc", "--layout", s(&l)]);
    let v = rd(&["verify", "--layout", s(&l)]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let b = tmp.path().join("after-gc");
    rd_ok(&[
        "unpack",
        "--platform",
        "linux/ppc64le",
        "--image",
        &multi,
        s(&b),
    ]);
    if have("skopeo") {
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--raw", &format!("oci:{}:multi", s(&l))])
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn index_commands_refuse_what_does_not_fit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let l = tmp.path().join("layout");
    rd_ok(&["init", "--layout", s(&l)]);
    image(&l, "amd", "linux/amd64", tmp.path());
    image(&l, "amd2", "linux/amd64", tmp.path());
    let multi = format!("{}:multi", s(&l));
    let before = snapshot(&l);
    let e = one_line_failure(&["index", "create", "--image", &multi, "amd", "amd2"]);
    assert!(e.contains("already has an image for linux/amd64"), "{e}");
    let e = one_line_failure(&["index", "create", "--image", &multi, "missing"]);
    assert!(e.contains("missing"), "{e}");
    let e = one_line_failure(&["index", "add", "--image", &format!("{}:amd", s(&l)), "amd2"]);
    assert!(e.contains("not an image index"), "{e}");
    assert_eq!(snapshot(&l), before);
    rd_ok(&["index", "create", "--image", &multi, "amd"]);
    // an index is not a source
    let e = one_line_failure(&[
        "index",
        "create",
        "--image",
        &format!("{}:nested", s(&l)),
        "multi",
    ]);
    assert!(e.contains("not a single-platform image"), "{e}");
}

/// The architectures of an index's entries, in order.
fn archs(index: &serde_json::Value) -> Vec<&str> {
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap_or_default())
        .collect()
}

/// buildah with its own storage under `dir` (vfs, no system state touched)
/// and a registries.conf letting it reach `insecure` over plain HTTP.
fn buildah(dir: &Path, insecure: Option<&str>, args: &[&str]) -> String {
    std::fs::create_dir_all(dir).expect("buildah dir");
    let conf = dir.join("registries.conf");
    let mut text = String::new();
    if let Some(host) = insecure {
        text = format!("[[registry]]\nlocation = \"{host}\"\ninsecure = true\n");
    }
    std::fs::write(&conf, text).expect("registries.conf");
    let mut all = vec![
        "--root".to_string(),
        s(&dir.join("root")).to_string(),
        "--runroot".into(),
        s(&dir.join("run")).to_string(),
        "--storage-driver".into(),
        "vfs".into(),
        "--registries-conf".into(),
        s(&conf).to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    run_ok("buildah", &refs)
}

/// An index buildah's `manifest create/add/push` wrote is edited by rumoci
/// (and still read by skopeo and the Go umoci); an index rumoci made,
/// pushed to a registry through the registry plugin, is read by buildah's
/// `manifest inspect` with both platforms.
#[test]
fn indexes_go_both_ways_with_buildah() {
    if !have("buildah") || !have("docker-registry") || !have("skopeo") {
        eprintln!("SKIPPED: buildah, docker-registry or skopeo missing");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let l = tmp.path().join("layout");
    rd_ok(&["init", "--layout", s(&l)]);
    image(&l, "amd", "linux/amd64", tmp.path());
    image(&l, "arm", "linux/arm64", tmp.path());

    // buildah makes the index, rumoci removes a platform from it
    let bh = tmp.path().join("buildah");
    buildah(&bh, None, &["manifest", "create", "localhost/list"]);
    for (tag, arch) in [("amd", "amd64"), ("arm", "arm64")] {
        let src = format!("oci:{}:{tag}", s(&l));
        buildah(
            &bh,
            None,
            &["manifest", "add", "--arch", arch, "localhost/list", &src],
        );
    }
    let l2 = tmp.path().join("from-buildah");
    let dst = format!("oci:{}:list", s(&l2));
    buildah(
        &bh,
        None,
        &["manifest", "push", "--all", "localhost/list", &dst],
    );
    let before = root(&l2, "list");
    assert_eq!(
        before["manifests"].as_array().map(Vec::len),
        Some(2),
        "{before}"
    );
    let img2 = format!("{}:list", s(&l2));
    rd_ok(&[
        "index",
        "remove",
        "--image",
        &img2,
        "--platform",
        "linux/arm64",
    ]);
    let after = root(&l2, "list");
    assert_eq!(archs(&after), ["amd64"], "{after}");
    let raw = run_ok("skopeo", &["inspect", "--raw", &dst]);
    assert!(
        raw.contains("\"amd64\"") && !raw.contains("\"arm64\""),
        "{raw}"
    );
    rd_ok(&["verify", "--layout", s(&l2)]);
    run_ok("umoci", &["stat", "--image", &img2]);

    // rumoci makes the index; buildah reads it from a registry
    rd_ok(&[
        "index",
        "create",
        "--image",
        &format!("{}:multi", s(&l)),
        "amd",
        "arm",
    ]);
    let reg = common::registry::Registry::start();
    let driver = format!(
        "{},url={}",
        plugin_wasm(&["registry"], "registry"),
        reg.url()
    );
    rd_ok(&[
        "copy",
        "--to-driver",
        &driver,
        &format!("{}:multi", s(&l)),
        "app/img:multi",
    ]);
    let seen = buildah(
        &bh,
        Some(&reg.authority()),
        &[
            "manifest",
            "inspect",
            &format!("{}/app/img:multi", reg.authority()),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&seen).expect("buildah's json");
    assert_eq!(archs(&v), ["amd64", "arm64"], "{seen}");
}
