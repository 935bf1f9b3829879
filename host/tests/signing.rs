//! Signatures: `rumoci generate-key` and `sign`, and `--policy` on
//! `unpack`, `copy` and `verify --signatures`, against skopeo 1.9's
//! containers/image (5.23) in a real registry (Debian's docker-registry)
//! both ways: what rumoci signs the peer accepts, what the peer signs
//! rumoci accepts, and a changed signature, payload or manifest is
//! refused by both.
//!
//! Debian's skopeo 1.9.3 has its sigstore code disabled ("Debian-local
//! change: sigstore disabled"), so the peer is `tests/peers/cimage-sigstore`:
//! a small `skopeo copy` built from Debian's containers/image 5.23.1 source
//! with the three stubs restored (see its README). Tests that need it say
//! so and are skipped, with the reason, when Go or that source is missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::registry::Registry;
use common::*;

/// The registry plugin.
fn registry_wasm() -> String {
    plugin_wasm(&["registry"], "registry")
}

/// rumoci with the test-local plugin cache, `data` as its data directory
/// and home (so no policy of the machine's user is read).
fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(rumoci_bin())
        .args(args)
        .env("XDG_CACHE_HOME", cache_home())
        .env("XDG_DATA_HOME", data)
        .env("HOME", data)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("spawn rumoci")
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// rumoci must fail with one line on stderr; returns it.
fn refused(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "rumoci {args:?} should have failed");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// [`ok`] of `--policy POLICY ARGS…`.
fn ok_under(data: &Path, policy: &str, args: &[&str]) -> String {
    ok(data, &[&["--policy", policy][..], args].concat())
}

/// [`refused`] of `--policy POLICY ARGS…`.
fn refused_under(data: &Path, policy: &str, args: &[&str]) -> String {
    refused(data, &[&["--policy", policy][..], args].concat())
}

/// `verify --signatures` of the layout `app` through the driver `spec`
/// under `policy`, required to succeed.
fn verify_app(data: &Path, policy: &str, spec: &str) -> String {
    let args = [
        "--driver",
        spec,
        "verify",
        "--layout",
        "app",
        "--signatures",
    ];
    ok_under(data, policy, &args)
}

/// The containers/image peer, built once (None, with the reason printed,
/// when it cannot be built here).
fn peer() -> Option<&'static Path> {
    static PEER: OnceLock<Option<PathBuf>> = OnceLock::new();
    PEER.get_or_init(|| {
        if !have("go") || !Path::new("/usr/share/gocode/src/github.com/containers/image").is_dir() {
            eprintln!(
                "SKIPPED: the containers/image peer needs golang-go, golang-github-containers-image-dev and golang-golang-x-crypto-dev (scripts/deps.sh)"
            );
            return None;
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cimage-sigstore");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/cimage-sigstore/build.sh");
        let status = Command::new("sh")
            .arg(&script)
            .arg(&out)
            .env("GOCACHE", Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache"))
            .status()
            .expect("run build.sh");
        assert!(status.success(), "building the containers/image peer failed");
        Some(out)
    })
    .as_deref()
}

