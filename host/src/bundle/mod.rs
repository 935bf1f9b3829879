//! Runtime bundles: `config.json` from the image configuration, `umoci.json`
//! metadata, and writing them safely.

pub mod create;
pub mod meta;
pub mod overlay;
pub mod runtime;
pub mod user;

use std::io::Write;
use std::path::Path;

/// Write `data` to `path` through a temporary in the same directory and a
/// rename, so a crash leaves the old file or the new one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), create::BundleError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.rumoci-tmp-{:016x}", rand::random::<u64>()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| create::BundleError::Other(format!("{}: {e}", path.display())))
}
