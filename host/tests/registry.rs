//! The `registry` content-store plugin against a real OCI distribution
//! registry (Debian's `docker-registry`, CNCF distribution 2.8), one
//! instance per test on a free loopback port: images pushed with skopeo
//! unpack as the Go umoci unpacks them, repacks / config / tag push back
//! what skopeo pulls, what the distribution API cannot do fails clearly,
//! and a plugin reaches only the host:port it is granted.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::registry::{Registry, free_port};
use common::*;

fn plugin(name: &str) -> String {
    plugin_wasm(&["registry", "evil-net"], name)
}

/// rumoci with the test's own plugin cache and data directory (the
/// registry plugin's store directory lives beneath it).
fn rd(data: &Path, args: &[&str]) -> Output {
    Command::new(rumoci_bin())
        .args(args)
        .env(
            "XDG_CACHE_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache"),
        )
        .env("XDG_DATA_HOME", data)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("spawn rumoci")
}

fn rd_ok(data: &Path, args: &[&str]) -> String {
    let out = rd(data, args);
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`rd_ok`], returning stderr (the log).
fn rd_ok_err(data: &Path, args: &[&str]) -> String {
    let out = rd(data, args);
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rd_err(data: &Path, args: &[&str]) -> String {
    let out = rd(data, args);
    assert!(!out.status.success(), "rumoci {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `rumoci --driver registry.wasm,url=…,repo=NAME ARGS…`.
fn through(reg: &Registry, data: &Path, repo: &str, args: &[&str]) -> String {
    let spec = format!("{},url={},repo={repo}", plugin("registry"), reg.url());
    let mut a = vec!["--driver", spec.as_str()];
    a.extend_from_slice(args);
    rd_ok(data, &a)
}

fn skopeo(args: &[&str]) -> String {
    run_ok("skopeo", args)
}

/// The Go umoci's fixture image pushed to a fresh registry as `NAME:t`.
struct Pushed {
    reg: Registry,
    tmp: tempfile::TempDir,
    /// The local layout holding the same image (`LAYOUT:t`).
    layout: PathBuf,
}

fn pushed(name: &str) -> Option<Pushed> {
    if !have("skopeo") {
        return None;
    }
    let reg = Registry::start();
    let (tmp, _img, layout) = go_fixture()?;
    skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:t", s(&layout)),
        &reg.docker(&format!("{name}:t")),
    ]);
    Some(Pushed { reg, tmp, layout })
}

/// rumoci (`pre` before the command, e.g. `--driver SPEC`) unpacks `image`
/// into the bundle `dest`.
fn rd_unpack(data: &Path, pre: &[&str], image: &str, dest: &Path) {
    let mut args = pre.to_vec();
    args.extend(["unpack", "--image", image, s(dest)]);
    rd_ok(data, &args);
}

/// The Go umoci unpacks `image` (`LAYOUT:TAG`) into the bundle `dest`.
fn umoci_unpack(image: &str, dest: &Path) {
    run_ok("umoci", &["unpack", "--image", image, s(dest)]);
}

/// The spool directory is left empty (no temporaries behind; rumoci's
/// own index lock file aside).
fn assert_no_spool(data: &Path) {
    let store = data.join("rumoci/drivers/registry");
    let left: Vec<_> = std::fs::read_dir(&store)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name())
                .filter(|n| n != ".rumoci-index.lock")
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", store.display());
}

