//! The `s3` content-store plugin against real S3 servers: SeaweedFS
//! (`weed mini`, with credentials, so every request must carry the host's
//! AWS Signature V4) and moto's server, each on free loopback ports
//! (scripts/deps.sh installs both). Every command through the plugin gives
//! the built-in driver's digests; the prefix synced to a directory is a
//! layout the Go umoci reads; copies both ways; tags from concurrent
//! processes (no shared lock: each has its own data directory) are all
//! kept; a server killed mid-upload leaves no half blob and no tag; wrong
//! credentials and a missing bucket fail in one line; a server ignoring
//! conditional writes is refused unless single-writer; `driver test`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::registry::{Registry, RegistryConfig, S3Storage, free_port};
use common::*;

const ACCESS_KEY: &str = "rumociak";
const SECRET_KEY: &str = "rumoci-secret-key";

/// The plugins this binary uses (built once, together).
const PLUGINS: &[&str] = &["s3", "registry"];

fn plugin() -> String {
    plugin_wasm(PLUGINS, "s3")
}

/// `weed`, `moto_server` or `python3` with boto3: on `PATH`, else in the
/// virtualenv scripts/deps.sh makes. `None` (a visible skip; a failure in
/// CI) when missing.
fn tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("rumoci/s3-venv/bin").join(name));
    if let Some(v) = venv.filter(|v| v.is_file()) {
        return Some(v);
    }
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    if out.status.success() {
        return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} is required in CI but is not installed (scripts/deps.sh)");
    }
    eprintln!("SKIPPED: {name} is not installed (scripts/deps.sh installs it)");
    None
}

/// The python of the tools (boto3 comes with moto).
fn python() -> Option<PathBuf> {
    let p = tool("python3")?;
    let ok = Command::new(&p)
        .args(["-c", "import boto3"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("boto3 is required in CI but is not installed (scripts/deps.sh)");
    }
    eprintln!("SKIPPED: boto3 is not installed");
    None
}

/// A small boto3 helper: `buckets URL B…` (create, waiting for the
/// server), `sync URL BUCKET PREFIX DIR` (the objects beneath PREFIX/ as
/// files), `keys URL BUCKET PREFIX`, `uploads URL BUCKET`.
const HELPER: &str = r#"
import sys, os, time, boto3, botocore
cmd, url = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
    aws_access_key_id=os.environ["AK"], aws_secret_access_key=os.environ["SK"],
    config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
if cmd == "buckets":
    end = time.time() + 60
    for b in sys.argv[3:]:
        while True:
            try:
                s3.create_bucket(Bucket=b); break
            except s3.exceptions.BucketAlreadyOwnedByYou:
                break
            except Exception as e:
                if time.time() > end: raise
                time.sleep(0.2)
elif cmd == "sync":
    bucket, prefix, dest = sys.argv[3], sys.argv[4].rstrip("/") + "/", sys.argv[5]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            rel = o["Key"][len(prefix):]
            path = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, o["Key"], path)
elif cmd == "keys":
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[3], Prefix=sys.argv[4]):
        for o in page.get("Contents", []):
            print(o["Key"], o["Size"])
elif cmd == "uploads":
    print(len(s3.list_multipart_uploads(Bucket=sys.argv[3]).get("Uploads", [])))
"#;

fn helper(url: &str, args: &[&str]) -> String {
    let py = python().expect("python with boto3");
    let out = Command::new(py)
        .arg("-c")
        .arg(HELPER)
        .arg(args[0])
        .arg(url)
        .args(&args[1..])
        .env("AK", ACCESS_KEY)
        .env("SK", SECRET_KEY)
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "s3 helper {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status code of a plain HTTP/1.0 request (any answer at all).
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/")
}

