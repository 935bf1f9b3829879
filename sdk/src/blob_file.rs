//! Blobs kept as files, the way most content stores keep them:
//! [`FileBlobReader`] answers reads at offsets from an open file, and
//! [`FileBlobWriter`] fills a temporary file, syncs it and renames it into
//! place on commit (its final path chosen from the digest then), and
//! removes it when dropped uncommitted (the abort rule of `blob-writer`).
//!
//! ```ignore
//! fn open(digest: &Digest) -> Result<Box<dyn BlobRead>> {
//!     let path = store_dir()?.join(digest.blob_path());
//!     Ok(Box::new(FileBlobReader::open(&path, digest)?))
//! }
//! fn create(_: Option<&Digest>, _: Option<u64>) -> Result<Box<dyn BlobWrite>> {
//!     let root = store_dir()?;
//!     let tmp = root.join(format!("tmp-{}", random_suffix()));
//!     Ok(Box::new(FileBlobWriter::create(tmp, move |d| Ok(root.join(d.blob_path())))?))
//! }
//! ```

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{BlobRead, BlobWrite, Digest, Error, Result};

/// A blob read from a file at offsets.
pub struct FileBlobReader {
    file: File,
    size: u64,
}

impl FileBlobReader {
    /// The open blob file `file` of `size` bytes.
    pub fn new(file: File, size: u64) -> FileBlobReader {
        FileBlobReader { file, size }
    }

    /// Open the blob `digest` stored at `path` (absent: `not-found`
    /// naming the digest).
    pub fn open(path: &Path, digest: &Digest) -> Result<FileBlobReader> {
        let file = File::open(path).map_err(|e| Error::io(digest, e))?;
        let size = file.metadata().map_err(|e| Error::io(digest, e))?.len();
        Ok(FileBlobReader::new(file, size))
    }
}

impl BlobRead for FileBlobReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, len: u32) -> Result<Vec<u8>> {
        // past the end: an empty answer means "end of blob"
        if offset >= self.size {
            return Ok(Vec::new());
        }
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seeking blob", e))?;
        let want = u64::from(len).min(self.size - offset);
        let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        (&mut self.file)
            .take(want)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading blob", e))?;
        Ok(buf)
    }
}

/// Where a committed blob goes, from its digest.
type Destination = Box<dyn Fn(&Digest) -> Result<PathBuf>>;

/// A blob being written to a temporary file: synced and renamed to the
/// path `dest` gives for its digest on commit; removed if dropped
/// uncommitted (or if the commit failed).
pub struct FileBlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    dest: Destination,
    written: u64,
    committed: bool,
}

impl FileBlobWriter {
    /// Create the temporary file `tmp` (it must not exist) for a blob whose
    /// final path `dest` computes from its digest at commit.
    pub fn create(
        tmp: PathBuf,
        dest: impl Fn(&Digest) -> Result<PathBuf> + 'static,
    ) -> Result<FileBlobWriter> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(tmp.display(), e))?;
        Ok(FileBlobWriter::new(file, tmp, dest))
    }

    /// A writer to `file`, already created at `tmp` by the caller.
    pub fn new(
        file: File,
        tmp: PathBuf,
        dest: impl Fn(&Digest) -> Result<PathBuf> + 'static,
    ) -> FileBlobWriter {
        FileBlobWriter {
            file: Some(file),
            tmp,
            dest: Box::new(dest),
            written: 0,
            committed: false,
        }
    }

    fn finished() -> Error {
        Error::FailedPrecondition("the blob writer is finished".into())
    }
}

impl BlobWrite for FileBlobWriter {
    fn write(&mut self, data: &[u8]) -> Result<u64> {
        let f = self.file.as_mut().ok_or_else(Self::finished)?;
        f.write_all(data)
            .map_err(|e| Error::io("writing blob", e))?;
        self.written += data.len() as u64;
        Ok(self.written)
    }

    fn commit(&mut self, digest: &Digest, size: u64) -> Result<()> {
        let f = self.file.take().ok_or_else(Self::finished)?;
        if size != self.written {
            return Err(Error::FailedPrecondition(format!(
                "commit of {digest}: the host wrote {size} bytes, the plugin received {}",
                self.written
            )));
        }
        f.sync_all().map_err(|e| Error::io("syncing blob", e))?;
        drop(f);
        let dest = (self.dest)(digest)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
        }
        // a blob that exists already is replaced by the same bytes
        fs::rename(&self.tmp, &dest).map_err(|e| Error::io(digest, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for FileBlobWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::parse("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
            .expect("digest")
    }

    #[test]
    fn write_commit_read_and_abort() {
        let root =
            std::env::temp_dir().join(format!("rumoci-sdk-blob-file-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("mkdir");
        let dest_root = root.clone();
        let mut w = FileBlobWriter::create(root.join("tmp-1"), move |d| {
            Ok(dest_root.join(d.blob_path()))
        })
        .expect("create");
        assert_eq!(w.write(b"hel").expect("write"), 3);
        assert_eq!(w.write(b"lo").expect("write"), 5);
        assert!(w.commit(&digest(), 4).is_err(), "size mismatch refused");
        drop(w);
        assert!(
            !root.join("tmp-1").exists(),
            "a failed commit leaves nothing"
        );

        let dest_root = root.clone();
        let mut w = FileBlobWriter::create(root.join("tmp-2"), move |d| {
            Ok(dest_root.join(d.blob_path()))
        })
        .expect("create");
        w.write(b"hello").expect("write");
        w.commit(&digest(), 5).expect("commit");
        assert!(w.write(b"x").is_err());
        drop(w);
        let path = root.join(digest().blob_path());
        let mut r = FileBlobReader::open(&path, &digest()).expect("open");
        assert_eq!(r.size(), 5);
        assert_eq!(r.read_at(1, 3).expect("read"), b"ell");
        assert_eq!(r.read_at(3, 100).expect("read"), b"lo");
        assert!(r.read_at(5, 10).expect("read").is_empty());
        assert!(matches!(
            FileBlobReader::open(&root.join("nope"), &digest()),
            Err(Error::NotFound(_))
        ));
        // dropped uncommitted: the temporary goes
        let w = FileBlobWriter::create(root.join("tmp-3"), |_| Ok(PathBuf::from("/nonexistent")))
            .expect("create");
        drop(w);
        assert!(!root.join("tmp-3").exists());
        let _ = fs::remove_dir_all(&root);
    }
}