#[test]
fn registry_unpack_matches_umoci_and_repack_pulls_back() {
    let Some(Pushed { reg, tmp, layout }) = pushed("fixture/image") else {
        return;
    };
    let data = tmp.path().join("data");
    let work = tmp.path();
    // the layout path is the repository (no repo=)
    let spec = format!("{},url={}", plugin("registry"), reg.url());
    assert_eq!(
        rd_ok(
            &data,
            &["--driver", &spec, "ls", "--layout", "fixture/image"]
        ),
        "t\n"
    );
    let via = ["--driver", spec.as_str()];
    let bundle = work.join("bundle");
    rd_unpack(&data, &via, "fixture/image:t", &bundle);
    let go = work.join("go");
    umoci_unpack(&format!("{}:t", s(&layout)), &go);
    assert_same_tree(&go.join("rootfs"), &bundle.join("rootfs"));
    // the same bundle files as rumoci's unpack of the local layout
    let local = work.join("local");
    rd_unpack(&data, &[], &format!("{}:t", s(&layout)), &local);
    assert_same_tree(&local.join("rootfs"), &bundle.join("rootfs"));
    assert_eq!(
        std::fs::read(local.join("config.json")).expect("read"),
        std::fs::read(bundle.join("config.json")).expect("read"),
        "config.json differs from a local unpack"
    );

    // change the bundle, repack to a new tag in the registry
    let r = bundle.join("rootfs");
    std::fs::create_dir_all(r.join("added/dir")).expect("mkdir");
    std::fs::write(r.join("added/dir/file"), b"through a registry\n").expect("w");
    std::fs::write(r.join("added/big"), vec![7u8; 5 << 20]).expect("w");
    std::fs::remove_dir_all(r.join("usr/share")).expect("rm");
    touch_at(
        "@1600000000",
        &[
            &r.join("added/dir/file"),
            &r.join("added/big"),
            &r.join("added/dir"),
            &r.join("added"),
            &r.join("usr"),
            &r,
        ],
    );
    rd_ok(
        &data,
        &[
            "--driver",
            &spec,
            "repack",
            "--image",
            "fixture/image:new",
            s(&bundle),
        ],
    );
    assert_no_spool(&data);
    let tags = rd_ok(
        &data,
        &["--driver", &spec, "ls", "--layout", "fixture/image"],
    );
    assert_eq!(tags, "new\nt\n");

    // pull it back with skopeo; the Go umoci unpacks the changed tree
    let out = work.join("out");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &reg.docker("fixture/image:new"),
        &format!("oci:{}:new", s(&out)),
    ]);
    let back = work.join("back");
    umoci_unpack(&format!("{}:new", s(&out)), &back);
    assert_same_tree(&bundle.join("rootfs"), &back.join("rootfs"));
    // and rumoci unpacks the pushed image straight from the registry again
    let again = work.join("again");
    rd_unpack(&data, &via, "fixture/image:new", &again);
    assert_same_tree(&bundle.join("rootfs"), &again.join("rootfs"));
}

#[test]
fn registry_config_and_tag_push_manifests() {
    let Some(Pushed { reg, tmp, .. }) = pushed("cfg") else {
        return;
    };
    let data = tmp.path().join("data");
    through(
        &reg,
        &data,
        "cfg",
        &[
            "config",
            "--image",
            "cfg:t",
            "--config.env",
            "K=registry",
            "--config.user",
            "1234",
            "--tag",
            "t2",
        ],
    );
    through(&reg, &data, "cfg", &["tag", "--image", "cfg:t2", "t3"]);
    assert_eq!(
        through(&reg, &data, "cfg", &["ls", "--layout", "cfg"]),
        "t\nt2\nt3\n"
    );
    let config = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--config",
        &reg.docker("cfg:t3"),
    ]);
    let config: serde_json::Value = serde_json::from_str(&config).expect("config JSON");
    assert_eq!(config["config"]["User"], "1234", "{config}");
    assert!(
        config["config"]["Env"]
            .as_array()
            .expect("Env")
            .iter()
            .any(|e| e == "K=registry"),
        "{config}"
    );
    // t2 and t3 are the same manifest; t is untouched
    let raw = |tag: &str| {
        skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &reg.docker(&format!("cfg:{tag}")),
        ])
    };
    assert_eq!(raw("t2"), raw("t3"));
    assert_ne!(raw("t"), raw("t2"));
    let old: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--config",
        &reg.docker("cfg:t"),
    ]))
    .expect("JSON");
    assert_ne!(old["config"]["User"], "1234");
    // stat through the registry agrees
    let stat = through(&reg, &data, "cfg", &["stat", "--image", "cfg:t3"]);
    assert!(stat.contains("== MANIFEST =="), "{stat}");

    // a repository created from scratch through the driver
    through(&reg, &data, "fresh", &["init", "--layout", "fresh"]);
    through(&reg, &data, "fresh", &["new", "--image", "fresh:v1"]);
    assert_eq!(
        through(&reg, &data, "fresh", &["ls", "--layout", "fresh"]),
        "v1\n"
    );
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &reg.docker("fresh:v1"),
    ]);
    assert!(
        raw.contains("application/vnd.oci.image.manifest.v1+json"),
        "{raw}"
    );
    let spec = format!("{},url={},repo=fresh", plugin("registry"), reg.url());
    let e = rd_err(&data, &["--driver", &spec, "init", "--layout", "fresh"]);
    assert!(e.contains("has tags already"), "{e}");
    assert_no_spool(&data);
}

