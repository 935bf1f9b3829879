//! Image → root filesystem: resolve the manifest's layers, verify each blob
//! (size, digest), decompress by media type, check the uncompressed stream
//! against the config's diff_id, and apply it with the extractor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cas::{Cas, CasError};
use crate::fs::root::Root;
use crate::layer::compress::decompressor;
use crate::layer::extract::{ExtractError, ExtractOptions, Extractor, WhiteoutMode};
use crate::layer::overlayfs::{Lower, TRUSTED_PREFIX, USER_PREFIX};
use crate::layer_store::record::Record;
use crate::layer_store::{
    InPlace, LayerStore, LayerStoreError, Mount, Prepared, SnapshotInfo, SnapshotKind, chain_ids,
    describe_mounts, resolve, snapshot_key,
};
use crate::oci::{Digest, Hasher, Image, Manifest, media};
use crate::path::{BStr, BString};
use crate::readahead::ReadAhead;

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
    #[error("{}: {source}", crate::show::name(path))]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Check that `manifest`/`config` describe an unpackable image (OCI or
/// Docker schema 2).
pub fn check_image(manifest: &Manifest, config: &Image) -> Result<(), UnpackError> {
    if !media::is_config(&manifest.config.media_type) {
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
) -> Result<BTreeMap<BString, [u8; 32]>, UnpackError> {
    unpack_with_store(cas, &InPlace::new(rootfs), manifest, config, rootfs, opts)
}

/// The media type decompression is chosen by: the OCI twin of a Docker
/// layer type ([`media::oci_layer_type`]), else the type itself (an
/// unknown one is refused by the decompressor, naming it).
pub(crate) fn layer_format(media_type: &str) -> &str {
    media::oci_layer_type(media_type).unwrap_or(media_type)
}

/// Apply layer `i` of the image on top of the tree at `root`: read and
/// verify the blob, decompress it, check its diff_id, extract it.
fn apply_one(
    ahead: &mut ReadAhead<'_, '_>,
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
    let blob = match ahead.open(i) {
        Err(CasError::NotFound(_)) if media::is_foreign_layer(&layer.media_type) => {
            return Err(UnpackError::Invalid(format!(
                "layer {}: a foreign layer ({}) that is not in the store; rumoci does not fetch it from its urls",
                layer.digest, layer.media_type
            )));
        }
        r => r?,
    };
    let progress = crate::progress::Item::start(
        &format!("layer {}/{}", i + 1, manifest.layers.len()),
        Some(layer.size),
        crate::progress::Unit::Bytes,
    );
    let counted = progress.reader(blob);
    let plain = decompressor(layer_format(&layer.media_type), Box::new(counted))
        .map_err(|e| UnpackError::Invalid(format!("layer {}: {e}", layer.digest)))?;
    let mut plain = plain;
    let hasher = diff_id.algorithm().hasher();
    let got = pipelined_apply(ex, root, &mut plain, hasher, &layer.digest)?;
    progress.finish();
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
/// or rootless tree differs from a plain one). The whiteout form is not
/// part of it: the store decides it (by the mounts it answers), the same
/// for all its snapshots.
fn options_suffix(opts: &ExtractOptions) -> String {
    if opts.uid_map.is_empty() && opts.gid_map.is_empty() && !opts.rootless && !opts.keep_dirlinks {
        return String::new();
    }
    let opts = ExtractOptions {
        whiteout: WhiteoutMode::Apply,
        ..opts.clone()
    };
    let mut h = crate::oci::Algorithm::Sha256.hasher();
    h.update(format!("{opts:?}").as_bytes());
    let d = h.finish().to_string();
    format!("+{}", &d[d.len() - 16..])
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
            let path = resolve(store.root(), meta).map_err(|e| store_err(store, e.to_string()))?;
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

/// Copy the committed tree `src` (relative to the store: the tree of
/// `top`) into the empty directory `dst`. Every entry copied is checked
/// against `top`'s record first.
fn copy_snapshot(
    store: &dyn LayerStore,
    src: &str,
    top: &mut Top,
    dst: &Path,
    opts: &ExtractOptions,
) -> Result<(), UnpackError> {
    let name = top.info.name.clone();
    let src = resolve(store.root(), src).map_err(|e| store_err(store, e.to_string()))?;
    let record = top.record(store)?;
    let mut seen = 0usize;
    let progress = crate::progress::Item::start(
        &format!("copy snapshot {}", crate::show::name(&name)),
        Some(record.len() as u64),
        crate::progress::Unit::Objects,
    );
    let mut check = |rel: &BStr, st: &rustix::fs::Stat| {
        seen += 1;
        progress.advance(1);
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
    record
        .check_count(seen)
        .map_err(|e| store_err(store, format!("snapshot {name}: {e}")))
}

/// Unpack the image into the existing, empty directory `rootfs` through a
/// layer store (see [`crate::layer_store`]): layers the store has already
/// are not read at all, new ones are extracted into the store and committed
/// under their chain id, and the chain is then made the root filesystem.
/// Returns the sha256 of every regular file of the result. A store that
/// answers overlay mounts (layers kept alone, in overlayfs form) is
/// refused at its first such answer: its chains can only be mounted (see
/// [`unpack_chain`]).
pub fn unpack_with_store(
    cas: &dyn Cas,
    store: &dyn LayerStore,
    manifest: &Manifest,
    config: &Image,
    rootfs: &Path,
    opts: ExtractOptions,
) -> Result<BTreeMap<BString, [u8; 32]>, UnpackError> {
    Ok(unpack_layers(cas, store, manifest, config, rootfs, opts, false)?.digests)
}

/// What an unpack did with one layer of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerUnpack {
    /// The layer store had it already (committed under its chain id): the
    /// layer was not read from the image store.
    Cached,
    /// The layer was read from the image store (fetched, when the store is
    /// a registry) and extracted.
    Extracted,
}

/// What [`unpack_chain`] made.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// The sha256 of every regular file of the result.
    pub digests: BTreeMap<BString, [u8; 32]>,
    /// What was done with each layer, bottom first.
    pub layers: Vec<LayerUnpack>,
    /// The store answered an overlay view: the layer directories
    /// (absolute, topmost first, each checked against rumoci's record of
    /// it) to mount as the root filesystem; `None`: the tree is in
    /// `rootfs`.
    pub lowerdirs: Option<Vec<PathBuf>>,
}

/// The layer directory `rel` of an overlay mount a store answered,
/// beneath `root_abs` (the store directory, canonical): relative, without
/// `..`, never through a symlink (the mount would follow it), a directory.
fn lower_dir(store: &dyn LayerStore, root_abs: &Path, rel: &str) -> Result<PathBuf, UnpackError> {
    let p = resolve(root_abs, rel).map_err(|e| store_err(store, e.to_string()))?;
    if rel.is_empty() {
        return Err(store_err(store, "empty lower directory".into()));
    }
    let mut at = root_abs.to_path_buf();
    for c in Path::new(rel).components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(store_err(
                    store,
                    format!("lower directory {rel:?} is a symlink or lies beneath one"),
                ));
            }
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(store_err(
                    store,
                    format!("lower directory {rel:?} is not a directory"),
                ));
            }
            Err(e) => {
                return Err(store_err(store, format!("lower directory {rel:?}: {e}")));
            }
        }
    }
    Ok(p)
}

