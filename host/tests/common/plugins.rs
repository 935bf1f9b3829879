//! Building the workspace's plugins for the end-to-end tests, into
//! `$CARGO_TARGET_TMPDIR/plugins` (their own target directory, so the
//! outer cargo's lock is not contended). Include with
//! `#[path = "common/plugins.rs"] mod plugins;`.
#![allow(dead_code, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Build the plugins `names` once per test binary (cargo caches across
/// runs); returns the directory holding the `.wasm` files.
pub fn plugin_dir(names: &[&str]) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root)
            .args(["build", "--release", "--target", "wasm32-wasip2"])
            .args(["--config", "profile.release.debug=false"])
            .args(["--config", "profile.release.strip=true"])
            .env("CARGO_TARGET_DIR", &target);
        for p in names {
            cmd.args(["-p", p]);
        }
        let status = cmd.status().expect("run cargo build for the plugins");
        assert!(status.success(), "building the test plugins failed");
        target.join("wasm32-wasip2").join("release")
    })
}

/// The path of plugin `name` (one of those built by [`plugin_dir`]).
pub fn plugin(names: &[&str], name: &str) -> String {
    let p = plugin_dir(names).join(format!("{}.wasm", name.replace('-', "_")));
    assert!(p.is_file(), "{} missing", p.display());
    p.to_str().expect("utf-8").to_string()
}