#[test]
fn registry_gc_fails_clearly_and_rm_deletes_where_it_can() {
    let Some(Pushed { reg, tmp, .. }) = pushed("keep") else {
        return;
    };
    let data = tmp.path().join("data");
    let spec = format!("{},url={},repo=keep", plugin("registry"), reg.url());
    let e = rd_err(&data, &["--driver", &spec, "gc", "--layout", "keep"]);
    assert!(e.contains("driver registry (registry.wasm)"), "{e}");
    assert!(
        e.contains("unsupported") && e.contains("cannot list blobs"),
        "{e}"
    );
    // a second tag on the same manifest: neither can go (the API removes a
    // tag only by deleting its manifest)
    rd_ok(
        &data,
        &["--driver", &spec, "tag", "--image", "keep:t", "t2"],
    );
    let e = rd_err(&data, &["--driver", &spec, "rm", "--image", "keep:t"]);
    assert!(
        e.contains("cannot remove tag t from keep") && e.contains("which t2 still name"),
        "{e}"
    );
    // nothing was removed
    assert_eq!(
        through(&reg, &data, "keep", &["ls", "--layout", "keep"]),
        "t\nt2\n"
    );
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &reg.docker("keep:t"),
    ]);
    // a tag alone on its manifest goes, by deleting the manifest
    rd_ok(
        &data,
        &[
            "--driver",
            &spec,
            "config",
            "--image",
            "keep:t",
            "--config.env",
            "X=1",
            "--tag",
            "other",
        ],
    );
    rd_ok(&data, &["--driver", &spec, "rm", "--image", "keep:other"]);
    assert_eq!(
        through(&reg, &data, "keep", &["ls", "--layout", "keep"]),
        "t\nt2\n"
    );
    let gone = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &reg.docker("keep:other"),
        ])
        .output()
        .expect("skopeo");
    assert!(!gone.status.success(), "keep:other is still served");
    assert_no_spool(&data);
}

#[test]
fn registry_plugin_reaches_only_its_url() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).expect("mkdir");
    let bait = TcpListener::bind("127.0.0.1:0").expect("bind");
    bait.set_nonblocking(true).expect("nonblocking");
    let bait_addr = bait.local_addr().expect("addr").to_string();
    let reg_addr = format!("127.0.0.1:{}", reg.port);
    let evil = plugin("evil-net");
    let targets = format!("opt.connect1={bait_addr},opt.connect2={reg_addr}");

    // no url=: no network at all
    let spec = format!("{evil},dir={},{targets}", s(&store));
    let e = rd_err(&data, &["--driver", &spec, "ls", "--layout", "x"]);
    assert!(e.contains("net report"), "{e}");
    for addr in [&bait_addr, &reg_addr] {
        assert!(e.contains(&format!("connect {addr}: refused")), "{e}");
        assert!(e.contains(&format!("http {addr}: refused")), "{e}");
    }
    assert!(e.contains("no url="), "{e}");

    // url= grants wasi:http requests to exactly the registry's origin, no
    // socket at all, and the credentials stay with the host
    let spec = format!(
        "{evil},url={},creds=alice:s3cr3t-pw,{targets},opt.connect3=[::1]:{}",
        reg.url(),
        reg.port
    );
    let e = rd_err(&data, &["--driver", &spec, "ls", "--layout", "x"]);
    assert!(e.contains(&format!("http {reg_addr}: ok (200)")), "{e}");
    assert!(e.contains(&format!("connect {reg_addr}: refused")), "{e}");
    assert!(e.contains(&format!("connect {bait_addr}: refused")), "{e}");
    assert!(
        e.contains(&format!("http {bait_addr}: refused"))
            && e.contains(&format!("{bait_addr}/v2/ refused: not granted")),
        "{e}"
    );
    assert!(
        e.contains(&format!("http [::1]:{}: refused", reg.port)),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "forged authorization {reg_addr}: refused (headers: HeaderError::Forbidden"
        )),
        "{e}"
    );
    assert!(e.contains("lookup localhost: refused"), "{e}");
    assert!(e.contains("udp: refused"), "{e}");
    assert!(e.contains("listen: refused"), "{e}");
    assert!(e.contains("seen: "), "{e}");
    assert!(!e.contains("s3cr3t") && !e.contains("creds"), "{e}");
    assert!(!e.contains("ESCAPED"), "{e}");

    // the bait never saw a connection
    match bait.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the sandbox let a connection through: {other:?}"),
    }
}

