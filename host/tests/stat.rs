//! `stat` as umoci 0.6 prints it: the text snapshots of upstream's
//! `test/stat.bats` byte for byte, the `--json` document, OCI 1.1
//! artifacts; and the umoci command-line habits around it (`-v`, `h`,
//! `--log warning`, `--flag=true`, `new --platform`, `config --created`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A new layout `image` in `dir` with a blank image tagged `latest`.
fn new_image(dir: &Path) -> (std::path::PathBuf, String) {
    let l = dir.join("image");
    let img = format!("{}:latest", s(&l));
    rumoci_ok(&["init", "--layout", s(&l)]);
    rumoci_ok(&["new", "--image", &img]);
    (l, img)
}

fn manifest_digest(layout: &Path, tag: &str) -> String {
    index_entry(layout, tag)["digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

fn stderr_of(args: &[&str]) -> String {
    let out = rumoci(args);
    assert!(!out.status.success(), "rumoci {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// umoci's `test/stat.bats` "blank image": same config and manifest bytes
/// (so the same digests), and the text form matches the snapshot.
#[test]
fn stat_text_matches_umoci_blank_image_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("image");
    let img = format!("{}:latest", s(&l));
    rumoci_ok(&["init", "--layout", s(&l)]);
    rumoci_ok(&["new", "--image", &img, "--platform", "linux/amd64"]);
    rumoci_ok(&[
        "config",
        "--no-history",
        "--created=2025-09-05T13:05:10.12345+10:00",
        "--image",
        &img,
    ]);
    let got = rumoci_ok(&["stat", "--image", &img]);
    let want = format!(
        "\
{head}Config:
\tDescriptor:
\t\tMedia Type: application/vnd.oci.image.config.v1+json
\t\tDigest: sha256:e5101a46118c740a7709af8eaeec19cbc50a567f4fe7741f8420af39a3779a77
\t\tSize: 135B
{tagged}
== CONFIG ==
Created: 2025-09-05T13:05:10.12345+10:00
Author: \"\"
Platform:
\tOS: linux
\tArchitecture: amd64
Image Config:
\tUser: \"\"
\tCommand: (empty)
Descriptor:
\tMedia Type: application/vnd.oci.image.config.v1+json
\tDigest: sha256:e5101a46118c740a7709af8eaeec19cbc50a567f4fe7741f8420af39a3779a77
\tSize: 135B

== HISTORY ==
LAYER CREATED CREATED BY SIZE COMMENT
",
        head = manifest_head(None),
        tagged = tagged_latest(
            "sha256:98a4b5d5fe4ea076a0a9059075dad54741e055fd0fa016903a8e2b858dcbad80",
            249
        ),
    );
    assert_eq!(got, want);
}

fn touch_tree(root: &Path, date: &str) {
    let out = Command::new("find")
        .arg(root)
        .args(["-exec", "touch", "-h", "-d", date, "{}", "+"])
        .env("TZ", "UTC")
        .output()
        .expect("find");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// umoci's `test/stat.bats` "minimal image": two inserted layers (gzip and
/// zstd), quoting of values with white space, tabs and commas, sets,
/// history table alignment. The layer digests come from the layout; every
/// other byte is the snapshot's.
#[test]
fn stat_text_matches_umoci_minimal_image_snapshot() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, img) = new_image(tmp.path());
    rumoci_ok(&[
        "config",
        "--no-history",
        "--image",
        &img,
        "--author=Aleksa Sarai <cyphar@cyphar.com>",
        "--created=2025-09-05T13:05:10.12345+10:00",
        "--os=gnu+linux",
        "--architecture=riscv64",
    ]);
    let layer = tmp.path().join("layer1");
    std::fs::create_dir_all(layer.join("foo/bar/baz")).expect("mkdir");
    std::fs::write(layer.join("file"), "dummy data\n").expect("write");
    std::os::unix::fs::symlink("foo", layer.join("link")).expect("symlink");
    for d in ["", "foo", "foo/bar", "foo/bar/baz"] {
        std::fs::set_permissions(layer.join(d), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    std::fs::set_permissions(layer.join("file"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    touch_tree(&layer, "1997-03-25T13:40:00");
    rumoci_ok(&[
        "insert",
        "--rootless",
        "--image",
        &img,
        "--history.author=Aleksa Sarai <cyphar@cyphar.com>",
        "--history.comment=basic insert",
        "--history.created=1997-03-25T13:40:00Z",
        s(&layer),
        "/",
    ]);
    let layer2 = tmp.path().join("layer2");
    std::fs::create_dir(&layer2).expect("mkdir");
    std::fs::set_permissions(&layer2, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    touch_tree(&layer2, "1997-03-25T13:42:00");
    rumoci_ok(&[
        "insert",
        "--rootless",
        "--image",
        &img,
        "--compress=zstd",
        "--history.author=Foo Bar <foo\tbar\nbaz@fake.email>",
        "--history.comment=whiteout /",
        "--history.created_by=umoci insert --opaque",
        "--history.created=1997-03-25T13:42:00Z",
        "--opaque",
        s(&layer2),
        "/foo",
    ]);
    rumoci_ok(&[
        "config",
        "--image",
        &img,
        "--config.user=foo:bar",
        "--config.exposedports=80/tcp",
        "--config.exposedports=8080/udp",
        "--config.env=HOME=/",
        "--config.env=SHELL=/bin/false",
        "--config.env=AAA=1234",
        "--config.env=ESCAPED=a\tb\nc\u{b}d\re",
        "--config.entrypoint=/bin/sh",
        "--config.entrypoint=-c",
        "--config.cmd=true",
        "--config.volume=/tmp",
        "--config.volume=/var",
        "--config.volume=/with, comma",
        "--config.workingdir=/tmp",
        "--config.stopsignal=SIGKILL",
        "--manifest.annotation=ci.umo.abc=foobar\tbaz",
        "--manifest.annotation=ci.umo.xyz=hello world",
        "--history.created=2025-09-05T13:05:10.12345+10:00",
        "--history.author=Hello World <another dummy email@foo.com>",
        "--history.comment=dummy configuration",
    ]);
    let m = read_blob_json(&l, &manifest_digest(&l, "latest"));
    let layers = m["layers"].as_array().expect("layers");
    let digest = |i: usize| layers[i]["digest"].as_str().expect("d").to_string();
    let size = |i: usize| layers[i]["size"].as_u64().expect("size");
    let usize_of = |i: usize| {
        layers[i]["annotations"]["ci.umo.uncompressed_blob_size"]
            .as_str()
            .expect("uncompressed size")
            .to_string()
    };
    let cfg = m["config"]["digest"].as_str().expect("cfg").to_string();
    let cfg_size = m["config"]["size"].as_u64().expect("cfg size");
    let md = manifest_digest(&l, "latest");
    let msize = index_entry(&l, "latest")["size"].as_u64().expect("size");
    let hs = rumoci::stat::gofmt::human_size;
    let (d0, d1) = (digest(0), digest(1));
    // the SIZE column is as wide as "<none>" plus the padding
    let pad6 = |n: u64| format!("{:<6}", n.to_string() + "B");
    let want = format!(
        "\
{head}Config:
\tDescriptor:
\t\tMedia Type: application/vnd.oci.image.config.v1+json
\t\tDigest: {cfg}
\t\tSize: {cfg_size_h}
Layers:
\tDescriptor:
\t\tMedia Type: application/vnd.oci.image.layer.v1.tar+gzip
\t\tDigest: {d0}
\t\tSize: {s0}B
\t\tAnnotations:
\t\t\tci.umo.uncompressed_blob_size: {u0}
\tDescriptor:
\t\tMedia Type: application/vnd.oci.image.layer.v1.tar+zstd
\t\tDigest: {d1}
\t\tSize: {s1}B
\t\tAnnotations:
\t\t\tci.umo.uncompressed_blob_size: {u1}
Annotations:
\tci.umo.abc: \"foobar\\tbaz\"
\tci.umo.xyz: \"hello world\"
{tagged}
== CONFIG ==
Created: 2025-09-05T13:05:10.12345+10:00
Author: \"Aleksa Sarai <cyphar@cyphar.com>\"
Platform:
\tOS: gnu+linux
\tArchitecture: riscv64
Image Config:
\tUser: foo:bar
\tEntrypoint:
\t\t/bin/sh
\t\t-c
\tCommand:
\t\ttrue
\tWorking Directory: /tmp
\tEnvironment:
\t\tHOME=/
\t\tSHELL=/bin/false
\t\tAAA=1234
\t\t\"ESCAPED=a\\tb\\nc\\vd\\re\"
\tStop Signal: SIGKILL
\tExposed Ports: 80/tcp, 8080/udp
\tVolumes: /tmp, /var, \"/with, comma\"
Descriptor:
\tMedia Type: application/vnd.oci.image.config.v1+json
\tDigest: {cfg}
\tSize: {cfg_size_h}

== HISTORY ==
LAYER                                                                   CREATED                         CREATED BY            SIZE   COMMENT
{d0} 1997-03-25T13:40:00Z            umoci insert          {s0p} basic insert
{d1} 1997-03-25T13:42:00Z            umoci insert --opaque {s1p} whiteout /
<none>                                                                  2025-09-05T13:05:10.12345+10:00 umoci config          <none> dummy configuration
",
        head = manifest_head(None),
        tagged = tagged_latest(&md, msize),
        cfg_size_h = hs(cfg_size),
        s0 = size(0),
        s1 = size(1),
        u0 = usize_of(0),
        u1 = usize_of(1),
        s0p = pad6(size(0)),
        s1p = pad6(size(1)),
    );
    assert!(size(0) < 1000 && size(1) < 1000, "sizes as in the snapshot");
    let got = rumoci_ok(&["stat", "--image", &img]);
    assert_eq!(got, want);
}

/// Write `bytes` as a blob of the layout and return its descriptor JSON.
fn insert_blob(layout: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).expect("write blob");
    serde_json::json!({
        "mediaType": media_type,
        "digest": format!("sha256:{hex}"),
        "size": bytes.len(),
    })
}

/// Tag `manifest` (raw JSON bytes) as `tag` in `layout`'s index.json.
fn tag_manifest(layout: &Path, tag: &str, manifest: &[u8]) -> serde_json::Value {
    let mut desc = insert_blob(
        layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest,
    );
    desc["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    edit_index(layout, |m| m.push(desc.clone()));
    desc
}

/// The artifact type of umoci's pseudo-artifacts.
const ARTIFACT_TYPE: &str = "application/vnd.umoci.testing.fake-artifact+foobar";

/// `block` with every line indented by `tabs` tabs.
fn indent(tabs: usize, block: &str) -> String {
    block
        .lines()
        .map(|l| format!("{}{l}\n", "\t".repeat(tabs)))
        .collect()
}

/// The start of `stat`'s MANIFEST section for an image manifest (with its
/// artifact type, if any).
fn manifest_head(artifact_type: Option<&str>) -> String {
    let mut head = String::from(
        "== MANIFEST ==\nSchema Version: 2\nMedia Type: application/vnd.oci.image.manifest.v1+json\n",
    );
    if let Some(t) = artifact_type {
        head += &format!("Artifact Type: {t}\n");
    }
    head
}

/// The manifest's own descriptor, tagged `latest`, as `stat` ends its
/// MANIFEST section.
fn tagged_latest(digest: &str, size: impl std::fmt::Display) -> String {
    format!(
        "Descriptor:\n\tMedia Type: application/vnd.oci.image.manifest.v1+json\n\tDigest: {digest}\n\tSize: {size}B\n\tAnnotations:\n\t\torg.opencontainers.image.ref.name: latest\n"
    )
}

/// [`EMPTY`] as `stat` prints it, `tabs` deep.
fn empty_descriptor(tabs: usize) -> String {
    indent(
        tabs,
        "Descriptor:
\tMedia Type: application/vnd.oci.empty.v1+json
\tDigest: sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
\tSize: 2B
\tData: (2 bytes)
\t\t0000: 7b7d                                     {}
",
    )
}

const EMPTY: &str = r#"{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="}"#;

/// umoci's "pseudo-artifact w/o config or layers": the empty config only
/// embedded (no blob), an empty layer, artifactType and annotations.
#[test]
fn stat_shows_an_artifact_with_embedded_empty_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("image");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let manifest = format!(
        r#"{{"annotations":{{"ci.umo.test-artifact.build-id":"1234567890","ci.umo.test-artifact.data":"foobar"}},"artifactType":"application/vnd.umoci.testing.fake-artifact+foobar","config":{EMPTY},"layers":[{EMPTY}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}}"#
    );
    let desc = tag_manifest(&l, "latest", manifest.as_bytes());
    let img = format!("{}:latest", s(&l));
    let got = rumoci_ok(&["stat", "--image", &img]);
    let want = format!(
        "\
{head}Config:
{empty1}Layers:
{empty1}Annotations:
\tci.umo.test-artifact.build-id: 1234567890
\tci.umo.test-artifact.data: foobar
{tagged}
== CONFIG ==
{empty0}",
        head = manifest_head(Some(ARTIFACT_TYPE)),
        empty1 = empty_descriptor(1),
        empty0 = empty_descriptor(0),
        tagged = tagged_latest(desc["digest"].as_str().expect("d"), &desc["size"]),
    );
    assert_eq!(got, want);

    // JSON: the config blob is the empty document, no history at all
    let v: serde_json::Value =
        serde_json::from_str(&rumoci_ok(&["stat", "--json", "--image", &img])).expect("json");
    assert_eq!(v["config"]["blob"], serde_json::json!({}));
    assert_eq!(
        v["manifest"]["blob"]["artifactType"],
        "application/vnd.umoci.testing.fake-artifact+foobar"
    );
    assert!(v.get("history").is_none(), "{v}");

    // unpack refuses it in one line naming the manifest
    let bundle = tmp.path().join("bundle");
    let err = stderr_of(&["unpack", "--image", &img, s(&bundle)]);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(desc["digest"].as_str().expect("d")), "{err}");
    assert!(err.contains("artifact"), "{err}");
    assert!(!bundle.join("rootfs").exists());
}

/// umoci's "pseudo-artifact w/config": a config of an unknown media type
/// is not read (no config section), a subject is shown.
#[test]
fn stat_shows_an_artifact_with_unknown_config_and_subject() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("image");
    let img = format!("{}:latest", s(&l));
    rumoci_ok(&["init", "--layout", s(&l)]);
    rumoci_ok(&["new", "--image", &format!("{}:base", s(&l))]);
    let subject = index_entry(&l, "base");
    let config = insert_blob(
        &l,
        "application/vnd.umoci.testing.fake-config+json",
        b"{\"dummy\": \"data\"}\n",
    );
    let layer = insert_blob(
        &l,
        "application/vnd.umoci.testing.fake-layer+data",
        &[7u8; 1500],
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.umoci.testing.fake-artifact+foobar",
        "config": config,
        "layers": [layer],
        "subject": {
            "mediaType": subject["mediaType"],
            "digest": subject["digest"],
            "size": subject["size"],
        },
        "annotations": { "ci.umo.test-artifact.build-id": "1234567890" },
    });
    let desc = tag_manifest(&l, "latest", &serde_json::to_vec(&manifest).expect("ser"));
    let got = rumoci_ok(&["stat", "--image", &img]);
    let want = format!(
        "\
{head}Config:
\tDescriptor:
\t\tMedia Type: application/vnd.umoci.testing.fake-config+json
\t\tDigest: {cd}
\t\tSize: 18B
Layers:
\tDescriptor:
\t\tMedia Type: application/vnd.umoci.testing.fake-layer+data
\t\tDigest: {ld}
\t\tSize: 1.5kB
Subject:
\tDescriptor:
\t\tMedia Type: application/vnd.oci.image.manifest.v1+json
\t\tDigest: {sd}
\t\tSize: {ss}B
Annotations:
\tci.umo.test-artifact.build-id: 1234567890
{tagged}",
        cd = config["digest"].as_str().expect("d"),
        ld = layer["digest"].as_str().expect("d"),
        sd = subject["digest"].as_str().expect("d"),
        ss = subject["size"],
        head = manifest_head(Some(ARTIFACT_TYPE)),
        tagged = tagged_latest(desc["digest"].as_str().expect("d"), &desc["size"]),
    );
    assert_eq!(got, want);
    let v: serde_json::Value =
        serde_json::from_str(&rumoci_ok(&["stat", "--json", "--image", &img])).expect("json");
    assert!(v.get("config").is_none(), "{v}");
    assert_eq!(
        v["manifest"]["blob"]["subject"]["digest"],
        subject["digest"]
    );
    // config changes are refused the same way as unpack
    let err = stderr_of(&["config", "--image", &img, "--config.user", "x"]);
    assert!(err.contains("artifact"), "{err}");
}

/// `--json`: blobs exactly as stored (compact), history entries with Go's
/// omitempty (no `empty_layer: false`, no empty `author`/`comment`), a null
/// `layer` and empty `diff_id` for empty layers.
#[test]
fn stat_json_is_umocis_document() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, img) = new_image(tmp.path());
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("f"), "x").expect("write");
    rumoci_ok(&["insert", "--image", &img, s(&src.join("f")), "/f"]);
    rumoci_ok(&[
        "config",
        "--image",
        &img,
        "--config.user=1:1",
        "--history.comment=c",
        "--history.created=2025-01-01T00:00:00+00:00",
    ]);
    let out = rumoci_ok(&["stat", "--json=true", "--image", &img]);
    assert!(out.ends_with("}\n") && out.lines().count() == 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let md = manifest_digest(&l, "latest");
    let stored = std::fs::read_to_string(blob_path(&l, &md)).expect("read");
    // the manifest blob is spliced in as stored (Go's RawMessage)
    assert!(out.contains(stored.trim_end()), "{out}");
    assert_eq!(v["manifest"]["descriptor"]["digest"], md.as_str());
    assert_eq!(
        v["manifest"]["descriptor"]["annotations"]["org.opencontainers.image.ref.name"],
        "latest"
    );
    let cd = v["config"]["descriptor"]["digest"].as_str().expect("cd");
    let cstored = std::fs::read_to_string(blob_path(&l, cd)).expect("read");
    assert!(out.contains(cstored.trim_end()));
    let h = v["history"].as_array().expect("history");
    assert_eq!(h.len(), 2);
    let layer = h[0].as_object().expect("obj");
    assert!(layer["layer"]["digest"].is_string());
    assert!(
        layer["diff_id"]
            .as_str()
            .expect("diff")
            .starts_with("sha256:")
    );
    assert_eq!(layer["created_by"], "umoci insert");
    for absent in ["empty_layer", "author", "comment"] {
        assert!(!layer.contains_key(absent), "{absent} in {layer:?}");
    }
    let cfg = h[1].as_object().expect("obj");
    assert!(cfg["layer"].is_null());
    assert_eq!(cfg["diff_id"], "");
    assert_eq!(cfg["empty_layer"], true);
    assert_eq!(cfg["comment"], "c");
    assert_eq!(cfg["created"], "2025-01-01T00:00:00Z");
    // the stored history entry of the layer has no empty_layer key either
    let blob = read_blob_json(&l, cd);
    let stored_h = blob["history"][0].as_object().expect("obj");
    assert!(!stored_h.contains_key("empty_layer"), "{stored_h:?}");
    // --json=false is the text form
    let text = rumoci_ok(&["stat", "--json=false", "--image", &img]);
    assert!(text.starts_with("== MANIFEST ==\n"), "{text}");
}

/// An image made by Debian's Go umoci (0.4.7): rumoci's stat JSON holds
/// its blobs as stored and the same history as umoci's own stat.
#[test]
fn stat_reads_images_made_by_go_umoci() {
    if !have("umoci") {
        eprintln!("skipped: umoci (Go) not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("image");
    let img = format!("{}:latest", s(&l));
    run_ok("umoci", &["init", "--layout", s(&l)]);
    run_ok("umoci", &["new", "--image", &img]);
    let src = tmp.path().join("f");
    std::fs::write(&src, "x").expect("write");
    run_ok("umoci", &["insert", "--image", &img, s(&src), "/f"]);
    run_ok(
        "umoci",
        &[
            "config",
            "--image",
            &img,
            "--author",
            "A <a@b>",
            "--history.author",
            "H",
        ],
    );
    let go: serde_json::Value =
        serde_json::from_str(&run_ok("umoci", &["stat", "--json", "--image", &img])).expect("go");
    let ours: serde_json::Value =
        serde_json::from_str(&rumoci_ok(&["stat", "--json", "--image", &img])).expect("ours");
    let go_h = go["history"].as_array().expect("go history");
    let our_h = ours["history"].as_array().expect("our history");
    assert_eq!(go_h.len(), our_h.len());
    for (g, o) in go_h.iter().zip(our_h) {
        for k in ["layer", "diff_id", "created", "created_by", "author"] {
            assert_eq!(g[k], o[k], "{k}");
        }
        // 0.4.7 writes empty_layer: false; 0.6 and rumoci omit it
        assert_eq!(g["empty_layer"] == true, o["empty_layer"] == true);
    }
    let cd = ours["config"]["descriptor"]["digest"].as_str().expect("cd");
    assert_eq!(
        ours["config"]["blob"],
        read_blob_json(&l, cd),
        "config blob as stored"
    );
    let text = rumoci_ok(&["stat", "--image", &img]);
    assert!(text.contains("Author: \"A <a@b>\"\n"), "{text}");
    assert!(text.contains("\n\tUser: \"\"\n"), "{text}");
}

/// `config --created` and `--history.created` keep the offset and the
/// significant digits of the fraction, as umoci's Go time does.
#[test]
fn created_keeps_timezone_and_fraction() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, img) = new_image(tmp.path());
    rumoci_ok(&[
        "config",
        "--image",
        &img,
        "--created=2025-09-05T13:05:10.120+10:00",
        "--history.created=1999-12-31T23:59:59.000000001-03:30",
    ]);
    let m = read_blob_json(&l, &manifest_digest(&l, "latest"));
    let c = read_blob_json(&l, m["config"]["digest"].as_str().expect("d"));
    assert_eq!(c["created"], "2025-09-05T13:05:10.12+10:00");
    assert_eq!(
        c["history"][0]["created"],
        "1999-12-31T23:59:59.000000001-03:30"
    );
    let err = stderr_of(&["config", "--image", &img, "--created=yesterday"]);
    assert!(err.contains("--created"), "{err}");
}

/// `-v`/`--version` like umoci's (the runtime spec is the `ociVersion`
/// of the bundles), `h`/`help`/`-h` start with `NAME:`, `--log warning`,
/// booleans with `=true`/`=false`.
#[test]
fn cli_habits_of_umoci_users() {
    let v = rumoci_ok(&["-v"]);
    assert_eq!(v, rumoci_ok(&["--version"]));
    assert!(v.starts_with("rumoci version "), "{v}");
    assert!(v.contains("\nimage spec: 1.1.1\n"), "{v}");
    let spec = v
        .lines()
        .find_map(|l| l.strip_prefix("runtime spec: "))
        .expect("runtime spec line")
        .to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("image");
    let img = format!("{}:latest", s(&l));
    rumoci_ok(&["--log", "warning", "init", "--layout", s(&l)]);
    rumoci_ok(&["--log=warning", "new", "--image", &img]);
    assert!(stderr_of(&["--log=foobar", "ls", "--layout", s(&l)]).contains("foobar"));
    let bundle = tmp.path().join("bundle");
    rumoci_ok(&["unpack", "--rootless=true", "--image", &img, s(&bundle)]);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).expect("read"))
            .expect("json");
    assert_eq!(cfg["ociVersion"], spec.as_str());

    for help in [&["help"][..], &["h"], &["--help"], &["-h"]] {
        let out = rumoci_ok(help);
        let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[0], "NAME:", "{help:?}: {out}");
        assert!(
            lines[1].contains("rumoci - rumoci modifies Open Container images"),
            "{help:?}: {out}"
        );
    }
    let out = rumoci_ok(&["raw", "config", "--help"]);
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert!(lines[1].contains("rumoci raw runtime-config"), "{out}");
    // h as a value is left alone
    rumoci_ok(&["tag", "--image", &img, "h"]);
    assert!(rumoci_ok(&["ls", "--layout", s(&l)]).contains("h\n"));

    // booleans: =false drops the flag, =true sets it, as urfave/cli's do
    rumoci_ok(&[
        "config",
        "--image",
        &img,
        "--no-history=false",
        "--config.user=a",
    ]);
    rumoci_ok(&[
        "config",
        "--image",
        &img,
        "--no-history=true",
        "--config.user=b",
    ]);
    let st: serde_json::Value =
        serde_json::from_str(&rumoci_ok(&["stat", "-json=1", "--image", &img])).expect("json");
    assert_eq!(st["history"].as_array().expect("h").len(), 1);
    assert_eq!(st["config"]["blob"]["config"]["User"], "b");
}