/// A SeaweedFS (`weed mini`) on free loopback ports with one identity
/// (ACCESS_KEY, SECRET_KEY); killed on drop.
struct Weed {
    child: Option<Child>,
    args: Vec<String>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Weed {
    fn start(buckets: &[&str]) -> Option<Weed> {
        Weed::start_on(buckets, "127.0.0.1")
    }

    /// [`Weed::start`] with its servers listening on `bind`.
    fn start_on(buckets: &[&str], bind: &str) -> Option<Weed> {
        let weed = tool("weed")?;
        python()?;
        let mut log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let conf = dir.path().join("s3.json");
            std::fs::write(
                &conf,
                format!(
                    r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
                ),
            )
            .expect("write s3.json");
            std::fs::create_dir(dir.path().join("data")).expect("data dir");
            let p: Vec<u16> = (0..10).map(|_| free_port()).collect();
            let args = vec![
                "mini".to_string(),
                format!("-dir={}", s(&dir.path().join("data"))),
                "-ip=127.0.0.1".into(),
                format!("-ip.bind={bind}"),
                format!("-s3.port={}", p[0]),
                format!("-s3.port.grpc={}", p[1]),
                format!("-master.port={}", p[2]),
                format!("-master.port.grpc={}", p[3]),
                format!("-volume.port={}", p[4]),
                format!("-volume.port.grpc={}", p[5]),
                format!("-filer.port={}", p[6]),
                format!("-filer.port.grpc={}", p[7]),
                format!("-admin.port={}", p[8]),
                format!("-admin.port.grpc={}", p[9]),
                "-admin.ui=false".into(),
                "-webdav=false".into(),
                "-s3.port.iceberg=0".into(),
                "-s3.port.lance=0".into(),
                format!("-s3.config={}", s(&conf)),
            ];
            let mut w = Weed {
                child: None,
                args,
                port: p[0],
                dir,
            };
            w.child = Some(w.spawn(&weed));
            if w.wait_ready() {
                helper(&w.url(), &[&["buckets"], buckets].concat());
                return Some(w);
            }
            w.kill();
            log = w.log();
        }
        panic!("weed mini did not come up: {log}");
    }