#[test]
fn registry_bad_url_or_repo_fails_in_one_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let wasm = plugin("registry");
    // nothing listens there
    let url = format!("http://127.0.0.1:{}", free_port());
    let spec = format!("{wasm},url={url}");
    let e = rd_err(&data, &["--driver", &spec, "ls", "--layout", "demo"]);
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(e.contains("driver registry (registry.wasm)"), "{e}");
    assert!(e.contains(&url) && e.contains("not reachable"), "{e}");
    let e = rd_err(
        &data,
        &[
            "--driver",
            &spec,
            "unpack",
            "--image",
            "demo:t",
            s(&tmp.path().join("b")),
        ],
    );
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(e.contains(&url), "{e}");

    // what is not a registry's address is refused when parsing the spec
    for (bad, why) in [
        ("ftp://127.0.0.1:5000", "not http or https"),
        ("http://127.0.0.1:5000/v2", "the registry's address only"),
        ("http://user@127.0.0.1:5000", "user information"),
    ] {
        let e = rd_err(
            &data,
            &[
                "--driver",
                &format!("{wasm},url={bad}"),
                "ls",
                "--layout",
                "demo",
            ],
        );
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
        assert!(e.contains(why), "{bad}: {e}");
    }

    // a repository name outside the distribution grammar
    let reg = Registry::start();
    let spec = format!("{wasm},url={}", reg.url());
    let e = rd_err(
        &data,
        &["--driver", &spec, "ls", "--layout", "/tmp/Not_A_Repo"],
    );
    assert!(
        e.contains("invalid-argument") || e.contains("repository name"),
        "{e}"
    );
    assert!(e.contains("/tmp/Not_A_Repo"), "{e}");
    // an empty repository lists nothing
    assert_eq!(
        rd_ok(
            &data,
            &[
                "--driver",
                &format!("{spec},repo=empty"),
                "ls",
                "--layout",
                "x"
            ]
        ),
        ""
    );

    // servers that are not registries, or answer garbage
    for (answer, why) in [
        (
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "does not answer 200",
        ),
        (b"HELLO\r\n\r\n".to_vec(), "invalid HTTP version"),
        (
            [
                b"HTTP/1.1 200 OK\r\nX: ".to_vec(),
                vec![b'a'; 1_000_000],
                b"\r\n\r\n".to_vec(),
            ]
            .concat(),
            "too large",
        ),
        (
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n".to_vec(),
            "invalid HTTP header",
        ),
    ] {
        let (url, server) = fake_server(answer);
        let spec = format!("{wasm},url={url},repo=x");
        let e = rd_err(&data, &["--driver", &spec, "ls", "--layout", "x"]);
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
        assert!(e.contains(why) && e.contains(&url), "{why}: {e}");
        server.join().expect("fake server");
    }
}

/// A plain web server (Python's `http.server`, 404 to every `/v2/` path)
/// is no registry, and every command says so, also one that reads a
/// single tag (which sends no probe before its tag's GET): not that the
/// tag is missing.
#[test]
fn a_web_server_that_is_no_registry_is_named_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).expect("mkdir");
    let port = free_port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "http.server did not listen on {port}");
    let url = format!("http://127.0.0.1:{port}");
    let spec = format!("{},url={url}", plugin("registry"));
    let bundle = tmp.path().join("b");
    let runs: [&[&str]; 4] = [
        &["unpack", "--image", "demo:t", s(&bundle)],
        &["raw", "unpack", "--image", "demo:t", s(&bundle)],
        &["stat", "--image", "demo:t"],
        &["ls", "--layout", "demo"],
    ];
    for args in runs {
        let e = rd_err(&data, &[&["--driver", spec.as_str()], args].concat());
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: one line: {e}");
        assert!(
            e.contains("is it a distribution registry") && e.contains(&url),
            "{args:?}: {e}"
        );
    }
    assert!(
        !bundle.exists(),
        "a failed unpack left {}",
        bundle.display()
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// A one-shot HTTP server on 127.0.0.1 that reads a request head and
/// writes `answer`; returns its URL.
fn fake_server(answer: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    let h = std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let _ = c.write_all(&answer);
        }
    });
    (url, h)
}