/// `new --platform` sets the new image's platform (variant included).
#[test]
fn new_honours_platform() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("image");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:arm", s(&l));
    rumoci_ok(&["new", "--image", &img, "--platform", "linux/arm/v7"]);
    let m = read_blob_json(&l, &manifest_digest(&l, "arm"));
    let c = read_blob_json(&l, m["config"]["digest"].as_str().expect("d"));
    assert_eq!(
        (&c["os"], &c["architecture"], &c["variant"]),
        (&"linux".into(), &"arm".into(), &"v7".into())
    );
    let text = rumoci_ok(&["stat", "--image", &img]);
    assert!(text.contains("\tArchitecture: arm (v7)\n"), "{text}");
    // without --platform: the host's, no variant on amd64
    rumoci_ok(&["new", "--image", &format!("{}:host", s(&l))]);
    let m = read_blob_json(&l, &manifest_digest(&l, "host"));
    let c = read_blob_json(&l, m["config"]["digest"].as_str().expect("d"));
    if cfg!(target_arch = "x86_64") {
        assert_eq!(c["architecture"], "amd64");
        assert!(c.get("variant").is_none(), "{c}");
    }
    assert!(stderr_of(&["new", "--image", &img, "--platform", "linux"]).contains("platform"));
}

/// `raw mtree-validate` with a keyword the manifest does not record fails
/// naming it, as go-mtree's check does; `-k` restricts, `-K` adds.
#[test]
fn mtree_validate_keywords() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, img) = new_image(tmp.path());
    let src = tmp.path().join("f");
    std::fs::write(&src, "hello").expect("write");
    rumoci_ok(&["insert", "--image", &img, s(&src), "/f"]);
    let bundle = tmp.path().join("bundle");
    rumoci_ok(&["unpack", "--image", &img, s(&bundle)]);
    let m = manifest_digest(&l, "latest").replace(':', "_");
    let spec = bundle.join(format!("{m}.mtree"));
    let rootfs = bundle.join("rootfs");
    let v = |extra: &[&str]| {
        let mut a = vec!["raw", "mtree-validate", "-f", s(&spec), "-p", s(&rootfs)];
        a.extend_from_slice(extra);
        rumoci(&a)
    };
    assert!(v(&[]).status.success());
    assert!(v(&["-K", "sha256digest"]).status.success());
    for args in [
        &["-k", "sha1digest"][..],
        &["-K", "sha1digest"],
        &["-K", "sha1"],
    ] {
        let out = v(args);
        assert!(!out.status.success(), "{args:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(all.contains("keyword \"sha1digest\""), "{args:?}: {all}");
        assert!(all.contains("\"f\": keyword"), "{all}");
    }
    let out = v(&["-k", "nosuchkeyword"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("keyword \"nosuchkeyword\""),
        "{out:?}"
    );
    // a changed mtime: found with the manifest's keywords, not with -k size
    let t = Command::new("touch")
        .args(["-d", "2001-02-03T04:05:06", s(&rootfs.join("f"))])
        .status()
        .expect("touch");
    assert!(t.success());
    let out = v(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"f\": modified"));
    assert!(v(&["-k", "size,sha256digest"]).status.success());
    // time and tar_time compare with each other
    assert!(!v(&["-k", "time"]).status.success());
}

