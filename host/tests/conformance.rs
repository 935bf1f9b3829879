//! `rumoci driver test`, the conformance runner: the shipped plugins pass
//! it, every hostile plugin fails it with the message of its attack, and
//! the SDK's example plugin (written from the docs) passes it.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

const PLUGINS: &[&str] = &[
    "dir-cas",
    "layer-cache",
    "overlay",
    "evil-loop",
    "evil-alloc",
    "evil-escape",
    "evil-bytes",
    "evil-mount",
    "evil-open",
    "evil-net",
    "evil-shape",
];

fn plugin(name: &str) -> String {
    plugin_wasm(PLUGINS, name)
}

fn driver_test(spec: &str, work: &Path) -> Output {
    rd(&[
        "driver",
        "test",
        "--work",
        work.to_str().expect("utf-8"),
        spec,
    ])
}

/// The FAIL lines of a run (each with the message line after it).
fn failures(out: &Output) -> Vec<String> {
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("FAIL"))
        .map(|(i, l)| format!("{l} / {}", lines.get(i + 1).unwrap_or(&"").trim()))
        .collect()
}

fn assert_passes(spec: &str, min_checks: usize) {
    let work = tempfile::tempdir().expect("tempdir");
    let out = driver_test(spec, work.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{spec}: {:?}\n{stdout}\n{}",
        failures(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    let passed: usize = last
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= min_checks && last.contains(" 0 failed"),
        "{spec}: {last}\n{stdout}"
    );
    // every check is a line of its own: ok, FAIL or skip
    for l in stdout.lines().filter(|l| !l.starts_with(' ')) {
        assert!(
            l.starts_with("ok ") || l.starts_with("skip ") || l == last,
            "unexpected line {l:?}"
        );
    }
}

#[test]
fn shipped_content_store_passes_every_check() {
    assert_passes(&plugin("dir-cas"), 22);
}

#[test]
fn shipped_layer_stores_pass_every_check() {
    assert_passes(&plugin("layer-cache"), 14);
    if rustix::process::geteuid().is_root() {
        assert_passes(&plugin("overlay"), 14);
    }
}

/// Run `spec` on a fresh layout (for plugins without `cas.init`), expect a
/// failure, and the FAIL of `check` saying `message`.
fn assert_fails(spec: &str, with_store: bool, check: &str, message: &str) {
    let work = tempfile::tempdir().expect("tempdir");
    let spec = if with_store {
        let store = work.path().join("store");
        rd_ok(&["init", "--layout", store.to_str().expect("utf-8")]);
        format!("{spec},dir={}", store.display())
    } else {
        spec.to_string()
    };
    let out = driver_test(&spec, &work.path().join("work"));
    assert_eq!(out.status.code(), Some(1), "{spec} passed");
    let fails = failures(&out);
    assert!(
        fails
            .iter()
            .any(|f| f.contains(check) && f.contains(message)),
        "{spec}: expected FAIL of {check:?} with {message:?}, got {fails:#?}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("rumoci: driver test ")
            && err.contains("checks failed")
            && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn hostile_plugins_fail_with_the_message_of_their_attack() {
    let check = "check accepts the store";
    assert_fails(
        &format!("{},timeout=2", plugin("evil-loop")),
        true,
        check,
        "deadline of 2s per call exceeded",
    );
    assert_fails(
        &format!("{},opt.panic=boom at the check", plugin("evil-loop")),
        true,
        check,
        "boom at the check",
    );
    assert_fails(
        &plugin("evil-alloc"),
        true,
        check,
        "memory limit of 268435456 bytes exceeded",
    );
    assert_fails(&plugin("evil-escape"), true, check, "all escapes refused");
    assert_fails(&plugin("evil-net"), true, check, "net report");
    assert_fails(&plugin("evil-open"), true, check, "evil-open");
    assert_fails(
        &plugin("evil-bytes"),
        true,
        "read-at returns the bytes",
        "bytes differ from what was written",
    );
    assert_fails(
        &format!("{},opt.mode=list", plugin("evil-shape")),
        true,
        "list-blobs pages",
        "paging does not end",
    );
    for (mode, message) in [
        ("dir", "\"../outside\" leaves the store directory"),
        ("meta", "\"../../record\" leaves the store directory"),
    ] {
        assert_fails(
            &format!("{},opt.mode={mode}", plugin("evil-mount")),
            false,
            "prepare of a base layer",
            message,
        );
    }
}

#[test]
fn a_plugin_without_init_needs_a_store() {
    let work = tempfile::tempdir().expect("tempdir");
    let out = driver_test(&plugin("evil-escape"), work.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        failures(&out)
            .iter()
            .any(|f| f.contains("no cas.init capability and no dir=")),
        "{:?}",
        failures(&out)
    );
}

/// What a plugin author meets at the edges: a misspelt capability is
/// warned about (and fails `driver test`), a layout path that `dir=`
/// overrides is warned about, `init` fills an existing empty directory (a
/// mount point) but not one holding something.
#[test]
fn plugin_authors_get_actionable_warnings() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("store");
    let typo = format!(
        "{},opt.mode=typo,dir={}",
        plugin("evil-shape"),
        store.display()
    );
    rd_ok(&["init", "--layout", store.to_str().expect("utf-8")]);
    let out = rd(&[
        "--driver",
        &typo,
        "ls",
        "--layout",
        store.to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "driver evil-shape (evil_shape.wasm): unknown capability \"cas.open-strem\" ignored"
        ),
        "{err}"
    );
    let out = driver_test(&typo, &t.path().join("w"));
    assert!(
        failures(&out)
            .iter()
            .any(|f| f.contains("unknown capabilities [\"cas.open-strem\"]")),
        "{:?}",
        failures(&out)
    );

    let dir_cas = plugin("dir-cas");
    let empty = t.path().join("mountpoint");
    std::fs::create_dir(&empty).expect("mkdir");
    rd_ok(&[
        "--driver",
        &dir_cas,
        "init",
        "--layout",
        empty.to_str().expect("utf-8"),
    ]);
    assert!(empty.join("index.json").is_file());
    let err = rd_err(&[
        "--driver",
        &dir_cas,
        "init",
        "--layout",
        empty.to_str().expect("utf-8"),
    ]);
    assert!(err.contains("already exists"), "{err}");

    let spec = format!("{dir_cas},dir={}", empty.display());
    let out = rd(&["--driver", &spec, "ls", "--layout", "/nonexistent"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("/nonexistent is not used: the store is the driver's dir="),
        "{err}"
    );
    // the same directory named another way is not warned about
    let other = format!("{}/.", empty.display());
    let out = rd(&["--driver", &spec, "ls", "--layout", &other]);
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The SDK's example plugins, each its own workspace with a path
/// dependency on this checkout's SDK (as its quick start says): `sharded-cas`, the
/// worked example, and `flat-store`, written by an author from the docs
/// alone. A plain `cargo build --release` in the directory makes the
/// component, and it passes every check.
#[test]
fn sdk_examples_build_with_plain_cargo_build_and_pass() {
    for (dir, wasm) in [("sharded-cas", "sharded_cas"), ("flat-store", "flat_store")] {
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../sdk/examples")
            .join(dir);
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .current_dir(&example)
            .args(["build", "--release"])
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wasm = target.join(format!("wasm32-wasip2/release/{wasm}.wasm"));
        assert!(wasm.is_file(), "{} missing", wasm.display());
        assert_passes(wasm.to_str().expect("utf-8"), 23);
    }
}

/// As an unprivileged user (rootless unpacks in the end-to-end checks), the
/// shipped layer cache and content store pass too.
#[test]
fn shipped_plugins_pass_as_an_unprivileged_user() {
    if !rustix::process::geteuid().is_root() || !have("setpriv") {
        return;
    }
    let t = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    for name in ["dir-cas", "layer-cache"] {
        let wasm = plugin(name);
        let work = t.path().join(name);
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(rumoci_bin())
            .args([
                "driver",
                "test",
                "--work",
                work.to_str().expect("utf-8"),
                &wasm,
            ])
            .env("HOME", t.path())
            .env("XDG_CACHE_HOME", t.path().join("cache"))
            .output()
            .expect("setpriv");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name} as nobody: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_check_failed(&stdout);
    }
}