/// rumoci's record of committed layer `idx` (cached in `records`).
fn layer_record<'a>(
    store: &dyn LayerStore,
    names: &[String],
    idx: usize,
    records: &'a mut HashMap<usize, Record>,
) -> Result<&'a Record, UnpackError> {
    if let std::collections::hash_map::Entry::Vacant(v) = records.entry(idx) {
        let info = store
            .stat(&names[idx])?
            .ok_or_else(|| store_err(store, format!("snapshot {} vanished", names[idx])))?;
        let mut top = Top { info, record: None };
        let rec = top.record(store)?.clone();
        v.insert(rec);
    }
    records
        .get(&idx)
        .ok_or_else(|| store_err(store, "record vanished".into()))
}

/// The form a store keeps a chain's layers in, as its mounts say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Whole trees: no mount or a copy mount; whiteouts applied.
    Plain,
    /// Each layer alone, in overlayfs form: overlay mounts.
    Overlay,
}

impl Form {
    /// The form of one `prepare` or `view` answer, if it is one rumoci
    /// takes: no mount, one copy mount or one overlay mount.
    fn of(mounts: &[Mount]) -> Option<Form> {
        match mounts {
            [] | [Mount::Copy(_)] => Some(Form::Plain),
            [Mount::Overlay(_)] => Some(Form::Overlay),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Form::Plain => "whole trees (no mount or copy mounts)",
            Form::Overlay => "overlayfs layers (overlay mounts)",
        }
    }
}