    fn spawn(&self, weed: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("weed.log"))
            .expect("log");
        Command::new(weed)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start weed")
    }

    fn wait_ready(&mut self) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                return false;
            }
            if answers(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same ports and data.
    fn restart(&mut self) {
        let weed = tool("weed").expect("weed");
        self.child = Some(self.spawn(&weed));
        assert!(self.wait_ready(), "weed did not come back: {}", self.log());
        // the S3 gateway may answer before the filer is back
        helper(&self.url(), &["buckets"]);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Buckets of the shared SeaweedFS (one per test).
const BUCKETS: &[&str] = &[
    "round-trip",
    "copies",
    "tags",
    "creds",
    "grace",
    "conformance",
    "registry-storage",
    "storm",
];

/// One SeaweedFS for the tests of this binary (a bucket each).
fn weed() -> Option<&'static Mutex<Weed>> {
    static W: OnceLock<Option<Mutex<Weed>>> = OnceLock::new();
    W.get_or_init(|| Weed::start(BUCKETS).map(Mutex::new))
        .as_ref()
}

fn weed_url() -> Option<String> {
    let w = weed()?;
    let url = w.lock().unwrap_or_else(|p| p.into_inner()).url();
    Some(url)
}

/// moto's S3 server on a free port; killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start(buckets: &[&str]) -> Option<Moto> {
        let moto = tool("moto_server")?;
        python()?;
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&moto)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto_server");
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(30) {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if answers(port) {
                    let m = Moto { child, port };
                    helper(&m.url(), &[&["buckets"], buckets].concat());
                    return Some(m);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not come up");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rumoci with the test's plugin cache, its own data directory (the
/// plugin's store directory and index lock live beneath it) and the
/// test identity's keys.
fn rd_in(data: &Path, args: &[&str]) -> Output {
    rd_with(data, args, &[])
}

fn rd_with(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(rumoci_bin())
        .args(args)
        .env("XDG_CACHE_HOME", cache_home())
        .env("XDG_DATA_HOME", data)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .envs(env.iter().copied())
        .output()
        .expect("spawn rumoci")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "rumoci {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: Output, what: &str) -> String {
    assert!(!out.status.success(), "rumoci {what} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `s3.wasm,url=URL,bucket=BUCKET` plus `extra` (`,opt.gc-grace=0`…).
fn spec(url: &str, bucket: &str, extra: &str) -> String {
    format!("{},url={url},bucket={bucket}{extra}", plugin())
}

/// `rumoci --driver SP unpack --rootless --image IMAGE BUNDLE` in `data`.
fn unpack_rootless(data: &Path, sp: &str, image: &str, bundle: &Path) {
    let args = [
        "--driver",
        sp,
        "unpack",
        "--rootless",
        "--image",
        image,
        s(bundle),
    ];
    ok(rd_in(data, &args), "unpack");
}

/// SeaweedFS's URL, a scratch directory and the spec of `bucket` there,
/// which holds a new layout `l` (None: no SeaweedFS here).
fn weed_layout(bucket: &str) -> Option<(String, tempfile::TempDir, String)> {
    let url = weed_url()?;
    let tmp = tempfile::tempdir().expect("tempdir");
    let sp = spec(&url, bucket, "");
    ok(
        rd_in(tmp.path(), &["--driver", &sp, "init", "--layout", "l"]),
        "init",
    );
    Some((url, tmp, sp))
}

/// Run `args` with the built-in driver on layout `local` and through the
/// plugin (`spec`) on layout `remote`: `@L` in an argument is the layout.
fn both(data: &Path, spec: &str, local: &Path, remote: &str, args: &[&str]) -> (String, String) {
    let sub = |l: &str| -> Vec<String> { args.iter().map(|a| a.replace("@L", l)).collect() };
    let a = sub(s(local));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let builtin = ok(rd_in(data, &a), &a.join(" "));
    let b = sub(remote);
    let mut with = vec!["--driver", spec];
    with.extend(b.iter().map(String::as_str));
    let plugin = ok(rd_in(data, &with), &with.join(" "));
    (builtin, plugin)
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The blob names of a layout directory.
fn blobs(layout: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn every_command_through_seaweedfs_gives_the_builtin_digests_and_a_layout_go_umoci_reads() {
    let Some(url) = weed_url() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    // small parts, so that the big layer goes up as a multipart upload
    let sp = spec(
        &url,
        "round-trip",
        ",prefix=base,opt.gc-grace=0,opt.part-size=5M",
    );
    let local = t.join("local");
    let remote = "imgs/one";
    both(t, &sp, &local, remote, &["init", "--layout", "@L"]);
    both(t, &sp, &local, remote, &["new", "--image", "@L:base"]);
    both(
        t,
        &sp,
        &local,
        remote,
        &[
            "config",
            "--image",
            "@L:base",
            "--tag",
            "cfg",
            "--config.env",
            "A=b",
            "--author",
            "rumoci",
        ],
    );
    for (side, layout) in [("a", s(&local).to_string()), ("b", remote.to_string())] {
        let bundle = t.join(format!("bundle-{side}"));
        let mut args = vec![];
        if side == "b" {
            args.extend(["--driver", sp.as_str()]);
        }
        let image = format!("{layout}:cfg");
        let rep = format!("{layout}:rep");
        let unpack = [
            args.clone(),
            vec!["unpack", "--rootless", "--image", &image, s(&bundle)],
        ]
        .concat();
        ok(rd_in(t, &unpack), "unpack");
        let rootfs = bundle.join("rootfs");
        std::fs::write(rootfs.join("small"), b"hello\n").expect("write");
        std::fs::write(rootfs.join("big"), noise(12 << 20, 7)).expect("write");
        let repack = [args, vec!["repack", "--image", &rep, s(&bundle)]].concat();
        ok(rd_in(t, &repack), "repack");
    }
    both(
        t,
        &sp,
        &local,
        remote,
        &["tag", "--image", "@L:rep", "extra"],
    );
    both(t, &sp, &local, remote, &["rm", "--image", "@L:cfg"]);
    let (a, b) = both(t, &sp, &local, remote, &["ls", "--layout", "@L"]);
    assert_eq!(a, b);
    let (a, b) = both(t, &sp, &local, remote, &["stat", "--image", "@L:extra"]);
    assert_eq!(a, b);
    both(t, &sp, &local, remote, &["gc", "--layout", "@L"]);
    both(t, &sp, &local, remote, &["verify", "--layout", "@L"]);
    // unpacked again, the same trees
    let (ua, ub) = (t.join("unpack-a"), t.join("unpack-b"));
    ok(
        rd_in(
            t,
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{}:extra", s(&local)),
                s(&ua),
            ],
        ),
        "unpack",
    );
    unpack_rootless(t, &sp, "imgs/one:extra", &ub);
    assert_same_tree(&ua.join("rootfs"), &ub.join("rootfs"));
    // the prefix is an OCI layout: synced to a directory, it is the
    // built-in layout, and the Go umoci reads it
    let synced = t.join("synced");
    helper(&url, &["sync", "round-trip", "base/imgs/one", s(&synced)]);
    assert_eq!(
        std::fs::read(synced.join("index.json")).expect("index.json"),
        std::fs::read(local.join("index.json")).expect("index.json")
    );
    assert_eq!(blobs(&synced), blobs(&local));
    assert!(synced.join("oci-layout").is_file());
    assert!(
        !synced.join(".rumoci-uploads").exists(),
        "temporaries left behind"
    );
    if have("umoci") {
        let tags = run_ok("umoci", &["ls", "--layout", s(&synced)]);
        assert_eq!(tags.lines().collect::<Vec<_>>(), ["base", "rep", "extra"]);
        let go = t.join("go-bundle");
        run_ok(
            "umoci",
            &[
                "unpack",
                "--rootless",
                "--image",
                &format!("{}:extra", s(&synced)),
                s(&go),
            ],
        );
        assert_eq!(
            std::fs::read(go.join("rootfs/big")).expect("big"),
            noise(12 << 20, 7)
        );
    }
}

/// Copy `image` out of the store `sp` into the layout `T/back` as tag `t`,
/// which must be the same image as `want`'s tag `t`; the layout.
fn copy_back(t: &Path, sp: &str, image: &str, want: &Path) -> PathBuf {
    let back = t.join("back");
    let dst = format!("{}:t", s(&back));
    ok(
        rd_in(t, &["copy", "--from-driver", sp, image, &dst]),
        &format!("copy {image} out of s3"),
    );
    assert_eq!(
        index_entry(&back, "t")["digest"],
        index_entry(want, "t")["digest"]
    );
    back
}

#[test]
fn copies_between_a_layout_and_seaweedfs_both_ways() {
    let Some(url) = weed_url() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let Some((_fx, _img, layout)) = go_fixture() else {
        return;
    };
    let sp = spec(&url, "copies", "");
    let src = format!("{}:t", s(&layout));
    ok(
        rd_in(t, &["copy", "--to-driver", &sp, &src, "mirror/img:t"]),
        "copy to s3",
    );
    let back = copy_back(t, &sp, "mirror/img:t", &layout);
    // only blobs of the source
    let all = blobs(&layout);
    assert!(blobs(&back).iter().all(|b| all.contains(b)));
    ok(rd_in(t, &["verify", "--layout", s(&back)]), "verify");
    // copying again finds every blob there already
    ok(
        rd_in(t, &["copy", "--to-driver", &sp, &src, "mirror/img:t2"]),
        "copy to s3 again",
    );
    let tags = ok(
        rd_in(t, &["--driver", &sp, "ls", "--layout", "mirror/img"]),
        "ls",
    );
    assert_eq!(tags.lines().collect::<Vec<_>>(), ["t", "t2"]);
}

/// `n` rumoci processes tag one image at once, each with its own data
/// directory (so rumoci's per-machine index lock does not serialise
/// them: only the server's conditional writes do).
fn concurrent_tags(url: &str, bucket: &str, prefix: &str, n: usize) {
    concurrent_tags_from(url, bucket, prefix, n, &|_| (Vec::new(), url.to_string()));
}

/// `n` writers tag one image at once, twice over, then every tag must be
/// there. `writer(i)` gives the command writer `i` runs under (e.g. `ip
/// netns exec NS`) and the endpoint it reaches the server at.
fn concurrent_tags_from(
    url: &str,
    bucket: &str,
    prefix: &str,
    n: usize,
    writer: &dyn Fn(usize) -> (Vec<String>, String),
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let sp = spec(url, bucket, &format!(",prefix={prefix}"));
    ok(
        rd_in(t, &["--driver", &sp, "init", "--layout", "l"]),
        "init",
    );
    ok(
        rd_in(t, &["--driver", &sp, "new", "--image", "l:base"]),
        "new",
    );
    for round in 0..2 {
        let children: Vec<Child> = (0..n)
            .map(|i| {
                let data = t.join(format!("data-{i}"));
                let (wrap, url) = writer(i);
                let sp = spec(&url, bucket, &format!(",prefix={prefix}"));
                let bin = rumoci_bin();
                let mut argv: Vec<String> = wrap;
                argv.push(bin.to_string());
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..])
                    .args(["--driver", &sp, "tag", "--image", "l:base"])
                    .arg(format!("p{i}-{round}"))
                    .env("XDG_CACHE_HOME", cache_home())
                    .env("XDG_DATA_HOME", &data)
                    .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                    .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
                    .stderr(Stdio::piped())
                    .stdout(Stdio::null());
                c.spawn().expect("spawn")
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "tag failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let tags = ok(rd_in(t, &["--driver", &sp, "ls", "--layout", "l"]), "ls");
    let missing: Vec<String> = (0..2)
        .flat_map(|r| (0..n).map(move |i| format!("p{i}-{r}")))
        .filter(|tag| !tags.lines().any(|l| l == tag))
        .collect();
    assert!(missing.is_empty(), "tags lost: {missing:?}\n{tags}");
}

#[test]
fn tags_from_concurrent_processes_are_all_kept_on_seaweedfs() {
    let Some(url) = weed_url() else { return };
    concurrent_tags(&url, "tags", "weed", 6);
}

/// Network namespaces, each joined to the host by a veth pair: machines
/// of their own as far as the network goes. Removed on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// `n` namespaces; namespace `i` reaches the host at the address
    /// returned for it. `None` where they cannot be made (not root, no
    /// `ip`).
    fn make(n: usize) -> Option<(Namespaces, Vec<String>)> {
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|st| st.success())
        };
        let pid = std::process::id();
        let net = 100 + pid % 100;
        let mut ns = Namespaces { names: Vec::new() };
        let mut hosts = Vec::new();
        for i in 0..n {
            let name = format!("rumoci-{pid}-{i}");
            let (h, inside) = (
                format!("rm{}h{i}", pid % 100_000),
                format!("rm{}n{i}", pid % 100_000),
            );
            let (host_ip, ns_ip) = (format!("10.{net}.{i}.1"), format!("10.{net}.{i}.2"));
            if !ip(&["netns", "add", &name]) {
                return None;
            }
            ns.names.push(name.clone());
            let made = ip(&["link", "add", &h, "type", "veth", "peer", "name", &inside])
                && ip(&["link", "set", &inside, "netns", &name])
                && ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &h])
                && ip(&["link", "set", &h, "up"])
                && ip(&[
                    "-n",
                    &name,
                    "addr",
                    "add",
                    &format!("{ns_ip}/30"),
                    "dev",
                    &inside,
                ])
                && ip(&["-n", &name, "link", "set", &inside, "up"])
                && ip(&["-n", &name, "link", "set", "lo", "up"]);
            assert!(made, "could not join namespace {name} to the host");
            hosts.push(host_ip);
        }
        Some((ns, hosts))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            // deleting the namespace deletes its end of the veth, and so both
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Writers on separate machines, as far as the network goes: each in a
/// network namespace of its own, reaching SeaweedFS over its own veth
/// link. All their tags are kept.
#[test]
fn tags_from_writers_in_separate_network_namespaces_are_all_kept() {
    let Some((ns, hosts)) = Namespaces::make(4) else {
        eprintln!("skipped: network namespaces cannot be made here (needs root and iproute2)");
        return;
    };
    let Some(w) = Weed::start_on(&["machines"], "0.0.0.0") else {
        return;
    };
    let port = w.port;
    concurrent_tags_from(&w.url(), "machines", "m", hosts.len(), &|i| {
        (
            vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                ns.names[i].clone(),
            ],
            format!("http://{}:{port}", hosts[i]),
        )
    });
}

#[test]
fn moto_passes_driver_test_and_keeps_concurrent_tags() {
    let Some(moto) = Moto::start(&["moto-conf", "moto-tags"]) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let sp = spec(&moto.url(), "moto-conf", ",opt.gc-grace=0");
    let out = ok(
        rd_in(tmp.path(), &["driver", "test", &sp]),
        "driver test (moto)",
    );
    assert_no_check_failed(&out);
    concurrent_tags(&moto.url(), "moto-tags", "p", 6);
}

#[test]
fn seaweedfs_passes_driver_test() {
    let Some(url) = weed_url() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let sp = spec(&url, "conformance", ",opt.gc-grace=0");
    let out = ok(
        rd_in(tmp.path(), &["driver", "test", &sp]),
        "driver test (SeaweedFS)",
    );
    assert_no_check_failed(&out);
    assert!(out.contains("ok    end-to-end: gc"), "{out}");
}

#[test]
fn wrong_credentials_and_a_missing_bucket_fail_in_one_line() {
    let Some((url, tmp, sp)) = weed_layout("creds") else {
        return;
    };
    let t = tmp.path();
    let e = fails(
        rd_with(
            t,
            &["--driver", &sp, "ls", "--layout", "l"],
            &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        ),
        "ls with a wrong secret",
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(e.contains("403") && e.contains("access denied"), "{e}");
    assert!(!e.contains("not-the-secret"), "{e}");
    // creds= wins over the environment
    let with_creds = format!("{sp},creds={ACCESS_KEY}:wrong");
    let e = fails(
        rd_in(t, &["--driver", &with_creds, "ls", "--layout", "l"]),
        "ls with creds=",
    );
    assert!(e.contains("access denied"), "{e}");
    let missing = spec(&url, "no-such-bucket", "");
    for args in [
        vec!["--driver", missing.as_str(), "ls", "--layout", "l"],
        vec!["--driver", missing.as_str(), "init", "--layout", "l"],
    ] {
        let e = fails(rd_in(t, &args), "a missing bucket");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains("bucket no-such-bucket does not exist"), "{e}");
    }
    // no layout at the prefix
    let e = fails(
        rd_in(t, &["--driver", &sp, "ls", "--layout", "elsewhere"]),
        "ls of no layout",
    );
    assert!(e.contains("no OCI layout at s3://creds/elsewhere"), "{e}");
}

#[test]
fn gc_keeps_young_unreferenced_blobs_for_the_grace_period() {
    let Some((url, tmp, sp)) = weed_layout("grace") else {
        return;
    };
    let t = tmp.path();
    ok(rd_in(t, &["--driver", &sp, "new", "--image", "l:a"]), "new");
    ok(rd_in(t, &["--driver", &sp, "rm", "--image", "l:a"]), "rm");
    let keys = || helper(&url, &["keys", "grace", "l/blobs/"]);
    let before = keys();
    assert_eq!(before.lines().count(), 2, "{before}");
    // default grace (10 minutes): nothing is young enough to go
    ok(rd_in(t, &["--driver", &sp, "gc", "--layout", "l"]), "gc");
    assert_eq!(keys(), before);
    let now = spec(&url, "grace", ",opt.gc-grace=0");
    ok(rd_in(t, &["--driver", &now, "gc", "--layout", "l"]), "gc");
    assert_eq!(keys(), "");
}

#[test]
fn a_server_killed_mid_upload_leaves_no_half_blob_and_no_tag() {
    let Some(mut w) = Weed::start(&["killed"]) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let sp = spec(&w.url(), "killed", ",opt.part-size=5M,timeout=20");
    ok(
        rd_in(t, &["--driver", &sp, "init", "--layout", "l"]),
        "init",
    );
    ok(rd_in(t, &["--driver", &sp, "new", "--image", "l:a"]), "new");
    let bundle = t.join("bundle");
    unpack_rootless(t, &sp, "l:a", &bundle);
    std::fs::write(bundle.join("rootfs/big"), noise(96 << 20, 3)).expect("write");
    let before = helper(&w.url(), &["keys", "killed", "l/"]);
    let repack = Command::new(rumoci_bin())
        .args(["--driver", &sp, "repack", "--image", "l:b", s(&bundle)])
        .env("XDG_CACHE_HOME", cache_home())
        .env("XDG_DATA_HOME", t)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn repack");
    // kill the server once the upload is under way: its data grew by a
    // part (the repack has more than ten to send)
    let data = w.dir.path().join("data");
    let start = disk_usage(&data);
    let t0 = Instant::now();
    while disk_usage(&data) < start + (5 << 20) && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    w.kill();
    let out = repack.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "repack survived the server: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    w.restart();
    // nothing new is visible: no blob, no tag, no temporary
    let after = helper(&w.url(), &["keys", "killed", "l/"]);
    assert_eq!(after, before);
    let tags = ok(rd_in(t, &["--driver", &sp, "ls", "--layout", "l"]), "ls");
    assert_eq!(tags.trim(), "a");
    ok(
        rd_in(t, &["--driver", &sp, "verify", "--layout", "l"]),
        "verify",
    );
}

/// Bytes of the files beneath `dir`.
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_usage(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// A proxy in front of `upstream` that drops `If-Match` and
/// `If-None-Match` from requests: an S3 server without conditional writes.
fn unconditional_proxy(upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut client) = conn else { continue };
            std::thread::spawn(move || {
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let _ = relay(&mut client, &mut server);
            });
        }
    });
    port
}

