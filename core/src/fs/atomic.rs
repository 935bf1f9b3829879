//! Whole-file writes that a crash or a failure cannot leave half done.

use std::io::{self, Write};
use std::path::Path;

/// Write `data` to `path` through a temporary file in the same directory
/// (synced, then renamed over `path`), so a crash leaves the old file or
/// the new one, never a mix; a failure removes the temporary.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.rumoci-tmp-{:016x}", rand::random::<u64>()));
    let res = (|| -> io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        write(&p, b"one").expect("write");
        write(&p, b"two").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1);
        // a failure (the target is a directory) leaves no temporary
        std::fs::create_dir(dir.path().join("d")).expect("mkdir");
        assert!(write(&dir.path().join("d"), b"x").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 2);
    }
}