/// What one unpack learns about the store's chain as it goes: the form of
/// its layers (from the first answer; every later one must agree) and the
/// layer directories already checked.
struct Chain<'a> {
    store: &'a dyn LayerStore,
    /// The snapshot name of each layer (chain id and options suffix).
    names: Vec<String>,
    /// The caller mounts a chain of overlayfs layers (a bundle's rootfs);
    /// `false`: the tree must end up in the rootfs directory.
    mountable: bool,
    keep_dirlinks: bool,
    form: Option<Form>,
    /// The store directory, canonical (lower directories are mounted by
    /// absolute path), once an overlay mount was answered.
    root_abs: Option<PathBuf>,
    /// Layer directories checked against their records in this unpack.
    verified: HashSet<PathBuf>,
    /// Records of committed layers read (or captured) so far, by index.
    records: HashMap<usize, Record>,
}

impl Chain<'_> {
    /// Take `what`'s answer `mounts` (of form `form`): the first answer
    /// sets the chain's form, every later one must agree. An overlay mount
    /// is refused when the chain cannot be mounted, and with
    /// `--keep-dirlinks`.
    fn enter(&mut self, form: Form, what: &str, mounts: &[Mount]) -> Result<(), UnpackError> {
        if form == Form::Overlay {
            if !self.mountable {
                return Err(store_err(
                    self.store,
                    format!(
                        "{what} answered {}: layers in overlayfs form can only be mounted as a bundle's rootfs (rumoci unpack), not extracted into a directory",
                        describe_mounts(mounts)
                    ),
                ));
            }
            if self.keep_dirlinks {
                return Err(UnpackError::Invalid(format!(
                    "--keep-dirlinks cannot be used with an overlay layer store ({} answered an overlay mount)",
                    self.store.name()
                )));
            }
        }
        match self.form {
            Some(f) if f != form => Err(store_err(
                self.store,
                format!(
                    "{what} answered {}, but this chain's other layers are {}: a store keeps every layer in one form",
                    describe_mounts(mounts),
                    f.describe()
                ),
            )),
            _ => {
                self.form = Some(form);
                Ok(())
            }
        }
    }

    /// The layer directories `dirs` (topmost first) of an overlay mount
    /// `what` answered for the chain of layers `0..len`: each beneath the
    /// store ([`lower_dir`]), as many as layers, and each checked once per
    /// unpack against rumoci's record of its layer (every entry: inode,
    /// ctime; nothing added or missing). Absolute paths.
    fn lowers(
        &mut self,
        dirs: &[String],
        len: usize,
        what: &str,
    ) -> Result<Vec<PathBuf>, UnpackError> {
        let root_abs = match &self.root_abs {
            Some(r) => r.clone(),
            None => {
                let r =
                    std::fs::canonicalize(self.store.root()).map_err(|source| UnpackError::Io {
                        path: self.store.root().display().to_string(),
                        source,
                    })?;
                self.root_abs = Some(r.clone());
                r
            }
        };
        let mut out = Vec::with_capacity(dirs.len());
        for rel in dirs {
            out.push(lower_dir(self.store, &root_abs, rel)?);
        }
        if out.len() != len {
            return Err(store_err(
                self.store,
                format!(
                    "{what}: {} lower directories for a chain of {len} layers",
                    out.len()
                ),
            ));
        }
        for (k, d) in out.iter().enumerate() {
            let idx = len - 1 - k;
            if self.verified.contains(d) {
                continue;
            }
            let rec = layer_record(self.store, &self.names, idx, &mut self.records)?;
            rec.verify(d).map_err(|e| {
                store_err(
                    self.store,
                    format!("snapshot {} ({}): {e}", self.names[idx], d.display()),
                )
            })?;
            self.verified.insert(d.clone());
        }
        Ok(out)
    }
}

