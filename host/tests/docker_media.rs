//! Docker schema 2 media types are first-class, and tags are never
//! guessed: layouts holding a Docker manifest list (made by skopeo 1.9's
//! `copy --all --format v2s2` from images the Go umoci built), Docker
//! manifests, configs and layers (real tar and gzip), go-containerregistry's
//! `test_gc_index` shape (an OCI manifest descriptor, a Docker document),
//! documents of unknown media type, a missing `subject`, foreign layers and
//! ambiguous tags, through `verify`, `gc`, `stat`, `ls`, `unpack`, `copy` and
//! `referrers`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn ready() -> bool {
    if !have("umoci") || !have("skopeo") || !have("setfattr") {
        eprintln!("skipped: umoci, skopeo or setfattr missing");
        return false;
    }
    true
}

/// The blob digests (`sha256:…`) in layout `l`.
fn blobs(l: &Path) -> BTreeSet<String> {
    std::fs::read_dir(l.join("blobs/sha256"))
        .expect("blobs dir")
        .map(|e| format!("sha256:{}", e.expect("entry").file_name().to_string_lossy()))
        .collect()
}

/// Store `bytes` as a blob of `l`; its digest and size.
fn put_blob(l: &Path, bytes: &[u8]) -> (String, u64) {
    let d = rumoci::oci::Digest::sha256_of(bytes).to_string();
    std::fs::write(blob_path(l, &d), bytes).expect("write blob");
    (d, bytes.len() as u64)
}

/// Store `v` as a JSON blob of `l` and describe it with `media_type`.
fn put_json(l: &Path, media_type: &str, v: &Value) -> Value {
    let (digest, size) = put_blob(l, &serde_json::to_vec(v).expect("json"));
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("parse")
}

