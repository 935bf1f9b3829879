//! flat-store: a rumoci content store keeping blobs flat in `objects/` as
//! `<algorithm>-<encoded>`, the index in `index.json`, temporaries in `tmp/`.

use rumoci_driver_sdk::blob_file::{FileBlobReader, FileBlobWriter};
use rumoci_driver_sdk::*;
use std::fs::{self, File, OpenOptions};
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const OBJECTS: &str = "objects";
const TMP: &str = "tmp";
const INDEX: &str = "index.json";

fn path(rel: &str) -> Result<PathBuf> {
    safe_join(&store_dir()?, rel)
}

fn io_err(what: impl std::fmt::Display, e: io::Error) -> Error {
    Error::io(what, e)
}

/// The flat file name of a digest. Algorithms containing `-` are refused,
/// so that `<algorithm>-<encoded>` splits unambiguously at the first `-`.
fn blob_name(d: &Digest) -> Result<String> {
    if d.algorithm().contains('-') {
        return Err(Error::InvalidArgument(format!(
            "digest algorithm {:?} contains '-', which flat-store cannot name",
            d.algorithm()
        )));
    }
    Ok(format!("{}-{}", d.algorithm(), d.encoded()))
}

fn blob_path(d: &Digest) -> Result<PathBuf> {
    path(&format!("{OBJECTS}/{}", blob_name(d)?))
}

fn name_to_digest(name: &str) -> Option<Digest> {
    let (alg, enc) = name.split_once('-')?;
    Digest::parse(&format!("{alg}:{enc}")).ok()
}

/// A fresh, unique temporary file in `tmp/` (created exclusively).
fn new_temp(prefix: &str) -> Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path(TMP)?;
    fs::create_dir_all(&dir).map_err(|e| io_err("creating tmp/", e))?;
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!("{prefix}-{nanos:x}-{n:x}"));
        match OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(format!("creating {}", p.display()), e)),
        }
    }
}

fn version_of(bytes: &[u8]) -> String {
    let mut a = DefaultHasher::new();
    a.write(bytes);
    let mut b = DefaultHasher::new();
    b.write_u64(0x9e37_79b9_7f4a_7c15);
    b.write(bytes);
    format!("{:016x}{:016x}-{}", a.finish(), b.finish(), bytes.len())
}

fn current_index() -> Result<Option<Vec<u8>>> {
    match fs::read(path(INDEX)?) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading index.json", e)),
    }
}

/// Write `doc` to a temporary and rename it over `index.json`.
fn replace_index(doc: &[u8]) -> Result<()> {
    let dest = path(INDEX)?;
    let (tmp, mut f) = new_temp("index")?;
    let res = f
        .write_all(doc)
        .and_then(|_| f.sync_all())
        .and_then(|_| fs::rename(&tmp, &dest));
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("writing index.json", e));
    }
    Ok(())
}

fn info_of(d: &Digest, md: &fs::Metadata) -> BlobInfo {
    BlobInfo {
        digest: d.to_string(),
        size: md.len(),
        committed_at: md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        labels: Vec::new(),
    }
}

struct FlatStore;

impl Driver for FlatStore {
    fn info() -> DriverInfo {
        DriverInfo::new(
            "flat-store",
            env!("CARGO_PKG_VERSION"),
            &["cas", "cas.init", "cas.open-stream"],
        )
    }
}