/// The conformance runner against a real registry: every check the
/// registry model allows passes (blob listing and deletion are answered
/// `unsupported`, so gc is skipped), including tags from 4 processes at
/// once and unpack/repack identical to the built-in driver's.
#[test]
fn registry_plugin_passes_driver_test() {
    let reg = Registry::start();
    let work = tempfile::tempdir().expect("tempdir");
    let spec = format!("{},url={}", plugin("registry"), reg.url());
    let out = rd(
        work.path(),
        &["driver", "test", "--work", s(&work.path().join("w")), &spec],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "ok    cas: write-index honours every precondition",
        "ok    end-to-end: unpack gives the built-in driver's bundle",
        "ok    end-to-end: repack gives the built-in driver's result",
        "ok    end-to-end: tags from 4 processes at once are all kept",
        "skip  cas: list-blobs pages through every blob, for any limit (list-blobs unsupported",
    ] {
        assert!(stdout.contains(check), "{check:?} missing:\n{stdout}");
    }
    assert_no_check_failed(&stdout);
}

/// `rumoci copy` to and from a registry: a Go umoci layout pushed with
/// `--to-driver registry`, read back by skopeo (and the Go umoci unpacks
/// skopeo's copy as its own image), pulled back with `--from-driver`
/// byte for byte; a second push skips every blob.
#[test]
fn copy_pushes_to_and_pulls_from_a_registry() {
    if !have("skopeo") {
        return;
    }
    let Some((tmp, img, layout)) = go_fixture() else {
        return;
    };
    let reg = Registry::start();
    let data = tmp.path().join("data");
    let spec = format!("{},url={}", plugin("registry"), reg.url());
    rd_ok(&data, &["copy", "--to-driver", &spec, &img, "team/app:1.0"]);
    let err = rd_ok_err(
        &data,
        &[
            "--log",
            "info",
            "copy",
            "--to-driver",
            &spec,
            &img,
            "team/app:1.1",
        ],
    );
    assert!(err.contains("0 blobs copied (0 bytes)"), "{err}");
    // skopeo reads what rumoci pushed; the Go umoci unpacks skopeo's copy
    let back = tmp.path().join("skopeo-back");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &reg.docker("team/app:1.0"),
        &format!("oci:{}:t", s(&back)),
    ]);
    let (a, b) = (tmp.path().join("go-a"), tmp.path().join("go-b"));
    umoci_unpack(&img, &a);
    umoci_unpack(&format!("{}:t", s(&back)), &b);
    assert_same_tree(&a.join("rootfs"), &b.join("rootfs"));
    // pulled back with rumoci: the very same manifest digest
    let pulled = tmp.path().join("pulled");
    rd_ok(
        &data,
        &[
            "copy",
            "--from-driver",
            &spec,
            "team/app:1.1",
            &format!("{}:t", s(&pulled)),
        ],
    );
    let digest = |l: &Path| -> String {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(l.join("index.json")).expect("index"))
                .expect("json");
        v["manifests"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_string()
    };
    assert_eq!(digest(&pulled), digest(&layout));
    assert_no_spool(&data);
}

/// A command through the registry plugin loads it once: the warning the
/// host prints when it sets up the plugin's network (`tls-verify=false`)
/// appears once, and so does the one-line error.
#[test]
fn a_plugin_is_set_up_once_per_command() {
    let tmp = tempfile::tempdir().expect("tmp");
    let driver = format!(
        "{},url=https://127.0.0.1:1,tls-verify=false",
        plugin("registry")
    );
    for args in [
        vec!["--driver", driver.as_str(), "ls", "--layout", "repo"],
        vec![
            "--driver",
            driver.as_str(),
            "unpack",
            "--image",
            "repo:t",
            "bundle",
        ],
    ] {
        let out = rd(tmp.path(), &args);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches("tls-verify=false").count(), 1, "{err}");
        assert_eq!(err.matches("rumoci: ").count(), 1, "{err}");
    }
}