/// [`unpack_with_store`] for any store, the form of the layers driven by
/// the mounts the store answers ([`Mount`]): for a new layer, `prepare`
/// answering no mount or a copy of the parent's tree means a plain
/// extraction (whiteouts applied), an overlay mount of the parent chain's
/// directories an extraction of the layer alone, in overlayfs form; a
/// `view` answering a copy is copied into `rootfs`, an overlay mount is
/// returned in [`Unpacked::lowerdirs`] for the caller to mount.
pub fn unpack_chain(
    cas: &dyn Cas,
    store: &dyn LayerStore,
    manifest: &Manifest,
    config: &Image,
    rootfs: &Path,
    opts: ExtractOptions,
) -> Result<Unpacked, UnpackError> {
    unpack_layers(cas, store, manifest, config, rootfs, opts, true)
}

/// Fetch the config of `manifest` (manifest `desc` in `cas`), then run
/// `unpack` with it and the image's layers read through a [`ReadAhead`].
/// With `every_layer` (nothing will come from a layer store's cache), a
/// store that reads over the network is asked for the first layer before
/// the config, so that its bytes come while the config is fetched.
pub(crate) fn config_then_layers<T, E: From<CasError>>(
    cas: &dyn Cas,
    desc: &crate::oci::Descriptor,
    manifest: &Manifest,
    every_layer: bool,
    unpack: impl FnOnce(&mut ReadAhead<'_, '_>, &Image) -> Result<T, E>,
) -> Result<T, E> {
    std::thread::scope(|s| {
        let mut ahead = ReadAhead::new(s, cas, &manifest.layers);
        if every_layer {
            ahead.start_first()?;
        }
        let config = crate::cas::ext::fetch_image_config(cas, desc, manifest)?;
        unpack(&mut ahead, &config)
    })
}

/// [`unpack_chain`]; `mountable`: whether the caller can mount a chain of
/// overlayfs layers (else an overlay mount is refused at once). Layers are
/// read ahead when `cas` reads over the network ([`ReadAhead`]).
fn unpack_layers(
    cas: &dyn Cas,
    store: &dyn LayerStore,
    manifest: &Manifest,
    config: &Image,
    rootfs: &Path,
    opts: ExtractOptions,
    mountable: bool,
) -> Result<Unpacked, UnpackError> {
    std::thread::scope(|s| {
        let mut ahead = ReadAhead::new(s, cas, &manifest.layers);
        unpack_layers_from(&mut ahead, store, manifest, config, rootfs, opts, mountable)
    })
}

