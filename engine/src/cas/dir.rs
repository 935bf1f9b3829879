//! The built-in driver: an OCI image-layout directory.
//!
//! * Blobs are written to a temporary file in the layout (`.rumoci-tmp-*`,
//!   held with an exclusive `flock` so `gc` leaves it alone), hashed while
//!   written, fsynced, and renamed into `blobs/<alg>/<hex>`: a blob is either
//!   absent or complete.
//! * `index.json` is replaced by compare-and-swap under an exclusive `flock`
//!   on the `blobs/` directory, through a fsynced temporary and `rename`.
//! * Writers hold a shared `flock` on the layout directory from their first
//!   blob until they are done; `gc` takes it exclusively, so it never sweeps
//!   a blob that a concurrent writer is about to reference.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::{BlobWriter, Cas, CasError};
use crate::oci::{Algorithm, Digest, Hasher, Index, to_go_json};
use crate::show;

const TMP_PREFIX: &str = ".rumoci-tmp-";
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
/// Largest `index.json` rumoci will read.
const MAX_INDEX: u64 = crate::limits::MAX_DOCUMENT_SIZE;

/// An OCI image layout on the local filesystem.
#[derive(Debug)]
pub struct DirCas {
    root: PathBuf,
    /// Owner to give new files when running as root (umoci does the same).
    chown_to: Option<(u32, u32)>,
}

/// Open a file for reading, refusing anything but a regular file (a fifo
/// would block the open for good, a device could be endless). The open
/// itself does not block (`O_NONBLOCK`, which means nothing for a regular
/// file).
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    Ok(f)
}