/// An image of more layers than an unpack reads ahead at once (later ones
/// deleting, replacing and adding what earlier ones wrote, one larger than
/// the read-ahead queue) pulled through the registry plugin unpacks
/// exactly as the local layout does: layers fetched on their own threads
/// are still applied in order, each verified.
#[test]
fn a_pull_of_many_layers_unpacks_as_the_local_layout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let layout = tmp.path().join("L");
    let img = format!("{}:t", s(&layout));
    rd_ok(&data, &["init", "--layout", s(&layout)]);
    rd_ok(&data, &["new", "--image", &img]);
    let src = tmp.path().join("src");
    for i in 0..6u8 {
        let d = src.join(format!("d{i}"));
        std::fs::create_dir_all(d.join("sub")).expect("mkdir");
        std::fs::write(d.join("file"), format!("layer {i}\n")).expect("w");
        std::fs::write(d.join("sub/shared"), vec![i; 1000 + usize::from(i)]).expect("w");
        rd_ok(&data, &["insert", "--image", &img, s(&d), "/d"]);
        rd_ok(
            &data,
            &["insert", "--image", &img, s(&d), &format!("/only{i}")],
        );
    }
    // a layer larger than the read-ahead queue (incompressible bytes)
    let big = src.join("big");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..(24 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&big, &bytes).expect("w");
    rd_ok(&data, &["insert", "--image", &img, s(&big), "/big"]);
    rd_ok(&data, &["insert", "--image", &img, "--whiteout", "/only2"]);
    rd_ok(&data, &["insert", "--image", &img, "--whiteout", "/d/sub"]);

    let reg = Registry::start();
    let spec = format!("{},url={}", plugin("registry"), reg.url());
    rd_ok(
        &data,
        &["copy", "--to-driver", &spec, &img, "many/layers:t"],
    );
    let pulled = tmp.path().join("pulled");
    rd_unpack(&data, &["--driver", &spec], "many/layers:t", &pulled);
    let local = tmp.path().join("local");
    rd_unpack(&data, &[], &img, &local);
    assert_same_tree(&local.join("rootfs"), &pulled.join("rootfs"));
    assert_eq!(mtree_body(&local), mtree_body(&pulled));
    assert!(!pulled.join("rootfs/only2").exists());
    assert!(!pulled.join("rootfs/d/sub").exists());
    assert_eq!(
        std::fs::read(pulled.join("rootfs/d/file")).expect("read"),
        b"layer 5\n"
    );
    assert_eq!(
        std::fs::read(pulled.join("rootfs/big")).expect("read"),
        bytes
    );
    assert_no_spool(&data);
}

/// A local layout `L` holding `L:t` (two small layers), pushed as
/// `REPO:a`, `REPO:b` and `REPO:c` (b and c another image, made from `t`
/// with one more layer); `(tmp, data dir, layout, registry, driver spec)`.
fn three_tags(repo: &str) -> (tempfile::TempDir, PathBuf, PathBuf, Registry, String) {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let layout = tmp.path().join("L");
    let img = format!("{}:t", s(&layout));
    rd_ok(&data, &["init", "--layout", s(&layout)]);
    rd_ok(&data, &["new", "--image", &img]);
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("etc")).expect("mkdir");
    std::fs::write(src.join("etc/hello"), "hello\n").expect("w");
    rd_ok(&data, &["insert", "--image", &img, s(&src), "/"]);
    std::fs::write(src.join("etc/hello"), "hello again\n").expect("w");
    rd_ok(&data, &["insert", "--image", &img, s(&src), "/second"]);
    let reg = Registry::start();
    let spec = format!("{},url={}", plugin("registry"), reg.url());
    rd_ok(
        &data,
        &["copy", "--to-driver", &spec, &img, &format!("{repo}:a")],
    );
    let other = format!("{}:u", s(&layout));
    rd_ok(&data, &["tag", "--image", &img, "u"]);
    rd_ok(&data, &["insert", "--image", &other, s(&src), "/third"]);
    for tag in ["b", "c"] {
        rd_ok(
            &data,
            &[
                "copy",
                "--to-driver",
                &spec,
                &other,
                &format!("{repo}:{tag}"),
            ],
        );
    }
    (tmp, data, layout, reg, spec)
}