/// [`unpack_layers`], the layers read through `ahead`.
pub(crate) fn unpack_layers_from(
    ahead: &mut ReadAhead<'_, '_>,
    store: &dyn LayerStore,
    manifest: &Manifest,
    config: &Image,
    rootfs: &Path,
    opts: ExtractOptions,
    mountable: bool,
) -> Result<Unpacked, UnpackError> {
    check_image(manifest, config)?;
    let _lock = store.lock()?;
    let n = manifest.layers.len();
    if n == 0 {
        // no layer: the root filesystem is the empty directory itself
        epoch_times(rootfs)?;
    }
    let suffix = options_suffix(&opts);
    let mut chain = Chain {
        store,
        names: chain_ids(&config.rootfs.diff_ids)
            .iter()
            .map(|c| format!("{c}{suffix}"))
            .collect(),
        mountable,
        keep_dirlinks: opts.keep_dirlinks,
        form: None,
        root_abs: None,
        verified: HashSet::new(),
        records: HashMap::new(),
    };
    let prefix = if opts.rootless {
        USER_PREFIX
    } else {
        TRUSTED_PREFIX
    };
    let form_opts = |form: Form| ExtractOptions {
        whiteout: match form {
            Form::Plain => WhiteoutMode::Apply,
            Form::Overlay => WhiteoutMode::Overlay {
                xattr_prefix: prefix,
            },
        },
        ..opts.clone()
    };
    // the deepest chain the store has already
    let mut top: Option<Top> = None;
    let mut start = 0;
    for i in (0..n).rev() {
        if let Some(info) = store.stat(&chain.names[i])?
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
    let mut done = vec![LayerUnpack::Cached; n];
    // made at the first layer extracted, in the form the store answered
    let mut ex: Option<Extractor> = None;
    // whether `ex.digests` describes the tree of `top`
    let mut fresh = false;
    // whether `top` was extracted straight into `rootfs`
    let mut in_place = false;
    for i in start..n {
        let name = chain.names[i].clone();
        let key = snapshot_key("layer");
        let parent = top.as_ref().map(|t| t.info.name.clone());
        let target = match store.prepare(&key, parent.as_deref(), Some(&name))? {
            Prepared::Cached(info) => {
                tracing::info!("layer {}/{n} cached in {}", i + 1, store.name());
                top = Some(Top { info, record: None });
                fresh = false;
                in_place = false;
                continue;
            }
            Prepared::Fresh(t) => t,
        };
        let res = (|| -> Result<(Option<Record>, PathBuf), UnpackError> {
            let dir =
                resolve(store.root(), &target.dir).map_err(|e| store_err(store, e.to_string()))?;
            let what = format!("prepare of layer {}/{n}", i + 1);
            let form = Form::of(&target.mounts).ok_or_else(|| {
                store_err(
                    store,
                    format!(
                        "{what} answered {}: rumoci takes no mount, one copy mount or one overlay mount",
                        describe_mounts(&target.mounts)
                    ),
                )
            })?;
            chain.enter(form, &what, &target.mounts)?;
            if i == 0 {
                epoch_times(&dir)?;
            }
            let ex = ex.get_or_insert_with(|| Extractor::new(form_opts(form)));
            match target.mounts.as_slice() {
                [Mount::Overlay(dirs)] => {
                    // `dir` is an overlayfs layer over the parent chain
                    let lowers = chain.lowers(dirs, i, &what)?;
                    ex.digests.clear();
                    let refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
                    ex.set_lower(
                        Lower::open(&refs, prefix).map_err(|source| UnpackError::Io {
                            path: store.root().display().to_string(),
                            source,
                        })?,
                    );
                    if let Some(top) = lowers.first() {
                        inherit_root(top, &dir, opts.rootless)?;
                    }
                }
                [Mount::Copy(src)] => {
                    let t = top.as_mut().ok_or_else(|| {
                        store_err(
                            store,
                            format!(
                                "{what} answered {} for a base layer: there is no parent to copy",
                                describe_mounts(&target.mounts)
                            ),
                        )
                    })?;
                    copy_snapshot(store, src, t, &dir, &opts)?;
                    if !fresh {
                        let rec = t.record(store)?;
                        ex.digests = rec.digests();
                        ex.set_restricted(rec.restricted().clone());
                    }
                }
                _ => {}
            }
            // an unprivileged owner must read the snapshot again (to copy
            // it): its restricted directories stay open, their modes go in
            // the record and are set on the copy
            ex.keep_restricted_open(target.meta.is_some() && form == Form::Plain);
            let root = Root::open(&dir).map_err(|source| UnpackError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            apply_one(ahead, ex, &root, manifest, config, i)?;
            let Some(meta) = &target.meta else {
                return Ok((None, dir));
            };
            let rec = Record::capture(&dir, &ex.digests)
                .map_err(|e| store_err(store, e.to_string()))?
                .with_restricted(ex.restricted().clone());
            let path = resolve(store.root(), meta).map_err(|e| store_err(store, e.to_string()))?;
            rec.write(&path)
                .map_err(|e| store_err(store, e.to_string()))?;
            Ok((Some(rec), dir))
        })();
        let (record, dir) = match res {
            Ok(r) => {
                if let Some(d) = done.get_mut(i) {
                    *d = LayerUnpack::Extracted;
                }
                r
            }
            Err(e) => {
                if let Err(re) = store.remove(&key) {
                    tracing::warn!("{re}");
                }
                return Err(e);
            }
        };
        let diff_id = &config.rootfs.diff_ids[i];
        match store.commit(&name, &key, diff_id) {
            Ok(info) => {
                // ours only once committed: a snapshot committed meanwhile
                // by someone else has its own record
                if let Some(rec) = &record {
                    chain.records.insert(i, rec.clone());
                }
                top = Some(Top { info, record });
                fresh = true;
                in_place = dir == rootfs;
            }
            Err(LayerStoreError::AlreadyExists { .. }) => {
                // committed meanwhile by someone else: use theirs
                store.remove(&key)?;
                let info = store
                    .stat(&name)?
                    .ok_or_else(|| store_err(store, format!("snapshot {} vanished", name)))?;
                top = Some(Top { info, record: None });
                fresh = false;
                in_place = false;
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
        return Ok(Unpacked::default());
    };
    let layers = done;
    let key = snapshot_key("view");
    let mounts = store.view(&key, &top.info.name)?;
    let what = format!("view of {}", top.info.name);
    let res = (|| -> Result<Unpacked, UnpackError> {
        match mounts.as_slice() {
            [Mount::Overlay(dirs)] => {
                chain.enter(Form::Overlay, &what, &mounts)?;
                let dirs = chain.lowers(dirs, n, &what)?;
                // a visible regular file comes from the topmost layer holding it
                let mut digests = BTreeMap::new();
                for idx in 0..n {
                    digests.extend(
                        layer_record(store, &chain.names, idx, &mut chain.records)?.digests(),
                    );
                }
                Ok(Unpacked {
                    digests,
                    layers,
                    lowerdirs: Some(dirs),
                })
            }
            [Mount::Copy(src)] => {
                chain.enter(Form::Plain, &what, &mounts)?;
                copy_snapshot(store, src, &mut top, rootfs, &opts)?;
                // the copy gets the real modes of the directories the store
                // keeps open for an unprivileged owner
                let restricted = top.record(store)?.restricted().clone();
                if !restricted.is_empty() {
                    let root = Root::open(rootfs).map_err(|source| UnpackError::Io {
                        path: rootfs.display().to_string(),
                        source,
                    })?;
                    crate::layer::extract::close_modes(&root, &restricted);
                }
                let digests = match ex.take() {
                    Some(ex) if fresh => ex.digests,
                    _ => top.record(store)?.digests(),
                };
                Ok(Unpacked {
                    digests,
                    layers,
                    lowerdirs: None,
                })
            }
            // the chain was extracted where the rootfs is (the built-in
            // store): nothing to do
            [] if in_place => Ok(Unpacked {
                digests: ex.take().map(|ex| ex.digests).unwrap_or_default(),
                layers,
                lowerdirs: None,
            }),
            other => Err(store_err(
                store,
                format!(
                    "{what} answered {}: rumoci takes one copy mount or one overlay mount",
                    describe_mounts(other)
                ),
            )),
        }
    })();
    if let Err(e) = store.remove(&key) {
        tracing::warn!("{e}");
    }
    res
}

/// Set the access and modification times of the directory `dir` to the
/// Unix epoch, as umoci does with the root of every unpack before its first
/// layer: a layer without a `./` entry (most images built by other tools)
/// then leaves the root's times at 0 instead of the time of the unpack, and
/// unpacks are repeatable. Skipped (with a note in the log) where the
/// caller may not change them (a root owned by someone else).
fn epoch_times(dir: &Path) -> Result<(), UnpackError> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let t = Timestamps {
        last_access: zero,
        last_modification: zero,
    };
    match rustix::fs::utimensat(CWD, dir, &t, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(e @ (rustix::io::Errno::PERM | rustix::io::Errno::ACCESS)) => {
            tracing::debug!("{}: root times left as they are: {e}", dir.display());
            Ok(())
        }
        Err(e) => Err(UnpackError::Io {
            path: dir.display().to_string(),
            source: e.into(),
        }),
    }
}

/// Give a new layer's root directory the metadata of the root beneath it
/// (overlayfs shows the topmost root's metadata; a layer without a `./`
/// entry must not change it).
fn inherit_root(lower_top: &Path, dir: &Path, rootless: bool) -> Result<(), UnpackError> {
    crate::layer::overlayfs::copy_dir_meta(lower_top, dir, rootless).map_err(|(p, e)| {
        UnpackError::Io {
            path: p.display().to_string(),
            source: e.into(),
        }
    })
}

/// Apply one layer with reading, verifying and decompressing on this
/// thread and diff_id hashing, tar parsing, file writing and file hashing
/// on another, so the two halves overlap on two cores (they take about the
/// same time: inflating against the second sha256 pass and the writes).
/// The stream is read to its very end (trailing bytes count for the
/// diff_id, and the end is where the blob digest is checked), whatever the
/// extractor does. Returns the diff_id `hasher` computed over all of it.
fn pipelined_apply(
    ex: &mut Extractor,
    root: &Root,
    reader: &mut dyn Read,
    hasher: Hasher,
    digest: &Digest,
) -> Result<Digest, UnpackError> {
    let (pump, mut r) = crate::layer::pipe::channel_pair(Some(hasher));
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let res = ex.apply_layer(root, &mut r);
            // keep the reader going to the end, whatever happened
            let trailing = std::io::copy(&mut r, &mut std::io::sink()).unwrap_or(0);
            (res, trailing, r)
        });
        let read_err = pump.pump(reader).err();
        let (res, trailing, r) = worker
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
        r.digest().ok_or_else(|| {
            UnpackError::Invalid(format!("layer {digest}: the diff_id was not hashed"))
        })
    })
}