impl Cas for FlatStore {
    fn init(initial_index: Vec<u8>) -> Result<()> {
        let objects = path(OBJECTS)?;
        if path(INDEX)?.exists() {
            return Err(Error::AlreadyExists(
                "index.json exists: a store is there".into(),
            ));
        }
        match fs::create_dir(&objects) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(
                    "objects/ exists: a store is there".into(),
                ));
            }
            Err(e) => return Err(io_err("creating objects/", e)),
        }
        fs::create_dir_all(path(TMP)?).map_err(|e| io_err("creating tmp/", e))?;
        replace_index(&initial_index)
    }

    fn check() -> Result<()> {
        match fs::metadata(path(OBJECTS)?) {
            Ok(md) if md.is_dir() => Ok(()),
            Ok(_) => Err(Error::InvalidArgument(
                "objects is not a directory: not a flat-store".into(),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NotFound(
                "no objects/ directory: not a flat-store (create one with `rumoci init`)".into(),
            )),
            Err(e) => Err(io_err("checking objects/", e)),
        }
    }

    fn stat(digest: &Digest) -> Result<Option<BlobInfo>> {
        if digest.algorithm().contains('-') {
            return Ok(None);
        }
        match fs::metadata(blob_path(digest)?) {
            Ok(md) => Ok(Some(info_of(digest, &md))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("stat {digest}"), e)),
        }
    }

    fn open(digest: &Digest) -> Result<Box<dyn BlobRead>> {
        let p = blob_path(digest)?;
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!("blob {digest}")));
            }
            Err(e) => return Err(io_err(format!("opening {digest}"), e)),
        };
        let size = file.metadata().map_err(|e| io_err("stat blob", e))?.len();
        Ok(Box::new(FileBlobReader::new(file, size)))
    }

    fn open_stream(digest: &Digest, offset: u64) -> Result<InputStream> {
        let name = blob_name(digest)?;
        open_file_stream(&format!("{OBJECTS}/{name}"), offset)
    }

    fn create(_expected: Option<&Digest>, _size_hint: Option<u64>) -> Result<Box<dyn BlobWrite>> {
        let (tmp, file) = new_temp("blob")?;
        Ok(Box::new(FileBlobWriter::new(file, tmp, blob_path)))
    }

    fn delete(digest: &Digest) -> Result<()> {
        if digest.algorithm().contains('-') {
            return Ok(());
        }
        match fs::remove_file(blob_path(digest)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("deleting {digest}"), e)),
        }
    }

    fn list_blobs(cursor: Option<String>, limit: u32) -> Result<BlobPage> {
        let dir = path(OBJECTS)?;
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_err("listing objects/", e))? {
            let entry = entry.map_err(|e| io_err("listing objects/", e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if cursor.as_deref().is_some_and(|c| name.as_str() <= c) {
                continue;
            }
            names.push(name);
        }
        names.sort_unstable();
        let limit = limit.max(1) as usize;
        let mut items = Vec::new();
        let mut last = None;
        let mut iter = names.into_iter();
        for name in iter.by_ref() {
            let Some(d) = name_to_digest(&name) else {
                continue;
            };
            let md = match fs::metadata(dir.join(&name)) {
                Ok(md) if md.is_file() => md,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("stat {name}"), e)),
            };
            items.push(info_of(&d, &md));
            last = Some(name);
            if items.len() == limit {
                break;
            }
        }
        let more = iter.next().is_some();
        Ok(BlobPage {
            items,
            next: if more { last } else { None },
        })
    }

    fn read_index() -> Result<IndexDoc> {
        match current_index()? {
            Some(bytes) => Ok(IndexDoc {
                version: version_of(&bytes),
                bytes,
            }),
            None => Err(Error::NotFound("index.json".into())),
        }
    }

    fn write_index(doc: Vec<u8>, precondition: IndexPrecondition) -> Result<String> {
        let cur = current_index()?;
        let ok = match (&precondition, &cur) {
            (IndexPrecondition::Any, _) => true,
            (IndexPrecondition::Absent, c) => c.is_none(),
            (IndexPrecondition::Bytes(b), Some(c)) => b == c,
            (IndexPrecondition::Version(v), Some(c)) => *v == version_of(c),
            (_, None) => false,
        };
        if !ok {
            return Err(Error::FailedPrecondition(match cur {
                None => "index.json does not exist".into(),
                Some(_) => "index.json changed meanwhile".into(),
            }));
        }
        replace_index(&doc)?;
        Ok(version_of(&doc))
    }

    fn clean() -> Result<()> {
        let dir = path(TMP)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("listing tmp/", e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("listing tmp/", e))?;
            match fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("removing {}", entry.path().display()), e)),
            }
        }
        Ok(())
    }
}

impl LayerStore for FlatStore {}

register_driver!(FlatStore);
