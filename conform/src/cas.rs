//! Content-store checks: the `cas` exports called directly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceAny;

use super::{Options, Runner, ensure, page_through};
use rumoci_wasm::driver::bindings::CasDriver;
use rumoci_wasm::driver::bindings::exports::rumoci::driver::cas::{
    BlobInfo, BlobPage, IndexDoc, IndexPrecondition as Pre,
};
use rumoci_wasm::driver::bindings::rumoci::driver::types::Error as WitError;
use rumoci_wasm::driver::{DriverError, DriverSpec, Plugin};
use rumoci_wasm::driver::{SharedPlugin as Shared, lock_plugin as lock, stream_reader};

/// Bytes per `write` call, as the host sends them.
const CHUNK: usize = 1 << 20;

/// The sha256 digest string of `data`.
pub(super) fn digest_of(data: &[u8]) -> String {
    rumoci_core::oci::Digest::sha256_of(data).to_string()
}

/// `n` bytes of deterministic noise (xorshift), different for each `seed`.
pub(super) fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// The plugin, loaded on one store directory.
struct Store {
    p: Shared,
}

fn err(e: DriverError) -> String {
    e.to_string()
}

fn is(e: &DriverError, f: fn(&WitError) -> bool) -> bool {
    matches!(e, DriverError::Plugin { error, .. } if f(error))
}

fn unsupported(e: &DriverError) -> bool {
    is(e, |w| matches!(w, WitError::Unsupported(_)))
}

impl Store {
    fn load(wasm: &Path, spec: &DriverSpec, dir: &Path) -> Result<Store, String> {
        let p = Plugin::<CasDriver>::load(wasm, spec, Some(dir)).map_err(err)?;
        Ok(Store {
            p: Arc::new(Mutex::new(p)),
        })
    }

    fn init(&self, index: &[u8]) -> Result<(), DriverError> {
        lock(&self.p).call("cas.init", |s, b| b.rumoci_driver_cas().call_init(s, index))
    }

    fn check(&self) -> Result<(), DriverError> {
        lock(&self.p).call("cas.check", |s, b| b.rumoci_driver_cas().call_check(s))
    }

    fn stat(&self, d: &str) -> Result<Option<BlobInfo>, DriverError> {
        lock(&self.p).call("cas.stat", |s, b| {
            b.rumoci_driver_cas().call_stat(s, &d.to_string())
        })
    }

    /// `create`, then `write` in chunks (checking the running count).
    fn begin(&self, data: &[u8]) -> Result<ResourceAny, String> {
        let mut p = lock(&self.p);
        let h = p
            .call("cas.create", |s, b| {
                b.rumoci_driver_cas()
                    .call_create(s, None, Some(data.len() as u64))
            })
            .map_err(err)?;
        let mut sent = 0u64;
        for chunk in data.chunks(CHUNK) {
            let n = p
                .call("cas.blob-writer.write", |s, b| {
                    b.rumoci_driver_cas().blob_writer().call_write(s, h, chunk)
                })
                .map_err(err)?;
            sent += chunk.len() as u64;
            ensure(n == sent, || {
                format!("write answered {n} bytes accepted so far, {sent} were sent")
            })?;
        }
        Ok(h)
    }

    /// Write and commit `data`; its digest.
    fn put(&self, data: &[u8]) -> Result<String, String> {
        let h = self.begin(data)?;
        let d = digest_of(data);
        let mut p = lock(&self.p);
        let res = p.call("cas.blob-writer.commit", |s, b| {
            b.rumoci_driver_cas()
                .blob_writer()
                .call_commit(s, h, &d, data.len() as u64)
        });
        p.drop_resource(h);
        res.map_err(err)?;
        Ok(d)
    }

    fn open(&self, d: &str) -> Result<ResourceAny, DriverError> {
        lock(&self.p).call("cas.open", |s, b| {
            b.rumoci_driver_cas().call_open(s, &d.to_string())
        })
    }

    fn read_at(&self, h: ResourceAny, off: u64, len: u32) -> Result<Vec<u8>, String> {
        lock(&self.p)
            .call("cas.blob-reader.read-at", |s, b| {
                b.rumoci_driver_cas()
                    .blob_reader()
                    .call_read_at(s, h, off, len)
            })
            .map_err(err)
    }