/// Check one layer blob stream (already size/digest verified as it is
/// read): it must decompress by its media type to content whose hash is
/// `diff_id`. Used by `verify`.
pub fn check_layer(
    desc: &crate::oci::Descriptor,
    diff_id: Option<&Digest>,
    blob: &mut dyn Read,
) -> Result<(), crate::Error> {
    use crate::{Error, ErrorKind};
    let mut plain = decompressor(layer_format(&desc.media_type), Box::new(blob))?;
    let alg = diff_id.map_or(crate::oci::Algorithm::Sha256, Digest::algorithm);
    // inflated here, hashed on another thread
    let got = crate::layer::pipe::hash_on_thread(&mut plain, alg.hasher())
        .map_err(|e| Error::msg(ErrorKind::of_io(&e), format!("layer {}: {e}", desc.digest)))?;
    match diff_id {
        Some(d) if *d != got => Err(Error::msg(
            ErrorKind::Integrity,
            format!(
                "layer {}: diff_id mismatch: config says {d}, content is {got}",
                desc.digest
            ),
        )),
        Some(_) => Ok(()),
        None => Err(Error::invalid(format!(
            "layer {}: no diff_id in the config",
            desc.digest
        ))),
    }
}

impl crate::rootfs::UnpackError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::rootfs::UnpackError as E;
        match self {
            E::Cas(c) => c.kind(),
            E::Layer { source, .. } => source.kind(),
            E::Store(s) => s.kind(),
            E::Invalid(_) => crate::error::ErrorKind::InvalidInput,
            E::Io { source, .. } => crate::error::ErrorKind::of_io(source),
        }
    }
}