/// The requests the registry plugin sent (`--log debug` lines `driver
/// registry (…): METHOD PATH: STATUS`), as `METHOD PATH: STATUS`.
fn requests(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("registry.wasm): ").map(|(_, r)| r))
        .filter(|r| r.starts_with("GET /") || r.starts_with("HEAD /"))
        .map(str::to_string)
        .collect()
}

/// The config's and the first layer's digests of `tag` in the local
/// `layout`.
fn config_and_first_layer(layout: &Path, tag: &str) -> (String, String) {
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("JSON")
    };
    let blob = |d: &serde_json::Value| {
        let d = d.as_str().expect("digest");
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read(layout.join("index.json"));
    let desc = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("tag");
    let manifest = read(blob(&desc["digest"]));
    let digest = |v: &serde_json::Value| v.as_str().expect("digest").to_string();
    (
        digest(&manifest["config"]["digest"]),
        digest(&manifest["layers"][0]["digest"]),
    )
}

/// A pull resolves its one tag with one `GET /manifests/TAG` (no tag
/// listing, no `HEAD` per tag, the manifest not fetched a second time by
/// its digest), asks for the first layer before the config, and unpacks
/// the tree the local layout gives, as `raw unpack` does; the other tags
/// of the repository stay as they were.
#[test]
fn a_pull_resolves_its_tag_alone_and_unpacks_as_the_local_layout() {
    let (tmp, data, layout, _reg, spec) = three_tags("pull/one");
    // `unpack` (or `raw unpack`) of pull/one:a into `dest`: its log
    let pull_logged = |command: &[&str], dest: &Path| {
        let args = [
            &["--log", "debug", "--driver", spec.as_str()],
            command,
            &["--image", "pull/one:a", s(dest)],
        ]
        .concat();
        rd_ok_err(&data, &args)
    };
    let pulled = tmp.path().join("pulled");
    let log = pull_logged(&["unpack"], &pulled);
    let (config, first_layer) = config_and_first_layer(&layout, "t");
    let one_tag_then_layer_first = |log: &str| {
        let reqs = requests(log);
        assert!(!reqs.is_empty(), "no requests logged:\n{log}");
        assert!(!reqs.iter().any(|r| r.contains("/tags/list")), "{reqs:#?}");
        assert!(!reqs.iter().any(|r| r.starts_with("HEAD ")), "{reqs:#?}");
        let manifests: Vec<&String> = reqs.iter().filter(|r| r.contains("/manifests/")).collect();
        assert_eq!(
            manifests,
            ["GET /v2/pull/one/manifests/a: 200"],
            "{reqs:#?}"
        );
        // the first layer is answered before the config is asked for
        let at = |digest: &str| {
            reqs.iter()
                .position(|r| r.contains(&format!("/blobs/{digest}")))
                .unwrap_or_else(|| panic!("no GET of {digest}: {reqs:#?}"))
        };
        assert!(at(&first_layer) < at(&config), "{reqs:#?}");
    };
    one_tag_then_layer_first(&log);
    // raw unpack (a root filesystem alone) reads the same way
    let raw = tmp.path().join("raw");
    let log = pull_logged(&["raw", "unpack"], &raw);
    one_tag_then_layer_first(&log);
    assert_same_tree(&pulled.join("rootfs"), &raw);
    let local = tmp.path().join("local");
    rd_unpack(&data, &[], &format!("{}:t", s(&layout)), &local);
    assert_same_tree(&local.join("rootfs"), &pulled.join("rootfs"));
    assert_eq!(mtree_body(&local), mtree_body(&pulled));
    // stat and a tag that is not there: the usual answers
    let out = rd_ok(&data, &["--driver", &spec, "stat", "--image", "pull/one:b"]);
    assert!(out.contains("== MANIFEST =="), "{out}");
    let e = rd_err(
        &data,
        &[
            "--driver",
            &spec,
            "unpack",
            "--image",
            "pull/one:nope",
            s(&tmp.path().join("nope")),
        ],
    );
    assert!(e.contains("nope") && e.contains("not found"), "{e}");
    let tags = rd_ok(&data, &["--driver", &spec, "ls", "--layout", "pull/one"]);
    assert_eq!(tags, "a\nb\nc\n");
    assert_no_spool(&data);
}

