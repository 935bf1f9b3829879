//! Whole-file writes that a crash or a failure cannot leave half done.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Write `data` to `path` through a temporary file in the same directory
/// (synced, then renamed over `path`), so a crash leaves the old file or
/// the new one, never a mix; a failure removes the temporary.
pub fn write(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(data)?;
    f.commit()
}

/// A file written piece by piece that appears at its path whole or not at
/// all: the bytes go to a temporary file in the same directory, which
/// [`AtomicFile::commit`] syncs and renames over the path. Dropped without
/// a commit (a failure), the temporary is removed. For files too large to
/// assemble in memory first (a bundle's mtree at a million files).
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    /// Start writing the file that will replace `path`.
    pub fn create(path: &Path) -> io::Result<AtomicFile> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.rumoci-tmp-{:016x}", rand::random::<u64>()));
        let file = std::fs::File::create(&tmp)?;
        Ok(AtomicFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
        })
    }

    fn file(&mut self) -> io::Result<&mut io::BufWriter<std::fs::File>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("atomic file already committed"))
    }

    /// Sync the bytes written and rename them over the path.
    pub fn commit(mut self) -> io::Result<()> {
        let res = (|| -> io::Result<()> {
            let f = self.file()?;
            f.flush()?;
            f.get_ref().sync_all()?;
            std::fs::rename(&self.tmp, &self.path)
        })();
        if res.is_ok() {
            self.file = None;
        }
        res
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
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
        // streamed: nothing at the path until the commit; dropped, no trace
        let mut f = AtomicFile::create(&dir.path().join("s")).expect("create");
        f.write_all(b"stre").expect("write");
        f.write_all(b"am").expect("write");
        assert!(!dir.path().join("s").exists());
        f.commit().expect("commit");
        assert_eq!(
            std::fs::read(dir.path().join("s")).expect("read"),
            b"stream"
        );
        let mut f = AtomicFile::create(&dir.path().join("t")).expect("create");
        f.write_all(b"x").expect("write");
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 3);
    }
}