/// Relay one connection, request by request (heads filtered, bodies by
/// Content-Length), answers copied until the server closes.
fn relay(client: &mut TcpStream, server: &mut TcpStream) -> std::io::Result<()> {
    let mut back = server.try_clone()?;
    let mut front = client.try_clone()?;
    std::thread::spawn(move || std::io::copy(&mut back, &mut front));
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        buf.clear();
        while !buf.ends_with(b"\r\n\r\n") {
            if client.read(&mut byte)? == 0 {
                return Ok(());
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let mut len = 0u64;
        let mut out = String::new();
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("if-match:") || lower.starts_with("if-none-match:") {
                continue;
            }
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        let out = out.trim_end_matches("\r\n").to_string() + "\r\n\r\n";
        server.write_all(out.as_bytes())?;
        std::io::copy(&mut (&mut *client).take(len), server)?;
    }
}

#[test]
fn a_server_without_conditional_writes_is_refused_unless_single_writer() {
    let Some(moto) = Moto::start(&["plain"]) else {
        return;
    };
    let port = unconditional_proxy(moto.port);
    let url = format!("http://127.0.0.1:{port}");
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let sp = spec(&url, "plain", "");
    let e = fails(
        rd_in(t, &["--driver", &sp, "init", "--layout", "l"]),
        "init without conditional writes",
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("does not honour conditional writes") && e.contains("opt.single-writer=true"),
        "{e}"
    );
    let single = spec(&url, "plain", ",opt.single-writer=true");
    ok(
        rd_in(t, &["--driver", &single, "init", "--layout", "l"]),
        "init",
    );
    ok(
        rd_in(t, &["--driver", &single, "new", "--image", "l:a"]),
        "new",
    );
    ok(
        rd_in(t, &["--driver", &single, "tag", "--image", "l:a", "b"]),
        "tag",
    );
    // reading needs no conditional writes
    let tags = ok(rd_in(t, &["--driver", &sp, "ls", "--layout", "l"]), "ls");
    assert_eq!(tags.lines().collect::<Vec<_>>(), ["a", "b"]);
    let e = fails(
        rd_in(t, &["--driver", &sp, "tag", "--image", "l:a", "c"]),
        "tag without conditional writes",
    );
    assert!(e.contains("does not honour conditional writes"), "{e}");
}

/// Debian's docker-registry (distribution 2.8) keeping its storage in
/// SeaweedFS through its S3 driver answers blob reads with redirects to
/// presigned URLs of the object store: the registry plugin, whose host
/// follows the registry's own redirects, unpacks what skopeo pushed there
/// as the Go umoci unpacks the same image from a layout.
#[test]
fn the_registry_plugin_follows_a_registry_on_s3_to_its_presigned_urls() {
    let Some(url) = weed_url() else { return };
    let Some((tmp, img, layout)) = go_fixture() else {
        return;
    };
    if !have("skopeo") || !have("docker-registry") {
        eprintln!("SKIPPED: skopeo or docker-registry missing");
        return;
    }
    let reg = Registry::start_with(&RegistryConfig {
        s3: Some(S3Storage {
            endpoint: url.clone(),
            bucket: "registry-storage".into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
        }),
        ..RegistryConfig::default()
    });
    let src = format!("oci:{}", s(&layout)) + ":t";
    run_ok(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            &src,
            &reg.docker("app/img:t"),
        ],
    );
    let driver = format!("{},url={}", plugin_wasm(PLUGINS, "registry"), reg.url());
    let data = tmp.path().join("data");
    let bundle = tmp.path().join("bundle");
    let out = rd_with(
        &data,
        &[
            "--driver",
            &driver,
            "unpack",
            "--image",
            "app/img:t",
            s(&bundle),
        ],
        &[("RUMOCI_LOG", "debug")],
    );
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}\n{}", reg.log());
    // the layers came from the object store's presigned URLs
    assert!(
        log.contains(&format!("redirected to {url}/registry-storage/")),
        "no redirect to the object store in:\n{log}"
    );
    let go = tmp.path().join("go");
    run_ok("umoci", &["unpack", "--image", &img, s(&go)]);
    assert_same_tree(&go.join("rootfs"), &bundle.join("rootfs"));
}