/// What the peer said: success, and stdout + stderr.
fn peer_copy(peer: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(peer)
        .arg("copy")
        .args(args)
        .output()
        .expect("run the peer");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A scratch directory with a key pair (`k.key`/`k.pub`, passphrase in
/// `pass`), a second public key (`other.pub`), and a layout `L` holding
/// `t`: a one-layer image.
struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        std::fs::write(d.join("pass"), "correct horse\n").expect("pass");
        std::fs::write(d.join("empty"), "").expect("empty");
        ok(
            d,
            &[
                "generate-key",
                "--passphrase-file",
                s(&d.join("pass")),
                s(&d.join("k")),
            ],
        );
        ok(
            d,
            &[
                "generate-key",
                "--passphrase-file",
                s(&d.join("empty")),
                s(&d.join("other")),
            ],
        );
        let l = d.join("L");
        ok(d, &["init", "--layout", s(&l)]);
        ok(d, &["new", "--image", &format!("{}:t", s(&l))]);
        std::fs::write(d.join("hello"), "hello\n").expect("file");
        ok(
            d,
            &[
                "insert",
                "--image",
                &format!("{}:t", s(&l)),
                s(&d.join("hello")),
                "/hello",
            ],
        );
        Fx { tmp }
    }

    fn d(&self) -> &Path {
        self.tmp.path()
    }

    fn p(&self, name: &str) -> String {
        s(&self.d().join(name)).to_string()
    }

    /// Write a policy file `name` and return its path.
    fn policy(&self, name: &str, doc: &str) -> String {
        let p = self.d().join(name);
        std::fs::write(&p, doc).expect("policy");
        s(&p).to_string()
    }

    /// A policy: images under `scope` of transport `transport` need a
    /// signature by `key` (signedIdentity `identity`, default if None);
    /// everything else is accepted.
    fn signed_policy(
        &self,
        name: &str,
        transport: &str,
        scope: &str,
        key: &str,
        identity: Option<&str>,
    ) -> String {
        let ident = identity
            .map(|i| format!(",\"signedIdentity\":{i}"))
            .unwrap_or_default();
        self.policy(
            name,
            &format!(
                r#"{{"default":[{{"type":"insecureAcceptAnything"}}],"transports":{{"{transport}":{{"{scope}":[{{"type":"sigstoreSigned","keyPath":"{}"{ident}}}]}}}}}}"#,
                self.p(key)
            ),
        )
    }

    fn accept_all(&self) -> String {
        self.policy(
            "accept.json",
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
    }

    /// registries.d for the peer: sigstore attachments on for `reg`.
    fn registries_d(&self, reg: &Registry) -> String {
        let dir = self.d().join("registries.d");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("local.yaml"),
            format!(
                "docker:\n  {}:\n    use-sigstore-attachments: true\n",
                reg.authority()
            ),
        )
        .expect("registries.d");
        s(&dir).to_string()
    }

    /// The peer's copy of `src` to `oci:DIR:TAG` (`dest`: `DIR:TAG` in
    /// here) under `policy` and [`Fx::registries_d`], the signatures left
    /// behind: what it said.
    fn peer_pull(&self, peer: &Path, policy: &str, src: &str, dest: &str) -> (bool, String) {
        let regd = s(&self.d().join("registries.d")).to_string();
        let dest = format!("oci:{}", self.p(dest));
        let args = [
            "--remove-signatures",
            "--policy",
            policy,
            "--registries.d",
            &regd,
            src,
            &dest,
        ];
        peer_copy(peer, &args)
    }

    /// `sign --image IMAGE` with `k.key`, its passphrase read from `pass`,
    /// for `identity` if given, through `then` ([`ok`] or [`refused`]).
    fn sign<T>(
        &self,
        image: &str,
        pass: &str,
        identity: Option<&str>,
        then: fn(&Path, &[&str]) -> T,
    ) -> T {
        let (key, pass) = (self.p("k.key"), self.p(pass));
        let mut args = vec!["sign", "--image", image, "--key", &key];
        args.extend(["--passphrase-file", &pass]);
        if let Some(identity) = identity {
            args.extend(["--identity", identity]);
        }
        then(self.d(), &args)
    }

    /// `--driver`/`--from-driver` spec of the registry plugin for `reg`.
    fn spec(&self, reg: &Registry) -> String {
        format!("{},url={}", registry_wasm(), reg.url())
    }
}