    fn reader_size(&self, h: ResourceAny) -> Result<u64, String> {
        lock(&self.p)
            .call_raw("cas.blob-reader.size", |s, b| {
                b.rumoci_driver_cas().blob_reader().call_size(s, h)
            })
            .map_err(err)
    }

    /// Everything `open-stream(d, off)` yields.
    fn stream(&self, d: &str, off: u64) -> Result<Vec<u8>, DriverError> {
        let res = lock(&self.p).call("cas.open-stream", |s, b| {
            b.rumoci_driver_cas()
                .call_open_stream(s, &d.to_string(), off)
        })?;
        let mut out = Vec::new();
        stream_reader(self.p.clone(), res)
            .read_to_end(&mut out)
            .map_err(|e| DriverError::Protocol {
                plugin: lock(&self.p).label().to_string(),
                op: "cas.open-stream".into(),
                reason: format!("reading the stream: {e}"),
            })?;
        Ok(out)
    }

    fn delete(&self, d: &str) -> Result<(), DriverError> {
        lock(&self.p).call("cas.delete", |s, b| {
            b.rumoci_driver_cas().call_delete(s, &d.to_string())
        })
    }

    fn page(&self, cursor: Option<&str>, limit: u32) -> Result<BlobPage, DriverError> {
        lock(&self.p).call("cas.list-blobs", |s, b| {
            b.rumoci_driver_cas().call_list_blobs(s, cursor, limit)
        })
    }

    fn read_index(&self) -> Result<IndexDoc, DriverError> {
        lock(&self.p).call("cas.read-index", |s, b| {
            b.rumoci_driver_cas().call_read_index(s)
        })
    }

    fn write_index(&self, doc: &[u8], pre: &Pre) -> Result<String, DriverError> {
        lock(&self.p).call("cas.write-index", |s, b| {
            b.rumoci_driver_cas().call_write_index(s, doc, pre)
        })
    }

    fn clean(&self) -> Result<(), DriverError> {
        lock(&self.p).call("cas.clean", |s, b| b.rumoci_driver_cas().call_clean(s))
    }

    fn kill(&self) {
        lock(&self.p).kill();
    }
}

/// Every entry under `dir` (not following symlinks): relative path →
/// (kind, size of regular files).
fn listing(dir: &Path) -> BTreeMap<PathBuf, (char, u64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            let kind = if md.is_dir() {
                todo.push(path);
                'd'
            } else if md.is_file() {
                'f'
            } else {
                'o'
            };
            out.insert(rel, (kind, if kind == 'f' { md.len() } else { 0 }));
        }
    }
    out
}

/// What differs between two listings, for a message.
fn listing_diff(
    before: &BTreeMap<PathBuf, (char, u64)>,
    after: &BTreeMap<PathBuf, (char, u64)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (p, v) in after {
        if before.get(p) != Some(v) {
            out.push(format!("{} left behind", p.display()));
        }
    }
    for p in before.keys() {
        if !after.contains_key(p) {
            out.push(format!("{} removed", p.display()));
        }
    }
    out
}

/// The tags of an index document and the digests they name.
pub(super) fn tags_of(doc: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| format!("index is not JSON: {e}"))?;
    let mut out = BTreeMap::new();
    for m in v["manifests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let tag = m["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or_default();
        out.insert(
            tag.to_string(),
            m["digest"].as_str().unwrap_or_default().to_string(),
        );
    }
    Ok(out)
}

/// An index document tagging `manifest` (of `size` bytes) as each of `tags`.
pub(super) fn index_with(manifest: &str, size: usize, tags: &[&str]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = tags
        .iter()
        .map(|t| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": t},
            })
        })
        .collect();
    let doc = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// A real (empty) image: config and manifest blobs stored; the manifest's
/// digest and size.
fn put_image(st: &Store) -> Result<(String, usize), String> {
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created":"2023-11-14T22:13:20Z","created_by":"rumoci driver test","empty_layer":true}]}"#;
    let c = st.put(config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
        "layers": [],
    }))
    .map_err(|e| e.to_string())?;
    Ok((st.put(&manifest)?, manifest.len()))
}

/// The empty index rumoci's `init` writes.
pub(super) const EMPTY_INDEX: &[u8] =
    br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// Run the content-store checks.
