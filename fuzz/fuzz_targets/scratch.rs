//! Scratch directories shared by the fuzz targets (included with
//! `#[path]`; each target defines `PREFIX`, its directories' name prefix).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where scratch trees go (tmpfs when there is one). Trees left behind by
/// dead fuzzer processes (a crash aborts without unwinding; the fixture in a
/// `static` is never dropped) are removed the first time this is called.
pub fn scratch(prefix: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        dir
    })
}
