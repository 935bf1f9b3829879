//! sharded-cas: a rumoci content store keeping blobs at
//! `blobs/<algorithm>/<first two hex digits>/<encoded>` (so no directory
//! holds more than 1/256 of the blobs), the index at `index.json`, and
//! writes in progress in `tmp/`.
//!
//! Written from the SDK's GUIDE.md: every rule it cites is the guide's.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rumoci_driver_sdk::blob_file::{FileBlobReader, FileBlobWriter};
use rumoci_driver_sdk::*;
use sha2::Digest as _;

struct Sharded;

const INDEX: &str = "index.json";
const TMP: &str = "tmp";

impl Driver for Sharded {
    fn info() -> DriverInfo {
        DriverInfo::new(
            "sharded-cas",
            env!("CARGO_PKG_VERSION"),
            &["cas", "cas.init", "cas.open-stream"],
        )
    }
}

/// `blobs/<alg>/<xx>/<encoded>`, relative to the store directory.
fn rel_path(d: &Digest) -> String {
    let shard = d.encoded().get(..2).unwrap_or("__");
    format!("blobs/{}/{shard}/{}", d.algorithm(), d.encoded())
}

fn path(d: &Digest) -> Result<PathBuf> {
    safe_join(&store_dir()?, &rel_path(d))
}

/// The version token of an index: its sha256 (changes whenever it does).
fn version(doc: &[u8]) -> String {
    hex(&sha2::Sha256::digest(doc))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Write `data` to `dest` atomically: a temporary in `tmp/`, then rename.
fn write_atomic(dest: &Path, data: &[u8]) -> Result<()> {
    let root = store_dir()?;
    let tmp = root.join(TMP).join(format!("index-{:016x}", random()));
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io("tmp file", e))?;
    f.write_all(data).map_err(|e| Error::io("tmp file", e))?;
    f.sync_all().map_err(|e| Error::io("tmp file", e))?;
    fs::rename(&tmp, dest).map_err(|e| Error::io(INDEX, e))
}

/// Every stored digest, sorted (the paging order).
fn all_digests() -> Result<Vec<String>> {
    let mut out = Vec::new();
    let blobs = store_dir()?.join("blobs");
    for alg in fs::read_dir(&blobs).map_err(|e| Error::io("blobs", e))? {
        let alg = alg.map_err(|e| Error::io("blobs", e))?;
        let alg_name = alg.file_name().to_string_lossy().into_owned();
        for shard in fs::read_dir(alg.path()).map_err(|e| Error::io(&alg_name, e))? {
            let shard = shard.map_err(|e| Error::io(&alg_name, e))?;
            for blob in fs::read_dir(shard.path()).map_err(|e| Error::io(&alg_name, e))? {
                let blob = blob.map_err(|e| Error::io(&alg_name, e))?;
                out.push(format!("{alg_name}:{}", blob.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Cas for Sharded {
    fn init(initial_index: Vec<u8>) -> Result<()> {
        let root = store_dir()?;
        if root.join(INDEX).exists() {
            return Err(Error::AlreadyExists("the directory holds a store".into()));
        }
        fs::create_dir_all(root.join("blobs/sha256")).map_err(|e| Error::io("blobs", e))?;
        fs::create_dir_all(root.join(TMP)).map_err(|e| Error::io(TMP, e))?;
        // the index last: a store is there once index.json is
        write_atomic(&root.join(INDEX), &initial_index)
    }

    fn check() -> Result<()> {
        let root = store_dir()?;
        for need in [INDEX, "blobs", TMP] {
            if !root.join(need).exists() {
                return Err(Error::NotFound(format!(
                    "{need} is missing: not a sharded-cas store"
                )));
            }
        }
        Ok(())
    }

    fn stat(digest: &Digest) -> Result<Option<BlobInfo>> {
        match fs::metadata(path(digest)?) {
            Ok(m) => Ok(Some(BlobInfo {
                digest: digest.to_string(),
                size: m.len(),
                committed_at: None,
                labels: Vec::new(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(digest, e)),
        }
    }

    fn open(digest: &Digest) -> Result<Box<dyn BlobRead>> {
        Ok(Box::new(FileBlobReader::open(&path(digest)?, digest)?))
    }

    fn open_stream(digest: &Digest, offset: u64) -> Result<InputStream> {
        open_file_stream(&rel_path(digest), offset)
    }

    fn create(_expected: Option<&Digest>, _size_hint: Option<u64>) -> Result<Box<dyn BlobWrite>> {
        let tmp = store_dir()?
            .join(TMP)
            .join(format!("blob-{:016x}", random()));
        // a file in `tmp/`, renamed into place on commit, deleted when
        // dropped uncommitted (the abort rule)
        Ok(Box::new(FileBlobWriter::create(tmp, path)?))
    }

    fn delete(digest: &Digest) -> Result<()> {
        match fs::remove_file(path(digest)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(digest, e)),
            _ => Ok(()),
        }
    }

    fn list_blobs(cursor: Option<String>, limit: u32) -> Result<BlobPage> {
        // the cursor is the last digest of the previous page
        let all = all_digests()?;
        let start = match &cursor {
            Some(c) => all.partition_point(|d| d <= c),
            None => 0,
        };
        let end = (start + limit.max(1) as usize).min(all.len());
        let mut items = Vec::new();
        for d in &all[start..end] {
            if let Some(info) = <Self as Cas>::stat(&Digest::parse(d)?)? {
                items.push(info);
            }
        }
        let next = (end < all.len()).then(|| all[end - 1].clone());
        Ok(BlobPage { items, next })
    }

    fn read_index() -> Result<IndexDoc> {
        let bytes = fs::read(store_dir()?.join(INDEX)).map_err(|e| Error::io(INDEX, e))?;
        let version = version(&bytes);
        Ok(IndexDoc { bytes, version })
    }

    fn write_index(doc: Vec<u8>, precondition: IndexPrecondition) -> Result<String> {
        // rumoci serialises write-index calls on one store across its
        // processes, so read-compare-rename is a compare-and-swap
        let dest = store_dir()?.join(INDEX);
        let current = match fs::read(&dest) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(INDEX, e)),
        };
        let holds = match (&precondition, &current) {
            (IndexPrecondition::Any, _) => true,
            (IndexPrecondition::Absent, cur) => cur.is_none(),
            (IndexPrecondition::Bytes(want), Some(cur)) => want == cur,
            (IndexPrecondition::Version(v), Some(cur)) => *v == version(cur),
            (_, None) => false,
        };
        if !holds {
            return Err(Error::FailedPrecondition("index.json has changed".into()));
        }
        write_atomic(&dest, &doc)?;
        Ok(version(&doc))
    }

    fn clean() -> Result<()> {
        let tmp = store_dir()?.join(TMP);
        for e in fs::read_dir(&tmp).map_err(|e| Error::io(TMP, e))?.flatten() {
            let _ = fs::remove_file(e.path());
        }
        Ok(())
    }
}

/// Random bits from WASI's random source (through std's hasher seeds).
fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

impl LayerStore for Sharded {}

register_driver!(Sharded);