/// Read a whole JSON document (`index.json`, `oci-layout`) of at most
/// [`MAX_INDEX`] bytes.
fn read_document(path: &Path) -> Result<Vec<u8>, CasError> {
    let f = open_regular(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    f.take(MAX_INDEX + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    crate::limits::check_document_size(show::name(path), buf.len() as u64)?;
    Ok(buf)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CasError + '_ {
    move |e| CasError::io(show::name(path), e)
}

fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `flock` the directory (or file) at `path`; released when the file drops.
pub fn lock(path: &Path, op: FlockOperation) -> Result<File, CasError> {
    let f = File::open(path).map_err(io_err(path))?;
    flock(&f, op).map_err(|e| CasError::io(show::name(path), e.into()))?;
    Ok(f)
}

fn fsync_dir(path: &Path) -> Result<(), CasError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

impl DirCas {
    /// Create a new, empty layout at `path`. Fails if `path` exists; missing
    /// parent directories are created. The layout appears atomically.
    pub fn create(path: &Path) -> Result<DirCas, CasError> {
        if fs::symlink_metadata(path).is_ok() {
            return Err(CasError::Invalid(format!(
                "image layout {}: already exists",
                show::name(path)
            )));
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        let tmp = parent.join(format!("{TMP_PREFIX}init-{}", random_suffix()));
        let build = || -> Result<(), CasError> {
            fs::create_dir(&tmp).map_err(io_err(&tmp))?;
            let blobs = tmp.join("blobs").join("sha256");
            fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
            write_synced(
                &tmp.join(LAYOUT_FILE),
                b"{\"imageLayoutVersion\":\"1.0.0\"}\n",
            )?;
            let index = to_go_json(&Index::default())
                .map_err(|e| CasError::Invalid(format!("serialising index.json: {e}")))?;
            write_synced(&tmp.join(INDEX_FILE), &index)?;
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &tmp,
                rustix::fs::CWD,
                path,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(|e| CasError::io(show::name(path), e.into()))?;
            fsync_dir(&parent)
        };
        let res = build();
        if res.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        res?;
        DirCas::open(path)
    }

    /// Open an existing layout, checking `oci-layout`, `blobs/` and
    /// `index.json`.
    pub fn open(path: &Path) -> Result<DirCas, CasError> {
        let invalid = |reason: String| CasError::InvalidLayout {
            path: show::name(path),
            reason,
        };
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                CasError::NotFound(format!("image layout {}", show::name(path)))
            }
            _ => CasError::io(show::name(path), e),
        })?;
        if !meta.is_dir() {
            return Err(invalid("not a directory".into()));
        }
        let layout = read_document(&path.join(LAYOUT_FILE))
            .map_err(|e| invalid(format!("cannot read {LAYOUT_FILE}: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&layout)
            .map_err(|e| invalid(format!("{LAYOUT_FILE} is not JSON: {e}")))?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some("1.0.0") => {}
            other => {
                return Err(invalid(format!(
                    "unsupported imageLayoutVersion {}",
                    other.unwrap_or("(missing)")
                )));
            }
        }
        if !path.join("blobs").is_dir() {
            return Err(invalid("blobs/ is missing".into()));
        }
        if !path.join(INDEX_FILE).is_file() {
            return Err(invalid("index.json is missing".into()));
        }
        let chown_to = (rustix::process::geteuid().is_root() && meta.uid() != 0)
            .then_some((meta.uid(), meta.gid()));
        Ok(DirCas {
            root: path.to_path_buf(),
            chown_to,
        })
    }

    /// The layout's path.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join(d.blob_path())
    }

    fn new_temp(&self) -> Result<(File, PathBuf), CasError> {
        let path = self.root.join(format!("{TMP_PREFIX}{}", random_suffix()));
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(io_err(&path))?;
        flock(&f, FlockOperation::LockExclusive)
            .map_err(|e| CasError::io(show::name(&path), e.into()))?;
        if let Some((uid, gid)) = self.chown_to {
            rustix::fs::fchown(
                &f,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| CasError::io(show::name(&path), e.into()))?;
        }
        Ok((f, path))
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), CasError> {
    let mut f = File::create(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// A blob being written into a [`DirCas`].
struct DirBlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    blobs_root: PathBuf,
    hasher: Option<Hasher>,
    size: u64,
    published: bool,
}

impl Write for DirBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        let n = f.write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for DirBlobWriter {
    fn commit(mut self: Box<Self>, expected: Option<&Digest>) -> Result<(Digest, u64), CasError> {
        let (Some(file), Some(hasher)) = (self.file.take(), self.hasher.take()) else {
            return Err(CasError::Invalid("blob writer already finished".into()));
        };
        let digest = hasher.finish();
        CasError::check_digest(expected, &digest)?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        let dir = self.blobs_root.join(digest.algorithm().name());
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let dest = dir.join(digest.hex());
        fs::rename(&self.tmp, &dest).map_err(io_err(&dest))?;
        self.published = true;
        drop(file);
        fsync_dir(&dir)?;
        Ok((digest, self.size))
    }
}

impl Drop for DirBlobWriter {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The guard returned by [`DirCas::writer_guard`]: a shared lock on the
/// layout directory, released on drop.
pub struct WriterGuard(#[allow(dead_code)] pub File);

impl Cas for DirCas {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, CasError> {
        let path = self.blob_path(digest);
        match open_regular(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(CasError::NotFound(format!("blob {digest}")))
            }
            Err(e) => Err(CasError::io(format!("blob {digest}"), e)),
        }
    }

    fn stat_blob(&self, digest: &Digest) -> Result<Option<u64>, CasError> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CasError::io(format!("blob {digest}"), e)),
        }
    }

    fn begin_blob(&self) -> Result<Box<dyn BlobWriter>, CasError> {
        let (file, tmp) = self.new_temp()?;
        Ok(Box::new(DirBlobWriter {
            file: Some(file),
            tmp,
            blobs_root: self.root.join("blobs"),
            hasher: Some(Algorithm::Sha256.hasher()),
            size: 0,
            published: false,
        }))
    }

    fn delete_blob(&self, digest: &Digest) -> Result<(), CasError> {
        match fs::remove_file(self.blob_path(digest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CasError::io(format!("blob {digest}"), e)),
        }
    }

    fn list_blobs(&self) -> Result<Vec<Digest>, CasError> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.name());
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CasError::io(show::name(&dir), e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let name = entry.file_name();
                match name.to_str().map(|n| Digest::from_parts(alg, n)) {
                    Some(Ok(d)) => out.push(d),
                    _ => {
                        tracing::warn!("ignoring {}: not a blob name", show::name(&dir.join(&name)))
                    }
                }
                if out.len() > crate::limits::MAX_LISTED_BLOBS {
                    return Err(crate::limits::LimitError::new(
                        format!("image layout {}", show::name(&self.root)),
                        crate::limits::Limit::ListedBlobs,
                    )
                    .into());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn read_index_raw(&self) -> Result<Vec<u8>, CasError> {
        read_document(&self.root.join(INDEX_FILE))
    }

    fn swap_index_raw(&self, old: &[u8], new: &[u8]) -> Result<(), CasError> {
        let _lock = lock(&self.root.join("blobs"), FlockOperation::LockExclusive)?;
        if self.read_index_raw()? != old {
            return Err(CasError::Conflict);
        }
        let (mut f, tmp) = self.new_temp()?;
        let res = (|| {
            f.write_all(new).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
            let dest = self.root.join(INDEX_FILE);
            fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            fsync_dir(&self.root)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    fn clean(&self) -> Result<(), CasError> {
        let entries = fs::read_dir(&self.root).map_err(io_err(&self.root))?;
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(TMP_PREFIX) || name.starts_with(".umoci-")) {
                continue;
            }
            let path = entry.path();
            // A live writer holds an exclusive lock on its temporary.
            let Ok(f) = File::open(&path) else { continue };
            if flock(&f, FlockOperation::NonBlockingLockExclusive).is_err() {
                continue;
            }
            let res = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match res {
                Ok(()) => tracing::info!("removed stale temporary {}", show::name(&path)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(CasError::io(show::name(&path), e)),
            }
        }
        Ok(())
    }

    fn writer_guard(&self) -> Result<Box<dyn std::any::Any>, CasError> {
        Ok(Box::new(WriterGuard(lock(
            &self.root,
            FlockOperation::LockShared,
        )?)))
    }

    fn exclusive(&self, f: &mut dyn FnMut() -> Result<(), CasError>) -> Result<(), CasError> {
        let _lock = lock(&self.root, FlockOperation::LockExclusive)?;
        f()
    }
}