/// An index read for some refs alone (`host.wanted-refs`) is never written
/// back: the host refuses every index write through such a store (a tag,
/// a removal, a copy into it), and the plugin refuses `write-index` itself
/// when called regardless; every tag of the repository is still there.
#[test]
fn a_partial_index_is_never_written_back() {
    use rumoci::driver::bindings::CasDriver;
    use rumoci::driver::bindings::exports::rumoci::driver::cas::IndexPrecondition;
    use rumoci::driver::bindings::rumoci::driver::types::Error as WitError;
    use rumoci::driver::{DriverError, Plugin};
    use rumoci::image::{Drivers, Open, Store};

    let (tmp, _data, layout, _reg, spec) = three_tags("partial/idx");
    let spool = tmp.path().join("spool");
    std::fs::create_dir_all(&spool).expect("mkdir");
    let spec = format!("{spec},dir={}", s(&spool));
    let drivers = Drivers::parse(&[spec.as_str()]).expect("parse");
    let all_tags = |store: &Store| -> Vec<String> {
        store
            .tags()
            .expect("tags")
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    };

    // the host: the store reads tag `a` alone, and writes nothing
    let store = Store::open_with(&drivers, "partial/idx", Open::Existing).expect("open");
    store.want_refs(&["a".to_string()]);
    assert_eq!(all_tags(&store), ["a"]);
    let lock = store.lock().expect("lock");
    let refused = |e: rumoci::Error| {
        let m = format!("{e:#}");
        assert!(m.contains("refusing to write index.json"), "{m}");
        assert!(m.contains("partially"), "{m}");
    };
    refused(store.tag(&lock, "a", None, "d").expect_err("tag"));
    refused(store.remove_tag(&lock, "a").expect_err("rm"));
    drop(lock);
    let local = Store::open(&layout).expect("layout");
    refused(
        rumoci::image::copy(
            &local,
            "t",
            &store,
            "e",
            &Default::default(),
            &mut |_, _| {},
        )
        .expect_err("copy into it"),
    );
    // refs asked for later are read too; the index stays partial
    store.want_refs(&["b".to_string()]);
    assert_eq!(all_tags(&store), ["a", "b"]);
    let lock = store.lock().expect("lock");
    refused(store.tag(&lock, "b", None, "d").expect_err("tag"));
    drop(lock);

    // the plugin: `write-index` refused while wanted-refs is set, even
    // with the precondition it would otherwise accept
    let raw = Drivers::parse(&[format!("{spec},repo=partial/idx")]).expect("parse");
    let d = &raw.specs()[0];
    let linked = rumoci::driver::link(Path::new(&plugin("registry"))).expect("link");
    let mut p = Plugin::<CasDriver>::with(&linked, d, Some(&spool)).expect("instance");
    p.want_refs(vec!["b".to_string()]);
    let read = p
        .call("cas.read-index", |s, b| {
            b.rumoci_driver_cas().call_read_index(s)
        })
        .expect("read-index");
    let doc: serde_json::Value = serde_json::from_slice(&read.bytes).expect("json");
    assert_eq!(doc["manifests"].as_array().map(Vec::len), Some(1), "{doc}");
    for pre in [
        IndexPrecondition::Bytes(read.bytes.clone()),
        IndexPrecondition::Version(read.version.clone()),
        IndexPrecondition::Any,
    ] {
        let e = p
            .call("cas.write-index", |s, b| {
                b.rumoci_driver_cas().call_write_index(s, &read.bytes, &pre)
            })
            .expect_err("write-index of a partial index");
        assert!(
            matches!(&e, DriverError::Plugin { error: WitError::Other(m), .. } if m.contains("refusing to write the index")),
            "{e:?}"
        );
    }

    // nothing was lost
    let fresh = Store::open_with(&drivers, "partial/idx", Open::Existing).expect("open");
    assert_eq!(all_tags(&fresh), ["a", "b", "c"]);
}
