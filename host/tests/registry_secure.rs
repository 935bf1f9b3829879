//! The `registry` plugin against registries as they are met in the real
//! world, the host doing HTTPS, authentication and redirects for it
//! (wasi:http). Each test starts its own Debian `docker-registry` (CNCF
//! distribution 2.8) on a free loopback port, with a PKI made by `openssl`
//! in the test's temporary directory, and checks what rumoci does against
//! what the Go umoci and skopeo do with the same image:
//!
//! * TLS: with `ca=` the image unpacks exactly as `umoci unpack` unpacks it
//!   and a repack pushed back over HTTPS is what skopeo pulls; an unknown
//!   CA or a certificate for another name fails naming the certificate;
//!   `tls-verify=false` works and says so on stderr.
//! * htpasswd Basic: no or wrong credentials fail with 401 and tag nothing;
//!   `--creds`, `creds=` and each auth file (`$REGISTRY_AUTH_FILE`,
//!   `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json`)
//!   work.
//! * token (`tests/registry/token_server.py`): pushes with credentials,
//!   anonymous pulls of public repositories, anonymous pushes refused,
//!   tokens reused within a command, expired tokens a prompt failure.
//! * redirects and misbehaving servers (`tests/registry/proxy.py`): a blob
//!   redirect to storage is followed, a redirect the registry did not
//!   answer is refused, a dropped connection is resumed, a body that does
//!   not match its digest is refused and tags nothing.
//!
//! Every failure is a non-zero exit whose last stderr line names the cause.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::registry::{Auth, Registry, RegistryConfig};
use common::*;

fn plugin() -> String {
    plugin_wasm(&["registry"], "registry")
}

/// `tests/registry/NAME`: the Python fixtures.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/registry")
        .join(name)
}

const USER: &str = "alice";
const PASS: &str = "secret";
const CREDS: &str = "alice:secret";
const ISSUER: &str = "rumoci-test-issuer";
const SERVICE: &str = "rumoci-test-registry";

/// How long any one rumoci or skopeo command may take before the test
/// calls it a hang.
const LIMIT: Duration = Duration::from_secs(300);

