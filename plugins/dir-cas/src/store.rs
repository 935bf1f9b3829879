//! The directory store (also included by the evil-bytes test plugin).

use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rumoci_driver_sdk::blob_file::{
    FileBlobReader, FileBlobWriter, blob_files, blob_page, check_index_precondition, index_version,
};
use rumoci_driver_sdk::{
    BlobInfo, BlobPage, BlobRead, BlobWrite, Cas, Digest, Driver, DriverInfo, Error, IndexDoc,
    IndexPrecondition, LayerStore, Level, Result, create_media_type, log, store_dir,
};

const TMP_PREFIX: &str = ".rumoci-tmp-";
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const MAX_INDEX: u64 = 64 << 20;

/// The driver (usable as a library by other plugins).
pub struct DirCasDriver;

fn random_suffix() -> String {
    // RandomState is seeded from wasi:random.
    let h = std::collections::hash_map::RandomState::new().build_hasher();
    format!("{:016x}", h.finish())
}

fn root() -> Result<PathBuf> {
    store_dir()
}

fn tmp_path(root: &Path) -> PathBuf {
    root.join(format!("{TMP_PREFIX}{}", random_suffix()))
}

fn write_atomic(root: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(root);
    let res = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(|e| Error::io(dest.display(), e))
}

/// A cheap version token: FNV-1a 64 of the document plus its length.
fn read_index_bytes(root: &Path) -> Result<Option<Vec<u8>>> {
    let p = root.join(INDEX_FILE);
    match File::open(&p) {
        Ok(f) => {
            let mut buf = Vec::new();
            f.take(MAX_INDEX + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io(INDEX_FILE, e))?;
            if buf.len() as u64 > MAX_INDEX {
                return Err(Error::InvalidArgument(format!(
                    "{INDEX_FILE} is larger than {MAX_INDEX} bytes"
                )));
            }
            Ok(Some(buf))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(INDEX_FILE, e)),
    }
}

impl Driver for DirCasDriver {
    fn info() -> DriverInfo {
        DriverInfo::new(
            "dir-cas",
            env!("CARGO_PKG_VERSION"),
            &["cas", "cas.init", "cas.open-stream"],
        )
    }
}

impl Cas for DirCasDriver {
    fn init(initial_index: Vec<u8>) -> Result<()> {
        let root = root()?;
        if root.join(LAYOUT_FILE).exists() || root.join(INDEX_FILE).exists() {
            return Err(Error::AlreadyExists(
                "the store directory already holds an image layout".into(),
            ));
        }
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(|e| Error::io("blobs/sha256", e))?;
        write_atomic(
            &root,
            &root.join(LAYOUT_FILE),
            b"{\"imageLayoutVersion\":\"1.0.0\"}\n",
        )?;
        write_atomic(&root, &root.join(INDEX_FILE), &initial_index)
    }

    fn check() -> Result<()> {
        let root = root()?;
        let layout = fs::read(root.join(LAYOUT_FILE))
            .map_err(|e| Error::io(format!("cannot read {LAYOUT_FILE}"), e))?;
        let text = String::from_utf8_lossy(&layout);
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if !compact.contains("\"imageLayoutVersion\":\"1.0.0\"") {
            return Err(Error::InvalidArgument(format!(
                "{LAYOUT_FILE}: unsupported imageLayoutVersion"
            )));
        }
        if !root.join("blobs").is_dir() {
            return Err(Error::NotFound("blobs/ is missing".into()));
        }
        if !root.join(INDEX_FILE).is_file() {
            return Err(Error::NotFound("index.json is missing".into()));
        }
        Ok(())
    }

    fn stat(digest: &Digest) -> Result<Option<BlobInfo>> {
        let p = root()?.join(digest.blob_path());
        match fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok(Some(BlobInfo {
                digest: digest.to_string(),
                size: m.len(),
                committed_at: m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                labels: Vec::new(),
            })),
            Ok(_) => Err(Error::Integrity(format!("{digest}: not a regular file"))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(digest, e)),
        }
    }

    fn open(digest: &Digest) -> Result<Box<dyn BlobRead>> {
        let p = root()?.join(digest.blob_path());
        Ok(Box::new(FileBlobReader::open(&p, digest)?))
    }

    fn open_stream(digest: &Digest, offset: u64) -> Result<rumoci_driver_sdk::InputStream> {
        let rel = digest.blob_path();
        let rel = rel
            .to_str()
            .ok_or_else(|| Error::InvalidArgument(format!("{digest}: path")))?;
        rumoci_driver_sdk::open_file_stream(rel, offset)
    }

    fn create(expected: Option<&Digest>, size_hint: Option<u64>) -> Result<Box<dyn BlobWrite>> {
        // what the host says of the blob: hints only, it verifies the result
        log(
            Level::Debug,
            &format!(
                "create: expected {}, size {}, media type {}",
                expected.map_or("unknown".to_string(), |d| d.to_string()),
                size_hint.map_or("unknown".to_string(), |n| n.to_string()),
                create_media_type().as_deref().unwrap_or("unknown")
            ),
        );
        let root = root()?;
        let tmp = tmp_path(&root);
        Ok(Box::new(FileBlobWriter::create(tmp, move |d| {
            Ok(root.join(d.blob_path()))
        })?))
    }

    fn delete(digest: &Digest) -> Result<()> {
        let p = root()?.join(digest.blob_path());
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(digest, e)),
        }
    }

    fn list_blobs(cursor: Option<String>, limit: u32) -> Result<BlobPage> {
        let all = blob_files(&root()?.join("blobs"))?;
        Ok(blob_page(all, cursor.as_deref(), limit))
    }

    fn read_index() -> Result<IndexDoc> {
        let bytes =
            read_index_bytes(&root()?)?.ok_or_else(|| Error::NotFound(INDEX_FILE.to_string()))?;
        let version = index_version(&bytes);
        Ok(IndexDoc { bytes, version })
    }

    fn write_index(doc: Vec<u8>, precondition: IndexPrecondition) -> Result<String> {
        let root = root()?;
        let current = read_index_bytes(&root)?;
        check_index_precondition(&precondition, current.as_deref())?;
        write_atomic(&root, &root.join(INDEX_FILE), &doc)?;
        Ok(index_version(&doc))
    }

    fn clean() -> Result<()> {
        let root = root()?;
        for ent in fs::read_dir(&root).map_err(|e| Error::io("store directory", e))? {
            let ent = ent.map_err(|e| Error::io("store directory", e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) || name.starts_with(".umoci-") {
                let p = ent.path();
                let _ = if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
        Ok(())
    }
}

impl LayerStore for DirCasDriver {}
