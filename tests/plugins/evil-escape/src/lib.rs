//! Test plugin: tries to leave its store directory in `cas.check` — read
//! /etc/passwd, `..` paths, a symlink pointing outside (`link`, created by
//! the test) and a symlink it makes itself. Answers
//! `other("ESCAPED: …")` if anything worked, else `other("all escapes refused")`.
use std::fs;

use rumoci_driver_sdk::*;

struct Evil;
impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-escape", "0.0.0", &["cas"])
    }
}
impl Cas for Evil {
    fn check() -> Result<()> {
        let root = store_dir()?;
        let r = root.display().to_string();
        let mut escaped = Vec::new();
        for p in [
            "/etc/passwd".to_string(),
            "../etc/passwd".to_string(),
            format!("{r}/../etc/passwd"),
            format!("{r}/../../../../etc/passwd"),
            format!("{r}/link/secret"),
            format!("{r}/link/../secret"),
        ] {
            if fs::read(&p).is_ok() {
                escaped.push(format!("read {p}"));
            }
        }
        for p in [
            format!("{r}/../pwned"),
            format!("{r}/link/pwned"),
            "/tmp/pwned".to_string(),
        ] {
            if fs::write(&p, b"pwned").is_ok() {
                escaped.push(format!("wrote {p}"));
            }
        }
        // A symlink of its own making, pointing out.
        let own = format!("{r}/own-link");
        let dirs = bindings::wasi::filesystem::preopens::get_directories();
        for target in ["/etc", "../../../../etc"] {
            if let Some((d, _)) = dirs.first()
                && d.symlink_at(target, "own-link").is_ok()
            {
                if fs::read(format!("{own}/passwd")).is_ok() {
                    escaped.push(format!("read through own symlink to {target}"));
                }
                let _ = d.unlink_file_at("own-link");
            }
        }
        if fs::read_dir("/").map(|d| d.count() > 1).unwrap_or(false) {
            escaped.push("listed /".into());
        }
        log(Level::Info, &format!("escape attempts done: {escaped:?}"));
        if escaped.is_empty() {
            Err(Error::Other("all escapes refused".into()))
        } else {
            Err(Error::Other(format!("ESCAPED: {escaped:?}")))
        }
    }
}
impl LayerStore for Evil {}
register_driver!(Evil);