pub(super) fn run(r: &mut Runner, wasm: &Path, spec: &DriverSpec, opts: &Options, caps: &[String]) {
    let has = |c: &str| caps.iter().any(|x| x == c);
    let remote = spec.url.is_some();
    let mut spec = spec.clone();
    if remote && spec.repo.is_none() {
        spec.repo = Some(format!("rumoci-driver-test/cas-{}", std::process::id()));
    }
    let dir = match &spec.dir {
        Some(d) if !has("cas.init") => d.clone(),
        _ => opts.work.join("cas-store"),
    };
    let mut store: Option<Store> = None;

    if has("cas.init") {
        r.gate(
            "init creates a store in an empty directory",
            "cas.init(initial-index): writes initial-index as the index verbatim; the store is usable right after",
            || {
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let st = Store::load(wasm, &spec, &dir)?;
                st.init(EMPTY_INDEX).map_err(err)?;
                store = Some(st);
                Ok(None)
            },
        );
    } else {
        r.gate(
            "the existing store given with dir= opens",
            "without cas.init the runner tests the store dir= names (it writes test blobs into it)",
            || {
                if spec.dir.is_none() {
                    return Err("no cas.init capability and no dir=: give dir=STORE, an existing store the checks may write into".into());
                }
                store = Some(Store::load(wasm, &spec, &dir)?);
                Ok(None)
            },
        );
    }
    let Some(st) = store else {
        return;
    };
    r.gate(
        "check accepts the store (also from a new instance)",
        "cas.check: ok for a usable store; called once after instantiation",
        || {
            st.kill();
            st.check().map_err(err).map(|()| None)
        },
    );
    r.check(
        "check refuses an empty directory; read-index there is not-found",
        "cas.check: an error (not-found or invalid-argument) when the directory holds no store; cas.read-index: not-found when there is no index",
        || {
            if remote {
                return Ok(Some(
                    "with url= the store is the registry's, not the directory's".into(),
                ));
            }
            let empty = opts.work.join("cas-empty");
            std::fs::create_dir_all(&empty).map_err(|e| e.to_string())?;
            let other = Store::load(wasm, &spec, &empty)?;
            match other.check() {
                Ok(()) => return Err("check answered ok for an empty directory".into()),
                Err(DriverError::Plugin { .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
            match other.read_index() {
                Err(e) if is(&e, |w| matches!(w, WitError::NotFound(_))) => Ok(None),
                Err(e) => Err(format!(
                    "read-index in an empty directory: {e} (expected not-found)"
                )),
                Ok(_) => Err("read-index in an empty directory answered an index".into()),
            }
        },
    );
    r.check(
        "read-index after init returns the initial index",
        "cas.read-index: the document and a non-empty version token",
        || {
            if !has("cas.init") {
                return Ok(Some("the store was not made by init".into()));
            }
            let doc = st.read_index().map_err(err)?;
            ensure(!doc.version.is_empty(), || "empty version token".into())?;
            ensure(tags_of(&doc.bytes)? == tags_of(EMPTY_INDEX)?, || {
                format!(
                    "read-index answered {}",
                    String::from_utf8_lossy(&doc.bytes)
                )
            })?;
            if !remote {
                ensure(doc.bytes == EMPTY_INDEX, || {
                    "read-index does not return the initial index verbatim".into()
                })?;
            }
            Ok(None)
        },
    );

    let big = noise(2 * CHUNK + CHUNK / 2 + 17, 1);
    let big_d = digest_of(&big);
    r.gate(
        "a 2.5 MiB blob is written in 1 MiB chunks and committed",
        "blob-writer.write returns the bytes accepted so far; commit(digest, size) publishes atomically; stat then answers that digest and size",
        || {
            let d = st.put(&big)?;
            let info = st
                .stat(&d)
                .map_err(err)?
                .ok_or_else(|| format!("stat after commit answers none for {d} (the digest of the bytes written)"))?;
            ensure(info.digest == d && info.size == big.len() as u64, || {
                format!(
                    "stat answers {} of {} bytes, expected {d} of {} bytes",
                    info.digest,
                    info.size,
                    big.len()
                )
            })?;
            Ok(None)
        },
    );
    r.check(
        "read-at returns the bytes at any offset, short at the end",
        "blob-reader.size is the blob's size; read-at(offset, len) returns up to len bytes from offset; a shorter or empty result means end of blob",
        || {
            let h = st.open(&big_d).map_err(err)?;
            let res = (|| {
                let size = st.reader_size(h)?;
                ensure(size == big.len() as u64, || format!("size() answers {size}"))?;
                let n = big.len() as u64;
                for (off, len) in [(0u64, CHUNK as u32), (12345, 1), (CHUNK as u64 - 3, 7), (n - 10, 100)] {
                    let got = st.read_at(h, off, len)?;
                    let end = (off + u64::from(len)).min(n) as usize;
                    let want = &big[off as usize..end];
                    ensure(got.len() <= len as usize, || {
                        format!("read-at({off}, {len}) returned {} bytes", got.len())
                    })?;
                    ensure(!got.is_empty() && want.starts_with(&got), || {
                        format!("read-at({off}, {len}): bytes differ from what was written")
                    })?;
                }
                let past = st.read_at(h, n, 100)?;
                ensure(past.is_empty(), || format!("read-at(size, 100) returned {} bytes", past.len()))?;
                // the whole blob, as the host reads it
                let mut all = Vec::new();
                while all.len() < big.len() {
                    let c = st.read_at(h, all.len() as u64, CHUNK as u32)?;
                    if c.is_empty() {
                        break;
                    }
                    all.extend_from_slice(&c);
                }
                ensure(all == big, || "reading the blob in chunks gives other bytes".into())
            })();
            lock(&st.p).drop_resource(h);
            res.map(|()| None)
        },
    );
    r.check(
        "open-stream returns the blob from an offset",
        "cas.open-stream(digest, offset) (capability cas.open-stream): an input-stream of the bytes from offset to the end",
        || {
            if !has("cas.open-stream") {
                return Ok(Some("no cas.open-stream capability".into()));
            }
            for off in [0usize, 1_000_003] {
                let got = st.stream(&big_d, off as u64).map_err(err)?;
                ensure(got == big[off..], || {
                    format!("the stream from {off} gives {} other bytes", got.len())
                })?;
            }
            Ok(None)
        },
    );
    r.check(
        "committing a blob that exists succeeds and keeps one copy",
        "blob-writer.commit: committing a blob that already exists succeeds",
        || {
            let d = st.put(&big)?;
            let info = st
                .stat(&d)
                .map_err(err)?
                .ok_or_else(|| format!("stat answers none for {d}"))?;
            ensure(info.size == big.len() as u64, || {
                format!("size now {}, expected {}", info.size, big.len())
            })?;
            Ok(None)
        },
    );
    r.check(
        "absent blobs: stat none, open not-found",
        "cas.stat answers none for an absent blob; open and open-stream answer not-found",
        || {
            let absent = digest_of(b"rumoci driver test: never written");
            ensure(st.stat(&absent).map_err(err)?.is_none(), || {
                "stat answers a blob".into()
            })?;
            match st.open(&absent) {
                Err(e) if is(&e, |w| matches!(w, WitError::NotFound(_))) => {}
                Err(e) => return Err(format!("open: {e} (expected not-found)")),
                Ok(h) => {
                    lock(&st.p).drop_resource(h);
                    return Err("open of an absent blob succeeded".into());
                }
            }
            if has("cas.open-stream") {
                match st.stream(&absent, 0) {
                    Err(e) if is(&e, |w| matches!(w, WitError::NotFound(_))) => {}
                    Err(e) => return Err(format!("open-stream: {e} (expected not-found)")),
                    Ok(_) => return Err("open-stream of an absent blob succeeded".into()),
                }
            }
            Ok(None)
        },
    );
    r.check(
        "a writer dropped without commit leaves nothing behind",
        "blob-writer: dropping it without commit aborts and must leave nothing behind",
        || {
            let data = noise(300 << 10, 2);
            let before = listing(&dir);
            let h = st.begin(&data)?;
            lock(&st.p).drop_resource(h);
            ensure(st.stat(&digest_of(&data)).map_err(err)?.is_none(), || {
                "the aborted blob is visible".into()
            })?;
            let diff = listing_diff(&before, &listing(&dir));
            ensure(diff.is_empty(), || diff.join(", "))?;
            Ok(None)
        },
    );
    r.check(
        "clean removes what a killed writer left",
        "cas.clean: remove temporaries left behind by killed writers (the instance was dropped mid-write, no destructor ran)",
        || {
            let data = noise(300 << 10, 3);
            // leftovers of earlier checks (a failed abort) are not this one's
            st.clean().map_err(err)?;
            let before = listing(&dir);
            let _h = st.begin(&data)?;
            st.kill();
            st.clean().map_err(err)?;
            ensure(st.stat(&digest_of(&data)).map_err(err)?.is_none(), || {
                "the killed writer's blob is visible".into()
            })?;
            let diff = listing_diff(&before, &listing(&dir));
            ensure(diff.is_empty(), || diff.join(", "))?;
            ensure(st.stat(&big_d).map_err(err)?.is_some(), || {
                "clean removed a committed blob".into()
            })?;
            Ok(None)
        },
    );

    // paging
    let mut small: Vec<String> = Vec::new();
    let listable = r.check(
        "list-blobs pages through every blob, for any limit",
        "cas.list-blobs(cursor, limit): at most limit items per page; a page with next is not empty and its cursor advances; every blob exactly once; ends",
        || {
            match st.page(None, 1) {
                Err(e) if unsupported(&e) => {
                    return Ok(Some(format!("list-blobs unsupported ({e}): gc cannot run through this driver")));
                }
                Err(e) => return Err(e.to_string()),
                Ok(_) => {}
            }
            for i in 0..40u64 {
                small.push(st.put(&noise(100 + i as usize, 100 + i))?);
            }
            let mut sets = Vec::new();
            for limit in [1u32, 3, 16, 1000] {
                let seen = page_through(limit, 200, |cursor, limit| {
                    let page = st.page(cursor, limit).map_err(err)?;
                    Ok((page.items.into_iter().map(|i| i.digest).collect(), page.next))
                })?;
                let set: BTreeSet<String> = seen.iter().cloned().collect();
                ensure(set.len() == seen.len(), || format!("limit {limit}: a blob listed twice"))?;
                for d in small.iter().chain([&big_d]) {
                    ensure(set.contains(d), || format!("limit {limit}: {d} not listed"))?;
                }
                sets.push(set);
            }
            ensure(sets.windows(2).all(|w| w[0] == w[1]), || {
                "different limits list different blobs".into()
            })?;
            Ok(None)
        },
    );
    r.check(
        "delete removes a blob; deleting it again is not an error",
        "cas.delete: the blob is gone (stat none, open not-found); deleting a missing blob is not an error",
        || {
            let d = match small.first() {
                Some(d) => d.clone(),
                None => st.put(b"rumoci driver test: delete me")?,
            };
            match st.delete(&d) {
                Err(e) if unsupported(&e) => return Ok(Some(format!("delete unsupported ({e})"))),
                r => r.map_err(err)?,
            }
            ensure(st.stat(&d).map_err(err)?.is_none(), || "stat still answers the blob".into())?;
            st.delete(&d).map_err(|e| format!("second delete: {e}"))?;
            Ok(None)
        },
    );

    // index compare-and-swap
    let mut image: Option<(String, usize)> = None;
    r.check(
        "write-index honours every precondition",
        "cas.write-index(doc, precondition): replaces atomically if it holds (any; absent; bytes: the current document; version: the token read-index gave), else failed-precondition and nothing changes; answers the new version token",
        || {
            let (m, size) = put_image(&st)?;
            image = Some((m.clone(), size));
            // tags are only ever added: a registry cannot remove a tag
            // without deleting its manifest
            let one = index_with(&m, size, &["conformance-1"]);
            let two = index_with(&m, size, &["conformance-1", "conformance-2"]);
            let three = index_with(&m, size, &["conformance-1", "conformance-2", "conformance-3"]);
            let lost = |what: &str, e: Result<String, DriverError>| match e {
                Err(e) if is(&e, |w| matches!(w, WitError::FailedPrecondition(_))) => Ok(()),
                Err(e) => Err(format!("{what}: {e} (expected failed-precondition)")),
                Ok(_) => Err(format!("{what}: succeeded")),
            };
            let v1 = st.read_index().map_err(err)?;
            let v2 = st.write_index(&one, &Pre::Version(v1.version.clone())).map_err(err)?;
            ensure(v2 != v1.version, || "the version token did not change".into())?;
            let now = st.read_index().map_err(err)?;
            ensure(now.version == v2, || "read-index answers another version than write-index did".into())?;
            ensure(tags_of(&now.bytes)? == tags_of(&one)?, || "read-index does not answer what was written".into())?;
            lost("version precondition with a stale token", st.write_index(&two, &Pre::Version(v1.version.clone())))?;
            lost("bytes precondition with the old document", st.write_index(&two, &Pre::Bytes(v1.bytes.clone())))?;
            lost("absent precondition on an existing index", st.write_index(&two, &Pre::Absent))?;
            ensure(tags_of(&st.read_index().map_err(err)?.bytes)? == tags_of(&one)?, || {
                "a refused write changed the index".into()
            })?;
            st.write_index(&two, &Pre::Bytes(now.bytes.clone()))
                .map_err(|e| format!("bytes precondition with the current document: {e}"))?;
            st.write_index(&three, &Pre::Any).map_err(|e| format!("precondition any: {e}"))?;
            ensure(tags_of(&st.read_index().map_err(err)?.bytes)? == tags_of(&three)?, || {
                "read-index does not answer what was written".into()
            })?;
            Ok(None)
        },
    );
    r.check(
        "two instances racing on the index: exactly one wins",
        "cas.write-index: between read-index and write-index of one instance, a write by another makes the first fail with failed-precondition",
        || {
            let Some((m, size)) = image.clone() else {
                return Ok(Some("needs the image of the previous check".into()));
            };
            let other = Store::load(wasm, &spec, &dir)?;
            other.check().map_err(err)?;
            let a = st.read_index().map_err(err)?;
            let b = other.read_index().map_err(err)?;
            ensure(a.version == b.version, || "two instances answer different versions".into())?;
            let mut tags: Vec<String> = tags_of(&a.bytes)?.into_keys().collect();
            let with = |t: &str| {
                let mut all: Vec<&str> = tags.iter().map(String::as_str).collect();
                all.push(t);
                index_with(&m, size, &all)
            };
            let (doc_a, doc_b) = (with("conformance-a"), with("conformance-b"));
            tags.clear();
            st.write_index(&doc_a, &Pre::Version(a.version)).map_err(err)?;
            match other.write_index(&doc_b, &Pre::Version(b.version)) {
                Err(e) if is(&e, |w| matches!(w, WitError::FailedPrecondition(_))) => {}
                Err(e) => return Err(format!("the loser: {e} (expected failed-precondition)")),
                Ok(_) => return Err("both writes succeeded: an update was lost".into()),
            }
            let tags = tags_of(&st.read_index().map_err(err)?.bytes)?;
            ensure(tags.contains_key("conformance-a"), || format!("index now tags {:?}", tags.keys()))?;
            Ok(None)
        },
    );
    r.check(
        "init on an existing store answers already-exists",
        "cas.init: already-exists if a store is there",
        || {
            if !has("cas.init") {
                return Ok(Some("no cas.init capability".into()));
            }
            match st.init(EMPTY_INDEX) {
                Err(e) if is(&e, |w| matches!(w, WitError::AlreadyExists(_))) => Ok(None),
                Err(e) => Err(format!("{e} (expected already-exists)")),
                Ok(()) => Err("init succeeded over an existing store".into()),
            }
        },
    );
    r.check(
        "gc through the driver removes exactly the unreachable blobs",
        "list-blobs and delete as gc uses them: reachable blobs stay, others go",
        || {
            if !listable {
                return Ok(Some("list-blobs is not usable".into()));
            }
            let Some((m, _)) = image.clone() else {
                return Ok(Some("needs the image of the index check".into()));
            };
            st.kill();
            let cas = rumoci_wasm::driver::WasmCas::open(wasm, &spec, &dir).map_err(err)?;
            let stray = digest_of(&noise(1000, 7));
            st.put(&noise(1000, 7))?;
            rumoci_engine::cas::gc::gc(&cas).map_err(|e| format!("gc: {e:#}"))?;
            ensure(st.stat(&stray).map_err(err)?.is_none(), || {
                "an unreachable blob survived gc".into()
            })?;
            ensure(st.stat(&m).map_err(err)?.is_some(), || {
                "gc removed a tagged manifest".into()
            })?;
            ensure(st.stat(&big_d).map_err(err)?.is_none(), || {
                "an unreachable blob survived gc".into()
            })?;
            Ok(None)
        },
    );
}