/// Run `cmd`, collecting its output; panics if it runs longer than
/// `limit` (it is killed first).
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().unwrap_or_default();
            panic!(
                "{cmd:?} still ran after {limit:?} (a hang): {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The test's certificates, made with `openssl`.
struct Pki {
    /// The CA's certificate (`ca=`).
    ca: PathBuf,
    /// A directory holding `ca.crt`, for skopeo's `--*-cert-dir`.
    cert_dir: PathBuf,
    /// The server's certificate and key, for `IP:127.0.0.1, DNS:localhost`.
    server: (PathBuf, PathBuf),
    /// Signed by the same CA for `DNS:other.invalid` only.
    other: (PathBuf, PathBuf),
    /// The token signer's self-signed certificate and key.
    token: (PathBuf, PathBuf),
}

impl Pki {
    fn make(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("mkdir pki");
        let f = |n: &str| dir.join(n);
        let openssl = |args: &[&str]| {
            command_ok(Command::new("openssl").args(args).current_dir(dir));
        };
        // NAME.key and a certificate NAME.crt for it, signed by itself
        let self_signed = |name: &str, subject: &str, extra: &[&str]| {
            let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
            let mut args = vec!["req", "-x509", "-newkey", "rsa:2048", "-nodes"];
            args.extend([
                "-keyout", &key, "-out", &crt, "-days", "2", "-subj", subject,
            ]);
            args.extend_from_slice(extra);
            openssl(&args);
        };
        self_signed(
            "ca",
            "/CN=rumoci test CA",
            &[
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        for (name, san, serial) in [
            ("server", "IP:127.0.0.1,DNS:localhost", "1001"),
            ("other", "DNS:other.invalid", "1002"),
        ] {
            std::fs::write(
                f(&format!("{name}.ext")),
                format!(
                    "basicConstraints=critical,CA:FALSE\n\
                     keyUsage=critical,digitalSignature,keyEncipherment\n\
                     extendedKeyUsage=serverAuth\n\
                     subjectAltName={san}\n"
                ),
            )
            .expect("write ext");
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.crt"),
            ]);
        }
        self_signed("token", "/CN=rumoci test token signer", &[]);
        let cert_dir = f("certs.d");
        std::fs::create_dir_all(&cert_dir).expect("mkdir");
        std::fs::copy(f("ca.crt"), cert_dir.join("ca.crt")).expect("copy ca.crt");
        Pki {
            ca: f("ca.crt"),
            cert_dir,
            server: (f("server.crt"), f("server.key")),
            other: (f("other.crt"), f("other.key")),
            token: (f("token.crt"), f("token.key")),
        }
    }
}

/// A Python fixture (token server or proxy), stopped with SIGTERM on drop.
struct Py {
    child: Child,
    port: u16,
    /// The proxy's second listener (`redirect-chain`).
    hop_port: Option<u16>,
    dir: tempfile::TempDir,
    reaped: bool,
}

impl Py {
    fn start(name: &str, args: &[&str], hop: bool) -> Py {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let hop_file = dir.path().join("hop-port");
        let mut cmd = Command::new("python3");
        cmd.arg(script(name))
            .args(args)
            .args(["--port-file", s(&port_file)])
            .args(["--log", s(&dir.path().join("log.jsonl"))]);
        if hop {
            cmd.args(["--hop-port-file", s(&hop_file)]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("start python3");
        let mut py = Py {
            child,
            port: 0,
            hop_port: None,
            dir,
            reaped: false,
        };
        let t = Instant::now();
        let read_port =
            |p: &Path| -> Option<u16> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
        loop {
            if let Some(port) = read_port(&port_file) {
                py.port = port;
                py.hop_port = if hop { read_port(&hop_file) } else { None };
                assert!(!hop || py.hop_port.is_some(), "{name}: no hop port");
                return py;
            }
            let exited = py.child.try_wait().expect("wait").is_some();
            if exited || t.elapsed() > Duration::from_secs(20) {
                panic!("{name} did not start: {}", py.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Its log, one JSON value per request.
    fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect()
    }

    /// SIGTERM, then wait (SIGKILL after 10 s).
    fn terminate(&mut self) -> Option<ExitStatus> {
        if self.reaped {
            return None;
        }
        self.reaped = true;
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Stop it and require a clean exit: status 0 on SIGTERM, no Python
    /// traceback on stderr.
    fn stop(mut self) {
        let status = self.terminate();
        let err = self.stderr();
        assert!(
            status.is_some_and(|s| s.success()) && !err.contains("Traceback"),
            "did not exit cleanly on SIGTERM: {status:?} {err}"
        );
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// `token_server.py` issuing tokens that live `expiry` seconds, for
/// alice:secret.
fn token_server(pki: &Pki, expiry: i64) -> Py {
    Py::start(
        "token_server.py",
        &[
            "--key",
            s(&pki.token.1),
            "--cert",
            s(&pki.token.0),
            "--issuer",
            ISSUER,
            "--service",
            SERVICE,
            "--user",
            CREDS,
            "--expiry",
            &expiry.to_string(),
        ],
        false,
    )
}

/// With a token server issuing tokens that live `expiry` seconds and a
/// registry trusting it: `test`, then the token server must stop cleanly.
/// Nothing where the fixture is missing.
fn with_token_registry(expiry: i64, test: impl FnOnce(&Fx, &Py, &Registry)) {
    let Some(fx) = fixture() else {
        return;
    };
    let ts = token_server(&fx.pki, expiry);
    let reg = token_registry(&fx.pki, &ts);
    test(&fx, &ts, &reg);
    drop(reg);
    ts.stop();
}

/// A registry trusting `ts`'s tokens.
fn token_registry(pki: &Pki, ts: &Py) -> Registry {
    Registry::start_with(&RegistryConfig {
        tls: None,
        auth: Auth::Token {
            realm: format!("http://127.0.0.1:{}/token", ts.port),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            rootcertbundle: pki.token.0.clone(),
        },
        s3: None,
    })
}

/// `proxy.py` in `mode` in front of `reg`.
fn proxy(reg: &Registry, mode: &str) -> Py {
    Py::start(
        "proxy.py",
        &["--upstream", &reg.url(), "--mode", mode],
        mode == "redirect-chain",
    )
}

/// The test's directories and the Go umoci's image.
struct Fx {
    tmp: tempfile::TempDir,
    /// `LAYOUT:t`, built by the Go umoci.
    img: String,
    layout: PathBuf,
    pki: Pki,
    /// Empty directories rumoci and skopeo get as `$HOME` and
    /// `$XDG_RUNTIME_DIR` unless a test gives others: no auth file of the
    /// machine's user is ever read.
    home: PathBuf,
    run: PathBuf,
}

/// The tools every test here needs, and the fixture image; `None` (the
/// test is skipped, with a message) where one is missing.
fn fixture() -> Option<Fx> {
    for tool in [
        "skopeo",
        "openssl",
        "htpasswd",
        "docker-registry",
        "python3",
    ] {
        if !have(tool) {
            return None;
        }
    }
    let (tmp, img, layout) = go_fixture()?;
    let pki = Pki::make(&tmp.path().join("pki"));
    let home = tmp.path().join("home");
    let run = tmp.path().join("run");
    for d in [&home, &run] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    Some(Fx {
        tmp,
        img,
        layout,
        pki,
        home,
        run,
    })
}

impl Fx {
    /// `--FLAG=DIR`: the directory holding the test CA's certificate, for
    /// skopeo.
    fn cert_dir_flag(&self, flag: &str) -> String {
        format!("--{flag}={}", s(&self.pki.cert_dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// rumoci with the test-local plugin cache and data directory, no
    /// credentials from the environment; `env` adds or overrides variables.
    fn rumoci_cmd(&self, args: &[&str], env: &[(&str, &Path)]) -> Command {
        let mut c = Command::new(rumoci_bin());
        c.args(args)
            .env("XDG_CACHE_HOME", cache_home())
            .env("XDG_DATA_HOME", self.path("data"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.run)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("DOCKER_CONFIG");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn rd_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        output_within(&mut self.rumoci_cmd(args, env), LIMIT)
    }

    fn rd(&self, args: &[&str]) -> Output {
        self.rd_env(args, &[])
    }

    /// rumoci must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_env(args, &[])
    }

    fn ok_env(&self, args: &[&str], env: &[(&str, &Path)]) -> String {
        let out = self.rd_env(args, env);
        assert!(
            out.status.success(),
            "rumoci {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// rumoci must fail with one of `any` in its error; its stderr.
    fn fails(&self, args: &[&str], any: &[&str]) -> String {
        self.fails_env(args, &[], any)
    }

    fn fails_env(&self, args: &[&str], env: &[(&str, &Path)], any: &[&str]) -> String {
        let out = self.rd_env(args, env);
        assert_fails(&out, &format!("rumoci {args:?}"), any)
    }

    /// skopeo with the same isolation from the machine's auth files.
    fn skopeo(&self, args: &[&str]) -> Output {
        output_within(
            Command::new("skopeo")
                .args(args)
                .env("HOME", &self.home)
                .env("XDG_RUNTIME_DIR", &self.run)
                .env_remove("REGISTRY_AUTH_FILE")
                .env_remove("DOCKER_CONFIG"),
            LIMIT,
        )
    }

    /// skopeo copies `reg`'s `NAME:TAG` `image` (with `opts`) into a new
    /// layout `DIR-layout`, which the Go umoci unpacks into the bundle
    /// `DIR`; returns the bundle.
    fn pull_and_go_unpack(&self, reg: &Registry, image: &str, opts: &[&str], dir: &str) -> PathBuf {
        let tag = image.rsplit_once(':').map_or("latest", |(_, t)| t);
        let layout = format!("{}:{tag}", s(&self.path(&format!("{dir}-layout"))));
        let docker = reg.docker(image);
        let oci = format!("oci:{layout}");
        self.skopeo_ok(&[&["copy", "--quiet"][..], opts, &[&docker, &oci]].concat());
        let bundle = self.path(dir);
        run_ok("umoci", &["unpack", "--image", &layout, s(&bundle)]);
        bundle
    }

    /// `--creds CREDS copy --to-driver TO IMG DEST`: a copy of the fixture
    /// image with credentials.
    fn copy_with_creds<'a>(&'a self, creds: &'a str, to: &'a str, dest: &'a str) -> [&'a str; 7] {
        ["--creds", creds, "copy", "--to-driver", to, &self.img, dest]
    }

    fn skopeo_ok(&self, args: &[&str]) -> String {
        let out = self.skopeo(args);
        assert!(
            out.status.success(),
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// skopeo pushes the fixture image as `reg`'s `NAME:TAG`; `opts` are
    /// skopeo's `--dest-*` options.
    fn push(&self, reg: &Registry, name_tag: &str, opts: &[&str]) {
        let src = format!("oci:{}:t", s(&self.layout));
        let dst = reg.docker(name_tag);
        let mut args = vec!["copy", "--quiet"];
        args.extend_from_slice(opts);
        args.extend([src.as_str(), dst.as_str()]);
        self.skopeo_ok(&args);
    }

    /// The tags of `reg`'s `repo`, listed by skopeo (`opts`: its TLS and
    /// credential options); none where the repository does not exist.
    fn tags(&self, reg: &Registry, repo: &str, opts: &[&str]) -> Vec<String> {
        let src = reg.docker(repo);
        let mut args = vec!["list-tags"];
        args.extend_from_slice(opts);
        args.push(&src);
        let out = self.skopeo(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && (err.contains("404") || err.contains("name unknown")) {
            return Vec::new();
        }
        assert!(out.status.success(), "skopeo {args:?}: {err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("tags JSON");
        let mut tags: Vec<String> = v["Tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| t.as_str().expect("tag").to_string())
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// The Go umoci's unpack of the fixture image (made once), its rootfs.
    /// rumoci (`pre` before the command) unpacks `image` through the
    /// driver `spec` into `bundle`, and the tree is the Go umoci's.
    fn unpack_like_umoci(&self, pre: &[&str], spec: &str, image: &str, bundle: &Path) {
        let mut args = pre.to_vec();
        args.extend(["--driver", spec, "unpack", "--image", image, s(bundle)]);
        self.ok(&args);
        assert_same_tree(&self.go_rootfs(), &bundle.join("rootfs"));
    }

    fn go_rootfs(&self) -> PathBuf {
        let go = self.path("go-unpack");
        if !go.exists() {
            run_ok("umoci", &["unpack", "--image", &self.img, s(&go)]);
        }
        go.join("rootfs")
    }
}

/// `out` is a failure whose last stderr line, the error, names one of
/// `any` (case-insensitive); returns stderr.
fn assert_fails(out: &Output, what: &str, any: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} should have failed: {err}");
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        any.iter().any(|s| last.contains(&s.to_lowercase())),
        "{what}: the error should name one of {any:?}; stderr:\n{err}"
    );
    err
}

/// The registry driver spec for `url` with extra options (`ca=…`, …).
fn spec(url: &str, extra: &[&str]) -> String {
    let mut s = format!("{},url={url}", plugin());
    for e in extra {
        s.push(',');
        s.push_str(e);
    }
    s
}

/// A layout has no tag `tag` (or is not there at all).
fn assert_untagged(layout: &Path, tag: &str) {
    let Ok(raw) = std::fs::read(layout.join("index.json")) else {
        return;
    };
    let idx: serde_json::Value = serde_json::from_slice(&raw).expect("index.json");
    let tagged = idx["manifests"].as_array().is_some_and(|m| {
        m.iter()
            .any(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
    });
    assert!(!tagged, "{} has tag {tag}", layout.display());
}

// ---------------------------------------------------------------- TLS ---

fn tls_registry(cert: &(PathBuf, PathBuf)) -> Registry {
    Registry::start_with(&RegistryConfig {
        tls: Some(cert.clone()),
        auth: Auth::None,
        s3: None,
    })
}

/// Over HTTPS with the test CA (`ca=`): the image skopeo pushed unpacks as
/// the Go umoci unpacks it; a one-file change repacked through the same
/// driver is what skopeo pulls back and the Go umoci unpacks.
#[test]
fn tls_with_ca_unpacks_like_umoci_and_repack_pulls_back() {
    let Some(fx) = fixture() else {
        return;
    };
    let reg = tls_registry(&fx.pki.server);
    fx.push(
        &reg,
        "fixture/image:t",
        &[&fx.cert_dir_flag("dest-cert-dir")],
    );

    let ca = format!("ca={}", s(&fx.pki.ca));
    let driver = spec(&reg.url(), &[&ca, "repo=fixture/image"]);
    assert_eq!(
        fx.ok(&["--driver", &driver, "ls", "--layout", "fixture/image"]),
        "t\n"
    );
    // the certificate names localhost too
    let by_name = spec(
        &format!("https://localhost:{}", reg.port),
        &[&ca, "repo=fixture/image"],
    );
    assert_eq!(
        fx.ok(&["--driver", &by_name, "ls", "--layout", "fixture/image"]),
        "t\n"
    );

    let bundle = fx.path("bundle");
    fx.unpack_like_umoci(&[], &driver, "fixture/image:t", &bundle);

    // one file changed, repacked to a new tag over HTTPS
    let r = bundle.join("rootfs");
    std::fs::write(r.join("usr/over-tls"), b"pushed over TLS\n").expect("write");
    touch_at(
        "@1600000000",
        &[&r.join("usr/over-tls"), &r.join("usr"), &r],
    );
    fx.ok(&[
        "--driver",
        &driver,
        "repack",
        "--image",
        "fixture/image:new",
        s(&bundle),
    ]);
    let src_cert_dir = fx.cert_dir_flag("cert-dir");
    assert_eq!(
        fx.tags(&reg, "fixture/image", &[&src_cert_dir]),
        ["new", "t"]
    );
    let src_cert_dir = fx.cert_dir_flag("src-cert-dir");
    let back = fx.pull_and_go_unpack(&reg, "fixture/image:new", &[&src_cert_dir], "back");
    assert_eq!(
        std::fs::read(back.join("rootfs/usr/over-tls")).expect("the pushed file"),
        b"pushed over TLS\n"
    );
    assert_same_tree(&r, &back.join("rootfs"));
}

/// A certificate from a CA rumoci was not given fails, naming the
/// certificate, for reads and pushes alike; `tls-verify=false` works and
/// warns.
#[test]
fn tls_unknown_ca_fails_and_tls_verify_false_warns() {
    let Some(fx) = fixture() else {
        return;
    };
    let reg = tls_registry(&fx.pki.server);
    // the fixture: skopeo too refuses the certificate without the CA
    let out = fx.skopeo(&["list-tags", &reg.docker("fixture/image")]);
    assert_fails(&out, "skopeo without the CA", &["certificate"]);
    fx.push(
        &reg,
        "fixture/image:t",
        &[&fx.cert_dir_flag("dest-cert-dir")],
    );

    let bare = spec(&reg.url(), &["repo=fixture/image"]);
    fx.fails(
        &["--driver", &bare, "ls", "--layout", "fixture/image"],
        &["certificate"],
    );
    let bundle = fx.path("bundle");
    fx.fails(
        &[
            "--driver",
            &bare,
            "unpack",
            "--image",
            "fixture/image:t",
            s(&bundle),
        ],
        &["certificate"],
    );
    fx.fails(
        &[
            "copy",
            "--to-driver",
            &spec(&reg.url(), &[]),
            &fx.img,
            "fixture/image:pushed",
        ],
        &["certificate"],
    );
    // a CA that did not sign the server's certificate (the token signer's)
    let wrong_ca = spec(
        &reg.url(),
        &[&format!("ca={}", s(&fx.pki.token.0)), "repo=fixture/image"],
    );
    fx.fails(
        &["--driver", &wrong_ca, "ls", "--layout", "fixture/image"],
        &["certificate"],
    );
    let cert_dir = fx.cert_dir_flag("cert-dir");
    assert_eq!(fx.tags(&reg, "fixture/image", &[&cert_dir]), ["t"]);

    // no verification: works, and says so
    let insecure = spec(&reg.url(), &["tls-verify=false", "repo=fixture/image"]);
    let out = fx.rd(&["--driver", &insecure, "ls", "--layout", "fixture/image"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tls-verify=false: {err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "t\n");
    assert!(err.contains("tls-verify=false"), "no warning: {err}");
    fx.unpack_like_umoci(&[], &insecure, "fixture/image:t", &bundle);
}

/// A certificate signed by the trusted CA but for another name
/// (`other.invalid`) fails, naming the certificate.
#[test]
fn tls_certificate_for_another_name_fails() {
    let Some(fx) = fixture() else {
        return;
    };
    let reg = tls_registry(&fx.pki.other);
    let cert_dir = fx.cert_dir_flag("cert-dir");
    // the fixture: skopeo with the CA refuses the name too
    let out = fx.skopeo(&["list-tags", &cert_dir, &reg.docker("fixture/image")]);
    assert_fails(&out, "skopeo with the wrong name", &["certificate"]);
    fx.push(&reg, "fixture/image:t", &["--dest-tls-verify=false"]);

    let ca = format!("ca={}", s(&fx.pki.ca));
    for url in [reg.url(), format!("https://localhost:{}", reg.port)] {
        fx.fails(
            &[
                "--driver",
                &spec(&url, &[&ca, "repo=fixture/image"]),
                "ls",
                "--layout",
                "fixture/image",
            ],
            &["certificate"],
        );
    }
    fx.fails(
        &[
            "--driver",
            &spec(&reg.url(), &[&ca, "repo=fixture/image"]),
            "unpack",
            "--image",
            "fixture/image:t",
            s(&fx.path("bundle")),
        ],
        &["certificate"],
    );
}

// ----------------------------------------------------------- htpasswd ---

fn htpasswd_registry(fx: &Fx) -> Registry {
    let file = fx.path("htpasswd");
    let line = run_ok("htpasswd", &["-Bbn", USER, PASS]);
    assert!(line.starts_with("alice:$2"), "not bcrypt: {line}");
    std::fs::write(&file, line).expect("write htpasswd");
    Registry::start_with(&RegistryConfig {
        tls: None,
        auth: Auth::Htpasswd(file),
        s3: None,
    })
}

/// An auth file (`auth.json` / docker `config.json`) giving `creds` for
/// `key`.
fn auth_file(path: &Path, key: &str, creds: &str) {
    use base64::Engine as _;
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let auth = base64::engine::general_purpose::STANDARD.encode(creds);
    let json = serde_json::json!({ "auths": { key: { "auth": auth } } });
    std::fs::write(path, serde_json::to_vec_pretty(&json).expect("json")).expect("write auth file");
}

/// Basic authentication: without or with wrong credentials nothing is
/// read or tagged (401); `--creds`, `creds=` and each auth file work.
#[test]
fn htpasswd_credentials_from_flag_spec_and_auth_files() {
    let Some(fx) = fixture() else {
        return;
    };
    let reg = htpasswd_registry(&fx);
    let sk_creds = format!("--creds={CREDS}");
    // the fixture: skopeo needs the credentials too
    let out = fx.skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &reg.docker("fixture/image"),
    ]);
    assert_fails(&out, "skopeo without credentials", &["401", "unauthorized"]);
    fx.push(
        &reg,
        "fixture/image:t",
        &["--dest-tls-verify=false", &format!("--dest-creds={CREDS}")],
    );
    let tags = |repo: &str| fx.tags(&reg, repo, &["--tls-verify=false", &sk_creds]);

    let to = spec(&reg.url(), &[]);
    let from = spec(&reg.url(), &["repo=fixture/image"]);
    let unauthorized = ["401", "unauthorized"];
    // no credentials
    fx.fails(
        &["copy", "--to-driver", &to, &fx.img, "team/app:none"],
        &unauthorized,
    );
    fx.fails(
        &["--driver", &from, "ls", "--layout", "fixture/image"],
        &unauthorized,
    );
    let bundle = fx.path("bundle");
    fx.fails(
        &[
            "--driver",
            &from,
            "unpack",
            "--image",
            "fixture/image:t",
            s(&bundle),
        ],
        &unauthorized,
    );
    // a wrong password, by flag and in the spec
    fx.fails(
        &fx.copy_with_creds("alice:wrong", &to, "team/app:wrong"),
        &unauthorized,
    );
    fx.fails(
        &[
            "copy",
            "--to-driver",
            &spec(&reg.url(), &["creds=alice:wrong"]),
            &fx.img,
            "team/app:wrong",
        ],
        &unauthorized,
    );
    assert_eq!(
        tags("team/app"),
        Vec::<String>::new(),
        "tagged without credentials"
    );

    // --creds
    fx.ok(&fx.copy_with_creds(CREDS, &to, "team/app:flag"));
    assert_eq!(tags("team/app"), ["flag"]);
    // creds= in the spec
    fx.unpack_like_umoci(
        &[],
        &spec(
            &reg.url(),
            &[&format!("creds={CREDS}"), "repo=fixture/image"],
        ),
        "fixture/image:t",
        &bundle,
    );

    // each auth file alone (the other places empty)
    let ls = ["--driver", from.as_str(), "ls", "--layout", "fixture/image"];
    let authority = reg.authority();
    let files = fx.path("auth-files");
    let registry_auth_file = files.join("registry-auth-file.json");
    auth_file(&registry_auth_file, &authority, CREDS);
    assert_eq!(
        fx.ok_env(&ls, &[("REGISTRY_AUTH_FILE", &registry_auth_file)]),
        "t\n"
    );
    let runtime = files.join("run");
    auth_file(&runtime.join("containers/auth.json"), &authority, CREDS);
    assert_eq!(fx.ok_env(&ls, &[("XDG_RUNTIME_DIR", &runtime)]), "t\n");
    // docker's config.json, with a URL-style key
    let home = files.join("home");
    auth_file(
        &home.join(".docker/config.json"),
        &format!("https://{authority}"),
        CREDS,
    );
    assert_eq!(fx.ok_env(&ls, &[("HOME", &home)]), "t\n");

    // credentials for another registry only: not used
    let elsewhere = files.join("elsewhere.json");
    auth_file(&elsewhere, "127.0.0.1:1", CREDS);
    fx.fails_env(&ls, &[("REGISTRY_AUTH_FILE", &elsewhere)], &unauthorized);
    // $REGISTRY_AUTH_FILE comes before docker's config.json
    let wrong_home = files.join("wrong-home");
    auth_file(
        &wrong_home.join(".docker/config.json"),
        &authority,
        "alice:wrong",
    );
    assert_eq!(
        fx.ok_env(
            &ls,
            &[
                ("REGISTRY_AUTH_FILE", &registry_auth_file),
                ("HOME", &wrong_home)
            ]
        ),
        "t\n"
    );
    fx.fails_env(&ls, &[("HOME", &wrong_home)], &unauthorized);
    // a push with the auth file's credentials
    fx.ok_env(
        &["copy", "--to-driver", &to, &fx.img, "team/app:file"],
        &[("REGISTRY_AUTH_FILE", &registry_auth_file)],
    );
    assert_eq!(tags("team/app"), ["file", "flag"]);
}

// -------------------------------------------------------------- token ---

/// Token authentication: alice pushes a private repository with `copy`
/// (skopeo reads it back), anyone pulls `public/…` but pushes nothing.
#[test]
fn token_push_with_creds_anonymous_pull_of_public_only() {
    with_token_registry(300, |fx, ts, reg| {
        let sk_creds = format!("--creds={CREDS}");
        let tags = |repo: &str| fx.tags(reg, repo, &["--tls-verify=false", &sk_creds]);
        let to = spec(&reg.url(), &[]);

        // alice pushes team/app; skopeo (with her credentials) reads it back
        fx.ok(&fx.copy_with_creds(CREDS, &to, "team/app:t"));
        assert_eq!(tags("team/app"), ["t"]);
        let src_creds = format!("--src-creds={CREDS}");
        let opts = ["--src-tls-verify=false", src_creds.as_str()];
        let go_back = fx.pull_and_go_unpack(reg, "team/app:t", &opts, "go-back");
        assert_same_tree(&fx.go_rootfs(), &go_back.join("rootfs"));
        // the token server saw alice ask for push on team/app
        assert!(
            ts.log().iter().any(|l| l["user"] == USER
                && l["granted"]
                    .as_array()
                    .is_some_and(|g| g.iter().any(|a| a["name"] == "team/app"
                        && a["actions"]
                            .as_array()
                            .is_some_and(|x| x.iter().any(|x| x == "push"))))),
            "no push token for alice: {:?}",
            ts.log()
        );

        // anonymous: private repositories are closed
        let bundle = fx.path("bundle");
        fx.fails(
            &[
                "--driver",
                &spec(&reg.url(), &["repo=team/app"]),
                "unpack",
                "--image",
                "team/app:t",
                s(&bundle),
            ],
            &["401", "unauthorized", "denied"],
        );
        // public/app, pushed with credentials, unpacks anonymously
        fx.push(
            reg,
            "public/app:t",
            &["--dest-tls-verify=false", &format!("--dest-creds={CREDS}")],
        );
        fx.unpack_like_umoci(
            &[],
            &spec(&reg.url(), &["repo=public/app"]),
            "public/app:t",
            &bundle,
        );
        assert!(
            ts.log()
                .iter()
                .any(|l| l["user"].is_null() && l["status"] == 200),
            "no anonymous token: {:?}",
            ts.log()
        );
        // but an anonymous push is refused and tags nothing
        fx.fails(
            &["copy", "--to-driver", &to, &fx.img, "public/app:anon"],
            &["401", "unauthorized", "denied"],
        );
        fx.fails(
            &["copy", "--to-driver", &to, &fx.img, "team/app:anon"],
            &["401", "unauthorized", "denied"],
        );
        assert_eq!(tags("public/app"), ["t"]);
        assert_eq!(tags("team/app"), ["t"]);
        // and a wrong password is refused by the token server
        fx.fails(
            &[
                "--creds",
                "alice:wrong",
                "--driver",
                &spec(&reg.url(), &["repo=team/app"]),
                "ls",
                "--layout",
                "team/app",
            ],
            &["401", "unauthorized"],
        );
    });
}

/// One unpack asks the token server at most twice for each set of scopes:
/// tokens are reused, not fetched per request.
#[test]
fn token_is_reused_within_an_unpack() {
    with_token_registry(300, |fx, ts, reg| {
        fx.push(
            reg,
            "team/app:t",
            &["--dest-tls-verify=false", &format!("--dest-creds={CREDS}")],
        );
        let before = ts.log().len();
        let bundle = fx.path("bundle");
        fx.unpack_like_umoci(
            &["--creds", CREDS],
            &spec(&reg.url(), &["repo=team/app"]),
            "team/app:t",
            &bundle,
        );
        let during: Vec<_> = ts.log().split_off(before);
        assert!(!during.is_empty(), "the unpack asked for no token");
        let mut per_scopes: BTreeMap<String, usize> = BTreeMap::new();
        for l in &during {
            assert_eq!(l["user"], USER, "{l}");
            let mut scopes: Vec<String> = l["scopes"]
                .as_array()
                .expect("scopes")
                .iter()
                .map(|s| s.as_str().expect("scope").to_string())
                .collect();
            scopes.sort();
            *per_scopes.entry(scopes.join(" ")).or_default() += 1;
        }
        assert!(
            per_scopes.values().all(|&n| n <= 2),
            "tokens not reused: {per_scopes:?}"
        );
    });
}

/// Tokens that are expired when issued: a prompt, clear failure, not a
/// loop of token requests or a hang. (distribution 2.8 accepts a token up
/// to 60 s past its `exp`, so they are issued 300 s expired.)
#[test]
fn token_already_expired_fails_clearly() {
    with_token_registry(-300, |fx, ts, reg| {
        // the fixture: skopeo is refused too
        let out = fx.skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &format!("--creds={CREDS}"),
            &reg.docker("team/app"),
        ]);
        assert_fails(&out, "skopeo with expired tokens", &["401", "unauthorized"]);
        let before = ts.log().len();
        let t = Instant::now();
        let out = output_within(
            &mut fx.rumoci_cmd(
                &[
                    "--creds",
                    CREDS,
                    "copy",
                    "--to-driver",
                    &spec(&reg.url(), &[]),
                    &fx.img,
                    "team/app:t",
                ],
                &[],
            ),
            Duration::from_secs(120),
        );
        assert_fails(&out, "copy with expired tokens", &["401", "unauthorized"]);
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "took {:?} to fail",
            t.elapsed()
        );
        let asked = ts.log().len() - before;
        assert!(
            (1..=6).contains(&asked),
            "{asked} token requests for one failing copy"
        );
    });
}

// ---------------------------------------------------------- redirects ---

/// A plain registry holding the fixture image as `fixture/image:t`.
fn plain_registry(fx: &Fx) -> Registry {
    let reg = Registry::start();
    fx.push(&reg, "fixture/image:t", &["--dest-tls-verify=false"]);
    reg
}

fn proxied(p: &Py) -> String {
    spec(
        &format!("http://127.0.0.1:{}", p.port),
        &["repo=fixture/image"],
    )
}

/// With [`plain_registry`] behind [`proxy`] in `mode`: `test`, then the
/// proxy must stop cleanly. Nothing where the fixture is missing.
fn through_proxy(mode: &str, test: impl FnOnce(&Fx, &Py)) {
    let Some(fx) = fixture() else {
        return;
    };
    let reg = plain_registry(&fx);
    let px = proxy(&reg, mode);
    test(&fx, &px);
    drop(reg);
    px.stop();
}

/// Through the proxy `px`: an unpack of `fixture/image:t` and a copy of it
/// into a layout both fail with one of `any`, and the copy tags nothing.
/// Their errors.
fn unpack_and_copy_fail(fx: &Fx, px: &Py, any: &[&str]) -> (String, String) {
    let bundle = fx.path("bundle");
    let unpack = fx.fails(
        &[
            "--driver",
            &proxied(px),
            "unpack",
            "--image",
            "fixture/image:t",
            s(&bundle),
        ],
        any,
    );
    let dest = fx.path("copy-dest");
    let copy = fx.fails(
        &[
            "copy",
            "--from-driver",
            &spec(&format!("http://127.0.0.1:{}", px.port), &[]),
            "fixture/image:t",
            &format!("{}:t", s(&dest)),
        ],
        any,
    );
    assert_untagged(&dest, "t");
    (unpack, copy)
}

/// Blobs redirected (307) to another authority, as registries send them to
/// object storage: followed, and the bundle is the Go umoci's.
#[test]
fn redirected_blobs_unpack_like_umoci() {
    through_proxy("redirect", |fx, px| {
        let bundle = fx.path("bundle");
        fx.unpack_like_umoci(&[], &proxied(px), "fixture/image:t", &bundle);
        let redirected = px
            .log()
            .iter()
            .filter(|l| l["action"] == "redirect" && l["status"] == 307)
            .count();
        assert!(redirected >= 2, "blobs were not redirected: {:?}", px.log());
    });
}

/// A redirect answered by the redirect target rather than the registry is
/// refused, naming the address it came from; a copy tags nothing.
#[test]
fn second_redirect_is_not_granted() {
    through_proxy("redirect-chain", |fx, px| {
        let hop = format!("127.0.0.1:{}", px.hop_port.expect("hop port"));
        let (err, copy_err) = unpack_and_copy_fail(fx, px, &["not granted"]);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        assert!(last.contains(&hop), "the error should name {hop}: {err}");
        assert!(
            copy_err.contains(&hop),
            "the error should name {hop}: {copy_err}"
        );
    });
}

/// Connections closed halfway through the first read of each blob: reads
/// resume, and the bundle is the Go umoci's.
#[test]
fn dropped_blob_reads_resume() {
    through_proxy("drop", |fx, px| {
        let bundle = fx.path("bundle");
        fx.unpack_like_umoci(&[], &proxied(px), "fixture/image:t", &bundle);
        let log = px.log();
        assert!(
            log.iter()
                .any(|l| l["action"].as_str().is_some_and(|a| a.starts_with("drop"))),
            "nothing was dropped: {log:?}"
        );
    });
}

/// A registry whose blob bodies do not match their digests: the unpack
/// fails naming the digest, and a copy into a layout tags nothing.
#[test]
fn lying_registry_fails_on_digest_and_tags_nothing() {
    through_proxy("lie-digest", |fx, px| {
        // the fixture: skopeo notices too
        let out = fx.skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://127.0.0.1:{}/fixture/image:t", px.port),
            &format!("oci:{}:t", s(&fx.path("skopeo-dest"))),
        ]);
        assert_fails(&out, "skopeo through a lying registry", &["digest"]);
        unpack_and_copy_fail(fx, px, &["digest"]);
    });
}
