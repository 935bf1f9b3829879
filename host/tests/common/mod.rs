//! Shared helpers for the end-to-end tests: run rumoci and the real peers
//! (Go umoci, skopeo, go), compare layouts.
#![allow(dead_code, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Path of the rumoci binary under test.
pub fn rumoci_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rumoci")
}

/// Run rumoci with `args`.
pub fn rumoci(args: &[&str]) -> Output {
    Command::new(rumoci_bin())
        .args(args)
        .output()
        .expect("spawn rumoci")
}

/// Run rumoci and require success.
pub fn rumoci_ok(args: &[&str]) -> String {
    let out = rumoci(args);
    assert!(
        out.status.success(),
        "rumoci {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run any program and require success; returns stdout.
pub fn run_ok(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("spawn {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a peer tool is installed. In CI (`CI` set) a missing peer is a
/// failure; elsewhere the test prints why it is skipped.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} is required in CI but is not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// Build (once per test binary) a Go program from `tests/go/<name>` in
/// GOPATH mode against Debian's Go packages.
pub fn go_tool(name: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<std::sync::Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    if !have("go") {
        return None;
    }
    let map = BUILT.get_or_init(Default::default);
    let mut map = map.lock().expect("lock");
    if let Some(p) = map.get(name) {
        return Some(p.clone());
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/go")
        .join(name);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("go-{name}"));
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&src)
        .env("GOPATH", "/usr/share/gocode")
        .env("GO111MODULE", "off")
        .env(
            "GOCACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("gocache"),
        )
        .status()
        .expect("spawn go build");
    assert!(status.success(), "go build of {name} failed");
    map.insert(name.to_string(), out.clone());
    Some(out)
}

/// Every file under `root` with its content hash (or link target), for
/// "nothing changed" assertions.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).expect("prefix").to_path_buf();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else if ft.is_symlink() {
                out.insert(rel, format!("link:{:?}", std::fs::read_link(&p).ok()));
            } else {
                let data = std::fs::read(&p).unwrap_or_default();
                out.insert(rel, rumoci::oci::Digest::sha256_of(&data).to_string());
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// The descriptor `index.json` holds for `tag`.
pub fn index_entry(layout: &Path, tag: &str) -> serde_json::Value {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("read index"))
            .expect("parse index");
    idx["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .cloned()
        .unwrap_or_else(|| panic!("tag {tag} not in index.json"))
}

/// Path of a blob named by a `sha256:…` digest string.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').expect("digest");
    layout.join("blobs").join(alg).join(hex)
}

/// Read a JSON blob.
pub fn read_blob_json(layout: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(blob_path(layout, digest)).expect("read blob"))
        .expect("parse blob")
}