/// The storm proxy (`peers/storm_proxy.py`) in front of `upstream_port`:
/// each distinct request refused with `503 SlowDown` twice, then passed
/// on. Killed on drop.
struct Storm {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Storm {
    fn start(upstream_port: u16) -> Storm {
        let dir = tempfile::tempdir().expect("tempdir");
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/storm_proxy.py");
        let child = Command::new("python3")
            .arg(&script)
            .arg(upstream_port.to_string())
            .arg("2")
            .arg(&port_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the storm proxy");
        let t = Instant::now();
        let port = loop {
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break p;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "storm proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Storm { child, port, dir }
    }

    /// The 503s served so far.
    fn served(&self) -> u64 {
        std::fs::read_to_string(self.dir.path().join("port.count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every request meets two `503 SlowDown` answers before it passes (S3's
/// answer to a burst): init, copy both ways with a multipart layer, tag,
/// unpack, gc and ls all ride it out on their retries and give what they
/// give without the storm.
#[test]
fn a_storm_of_503_slowdown_is_ridden_out_by_retries() {
    let Some(url) = weed_url() else { return };
    let upstream: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("weed port");
    let storm = Storm::start(upstream);
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    // a local image with a layer bigger than two 5 MiB parts
    let local = t.join("local");
    let img = format!("{}:t", s(&local));
    ok(rd_in(t, &["init", "--layout", s(&local)]), "init");
    ok(rd_in(t, &["new", "--image", &img]), "new");
    let big = t.join("big");
    std::fs::write(&big, noise(11 << 20, 7)).expect("write");
    ok(
        rd_in(t, &["insert", "--image", &img, s(&big), "/big"]),
        "insert",
    );
    let sp = spec(
        &format!("http://127.0.0.1:{}", storm.port),
        "storm",
        ",opt.part-size=5M,opt.gc-grace=0",
    );
    ok(
        rd_in(t, &["copy", "--to-driver", &sp, &img, "l:t"]),
        "copy into the storm",
    );
    ok(
        rd_in(t, &["--driver", &sp, "tag", "--image", "l:t", "t2"]),
        "tag",
    );
    let tags = ok(rd_in(t, &["--driver", &sp, "ls", "--layout", "l"]), "ls");
    assert_eq!(tags.lines().collect::<Vec<_>>(), ["t", "t2"]);
    let back = copy_back(t, &sp, "l:t2", &local);
    ok(rd_in(t, &["verify", "--layout", s(&back)]), "verify");
    let bundle = t.join("bundle");
    unpack_rootless(t, &sp, "l:t", &bundle);
    assert!(
        std::fs::read(bundle.join("rootfs/big")).expect("read big") == noise(11 << 20, 7),
        "the unpacked file differs"
    );
    ok(rd_in(t, &["--driver", &sp, "rm", "--image", "l:t2"]), "rm");
    ok(rd_in(t, &["--driver", &sp, "gc", "--layout", "l"]), "gc");
    let tags = ok(rd_in(t, &["--driver", &sp, "ls", "--layout", "l"]), "ls");
    assert_eq!(tags.lines().collect::<Vec<_>>(), ["t"]);
    assert!(storm.served() >= 20, "only {} 503s served", storm.served());
}