rumoci_core::wraps!(crate::rootfs::UnpackError);

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A store answering `prepare` (for a chain it has not cached) and
    /// `view` (for one it has) with fixed mounts, recording the calls.
    struct Fake {
        root: PathBuf,
        cached: bool,
        prepared: Vec<Mount>,
        view: Vec<Mount>,
        calls: RefCell<Vec<String>>,
    }

    impl LayerStore for Fake {
        fn name(&self) -> String {
            "fake".into()
        }
        fn root(&self) -> &Path {
            &self.root
        }
        fn stat(&self, name: &str) -> Result<Option<SnapshotInfo>, LayerStoreError> {
            Ok(self.cached.then(|| SnapshotInfo {
                name: name.into(),
                parent: None,
                kind: SnapshotKind::Committed,
                diff_id: None,
                meta: None,
            }))
        }
        fn prepare(
            &self,
            _key: &str,
            _parent: Option<&str>,
            _target: Option<&str>,
        ) -> Result<Prepared, LayerStoreError> {
            self.calls.borrow_mut().push("prepare".into());
            Ok(Prepared::Fresh(crate::layer_store::UnpackTarget {
                dir: "l".into(),
                mounts: self.prepared.clone(),
                meta: Some("m".into()),
            }))
        }
        fn view(&self, _key: &str, _parent: &str) -> Result<Vec<Mount>, LayerStoreError> {
            self.calls.borrow_mut().push("view".into());
            Ok(self.view.clone())
        }
        fn commit(
            &self,
            _name: &str,
            _key: &str,
            _diff_id: &Digest,
        ) -> Result<SnapshotInfo, LayerStoreError> {
            self.calls.borrow_mut().push("commit".into());
            Err(LayerStoreError::Store {
                store: self.name(),
                op: "commit".into(),
                reason: "not expected".into(),
            })
        }
        fn remove(&self, _name: &str) -> Result<(), LayerStoreError> {
            self.calls.borrow_mut().push("remove".into());
            Ok(())
        }
    }

    /// A one-layer image whose blobs are never read (every case fails or
    /// finishes before).
    fn image() -> (Manifest, Image) {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": {"mediaType": media::CONFIG, "digest": d('a'), "size": 2},
            "layers": [{"mediaType": media::LAYER, "digest": d('b'), "size": 10}],
        });
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [d('c')]},
        });
        (
            serde_json::from_value(manifest).expect("manifest"),
            serde_json::from_value(config).expect("config"),
        )
    }

    /// Unpack through `store` (`mountable`: as a bundle would); the error.
    fn fails(store: &Fake, opts: ExtractOptions, mountable: bool) -> String {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cas = crate::cas::dir::DirCas::create(&tmp.path().join("layout")).expect("layout");
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir(&rootfs).expect("mkdir");
        let (m, c) = image();
        let e = unpack_layers(&cas, store, &m, &c, &rootfs, opts, mountable)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            std::fs::read_dir(&rootfs).expect("rootfs").count(),
            0,
            "nothing extracted"
        );
        e
    }

    fn fake(root: &Path, cached: bool, prepared: Vec<Mount>, view: Vec<Mount>) -> Fake {
        std::fs::create_dir_all(root.join("l")).expect("mkdir");
        Fake {
            root: root.to_path_buf(),
            cached,
            prepared,
            view,
            calls: RefCell::new(Vec::new()),
        }
    }

    #[test]
    fn a_rootfs_alone_refuses_the_first_overlay_mount() {
        let tmp = tempfile::tempdir().expect("tempdir");
        // a fresh layer whose prepare answers an overlay mount: refused
        // before anything is extracted, the active snapshot removed
        let s = fake(tmp.path(), false, vec![Mount::Overlay(vec![])], vec![]);
        let e = fails(&s, ExtractOptions::default(), false);
        assert!(
            e.contains("layer store fake: unpack: prepare of layer 1/1 answered [overlay([])]: layers in overlayfs form can only be mounted as a bundle's rootfs"),
            "{e}"
        );
        assert_eq!(*s.calls.borrow(), ["prepare", "remove"]);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("l")).expect("l").count(),
            0
        );
        // a cached chain whose view is an overlay mount: refused too
        let s = fake(
            tmp.path(),
            true,
            vec![],
            vec![Mount::Overlay(vec!["l".into()])],
        );
        let e = fails(&s, ExtractOptions::default(), false);
        assert!(
            e.contains(
                r#"answered [overlay(["l"])]: layers in overlayfs form can only be mounted"#
            ),
            "{e}"
        );
        assert_eq!(*s.calls.borrow(), ["view", "remove"]);
    }

    #[test]
    fn keep_dirlinks_refuses_an_overlay_mount_and_a_view_must_be_one_mount() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = fake(tmp.path(), false, vec![Mount::Overlay(vec![])], vec![]);
        let opts = ExtractOptions {
            keep_dirlinks: true,
            ..ExtractOptions::default()
        };
        let e = fails(&s, opts, true);
        assert!(
            e.contains("--keep-dirlinks cannot be used with an overlay layer store (fake answered an overlay mount)"),
            "{e}"
        );
        // a view of no mount for a chain not extracted in place
        let s = fake(tmp.path(), true, vec![], vec![]);
        let e = fails(&s, ExtractOptions::default(), true);
        assert!(
            e.contains("answered []: rumoci takes one copy mount or one overlay mount"),
            "{e}"
        );
        // a copy mount for a base layer: there is no parent
        let s = fake(tmp.path(), false, vec![Mount::Copy("l".into())], vec![]);
        let e = fails(&s, ExtractOptions::default(), true);
        assert!(
            e.contains(r#"prepare of layer 1/1 answered [copy("l")] for a base layer: there is no parent to copy"#),
            "{e}"
        );
        assert_eq!(*s.calls.borrow(), ["prepare", "remove"]);
    }
}