fn write_index(l: &Path, entries: Vec<Value>) {
    let index = json!({"schemaVersion": 2, "manifests": entries});
    std::fs::write(
        l.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write index.json");
}

fn tagged(mut d: Value, tag: &str) -> Value {
    d["annotations"] = json!({ REF_NAME: tag });
    d
}

/// An empty OCI layout at `l` (the Go umoci's `init`).
fn init(l: &Path) {
    run_ok("umoci", &["init", "--layout", s(l)]);
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Two images made by the Go umoci in the OCI layout `oci`: `t` (amd64,
/// [`go_image`]'s tree in two layers: devices, xattrs, hardlinks,
/// whiteouts) and `arm` (arm64, one layer with `/etc/arch`), an OCI index
/// over both tagged `multi`; and `docker`, skopeo's `--format v2s2` copy of
/// `multi`: a Docker manifest list → two Docker schema 2 manifests →
/// Docker configs and gzip layers.
struct Fixture {
    _tmp: tempfile::TempDir,
    oci: PathBuf,
    docker: PathBuf,
    /// The Docker manifest list's digest.
    list: String,
    /// The amd64 and arm64 Docker manifests' digests.
    amd64: String,
    arm64: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (img, oci) = go_image(tmp.path());
        run_ok(
            "umoci",
            &["config", "--image", &img, "--architecture", "amd64"],
        );
        let arm = format!("{}:arm", s(&oci));
        run_ok("umoci", &["new", "--image", &arm]);
        let b = tmp.path().join("armbundle");
        run_ok("umoci", &["unpack", "--image", &arm, s(&b)]);
        std::fs::create_dir_all(b.join("rootfs/etc")).expect("mkdir");
        std::fs::write(b.join("rootfs/etc/arch"), "arm64\n").expect("write");
        run_ok(
            "touch",
            &[
                "-h",
                "-d",
                "2022-02-02 02:02:02",
                s(&b.join("rootfs/etc/arch")),
                s(&b.join("rootfs/etc")),
            ],
        );
        run_ok("umoci", &["repack", "--image", &arm, s(&b)]);
        run_ok(
            "umoci",
            &["config", "--image", &arm, "--architecture", "arm64"],
        );
        // the OCI index over both, tagged multi
        let platforms = [("t", "amd64"), ("arm", "arm64")].map(|(tag, arch)| {
            let mut d = index_entry(&oci, tag);
            d.as_object_mut().expect("object").remove("annotations");
            d["platform"] = json!({"architecture": arch, "os": "linux"});
            d
        });
        let idx = put_json(
            &oci,
            OCI_INDEX,
            &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms}),
        );
        let mut index = read_json(&oci.join("index.json"));
        index["manifests"]
            .as_array_mut()
            .expect("manifests")
            .push(tagged(idx, "multi"));
        std::fs::write(
            oci.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write");
        let docker = tmp.path().join("docker");
        run_ok(
            "skopeo",
            &[
                "copy",
                "--quiet",
                "--all",
                "--format",
                "v2s2",
                &format!("oci:{}:multi", s(&oci)),
                &format!("oci:{}:multi", s(&docker)),
            ],
        );
        let root = index_entry(&docker, "multi");
        assert_eq!(root["mediaType"], DOCKER_LIST, "skopeo wrote {root}");
        let list_digest = root["digest"].as_str().expect("digest").to_string();
        let list = read_blob_json(&docker, &list_digest);
        let manifest_for = |arch: &str| {
            let d = list["manifests"]
                .as_array()
                .expect("manifests")
                .iter()
                .find(|m| m["platform"]["architecture"] == arch)
                .unwrap_or_else(|| panic!("no {arch} in {list}"));
            assert_eq!(d["mediaType"], DOCKER_MANIFEST);
            d["digest"].as_str().expect("digest").to_string()
        };
        let (amd64, arm64) = (manifest_for("amd64"), manifest_for("arm64"));
        let m = read_blob_json(&docker, &amd64);
        assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
        assert_eq!(m["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);
        Fixture {
            _tmp: tmp,
            oci,
            docker,
            list: list_digest,
            amd64,
            arm64,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self._tmp.path().join(name)
    }

    /// A copy of the Docker layout named `name`.
    fn docker_copy(&self, name: &str) -> PathBuf {
        let to = self.path(name);
        run_ok("cp", &["-a", s(&self.docker), s(&to)]);
        to
    }

    /// Every blob the Docker list reaches: the list, its manifests, their
    /// configs and layers.
    fn reachable(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::from([self.list.clone()]);
        for m in [&self.amd64, &self.arm64] {
            out.insert(m.clone());
            let doc = read_blob_json(&self.docker, m);
            out.insert(doc["config"]["digest"].as_str().expect("d").to_string());
            for l in doc["layers"].as_array().expect("layers") {
                out.insert(l["digest"].as_str().expect("d").to_string());
            }
        }
        out
    }

    /// The Go umoci's unpack of the OCI source `tag` (`t` or `arm`).
    fn go_unpack(&self, tag: &str) -> PathBuf {
        let b = self.path(&format!("go-{tag}"));
        if !b.exists() {
            run_ok(
                "umoci",
                &[
                    "unpack",
                    "--image",
                    &format!("{}:{tag}", s(&self.oci)),
                    s(&b),
                ],
            );
        }
        b
    }
}

/// rumoci unpacks `image` for `platform` into a new bundle `b`.
fn unpack(image: &str, platform: &str, b: &Path) {
    rumoci_ok(&["unpack", "--image", image, "--platform", platform, s(b)]);
}

#[test]
fn docker_list_verify_gc_unpack_like_oci() {
    if !ready() {
        return;
    }
    let fx = Fixture::new();
    let l = fx.docker_copy("l");
    let img = format!("{}:multi", s(&l));
    let before = blobs(&l);
    assert_eq!(
        before,
        fx.reachable(),
        "skopeo's layout holds only the image"
    );
    // the list, two manifests, two configs, a layer each
    assert_eq!(before.len(), 7, "{before:?}");
    rumoci_ok(&["verify", "--layout", s(&l)]);
    rumoci_ok(&["gc", "--layout", s(&l)]);
    assert_eq!(
        blobs(&l),
        before,
        "gc must keep every blob the list reaches"
    );
    rumoci_ok(&["verify", "--layout", s(&l)]);
    // --platform picks the Docker manifest; the trees are the Go umoci's
    // unpacks of the OCI source (umoci 0.4.7 cannot read Docker manifests)
    for (platform, tag) in [("linux/amd64", "t"), ("linux/arm64", "arm")] {
        let b = fx.path(&format!("ours-{tag}"));
        unpack(&img, platform, &b);
        assert_same_tree(&fx.go_unpack(tag).join("rootfs"), &b.join("rootfs"));
        let meta = read_json(&b.join("umoci.json"));
        let walk = meta["from_descriptor_path"]["descriptor_walk"]
            .as_array()
            .expect("walk");
        let want = if tag == "t" { &fx.amd64 } else { &fx.arm64 };
        assert_eq!(walk[0]["mediaType"], DOCKER_LIST);
        assert_eq!(walk[1]["digest"], want.as_str(), "{platform}");
        let config = read_json(&b.join("config.json"));
        if tag == "t" {
            // the Docker config blob is read: user and command from it
            assert_eq!(config["process"]["user"]["uid"], 1000);
            assert_eq!(config["process"]["args"], json!(["/bin/sh"]));
        }
    }
    assert_eq!(
        std::fs::read_to_string(fx.path("ours-arm/rootfs/etc/arch")).expect("arch"),
        "arm64\n"
    );
    // raw unpack and raw runtime-config read the Docker config too
    let raw = fx.path("raw-arm");
    rumoci_ok(&[
        "raw",
        "unpack",
        "--image",
        &img,
        "--platform",
        "linux/arm64",
        s(&raw),
    ]);
    assert!(raw.join("etc/arch").is_file());
}

#[test]
fn verify_and_gc_on_a_broken_docker_list() {
    if !ready() {
        return;
    }
    let fx = Fixture::new();
    // the arm64 manifest deleted
    let l = fx.docker_copy("no-arm");
    std::fs::remove_file(blob_path(&l, &fx.arm64)).expect("rm");
    let out = rumoci(&["verify", "--layout", s(&l)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|line| line.contains(&fx.arm64) && line.contains("missing")),
        "{text}"
    );
    let v: Value = serde_json::from_slice(&rumoci(&["verify", "--json", "--layout", s(&l)]).stdout)
        .expect("json");
    assert_eq!(v["problems"][0]["kind"], "missing", "{v}");
    assert_eq!(v["problems"][0]["digest"], fx.arm64.as_str());
    // gc refuses and deletes nothing: the list still names what is there
    let before = snapshot(&l);
    let out = rumoci(&["gc", "--layout", s(&l)]);
    assert!(!out.status.success(), "gc went on with a manifest missing");
    assert_eq!(snapshot(&l), before);

    // an amd64 layer replaced by garbage
    let l = fx.docker_copy("bad-layer");
    let layer = read_blob_json(&l, &fx.amd64)["layers"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l["digest"].as_str())
        .expect("layer")
        .to_string();
    std::fs::write(blob_path(&l, &layer), b"garbage, not a gzip stream\n").expect("write");
    let out = rumoci(&["verify", "--layout", s(&l)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&layer) && text.contains("digest mismatch"),
        "{text}"
    );
    // the arm64 image is intact and unpacks; the amd64 one fails naming
    // the layer
    let img = format!("{}:multi", s(&l));
    unpack(&img, "linux/arm64", &fx.path("arm-ok"));
    let out = rumoci(&[
        "unpack",
        "--image",
        &img,
        "--platform",
        "linux/amd64",
        s(&fx.path("amd-bad")),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&layer), "{}", stderr(&out));
}

#[test]
fn stat_ls_copy_and_referrers_on_a_docker_list() {
    if !ready() {
        return;
    }
    let fx = Fixture::new();
    let l = fx.docker_copy("l");
    let img = format!("{}:multi", s(&l));
    // ls
    assert_eq!(rumoci_ok(&["ls", "--layout", s(&l)]), "multi\n");
    let v: Value =
        serde_json::from_str(&rumoci_ok(&["ls", "--json", "--layout", s(&l)])).expect("json");
    assert_eq!(v["tags"][0]["mediaType"], DOCKER_LIST);
    assert_eq!(v["tags"][0]["digest"], fx.list.as_str());
    // stat: the manifest and config of the platform asked for
    let text = rumoci_ok(&["stat", "--image", &img, "--platform", "linux/arm64"]);
    assert!(
        text.contains(&format!("Media Type: {DOCKER_MANIFEST}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Media Type: {DOCKER_CONFIG}")),
        "{text}"
    );
    assert!(text.contains("== CONFIG =="), "{text}");
    let v: Value = serde_json::from_str(&rumoci_ok(&[
        "stat",
        "--json",
        "--image",
        &img,
        "--platform",
        "linux/amd64",
    ]))
    .expect("json");
    assert_eq!(v["manifest"]["descriptor"]["digest"], fx.amd64.as_str());
    assert_eq!(v["config"]["blob"]["architecture"], "amd64");
    let history = v["history"].as_array().expect("history");
    assert_eq!(
        Some(history.len()),
        v["config"]["blob"]["history"].as_array().map(Vec::len),
        "{v}"
    );
    assert_eq!(history[0]["layer"]["mediaType"], DOCKER_LAYER_GZIP, "{v}");
    // config (read only) through the Docker config
    let out = rumoci(&[
        "config",
        "--image",
        &img,
        "--platform",
        "linux/amd64",
        "--config.env",
        "A=1",
    ]);
    assert!(!out.status.success(), "rumoci changes only OCI manifests");
    assert!(
        stderr(&out).contains("OCI image manifests"),
        "{}",
        stderr(&out)
    );

    // copy: everything, then one platform
    let all = fx.path("copy-all");
    rumoci_ok(&["copy", &img, &format!("{}:multi", s(&all))]);
    assert_eq!(blobs(&all), fx.reachable());
    rumoci_ok(&["verify", "--layout", s(&all)]);
    let one = fx.path("copy-arm");
    rumoci_ok(&[
        "copy",
        "--platform",
        "linux/arm64",
        &img,
        &format!("{}:arm", s(&one)),
    ]);
    assert_eq!(index_entry(&one, "arm")["digest"], fx.arm64.as_str());
    assert_eq!(index_entry(&one, "arm")["mediaType"], DOCKER_MANIFEST);
    rumoci_ok(&["verify", "--layout", s(&one)]);
    unpack(
        &format!("{}:arm", s(&one)),
        "linux/arm64",
        &fx.path("copied-arm"),
    );

    // referrers of a Docker manifest: attach, list, gc keeps, copy carries
    let sbom = fx.path("sbom.json");
    std::fs::write(&sbom, b"{\"spdxVersion\":\"SPDX-2.3\"}\n").expect("write");
    let artifact = rumoci_ok(&[
        "referrers",
        "attach",
        "--image",
        &img,
        "--platform",
        "linux/amd64",
        "--artifact-type",
        "application/spdx+json",
        s(&sbom),
    ]);
    let artifact = artifact.trim().to_string();
    let listed = rumoci_ok(&[
        "referrers",
        "list",
        "--image",
        &img,
        "--platform",
        "linux/amd64",
    ]);
    assert!(listed.contains(&artifact), "{listed}");
    let with = blobs(&l);
    rumoci_ok(&["gc", "--layout", s(&l)]);
    assert_eq!(blobs(&l), with);
    let carried = fx.path("copy-refs");
    rumoci_ok(&[
        "copy",
        "--referrers",
        &img,
        &format!("{}:multi", s(&carried)),
    ]);
    assert!(blobs(&carried).contains(&artifact));
    rumoci_ok(&["verify", "--layout", s(&carried)]);
}

/// go-containerregistry's `pkg/v1/layout/testdata/test_gc_index`: tag `1`
/// is an OCI manifest descriptor whose document says it is a Docker
/// manifest; `3` an OCI index naming it the same way; `4` a Docker list
/// (without `mediaType`) naming it the same way; one blob is garbage.
#[test]
fn gcr_test_gc_index_shape() {
    if !ready() {
        return;
    }
    let fx = Fixture::new();
    let l = fx.path("gcr");
    init(&l);
    let m = read_blob_json(&fx.docker, &fx.amd64);
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().expect("layers")) {
        let d = d["digest"].as_str().expect("digest");
        std::fs::copy(blob_path(&fx.docker, d), blob_path(&l, d)).expect("copy blob");
    }
    std::fs::copy(blob_path(&fx.docker, &fx.amd64), blob_path(&l, &fx.amd64)).expect("copy");
    let size = std::fs::metadata(blob_path(&l, &fx.amd64))
        .expect("stat")
        .len();
    let as_oci = json!({"mediaType": OCI_MANIFEST, "digest": fx.amd64, "size": size});
    let three = put_json(
        &l,
        OCI_INDEX,
        &json!({"schemaVersion": 2, "manifests": [tagged(as_oci.clone(), "1")]}),
    );
    let four = put_json(
        &l,
        DOCKER_LIST,
        &json!({"schemaVersion": 2, "manifests": [tagged(as_oci.clone(), "4")]}),
    );
    // garbage: a real gzip layer nothing names
    let arm_layer = read_blob_json(&fx.docker, &fx.arm64)["layers"][0]["digest"]
        .as_str()
        .expect("layer")
        .to_string();
    std::fs::copy(blob_path(&fx.docker, &arm_layer), blob_path(&l, &arm_layer)).expect("copy");
    write_index(
        &l,
        vec![tagged(as_oci, "1"), tagged(three, "3"), tagged(four, "4")],
    );
    let before = blobs(&l);
    assert_eq!(
        before.len(),
        2 + m["layers"].as_array().map_or(0, Vec::len) + 2 + 1
    );

    // verify: sound, one warning for the document's media type
    let out = rumoci(&["verify", "--json", "--layout", s(&l)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["summary"]["ok"], true, "{v}");
    let warnings = v["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{v}");
    assert_eq!(warnings[0]["kind"], "media-type");
    assert_eq!(warnings[0]["digest"], fx.amd64.as_str());
    let out = rumoci(&["verify", "--layout", s(&l)]);
    assert!(out.status.success());
    assert!(stderr(&out).contains(DOCKER_MANIFEST), "{}", stderr(&out));

    // gc: only the garbage goes
    let out = rumoci(&["gc", "--layout", s(&l)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = blobs(&l);
    assert_eq!(
        before.difference(&after).collect::<Vec<_>>(),
        [&arm_layer],
        "gc removed the wrong blobs"
    );
    // every tag unpacks to the Go umoci's tree of the OCI source
    for tag in ["1", "3", "4"] {
        let b = fx.path(&format!("gcr-{tag}"));
        rumoci_ok(&["unpack", "--image", &format!("{}:{tag}", s(&l)), s(&b)]);
        assert_same_tree(&fx.go_unpack("t").join("rootfs"), &b.join("rootfs"));
    }
}

/// A document of unknown media type that reads as a manifest, and one
/// that reads both as an index and a manifest (refused by the hardened
/// parser): gc keeps what either reaches.
#[test]
fn gc_follows_documents_it_cannot_classify() {
    if !ready() {
        return;
    }
    let fx = Fixture::new();
    let l = fx.path("odd");
    init(&l);
    let copy_from_docker = |digest: &str| {
        std::fs::copy(blob_path(&fx.docker, digest), blob_path(&l, digest)).expect("copy");
    };
    let amd = read_blob_json(&fx.docker, &fx.amd64);
    let arm = read_blob_json(&fx.docker, &fx.arm64);
    let mut kept = BTreeSet::new();
    for m in [&amd, &arm] {
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().expect("layers")) {
            let d = d["digest"].as_str().expect("digest");
            copy_from_docker(d);
            kept.insert(d.to_string());
        }
    }
    // an unknown type whose content is a manifest (amd64's config and layers)
    let mut thing = amd.clone();
    thing["mediaType"] = json!("application/vnd.example.thing.v1+json");
    let unknown = put_json(&l, "application/vnd.example.thing.v1+json", &thing);
    // an "index" that also has arm64's config and layers
    let arm_size = std::fs::metadata(blob_path(&fx.docker, &fx.arm64))
        .expect("stat")
        .len();
    copy_from_docker(&fx.arm64);
    let both = put_json(
        &l,
        OCI_INDEX,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": fx.arm64, "size": arm_size}],
            "config": arm["config"],
            "layers": arm["layers"],
        }),
    );
    kept.insert(fx.arm64.clone());
    for d in [&unknown, &both] {
        kept.insert(d["digest"].as_str().expect("digest").to_string());
    }
    // a lone JSON blob of an unknown type that is no manifest, and garbage
    let lone = put_json(
        &l,
        "application/vnd.example.note+json",
        &json!({"note": "hi"}),
    );
    kept.insert(lone["digest"].as_str().expect("digest").to_string());
    let (garbage, _) = put_blob(&l, b"nothing names this\n");
    write_index(
        &l,
        vec![
            tagged(unknown, "thing"),
            tagged(both, "both"),
            tagged(lone, "note"),
        ],
    );
    assert_eq!(blobs(&l).len(), kept.len() + 1);
    let out = rumoci(&["gc", "--layout", s(&l)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        blobs(&l),
        kept,
        "gc must keep everything either reading reaches"
    );
    assert!(!blobs(&l).contains(&garbage));
    // the ambiguous document is still refused where it would be an image
    let out = rumoci(&["stat", "--image", &format!("{}:both", s(&l))]);
    assert!(!out.status.success());
}

/// A Docker manifest made by hand around layers made with the system `tar`
/// and `gzip`: an uncompressed layer and a gzip one unpack as the OCI twin
/// image does with the Go umoci; a foreign layer absent from the store is a
/// warning for verify, no concern of gc, and an error naming it for unpack.
#[test]
fn hand_made_docker_layers_and_a_foreign_layer() {
    if !have("umoci") || !have("tar") || !have("gzip") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    init(&l);
    // two trees, as tar streams made by the system tar
    let t1 = tmp.path().join("t1");
    std::fs::create_dir_all(t1.join("etc")).expect("mkdir");
    std::fs::write(t1.join("etc/hostname"), "docker\n").expect("write");
    std::fs::write(t1.join("etc/gone"), "to be removed\n").expect("write");
    std::os::unix::fs::symlink("hostname", t1.join("etc/name")).expect("symlink");
    let t2 = tmp.path().join("t2");
    std::fs::create_dir_all(t2.join("etc")).expect("mkdir");
    std::fs::create_dir_all(t2.join("usr/bin")).expect("mkdir");
    std::fs::write(t2.join("usr/bin/tool"), "#!/bin/sh\necho hi\n").expect("write");
    std::fs::write(t2.join("etc/.wh.gone"), "").expect("write");
    for t in [&t1, &t2] {
        run_ok(
            "find",
            &[
                s(t),
                "-exec",
                "touch",
                "-h",
                "-d",
                "2021-03-04 05:06:07",
                "{}",
                "+",
            ],
        );
    }
    let tar_of = |dir: &Path| {
        let out = std::process::Command::new("tar")
            .args([
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "-C",
                s(dir),
                "-cf",
                "-",
                ".",
            ])
            .output()
            .expect("tar");
        assert!(out.status.success());
        out.stdout
    };
    let (plain1, plain2) = (tar_of(&t1), tar_of(&t2));
    let gz2 = {
        use std::io::Write;
        let mut child = std::process::Command::new("gzip")
            .args(["-n", "-c"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&plain2)
            .expect("feed gzip");
        let out = child.wait_with_output().expect("gzip");
        assert!(out.status.success());
        out.stdout
    };
    let (d1, s1) = put_blob(&l, &plain1);
    let (d2, s2) = put_blob(&l, &gz2);
    let diff = |b: &[u8]| rumoci::oci::Digest::sha256_of(b).to_string();
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/usr/bin/tool"]},
        "rootfs": {"type": "layers", "diff_ids": [diff(&plain1), diff(&plain2)]},
        "history": [{"created_by": "tar"}, {"created_by": "tar | gzip"}],
        "docker_version": "20.10.0",
    });
    let image = |config_type: &str, manifest_type: &str, layer_types: [&str; 2]| {
        let c = put_json(&l, config_type, &config);
        let m = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": c,
            "layers": [
                {"mediaType": layer_types[0], "digest": d1, "size": s1},
                {"mediaType": layer_types[1], "digest": d2, "size": s2},
            ],
        });
        put_json(&l, manifest_type, &m)
    };
    let docker = image(
        DOCKER_CONFIG,
        DOCKER_MANIFEST,
        [DOCKER_LAYER, DOCKER_LAYER_GZIP],
    );
    let twin = image(
        OCI_CONFIG,
        OCI_MANIFEST,
        [
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ],
    );
    // a third image whose second layer is foreign and not in the store
    let foreign_bytes = b"a foreign layer lives elsewhere";
    let foreign_digest = rumoci::oci::Digest::sha256_of(foreign_bytes).to_string();
    let fconfig = put_json(&l, DOCKER_CONFIG, &config);
    let fm = put_json(
        &l,
        DOCKER_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": fconfig,
            "layers": [
                {"mediaType": DOCKER_LAYER, "digest": d1, "size": s1},
                {"mediaType": DOCKER_FOREIGN, "digest": foreign_digest, "size": foreign_bytes.len(),
                 "urls": ["https://example.invalid/layer"]},
            ],
        }),
    );
    write_index(
        &l,
        vec![
            tagged(docker, "docker"),
            tagged(twin, "twin"),
            tagged(fm, "foreign"),
        ],
    );
    let out = rumoci(&["verify", "--json", "--layout", s(&l)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let warnings = v["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{v}");
    assert_eq!(warnings[0]["digest"], foreign_digest.as_str());
    assert!(
        warnings[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("foreign layer")),
        "{v}"
    );
    let before = blobs(&l);
    rumoci_ok(&["gc", "--layout", s(&l)]);
    assert_eq!(blobs(&l), before);
    // the Docker image unpacks as the Go umoci unpacks its OCI twin
    let go = tmp.path().join("go");
    run_ok(
        "umoci",
        &["unpack", "--image", &format!("{}:twin", s(&l)), s(&go)],
    );
    let ours = tmp.path().join("ours");
    rumoci_ok(&["unpack", "--image", &format!("{}:docker", s(&l)), s(&ours)]);
    assert!(ours.join("rootfs/usr/bin/tool").is_file());
    assert!(!ours.join("rootfs/etc/gone").exists());
    assert_same_tree(&go.join("rootfs"), &ours.join("rootfs"));
    let config = read_json(&ours.join("config.json"));
    assert_eq!(config["process"]["args"], json!(["/usr/bin/tool"]));
    // a layer replaced by one of the same size: verify names it
    let mut bad = gz2.clone();
    let last = bad.len() - 5;
    bad[last] ^= 0xff;
    std::fs::write(blob_path(&l, &d2), &bad).expect("write");
    let out = rumoci(&["verify", "--layout", s(&l)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(&d2), "{}", stdout(&out));
    std::fs::write(blob_path(&l, &d2), &gz2).expect("restore");
    // the foreign image cannot be unpacked: the layer is named
    let out = rumoci(&[
        "unpack",
        "--image",
        &format!("{}:foreign", s(&l)),
        s(&tmp.path().join("f")),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&foreign_digest) && err.contains("foreign"),
        "{err}"
    );
}

/// `subject` is a weak reference: a referrer whose subject is not in the
/// store is a warning for verify and no reason for gc to fail; a present
/// subject is kept.
#[test]
fn missing_subject_is_a_warning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    let img = format!("{}:base", s(&l));
    rumoci_ok(&["new", "--image", &img]);
    let sbom = tmp.path().join("sbom.json");
    std::fs::write(&sbom, b"{}\n").expect("write");
    let artifact = rumoci_ok(&attach_sbom_args(&img, &[s(&sbom)]));
    let artifact = artifact.trim().to_string();
    let base = index_entry(&l, "base")["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let base_config = read_blob_json(&l, &base)["config"]["digest"]
        .as_str()
        .expect("config")
        .to_string();
    rumoci_ok(&["verify", "--layout", s(&l)]);
    // untag the image: the referrer's entry keeps it (a present subject)
    rumoci_ok(&["rm", "--image", &img]);
    rumoci_ok(&["gc", "--layout", s(&l)]);
    assert!(blobs(&l).contains(&base), "a present subject is kept");
    assert!(blobs(&l).contains(&artifact));
    // the subject gone: a warning, not a problem; gc goes on
    std::fs::remove_file(blob_path(&l, &base)).expect("rm");
    let out = rumoci(&["verify", "--json", "--layout", s(&l)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["summary"]["problems"], 0, "{v}");
    assert_eq!(v["warnings"][0]["digest"], base.as_str(), "{v}");
    assert!(
        v["warnings"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("subject")),
        "{v}"
    );
    let before = blobs(&l);
    let out = rumoci(&["gc", "--layout", s(&l)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(blobs(&l).contains(&artifact));
    // only the missing manifest's config went: nothing else reaches it
    let gone: Vec<String> = before.difference(&blobs(&l)).cloned().collect();
    assert_eq!(gone, [base_config], "{before:?}");
    // copy takes the artifact without its missing subject
    let dst = tmp.path().join("dst");
    let idx = read_json(&l.join("index.json"));
    let mut entry = idx["manifests"][0].clone();
    entry["annotations"] = json!({ REF_NAME: "sbom" });
    write_index(&l, vec![entry]);
    rumoci_ok(&[
        "copy",
        &format!("{}:sbom", s(&l)),
        &format!("{}:sbom", s(&dst)),
    ]);
    assert!(blobs(&dst).contains(&artifact));
}

/// Two `index.json` entries named alike, pointing at different manifests:
/// the tag is ambiguous, as the Go umoci says; the same digest twice is not.
#[test]
fn ambiguous_tag_is_reported_like_umoci() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let l = tmp.path().join("l");
    rumoci_ok(&["init", "--layout", s(&l)]);
    for (tag, arch) in [("a", "linux/amd64"), ("b", "linux/arm64")] {
        rumoci_ok(&[
            "new",
            "--image",
            &format!("{}:{tag}", s(&l)),
            "--platform",
            arch,
        ]);
    }
    let (a, b) = (index_entry(&l, "a"), index_entry(&l, "b"));
    write_index(
        &l,
        vec![
            tagged(a.clone(), "dup"),
            tagged(b.clone(), "dup"),
            tagged(a.clone(), "same"),
            tagged(a.clone(), "same"),
        ],
    );
    let img = format!("{}:dup", s(&l));
    let bundle = tmp.path().join("bundle");
    for args in [
        vec!["stat", "--image", &img],
        vec!["unpack", "--image", &img, s(&bundle)],
        vec![
            "unpack",
            "--image",
            &img,
            "--platform",
            "linux/amd64",
            s(&bundle),
        ],
        vec!["config", "--image", &img, "--config.user", "1"],
        vec![
            "raw",
            "runtime-config",
            "--image",
            &img,
            s(&tmp.path().join("c.json")),
        ],
        vec!["tag", "--image", &img, "new"],
    ] {
        let out = rumoci(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains("tag is ambiguous: dup"), "{args:?}: {err}");
        for d in [&a, &b] {
            assert!(err.contains(d["digest"].as_str().expect("d")), "{err}");
        }
    }
    assert!(!bundle.exists());
    let out = rumoci(&["copy", &img, &format!("{}:x", s(&tmp.path().join("dst")))]);
    assert!(
        stderr(&out).contains("tag is ambiguous: dup"),
        "{}",
        stderr(&out)
    );
    // the same manifest named twice is one
    rumoci_ok(&["stat", "--image", &format!("{}:same", s(&l))]);
    // the Go umoci's wording
    if have("umoci") {
        let out = std::process::Command::new("umoci")
            .args(["stat", "--image", &img])
            .output()
            .expect("umoci");
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("tag is ambiguous: dup"),
            "{}",
            stderr(&out)
        );
    }
}
