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

use crate::{BlobInfo, BlobPage, BlobRead, BlobWrite, Digest, Error, IndexPrecondition, Result};

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

// ---------------------------------------------------------------------------
// Listing and the index, for stores that keep an image layout's files

/// Every blob of a `blobs/<algorithm>/<hex>` tree (`blobs` is that
/// directory), as `(digest, size)` sorted by digest: names that are not
/// valid digests (temporaries, strays) are left out.
pub fn blob_files(blobs: &Path) -> Result<Vec<(String, u64)>> {
    let mut all = Vec::new();
    let algs = fs::read_dir(blobs).map_err(|e| Error::io("blobs", e))?;
    for alg in algs {
        let alg = alg.map_err(|e| Error::io("blobs", e))?;
        if !alg.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        for ent in fs::read_dir(alg.path()).map_err(|e| Error::io(&alg_name, e))? {
            let ent = ent.map_err(|e| Error::io(&alg_name, e))?;
            let name = format!("{alg_name}:{}", ent.file_name().to_string_lossy());
            if Digest::parse(&name).is_err() {
                continue;
            }
            let size = ent.metadata().map(|m| m.len()).unwrap_or(0);
            all.push((name, size));
        }
    }
    all.sort();
    Ok(all)
}

/// One `list-blobs` page of `all` (sorted by digest) by the contract's
/// cursor rules: the digests after `cursor` (exclusive), at most `limit`
/// of them (at least one), and `next` (the last digest of the page) only
/// when more follow.
pub fn blob_page(all: Vec<(String, u64)>, cursor: Option<&str>, limit: u32) -> BlobPage {
    let limit = limit.max(1) as usize;
    let mut items: Vec<(String, u64)> = all
        .into_iter()
        .filter(|(d, _)| cursor.is_none_or(|c| d.as_str() > c))
        .collect();
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(|(d, _)| d.clone())
    } else {
        None
    };
    BlobPage {
        items: items
            .into_iter()
            .map(|(digest, size)| BlobInfo {
                digest,
                size,
                committed_at: None,
                labels: Vec::new(),
            })
            .collect(),
        next,
    }
}

/// A version token of an `index.json` held as bytes: changes whenever the
/// bytes do (a 64-bit FNV-1a hash and the length).
pub fn index_version(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}-{}", bytes.len())
}

/// The `write-index` rule: `Ok` when `precondition` holds for the index
/// now stored (`current`, `None` when there is none; versions as
/// [`index_version`] makes them), else `failed-precondition`.
pub fn check_index_precondition(
    precondition: &IndexPrecondition,
    current: Option<&[u8]>,
) -> Result<()> {
    let ok = match (precondition, current) {
        (IndexPrecondition::Any, _) => true,
        (IndexPrecondition::Absent, cur) => cur.is_none(),
        (IndexPrecondition::Bytes(old), Some(cur)) => old.as_slice() == cur,
        (IndexPrecondition::Version(v), Some(cur)) => *v == index_version(cur),
        (_, None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::FailedPrecondition(
            "index.json was changed concurrently".into(),
        ))
    }
}

#[cfg(test)]
mod listing_tests {
    use super::*;

    fn names(p: &BlobPage) -> Vec<&str> {
        p.items.iter().map(|i| i.digest.as_str()).collect()
    }

    #[test]
    fn pages_follow_the_cursor_rules() {
        let all: Vec<(String, u64)> = ["sha256:a", "sha256:b", "sha256:c"]
            .iter()
            .map(|d| (d.to_string(), 1))
            .collect();
        let p = blob_page(all.clone(), None, 2);
        assert_eq!(names(&p), ["sha256:a", "sha256:b"]);
        assert_eq!(p.next.as_deref(), Some("sha256:b"));
        let p = blob_page(all.clone(), Some("sha256:b"), 2);
        assert_eq!(names(&p), ["sha256:c"]);
        assert_eq!(p.next, None);
        assert_eq!(names(&blob_page(all, None, 0)), ["sha256:a"]);
    }

    #[test]
    fn index_preconditions() {
        let v = index_version(b"{}");
        assert_ne!(v, index_version(b"{ }"));
        let cur = Some(&b"{}"[..]);
        assert!(check_index_precondition(&IndexPrecondition::Version(v), cur).is_ok());
        assert!(check_index_precondition(&IndexPrecondition::Bytes(b"{}".to_vec()), cur).is_ok());
        assert!(check_index_precondition(&IndexPrecondition::Absent, cur).is_err());
        assert!(check_index_precondition(&IndexPrecondition::Absent, None).is_ok());
        assert!(check_index_precondition(&IndexPrecondition::Any, None).is_ok());
        assert!(check_index_precondition(&IndexPrecondition::Bytes(vec![]), None).is_err());
    }
}