#[test]
fn generate_key_writes_cosign_key_files_and_refuses_to_overwrite() {
    let fx = Fx::new();
    let key = std::fs::read_to_string(fx.d().join("k.key")).expect("key");
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"),
        "{key}"
    );
    let public = std::fs::read_to_string(fx.d().join("k.pub")).expect("pub");
    assert!(
        public.starts_with("-----BEGIN PUBLIC KEY-----\n"),
        "{public}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(fx.d().join("k.key"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // cosign 2's label on request
    ok(
        fx.d(),
        &[
            "generate-key",
            "--sigstore-pem",
            "--passphrase-file",
            &fx.p("pass"),
            &fx.p("k2"),
        ],
    );
    let k2 = std::fs::read_to_string(fx.d().join("k2.key")).expect("key");
    assert!(k2.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    let e = refused(
        fx.d(),
        &[
            "generate-key",
            "--passphrase-file",
            &fx.p("pass"),
            &fx.p("k"),
        ],
    );
    assert!(e.contains("k.key already exists"), "{e}");
    // no terminal and no file: a clear refusal, not a hang
    let out = Command::new(rumoci_bin())
        .args(["generate-key", &fx.p("k3")])
        .env("HOME", fx.d())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("spawn");
    assert!(!out.status.success());
    // a wrong passphrase is named as such
    let img = format!("{}:t", fx.p("L"));
    let e = fx.sign(&img, "empty", Some("example.com/app:1"), refused);
    assert!(e.contains("wrong passphrase"), "{e}");
}

#[test]
fn policy_on_a_layout_unpack_copy_and_verify() {
    let fx = Fx::new();
    let d = fx.d();
    let img = format!("{}:t", fx.p("L"));
    let layout_dir = std::fs::canonicalize(d.join("L")).expect("canonicalize");
    let scope = s(&layout_dir).to_string();
    // `unpack --image IMG DIR` under `policy`, refused: its one line
    let refused_unpack = |policy: &str, dir: &str| {
        refused_under(d, policy, &["unpack", "--image", &img, &fx.p(dir)])
    };
    // an image in a layout has no registry name: --identity is required
    let e = fx.sign(&img, "pass", None, refused);
    assert!(e.contains("--identity"), "{e}");
    let exact = r#"{"type":"exactReference","dockerReference":"example.com/app:1"}"#;
    let good = fx.signed_policy("good.json", "oci", &scope, "k.pub", Some(exact));
    let wrong = fx.signed_policy("wrong.json", "oci", &scope, "other.pub", Some(exact));
    // unsigned: refused, and nothing written
    let e = refused_unpack(&good, "bundle");
    assert!(
        e.contains("no signature") && e.contains("sigstoreSigned"),
        "{e}"
    );
    assert!(!d.join("bundle").exists());
    fx.sign(&img, "pass", Some("example.com/app:1"), ok);
    // the right key
    ok_under(
        d,
        &good,
        &["verify", "--layout", &fx.p("L"), "--signatures"],
    );
    ok_under(d, &good, &["unpack", "--image", &img, &fx.p("bundle")]);
    assert!(d.join("bundle/rootfs/hello").is_file());
    ok(
        d,
        &["--policy", &good, "copy", &img, &format!("{}:t", fx.p("C"))],
    );
    // the wrong key: refused with one line naming image, rule and why
    let e = refused_under(d, &wrong, &["copy", &img, &format!("{}:t", fx.p("D"))]);
    assert!(
        e.contains(&format!("oci:{scope}:t")) && e.contains("other.pub") && e.contains("wrong key"),
        "{e}"
    );
    assert!(!d.join("D").exists(), "a refused copy creates nothing");
    let e = refused_unpack(&wrong, "bundle2");
    assert!(e.contains("wrong key"), "{e}");
    assert!(!d.join("bundle2").exists());
    // raw unpack applies it too
    let e = refused_under(
        d,
        &wrong,
        &["raw", "unpack", "--image", &img, &fx.p("rootfs2")],
    );
    assert!(e.contains("wrong key"), "{e}");
    assert!(!d.join("rootfs2").exists());
    let out = run(
        d,
        &[
            "--policy",
            &wrong,
            "verify",
            "--layout",
            &fx.p("L"),
            "--signatures",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signatures: oci:"));
    // another identity
    let other = fx.signed_policy(
        "ident.json",
        "oci",
        &scope,
        "k.pub",
        Some(r#"{"type":"exactRepository","dockerRepository":"example.com/other"}"#),
    );
    let e = refused_unpack(&other, "bundle3");
    assert!(
        e.contains("identity mismatch: signed for example.com/app:1"),
        "{e}"
    );
    // an image in a layout has no Docker reference for the default rule,
    // as in containers/image
    let default_rule = fx.signed_policy("default.json", "oci", &scope, "k.pub", None);
    let e = refused_unpack(&default_rule, "bundle4");
    assert!(
        e.contains("matchRepoDigestOrExact needs the image's Docker reference"),
        "{e}"
    );
    // reject, and keyless requirements are refused clearly
    let reject = fx.policy("reject.json", r#"{"default":[{"type":"reject"}]}"#);
    let e = refused_unpack(&reject, "bundle5");
    assert!(e.contains("reject"), "{e}");
    let keyless = fx.policy(
        "keyless.json",
        r#"{"default":[{"type":"sigstoreSigned","fulcio":{"caPath":"/x","oidcIssuer":"https://x","subjectEmail":"a@b"},"rekorPublicKeyPath":"/y"}]}"#,
    );
    let e = refused_unpack(&keyless, "bundle6");
    assert!(e.contains("keyless") && e.contains("not supported"), "{e}");
    // a policy that does not parse names the file and the field
    let bad = fx.policy("bad.json", r#"{"default":[{"type":"acceptEverything"}]}"#);
    let e = refused_unpack(&bad, "bundle7");
    assert!(
        e.contains("bad.json") && e.contains("acceptEverything"),
        "{e}"
    );
    // $HOME/.config/containers/policy.json is read without --policy
    std::fs::create_dir_all(d.join(".config/containers")).expect("mkdir");
    std::fs::copy(&wrong, d.join(".config/containers/policy.json")).expect("copy");
    let e = refused(d, &["unpack", "--image", &img, &fx.p("bundle8")]);
    assert!(e.contains("wrong key"), "{e}");
}

/// Push `L:t` of `fx` to `repo:t` of `reg` with rumoci (the signature
/// tags go along with copy's referrers).
fn push(fx: &Fx, reg: &Registry, layout: &str, repo: &str) {
    let accept = fx.accept_all();
    ok(
        fx.d(),
        &[
            "--policy",
            &accept,
            "copy",
            "--to-driver",
            &fx.spec(reg),
            &format!("{layout}:t"),
            &format!("{repo}:t"),
        ],
    );
}

#[test]
fn the_peer_accepts_what_rumoci_signs_in_a_registry() {
    let Some(peer) = peer() else { return };
    let fx = Fx::new();
    let d = fx.d();
    let reg = Registry::start();
    push(&fx, &reg, &fx.p("L"), "app");
    // signed in place in the registry, through the plugin
    let spec = fx.spec(&reg);
    ok(
        d,
        &[
            "--driver",
            &spec,
            "sign",
            "--image",
            "app:t",
            "--key",
            &fx.p("k.key"),
            "--passphrase-file",
            &fx.p("pass"),
        ],
    );
    fx.registries_d(&reg);
    let good = fx.signed_policy("good.json", "docker", &reg.authority(), "k.pub", None);
    let wrong = fx.signed_policy("wrong.json", "docker", &reg.authority(), "other.pub", None);
    let src = reg.docker("app:t");
    let (yes, text) = fx.peer_pull(peer, &good, &src, "out1:t");
    assert!(yes, "the peer refused rumoci's signature: {text}");
    let (yes, text) = fx.peer_pull(peer, &wrong, &src, "out2:t");
    assert!(
        !yes && text.contains("cryptographic signature verification failed"),
        "{text}"
    );
    // and rumoci, through the same plugin
    verify_app(d, &good, &spec);
    let e = refused_under(
        d,
        &wrong,
        &["copy", "--from-driver", &spec, "app:t", &fx.p("out3")],
    );
    assert!(
        e.contains(&format!("docker://{}/app:t", reg.authority())) && e.contains("wrong key"),
        "{e}"
    );
    // signed in a layout for the registry's name, pushed by rumoci
    let l2 = fx.p("L2");
    ok(
        d,
        &["copy", &format!("{}:t", fx.p("L")), &format!("{l2}:t")],
    );
    let identity = format!("{}/pushed:t", reg.authority());
    fx.sign(&format!("{l2}:t"), "pass", Some(&identity), ok);
    push(&fx, &reg, &l2, "pushed");
    let (yes, text) = fx.peer_pull(peer, &good, &reg.docker("pushed:t"), "out4:t");
    assert!(yes, "the peer refused a signature made in a layout: {text}");
}

#[test]
fn rumoci_accepts_what_the_peer_signs() {
    let Some(peer) = peer() else { return };
    let fx = Fx::new();
    let d = fx.d();
    let reg = Registry::start();
    let regd = fx.registries_d(&reg);
    let accept = fx.accept_all();
    // the peer reads rumoci's key file (generate-key) and signs with it
    let (yes, text) = peer_copy(
        peer,
        &[
            "--policy",
            &accept,
            "--registries.d",
            &regd,
            "--sign-by-sigstore-private-key",
            &fx.p("k.key"),
            "--sign-passphrase-file",
            &fx.p("pass"),
            &format!("oci:{}:t", fx.p("L")),
            &reg.docker("app:s"),
        ],
    );
    assert!(yes, "the peer could not sign with rumoci's key: {text}");
    let spec = fx.spec(&reg);
    let good = fx.signed_policy("good.json", "docker", &reg.authority(), "k.pub", None);
    let wrong = fx.signed_policy("wrong.json", "docker", &reg.authority(), "other.pub", None);
    ok_under(
        d,
        &good,
        &["copy", "--from-driver", &spec, "app:s", &fx.p("out")],
    );
    verify_app(d, &good, &spec);
    ok_under(
        d,
        &good,
        &[
            "--driver",
            &spec,
            "unpack",
            "--image",
            "app:s",
            &fx.p("bundle"),
        ],
    );
    assert!(d.join("bundle/rootfs/hello").is_file());
    let e = refused_under(
        d,
        &wrong,
        &["copy", "--from-driver", &spec, "app:s", &fx.p("out2")],
    );
    assert!(e.contains("wrong key"), "{e}");
    assert!(!d.join("out2").exists());
    // the peer's identity rule and rumoci's agree: signed for app:s, not app:u
    let (yes, _) = peer_copy(
        peer,
        &[
            "--policy",
            &accept,
            "--registries.d",
            &regd,
            &reg.docker("app:s"),
            &reg.docker("app:u"),
        ],
    );
    assert!(yes);
    let e = refused_under(
        d,
        &good,
        &["copy", "--from-driver", &spec, "app:u", &fx.p("out3")],
    );
    assert!(e.contains("identity mismatch"), "{e}");
    let (yes, text) = fx.peer_pull(peer, &good, &reg.docker("app:u"), "out4:u");
    assert!(!yes && text.contains("is not accepted"), "{text}");
}

/// Rewrite the blob `digest` of layout `l` with `edit`; returns the new
/// digest and size.
fn rewrite_blob(l: &Path, digest: &str, edit: impl FnOnce(&mut Vec<u8>)) -> (String, u64) {
    let mut bytes = std::fs::read(blob_path(l, digest)).expect("blob");
    edit(&mut bytes);
    put_blob(l, &bytes)
}

/// Store `bytes` as a blob of layout `l`; returns its digest and size.
fn put_blob(l: &Path, bytes: &[u8]) -> (String, u64) {
    use sha2::Digest;
    let hex = hex::encode(sha2::Sha256::digest(bytes));
    std::fs::write(l.join("blobs/sha256").join(&hex), bytes).expect("write blob");
    (format!("sha256:{hex}"), bytes.len() as u64)
}

/// Point the index entry tagged `tag` of layout `l` at `digest`/`size`.
fn retag(l: &Path, tag: &str, digest: &str, size: u64) {
    edit_index(l, |m| {
        for e in m.iter_mut() {
            if e["annotations"]["org.opencontainers.image.ref.name"] == tag {
                e["digest"] = digest.into();
                e["size"] = size.into();
            }
        }
    });
}

/// The attachment of `t` in layout `l`: (its tag, its manifest).
fn attachment(l: &Path) -> (String, serde_json::Value) {
    let d = index_entry(l, "t")["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let tag = format!("sha256-{}.sig", d.trim_start_matches("sha256:"));
    let entry = index_entry(l, &tag);
    (
        tag,
        read_blob_json(l, entry["digest"].as_str().expect("digest")),
    )
}

/// Store `manifest` in `l` and tag it `tag`.
fn put_manifest(l: &Path, tag: &str, manifest: &serde_json::Value) {
    let (digest, size) = put_blob(l, &serde_json::to_vec(manifest).expect("json"));
    if tag_digest(l, tag).is_some() {
        retag(l, tag, &digest, size);
    } else {
        edit_index(l, |m| {
            m.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }))
        });
    }
}

#[test]
fn a_changed_signature_payload_or_manifest_is_refused_by_both() {
    let Some(peer) = peer() else { return };
    let fx = Fx::new();
    let d = fx.d();
    let reg = Registry::start();
    fx.registries_d(&reg);
    let spec = fx.spec(&reg);
    let good = fx.signed_policy("good.json", "docker", &reg.authority(), "k.pub", None);
    // one layout per case, each signed for the repository it is pushed to
    let make = |repo: &str| -> PathBuf {
        let l = d.join(repo);
        ok(
            d,
            &["copy", &format!("{}:t", fx.p("L")), &format!("{}:t", s(&l))],
        );
        let identity = format!("{}/{repo}:t", reg.authority());
        fx.sign(&format!("{}:t", s(&l)), "pass", Some(&identity), ok);
        l
    };
    // the untouched control
    let control = make("control");
    // the signature annotation changed (another valid base64 signature:
    // a signature of something else)
    let l = make("sig");
    let (tag, mut m) = attachment(&l);
    let other =
        attachment(&control).1["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"]
            .clone();
    assert_ne!(
        other,
        m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"]
    );
    m["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"] = other;
    put_manifest(&l, &tag, &m);
    // the payload changed (its timestamp), the signature kept
    let l = make("payload");
    let (tag, mut m) = attachment(&l);
    let old = m["layers"][0]["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    let (digest, size) = rewrite_blob(&l, &old, |b| {
        let text = String::from_utf8(b.clone())
            .expect("utf-8")
            .replace("\"timestamp\":", "\"timestamp\":1");
        *b = text.into_bytes();
    });
    m["layers"][0]["digest"] = digest.into();
    m["layers"][0]["size"] = size.into();
    put_manifest(&l, &tag, &m);
    // the manifest changed: the signature moved to the new manifest's tag
    let l = make("manifest");
    let (_, m) = attachment(&l);
    ok(
        d,
        &[
            "config",
            "--image",
            &format!("{}:t", s(&l)),
            "--config.label",
            "changed=yes",
        ],
    );
    let new = index_entry(&l, "t")["digest"]
        .as_str()
        .expect("digest")
        .to_string();
    put_manifest(
        &l,
        &format!("sha256-{}.sig", new.trim_start_matches("sha256:")),
        &m,
    );
    for repo in ["control", "sig", "payload", "manifest"] {
        push(&fx, &reg, s(&d.join(repo)), repo);
    }
    for (repo, peer_says, rumoci_says) in [
        ("control", "", ""),
        (
            "sig",
            "cryptographic signature verification failed",
            "wrong key",
        ),
        (
            "payload",
            "cryptographic signature verification failed",
            "wrong key",
        ),
        ("manifest", "does not match", "digest mismatch"),
    ] {
        let (yes, text) = fx.peer_pull(
            peer,
            &good,
            &reg.docker(&format!("{repo}:t")),
            &format!("peer-{repo}:t"),
        );
        let out = run(
            d,
            &[
                "--policy",
                &good,
                "copy",
                "--from-driver",
                &spec,
                &format!("{repo}:t"),
                &fx.p(&format!("out-{repo}")),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        if peer_says.is_empty() {
            assert!(yes, "{repo}: the peer refused: {text}");
            assert!(out.status.success(), "{repo}: rumoci refused: {err}");
        } else {
            assert!(
                !yes && text.contains(peer_says),
                "{repo}: the peer said: {text}"
            );
            assert!(
                !out.status.success() && err.contains(rumoci_says),
                "{repo}: rumoci said: {err}"
            );
            assert!(
                !d.join(format!("out-{repo}")).exists(),
                "{repo}: a refused copy wrote something"
            );
        }
    }
}
