//! Image → root filesystem: resolve the manifest's layers, verify each blob
//! (size, digest), decompress by media type, check the uncompressed stream
//! against the config's diff_id, and apply it with the extractor.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use crate::cas::{Cas, CasError, ext};
use crate::layer::compress::decompressor;
use crate::layer::extract::{ExtractError, ExtractOptions, Extractor};
use crate::layer::root::Root;
use crate::layer_store::record::Record;
use crate::layer_store::{
    InPlace, LayerStore, LayerStoreError, MountSpec, Prepared, SnapshotInfo, SnapshotKind,
    chain_ids, resolve,
};
use crate::oci::{Digest, Hasher, Image, Manifest, media};

/// Errors of an unpack.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the image failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// A layer could not be applied.
    #[error("layer {digest}: {source}")]
    Layer {
        /// The layer blob.
        digest: Digest,
        /// Why.
        #[source]
        source: ExtractError,
    },
    /// The layer store failed.
    #[error(transparent)]
    Store(#[from] LayerStoreError),
    /// The image is not something rumoci can unpack.
    #[error("{0}")]
    Invalid(String),
    /// Filesystem error on the target.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Hashes and counts what passes through.
struct DiffIdReader<R> {
    inner: R,
    hasher: Hasher,
    size: u64,
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Check that `manifest`/`config` describe an unpackable image.
pub fn check_image(manifest: &Manifest, config: &Image) -> Result<(), UnpackError> {
    if manifest.config.media_type != media::CONFIG {
        return Err(UnpackError::Invalid(format!(
            "config {}: unsupported media type {}",
            manifest.config.digest, manifest.config.media_type
        )));
    }
    if config.rootfs.kind != "layers" {
        return Err(UnpackError::Invalid(format!(
            "config {}: rootfs.type is {:?}, not \"layers\"",
            manifest.config.digest, config.rootfs.kind
        )));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(UnpackError::Invalid(format!(
            "config {}: {} diff_ids for {} layers",
            manifest.config.digest,
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    Ok(())
}

/// Extract every layer of the image into the existing directory `rootfs`
/// (the built-in [`InPlace`] store). Returns the sha256 of every regular
/// file.
pub fn unpack_rootfs(
    cas: &dyn Cas,
    manifest: &Manifest,
    config: &Image,
    rootfs: &Path,
    opts: ExtractOptions,
) -> Result<BTreeMap<String, [u8; 32]>, UnpackError> {
    unpack_with_store(cas, &InPlace::new(rootfs), manifest, config, rootfs, opts)
}

/// Apply layer `i` of the image on top of the tree at `root`: read and
/// verify the blob, decompress it, check its diff_id, extract it.
fn apply_one(
    cas: &dyn Cas,
    ex: &mut Extractor,
    root: &Root,
    manifest: &Manifest,
    config: &Image,
    i: usize,
) -> Result<(), UnpackError> {
    let layer = &manifest.layers[i];
    let diff_id = &config.rootfs.diff_ids[i];
    tracing::info!(
        "unpacking layer {} ({}/{})",
        layer.digest,
        i + 1,
        manifest.layers.len()
    );
    let blob = ext::open_verified(cas, layer)?;
    let progress = crate::progress::LayerProgress::new(
        format!("layer {}/{}", i + 1, manifest.layers.len()),
        layer.size,
    );
    let counted = progress.reader(blob);
    let plain = decompressor(&layer.media_type, Box::new(counted))
        .map_err(|e| UnpackError::Invalid(format!("layer {}: {e}", layer.digest)))?;
    let mut reader = DiffIdReader {
        inner: plain,
        hasher: diff_id.algorithm().hasher(),
        size: 0,
    };
    pipelined_apply(ex, root, &mut reader, &layer.digest)?;
    progress.finish();
    let got = reader.hasher.finish();
    if &got != diff_id {
        return Err(UnpackError::Invalid(format!(
            "layer {}: diff_id mismatch: config says {diff_id}, content is {got}",
            layer.digest
        )));
    }
    Ok(())
}

/// The part of a snapshot name that depends on the extraction options:
/// empty for the defaults, else `+` and a short hash of them (an id-mapped
/// or rootless tree differs from a plain one).
fn options_suffix(opts: &ExtractOptions) -> String {
    if opts.uid_map.is_empty() && opts.gid_map.is_empty() && !opts.rootless && !opts.keep_dirlinks {
        return String::new();
    }
    let mut h = crate::oci::Algorithm::Sha256.hasher();
    h.update(format!("{opts:?}").as_bytes());
    let d = h.finish().to_string();
    format!("+{}", &d[d.len() - 16..])
}

/// A key for an active snapshot or view, unique to this process and call.
fn snapshot_key(what: &str) -> String {
    format!(
        "rumoci-{what}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// The newest committed snapshot of the chain being built.
struct Top {
    info: SnapshotInfo,
    /// Its record, once read (or captured in this run).
    record: Option<Record>,
}

impl Top {
    fn record(&mut self, store: &dyn LayerStore) -> Result<&Record, UnpackError> {
        if self.record.is_none() {
            let meta = self.info.meta.as_deref().ok_or_else(|| {
                store_err(
                    store,
                    format!("snapshot {}: no record of its tree", self.info.name),
                )
            })?;
            let path = resolve(store.root(), meta).map_err(|e| store_err(store, e))?;
            let rec = Record::read(&path)
                .map_err(|e| store_err(store, format!("snapshot {}: {e}", self.info.name)))?;
            self.record = Some(rec);
        }
        self.record
            .as_ref()
            .ok_or_else(|| store_err(store, "record vanished".into()))
    }
}

fn store_err(store: &dyn LayerStore, reason: String) -> UnpackError {
    UnpackError::Store(LayerStoreError::Store {
        store: store.name(),
        op: "unpack".into(),
        reason,
    })
}

/// Perform `mounts` (paths relative to the store) so that the tree of
/// `top` appears in the empty directory `dst`. Every entry copied is checked
/// against `top`'s record first.
fn perform_mounts(
    store: &dyn LayerStore,
    mounts: &[MountSpec],
    top: Option<&mut Top>,
    dst: &Path,
    opts: &ExtractOptions,
) -> Result<(), UnpackError> {
    if mounts.is_empty() {
        return Ok(());
    }
    let top = top.ok_or_else(|| store_err(store, "mounts for a snapshot without parent".into()))?;
    let name = top.info.name.clone();
    let [m] = mounts else {
        return Err(store_err(
            store,
            format!(
                "{} mounts for {name}: only one copy mount is supported",
                mounts.len()
            ),
        ));
    };
    if m.kind != "copy" {
        return Err(store_err(
            store,
            format!(
                "mount kind {:?} for {name}: rumoci performs only \"copy\"",
                m.kind
            ),
        ));
    }
    let src = resolve(store.root(), &m.source).map_err(|e| store_err(store, e))?;
    let record = top.record(store)?;
    let mut seen = 0usize;
    let mut check = |rel: &str, st: &rustix::fs::Stat| {
        seen += 1;
        record.check(rel, st)
    };
    crate::layer::copy::copy_tree(
        &src,
        dst,
        &crate::layer::copy::CopyOptions {
            ignore_chown_errors: opts.rootless,
            ignore_xattr_errors: opts.rootless,
        },
        &mut check,
    )
    .map_err(|e| store_err(store, format!("snapshot {name}: {e}")))?;
    if seen != record.len() {
        return Err(store_err(
            store,
            format!(
                "snapshot {name}: {} of its {} recorded entries are missing",
                record.len().saturating_sub(seen),
                record.len()
            ),
        ));
    }
    Ok(())
}

/// Unpack the image into the existing, empty directory `rootfs` through a
/// layer store (see [`crate::layer_store`]): layers the store has already
/// are not read at all, new ones are extracted into the store and committed
/// under their chain id, and the chain is then made the root filesystem.
/// Returns the sha256 of every regular file of the result.
pub fn unpack_with_store(
    cas: &dyn Cas,
    store: &dyn LayerStore,
    manifest: &Manifest,
    config: &Image,
    rootfs: &Path,
    opts: ExtractOptions,
) -> Result<BTreeMap<String, [u8; 32]>, UnpackError> {
    check_image(manifest, config)?;
    let _lock = store.lock()?;
    let n = manifest.layers.len();
    let suffix = options_suffix(&opts);
    let names: Vec<String> = chain_ids(&config.rootfs.diff_ids)
        .iter()
        .map(|c| format!("{c}{suffix}"))
        .collect();
    // the deepest chain the store has already
    let mut top: Option<Top> = None;
    let mut start = 0;
    for i in (0..n).rev() {
        if let Some(info) = store.stat(&names[i])?
            && info.kind == SnapshotKind::Committed
        {
            tracing::info!(
                "layers 1-{} cached in {} as {}",
                i + 1,
                store.name(),
                info.name
            );
            top = Some(Top { info, record: None });
            start = i + 1;
            break;
        }
    }
    let mut ex = Extractor::new(opts.clone());
    // whether `ex.digests` describes the tree of `top`
    let mut fresh = false;
    for (i, name) in names.iter().enumerate().skip(start) {
        let key = snapshot_key("layer");
        let parent = top.as_ref().map(|t| t.info.name.clone());
        let target = match store.prepare(&key, parent.as_deref(), Some(name))? {
            Prepared::Cached(info) => {
                tracing::info!("layer {}/{n} cached in {}", i + 1, store.name());
                top = Some(Top { info, record: None });
                fresh = false;
                continue;
            }
            Prepared::Fresh(t) => t,
        };
        let res = (|| -> Result<Option<Record>, UnpackError> {
            let dir = resolve(store.root(), &target.dir).map_err(|e| store_err(store, e))?;
            if !target.mounts.is_empty() {
                perform_mounts(store, &target.mounts, top.as_mut(), &dir, &opts)?;
                if !fresh && let Some(t) = top.as_mut() {
                    ex.digests = t.record(store)?.digests();
                }
            }
            let root = Root::open(&dir).map_err(|source| UnpackError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            apply_one(cas, &mut ex, &root, manifest, config, i)?;
            let Some(meta) = &target.meta else {
                return Ok(None);
            };
            let rec =
                Record::capture(&dir, &ex.digests).map_err(|e| store_err(store, e.to_string()))?;
            let path = resolve(store.root(), meta).map_err(|e| store_err(store, e))?;
            rec.write(&path)
                .map_err(|e| store_err(store, e.to_string()))?;
            Ok(Some(rec))
        })();
        let record = match res {
            Ok(r) => r,
            Err(e) => {
                if let Err(re) = store.remove(&key) {
                    tracing::warn!("{re}");
                }
                return Err(e);
            }
        };
        let diff_id = &config.rootfs.diff_ids[i];
        match store.commit(name, &key, diff_id) {
            Ok(info) => {
                top = Some(Top { info, record });
                fresh = true;
            }
            Err(LayerStoreError::AlreadyExists { .. }) => {
                // committed meanwhile by someone else: use theirs
                store.remove(&key)?;
                let info = store
                    .stat(name)?
                    .ok_or_else(|| store_err(store, format!("snapshot {} vanished", name)))?;
                top = Some(Top { info, record: None });
                fresh = false;
            }
            Err(e) => {
                if let Err(re) = store.remove(&key) {
                    tracing::warn!("{re}");
                }
                return Err(e.into());
            }
        }
    }
    let Some(mut top) = top else {
        // no layers: an empty root filesystem
        return Ok(BTreeMap::new());
    };
    let key = snapshot_key("view");
    let mounts = store.view(&key, &top.info.name)?;
    let res = perform_mounts(store, &mounts, Some(&mut top), rootfs, &opts);
    if let Err(e) = store.remove(&key) {
        tracing::warn!("{e}");
    }
    res?;
    if fresh || mounts.is_empty() {
        Ok(ex.digests)
    } else {
        Ok(top.record(store)?.digests())
    }
}

/// Chunks handed from the reading thread to the extracting thread.
const CHUNK: usize = 1 << 20;
/// Chunks in flight (bounds memory to a few MiB).
const IN_FLIGHT: usize = 4;

/// Reads chunks from the channel as one stream.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Emptied chunks go back to the reading thread for reuse (no fresh,
    /// zero-filled allocation per chunk).
    spent: std::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    let old = std::mem::replace(&mut self.buf, b);
                    if old.capacity() >= CHUNK {
                        let _ = self.spent.send(old);
                    }
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Apply one layer with reading, verifying, decompressing and diff_id
/// hashing on this thread and tar parsing, file writing and file hashing on
/// another, so the two halves overlap on two cores. The stream is read to
/// its very end (trailing bytes count for the diff_id, and the end is where
/// the blob digest is checked), whatever the extractor does.
fn pipelined_apply(
    ex: &mut Extractor,
    root: &Root,
    reader: &mut dyn Read,
    digest: &Digest,
) -> Result<(), UnpackError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(IN_FLIGHT);
    let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut r = ChannelReader {
                rx,
                spent: spent_tx,
                buf: Vec::new(),
                pos: 0,
            };
            let res = ex.apply_layer(root, &mut r);
            // keep the reader going to the end, whatever happened
            let trailing = std::io::copy(&mut r, &mut std::io::sink()).unwrap_or(0);
            (res, trailing)
        });
        let mut read_err = None;
        loop {
            // a recycled chunk was full (len CHUNK): resizing costs nothing
            let mut chunk = spent_rx.try_recv().unwrap_or_default();
            chunk.resize(CHUNK, 0);
            let mut filled = 0;
            while filled < CHUNK {
                match reader.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        read_err = Some(e);
                        break;
                    }
                }
            }
            if filled == 0 || read_err.is_some() {
                break;
            }
            chunk.truncate(filled);
            if tx.send(chunk).is_err() {
                // the extractor stopped early (an error): finish reading so
                // that a corrupt blob is reported as such
                if let Err(e) = std::io::copy(reader, &mut std::io::sink()) {
                    read_err = Some(e);
                }
                break;
            }
        }
        drop(tx);
        let (res, trailing) = worker
            .join()
            .map_err(|_| UnpackError::Invalid(format!("layer {digest}: extractor panicked")))?;
        // a bad blob (digest, size, compression) explains any extraction error
        if let Some(e) = read_err {
            return Err(UnpackError::Cas(CasError::io(format!("layer {digest}"), e)));
        }
        res.map_err(|source| UnpackError::Layer {
            digest: digest.clone(),
            source,
        })?;
        if trailing > 0 {
            tracing::debug!("layer {digest}: {trailing} bytes after the end of the archive");
        }
        Ok(())
    })
}

/// Check one layer blob stream (already size/digest verified as it is
/// read): it must decompress by its media type to content whose hash is
/// `diff_id`. Used by `verify`.
pub fn check_layer(
    desc: &crate::oci::Descriptor,
    diff_id: Option<&Digest>,
    blob: &mut dyn Read,
) -> Result<(), String> {
    let plain = decompressor(&desc.media_type, Box::new(blob))?;
    let alg = diff_id.map_or(crate::oci::Algorithm::Sha256, Digest::algorithm);
    let mut reader = DiffIdReader {
        inner: plain,
        hasher: alg.hasher(),
        size: 0,
    };
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| format!("layer {}: {e}", desc.digest))?;
    let got = reader.hasher.finish();
    match diff_id {
        Some(d) if *d != got => Err(format!(
            "layer {}: diff_id mismatch: config says {d}, content is {got}",
            desc.digest
        )),
        Some(_) => Ok(()),
        None => Err(format!("layer {}: no diff_id in the config", desc.digest)),
    }
}