/// `raw mtree-validate` (with or without `--rootless`) reads what the user
/// owns but cannot search (a `chmod 000` directory) as umoci's
/// fseval.Rootless does, compares its original mode, and leaves the modes
/// as they were.
#[test]
fn mtree_validate_rootless_reads_unsearchable_directories() {
    use std::os::unix::fs::PermissionsExt;
    if !rustix::process::geteuid().is_root() || !have("setpriv") {
        eprintln!("skipped: needs root (to run as nobody) and setpriv");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("d")).expect("mkdir");
    std::fs::write(root.join("d/f"), "hello").expect("write");
    let spec = tmp.path().join("spec.mtree");
    std::fs::write(
        &spec,
        "#mtree\n\
         . type=dir mode=0755\n\
         d type=dir mode=0\n\
         d/f type=file mode=0644 size=5 sha256digest=2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824\n",
    )
    .expect("write spec");
    std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for p in ["", "d", "d/f"] {
        rustix::fs::chown(
            root.join(p),
            Some(rustix::process::Uid::from_raw(65534)),
            Some(rustix::process::Gid::from_raw(65534)),
        )
        .expect("chown");
    }
    std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod");
    let as_nobody = |extra: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            rumoci_bin(),
        ])
        .args(["raw", "mtree-validate", "-f", s(&spec), "-p", s(&root)])
        .args(extra);
        c.output().expect("setpriv")
    };
    // rumoci's walk opens up what the owner cannot search whenever it runs
    // unprivileged, with or without the flag (umoci needs --rootless)
    let plain = as_nobody(&[]);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let out = as_nobody(&["--rootless"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::symlink_metadata(root.join("d"))
        .expect("lstat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0, "mode restored");
    // a change under it is still found
    std::fs::write(root.join("d/f"), "HELLO").expect("write");
    let out = as_nobody(&["--rootless"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"d/f\": modified"));
}

/// `--history.*` on `raw add-layer`, `insert` and `repack`: the layer's
/// history entry has no `empty_layer` key (Go's omitempty), in the stored
/// config and in `stat --json`; an empty repack records `empty_layer: true`.
#[test]
fn layer_history_entries_have_no_empty_layer_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (l, img) = new_image(tmp.path());
    let tar = tmp.path().join("layer.tar");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("a"), "a").expect("write");
    run_ok("tar", &["-C", s(&src), "-cf", s(&tar), "a"]);
    let hist = [
        "--history.author=A",
        "--history.comment=C",
        "--history.created=2020-01-01T00:00:00Z",
    ];
    let mut args = vec!["raw", "add-layer", "--image", &img];
    args.extend(hist);
    args.push(s(&tar));
    rumoci_ok(&args);
    let mut args = vec!["insert", "--image", &img];
    args.extend(hist);
    let a_file = src.join("a");
    args.extend([s(&a_file), "/b"]);
    rumoci_ok(&args);
    let bundle = tmp.path().join("bundle");
    rumoci_ok(&["unpack", "--image", &img, s(&bundle)]);
    std::fs::write(bundle.join("rootfs/c"), "c").expect("write");
    let mut args = vec!["repack", "--refresh-bundle", "--image", &img];
    args.extend(hist);
    args.push(s(&bundle));
    rumoci_ok(&args);
    // nothing changed since the refresh: an empty diff
    let mut args = vec!["repack", "--image", &img];
    args.extend(hist);
    args.push(s(&bundle));
    rumoci_ok(&args);
    let m = read_blob_json(&l, &manifest_digest(&l, "latest"));
    let c = read_blob_json(&l, m["config"]["digest"].as_str().expect("d"));
    let stored = c["history"].as_array().expect("history");
    assert_eq!(stored.len(), 4, "{c}");
    let st: serde_json::Value =
        serde_json::from_str(&rumoci_ok(&["stat", "--json", "--image", &img])).expect("json");
    let shown = st["history"].as_array().expect("history");
    for (i, by) in ["umoci raw add-layer", "umoci insert", "umoci repack"]
        .iter()
        .enumerate()
    {
        for h in [&stored[i], &shown[i]] {
            let h = h.as_object().expect("obj");
            assert_eq!(h["created_by"], *by);
            assert_eq!(h["author"], "A");
            assert!(!h.contains_key("empty_layer"), "{h:?}");
        }
    }
    assert_eq!(stored[3]["empty_layer"], true, "empty repack");
    assert_eq!(shown[3]["empty_layer"], true);
    assert!(shown[3]["layer"].is_null());
}
