//! The builder's API: the entry points the `rumoci` command is made of,
//! to be read top to bottom.
//!
//! 1. Open a store: [`Store::open`] (an OCI layout, built-in driver),
//!    [`Store::create`], or through storage-driver plugins given as
//!    `--driver` spec strings: `Drivers::parse` (crate `rumoci-wasm`, re-exported as `rumoci::image::Drivers`) and [`Store::open_with`]
//!    (feature `wasm`).
//! 2. Read: [`Store::resolve`] (a tag, with the `--platform` rules),
//!    [`Store::tags`], [`Store::stat`], [`Store::verify`].
//! 3. Unpack a tag into a runtime bundle ([`Store::unpack`], optionally
//!    through a layer store: `Drivers::layer_store`), change its rootfs,
//!    and [`Store::repack`] it.
//! 4. Change an image: [`Store::insert`] a host tree, [`Store::configure`]
//!    (env, labels, history…), [`Store::add_layer`], [`Store::mutate`]
//!    for anything else — each a compare-and-swap retag that redoes the
//!    change on top of a concurrent writer's.
//! 5. Tags and the rest: [`Store::tag`], [`Store::remove_tag`],
//!    [`Store::new_image`], [`Store::gc`], [`copy`].
//!
//! Every write takes the store's [`WriteLock`] ([`Store::lock`]) as an
//! argument, so gc can never sweep what a writer has written but not yet
//! tagged. Times default to `SOURCE_DATE_EPOCH` ([`source_date_epoch`],
//! [`default_created`]). Errors are [`crate::Error`]s naming what was being
//! done (`resolve LAYOUT:TAG`, `unpack LAYOUT:TAG into BUNDLE`, …).
//!
//! ```
//! use rumoci_engine::image::{ConfigChange, HistoryEntry, Store};
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("img"))?;
//! let lock = store.lock()?;
//! store.new_image(&lock, "base", None)?;
//! let change = ConfigChange {
//!     env: vec![("PATH".into(), "/bin".into())],
//!     labels: vec![("org.example.step".into(), "1".into())],
//!     history: Some(HistoryEntry::new("configure")),
//!     ..ConfigChange::default()
//! };
//! store.configure(&lock, "base", None, "configured", &change)?;
//! drop(lock);
//! let config = store.config("configured", None)?;
//! assert_eq!(config.config.env, ["PATH=/bin"]);
//! assert_eq!(config.history.len(), 1);
//! assert!(store.verify().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod index;

pub use index::IndexError;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use crate::bundle::repack::{RepackOptions, RepackOutcome};
use crate::cas::check::{Problem, Report};
use crate::cas::copy::{BlobOutcome, CopyOptions, CopyStats};
use crate::cas::gc::GcStats;
use crate::cas::refs;
pub use crate::cas::refs::{DescriptorPath, PlatformSpec};
use crate::cas::{Cas, DirCas, WriteLock, ext};
use crate::error::ResultExt;
pub use crate::layer::extract::ExtractOptions;
pub use crate::layer::idmap::IdMapping;
use crate::layer_store::LayerStore;
pub use crate::mutate::history::{
    HistoryEntry, HistoryError, MtimeClamp, default_created, rfc3339_nano, source_date_epoch,
};
use crate::mutate::{Compression, Mutator};
use crate::oci::{Descriptor, History, Image, Manifest, media};
use crate::path::BString;
pub use crate::rootfs::LayerUnpack;
use crate::show;
use crate::stat::ManifestStat;
use crate::{Error, ErrorKind, Result};

/// What [`Store::unpack`] did.
#[derive(Debug, Clone)]
pub struct UnpackOutcome {
    /// The image unpacked (the manifest the tag resolved to, and the
    /// indexes above it).
    pub path: DescriptorPath,
    /// What was done with each layer, bottom first: taken from the layer
    /// store's cache, or read from the image store and extracted.
    pub layers: Vec<LayerUnpack>,
}

impl UnpackOutcome {
    /// How many layers the layer store had already.
    pub fn cached(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| **l == LayerUnpack::Cached)
            .count()
    }
}

/// An image store: an OCI layout, or a plugin's store, and the name it was
/// opened by (used in errors).
pub struct Store {
    cas: Box<dyn Cas>,
    name: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

impl Store {
    /// Open an existing OCI layout with the built-in directory driver.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let cas = DirCas::open(path).doing(|| format!("open layout {}", show::name(&path)))?;
        Ok(Store::from_cas(Box::new(cas), path))
    }

    /// Create a new, empty OCI layout (the path must not exist) and open it.
    pub fn create(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let cas = DirCas::create(path).doing(|| format!("create layout {}", show::name(&path)))?;
        Ok(Store::from_cas(Box::new(cas), path))
    }

    /// A store over any [`Cas`]; `name` is how errors call it.
    pub fn from_cas(cas: Box<dyn Cas>, name: impl AsRef<Path>) -> Store {
        Store {
            cas,
            name: show::name(&name.as_ref()),
        }
    }

    /// The content store underneath.
    pub fn cas(&self) -> &dyn Cas {
        self.cas.as_ref()
    }

    /// Declare that the command reads only the tags `refs` of this store
    /// and never writes its index ([`Cas::want_refs`]): a registry then
    /// resolves those tags alone instead of listing every tag. Every write
    /// of the index fails from then on.
    pub fn want_refs(&self, refs: &[String]) {
        self.cas.want_refs(refs);
    }

    /// The name errors use for the store (its path, shortened).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Take the writer lock every write needs (gc waits for it).
    pub fn lock(&self) -> Result<WriteLock<'_>> {
        Ok(WriteLock::new(self.cas())?)
    }

    fn check_lock(&self, lock: &WriteLock<'_>) -> Result<()> {
        if lock.is_for(self.cas()) {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "{}: the write lock given is another store's",
                self.name
            )))
        }
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.name)
    }

    /// The manifest `manifest_desc` names and its image configuration.
    fn manifest_and_config(&self, manifest_desc: &Descriptor) -> Result<(Manifest, Image)> {
        let manifest = ext::fetch_manifest(self.cas(), manifest_desc)?;
        let config = ext::fetch_image_config(self.cas(), manifest_desc, &manifest)?;
        Ok((manifest, config))
    }

    /// The tagged `index.json` entries, in order (duplicates possible).
    pub fn tags(&self) -> Result<Vec<(String, Descriptor)>> {
        let index = ext::read_index(self.cas())?;
        Ok(index
            .manifests
            .into_iter()
            .filter_map(|d| d.ref_name().map(|t| (t.to_string(), d.clone())))
            .collect())
    }

    /// Resolve `tag` to a manifest: through nested indexes, choosing the
    /// platform (`None`: the host's, as `--platform` does).
    pub fn resolve(&self, tag: &str, platform: Option<&PlatformSpec>) -> Result<DescriptorPath> {
        refs::resolve(self.cas(), tag, platform)
            .doing(|| format!("resolve {}", self.image(tag)))
            .map_err(|e| e.with_object(self.image(tag)))
    }

    /// Unpack `tag` into a new runtime bundle (`rootfs/`, `config.json`,
    /// the mtree and `umoci.json`), through `layers` if given (a layer
    /// cache or the overlay store), else extracting in place. Returns the
    /// manifest's path and what was done with each layer.
    ///
    /// ```
    /// # use rumoci_engine::image::{ExtractOptions, Store};
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("img"))?;
    /// # store.new_image(&store.lock()?, "base", None)?;
    /// let opts = ExtractOptions::rootless();
    /// let out = store.unpack("base", None, dir.path().join("bundle"), opts, None)?;
    /// assert!(dir.path().join("bundle/rootfs").is_dir());
    /// assert!(out.layers.is_empty()); // a new image has none
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unpack(
        &self,
        tag: &str,
        platform: Option<&PlatformSpec>,
        bundle: impl AsRef<Path>,
        opts: ExtractOptions,
        layers: Option<&dyn LayerStore>,
    ) -> Result<UnpackOutcome> {
        let bundle = bundle.as_ref();
        let path = self.resolve(tag, platform)?;
        let layers = crate::bundle::unpack::unpack_bundle(self.cas(), &path, bundle, opts, layers)
            .doing(|| format!("unpack {} into {}", self.image(tag), show::name(&bundle)))?;
        Ok(UnpackOutcome { path, layers })
    }

    /// Extract the layers of `tag` into `rootfs` alone (no bundle; created
    /// if missing, an existing one is extracted over: `raw unpack`).
    pub fn unpack_rootfs(
        &self,
        tag: &str,
        platform: Option<&PlatformSpec>,
        rootfs: impl AsRef<Path>,
        opts: ExtractOptions,
    ) -> Result<DescriptorPath> {
        let rootfs = rootfs.as_ref();
        let path = self.resolve(tag, platform)?;
        let manifest = ext::fetch_manifest(self.cas(), path.target())?;
        // every layer is read (no layer store)
        crate::rootfs::config_then_layers(
            self.cas(),
            path.target(),
            &manifest,
            true,
            |ahead, config| {
                match std::fs::create_dir_all(rootfs) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e).doing(|| format!("create {}", show::name(&rootfs))),
                }
                let store = crate::layer_store::InPlace::new(rootfs);
                crate::rootfs::unpack_layers_from(
                    ahead, &store, &manifest, config, rootfs, opts, false,
                )
                .doing(|| format!("unpack {}", self.image(tag)))?;
                Ok(())
            },
        )?;
        Ok(path)
    }

    /// The runtime `config.json` of `tag` (umoci's layout: tab-indented,
    /// a final newline), user names resolved in `rootfs` when given (its
    /// file name is `root.path`, else `rootfs`).
    pub fn runtime_config(
        &self,
        tag: &str,
        platform: Option<&PlatformSpec>,
        rootfs: Option<&Path>,
        opts: &ExtractOptions,
    ) -> Result<Vec<u8>> {
        use crate::bundle::runtime::{RuntimeMapping, runtime_config, to_json};
        let path = self.resolve(tag, platform)?;
        let (_, config) = self.manifest_and_config(path.target())?;
        let root = rootfs
            .map(|p| {
                crate::fs::root::Root::open(p).doing(|| format!("open rootfs {}", show::name(&p)))
            })
            .transpose()?;
        let name = rootfs
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "rootfs".into());
        let spec = runtime_config(
            &config,
            root.as_ref(),
            &name,
            &RuntimeMapping {
                uid_map: opts.uid_map.clone(),
                gid_map: opts.gid_map.clone(),
                rootless: opts.rootless,
            },
        )
        .doing(|| format!("runtime config of {}", self.image(tag)))?;
        Ok(to_json(&spec)?)
    }

    /// Add the changes made in `bundle`'s rootfs as a new layer on the
    /// image it was unpacked from, and point `tag` at the result.
    pub fn repack(
        &self,
        lock: &WriteLock<'_>,
        bundle: impl AsRef<Path>,
        tag: &str,
        opts: &RepackOptions,
    ) -> Result<RepackOutcome> {
        self.check_lock(lock)?;
        let bundle = bundle.as_ref();
        let what = || format!("repack {} into {}", show::name(&bundle), self.image(tag));
        let out = crate::bundle::repack::repack_bundle(lock, bundle, opts).doing(what)?;
        refs::set_tag(lock, tag, out.path.root()).doing(what)?;
        Ok(out)
    }

    /// Read-modify-write of an image without lost updates: resolve `tag`,
    /// let `f` change the image, commit, and point `dest` at the result —
    /// when `dest` is `tag`, only if it still points where it did;
    /// otherwise another writer got there first and the change is redone
    /// on top of theirs.
    pub fn mutate(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: Option<&PlatformSpec>,
        dest: &str,
        f: &mut dyn FnMut(&mut Mutator<'_>) -> Result<()>,
    ) -> Result<DescriptorPath> {
        self.check_lock(lock)?;
        refs::check_tag(dest)?;
        for attempt in 0..64 {
            let path = self.resolve(tag, platform)?;
            let old_root = path.root().clone();
            let mut m = Mutator::new(lock, path)?;
            f(&mut m)?;
            let new_path = m.commit()?;
            let done = if dest == tag {
                refs::set_tag_if(lock, dest, Some(&old_root), new_path.root())?
            } else {
                refs::set_tag(lock, dest, new_path.root())?;
                true
            };
            if done {
                return Ok(new_path);
            }
            tracing::debug!(
                "{} changed while this command ran (attempt {attempt}); redoing the change on top",
                self.image(tag)
            );
        }
        Err(Error::msg(
            ErrorKind::Conflict,
            format!(
                "{}: gave up after too many concurrent updates",
                self.image(tag)
            ),
        ))
    }

    /// Change the configuration of `tag` (see [`ConfigChange`]) and point
    /// `dest` at the result.
    pub fn configure(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: Option<&PlatformSpec>,
        dest: &str,
        change: &ConfigChange,
    ) -> Result<DescriptorPath> {
        self.mutate(lock, tag, platform, dest, &mut |m| change.apply(m))
    }

    /// Add a layer made from a host tree (or a whiteout) to `tag` and point
    /// `dest` at the result.
    pub fn insert(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: Option<&PlatformSpec>,
        dest: &str,
        insert: &Insert,
    ) -> Result<DescriptorPath> {
        use crate::layer::generate::{GenerateOptions, TarGenerator, add_tree};
        use crate::path::ByteSlice;
        let target = &insert.target;
        insert.check()?;
        self.mutate(lock, tag, platform, dest, &mut |m| {
            let compression = insert
                .compression
                .unwrap_or_else(|| Compression::auto(&m.manifest().layers));
            let history = insert
                .history
                .as_ref()
                .map(|h| h.to_history("", false))
                .transpose()?;
            let layer = m.begin_layer(compression)?;
            let opts = GenerateOptions {
                owner: crate::layer::idmap::owner_mapper(
                    insert.uid_map.clone(),
                    insert.gid_map.clone(),
                    insert.rootless,
                ),
                clamp_mtime: insert.clamp_mtime.bound()?,
                // a source tree with directories its owner cannot read
                grant: match &insert.source {
                    Some(src) => Some(
                        crate::fs::unpriv::TreeGrant::new(src)
                            .doing(|| format!("insert source {}", src.display()))?,
                    ),
                    None => None,
                },
            };
            let mut tar = TarGenerator::new(layer, opts);
            match &insert.source {
                Some(src) => add_tree(&mut tar, src, target.as_ref(), insert.opaque),
                None => tar.add_whiteout(target.trim_with(|c| c == '/').as_bstr()),
            }
            .doing(|| format!("insert {target:?}"))?;
            let layer = tar.finish()?;
            m.finish_layer(layer, history)?;
            Ok(())
        })
    }

    /// Add an uncompressed tar archive as a new layer of `tag` and point
    /// `dest` at the result (`raw add-layer`). An entry without an author
    /// gets the image's.
    #[allow(clippy::too_many_arguments)]
    pub fn add_layer(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: Option<&PlatformSpec>,
        dest: &str,
        layer: &Path,
        compression: Option<Compression>,
        history: Option<&HistoryEntry>,
    ) -> Result<DescriptorPath> {
        if layer.is_dir() {
            return Err(Error::invalid(format!(
                "layer {}: is a directory, expected a tar archive",
                show::name(&layer)
            )));
        }
        self.mutate(lock, tag, platform, dest, &mut |m| {
            let mut file = std::fs::File::open(layer)
                .doing(|| format!("open layer {}", show::name(&layer)))?;
            let compression =
                compression.unwrap_or_else(|| Compression::auto(&m.manifest().layers));
            let author = m.config().author.clone();
            let history = history.map(|h| h.to_history(&author, false)).transpose()?;
            m.add_layer(&mut file, compression, history)
                .doing(|| format!("add layer {}", show::name(&layer)))?;
            Ok(())
        })
    }

    /// Merge layers of `tag` into one (see [`Squash`]) and point `dest`
    /// at the result. The new layer's extraction on top of the layers
    /// below the range gives the tree the range gave; it keeps only the
    /// whiteouts those layers need. Streams: no tree on disk.
    pub fn squash(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: Option<&PlatformSpec>,
        dest: &str,
        squash: &Squash,
    ) -> Result<(DescriptorPath, crate::surgery::MergeStats)> {
        use crate::layer::generate::{GenerateOptions, TarGenerator};
        let mut stats = Default::default();
        let path = self.mutate(lock, tag, platform, dest, &mut |m| {
            let n = m.manifest().layers.len();
            if n == 0 {
                return Err(Error::invalid(format!(
                    "{}: the image has no layers to squash",
                    self.image(tag)
                )));
            }
            let (start, end) = squash.range.resolve(n)?;
            let compression = squash
                .compression
                .unwrap_or_else(|| Compression::auto(&m.manifest().layers));
            let old_history = m.config().history.clone();
            let entry = match &squash.history {
                Some(h) => {
                    let created_by = if h.created_by.is_empty() {
                        squash_created_by(&old_history, n, start, end)
                    } else {
                        h.created_by.clone()
                    };
                    let entry = HistoryEntry {
                        created_by,
                        ..h.clone()
                    };
                    Some(entry.to_history(&m.config().author, false)?)
                }
                None => None,
            };
            let layer = m.begin_layer(compression)?;
            let mut tar = TarGenerator::new(
                layer,
                GenerateOptions {
                    clamp_mtime: squash.clamp_mtime,
                    ..GenerateOptions::default()
                },
            );
            stats = crate::surgery::merge_layers(
                self.cas(),
                m.manifest(),
                m.config(),
                start,
                end,
                &mut tar,
            )
            .doing(|| format!("squash layers {start}:{end}"))?;
            let layer = tar.finish()?;
            let marker = entry.is_some();
            m.finish_layer(layer, entry.clone())?;
            // move the new layer (appended last) into the range's place
            let desc = m.manifest_mut().layers.pop();
            let diff = m.config_mut().rootfs.diff_ids.pop();
            if marker {
                m.config_mut().history.pop();
            }
            let (Some(desc), Some(diff)) = (desc, diff) else {
                return Err(Error::invalid("squash: the new layer went missing"));
            };
            m.manifest_mut().layers.splice(start..end, [desc]);
            m.config_mut().rootfs.diff_ids.splice(start..end, [diff]);
            m.config_mut().history = splice_history(&old_history, n, start, end, entry);
            Ok(())
        })?;
        Ok((path, stats))
    }

    /// Write the root filesystem of `tag` as one uncompressed tar into
    /// `out`: every layer applied (whiteouts, opaque directories, the last
    /// version of each path), nothing on disk. Extracting it gives the
    /// tree [`Store::unpack`] gives.
    pub fn export(
        &self,
        tag: &str,
        platform: Option<&PlatformSpec>,
        out: &mut dyn std::io::Write,
    ) -> Result<crate::surgery::MergeStats> {
        use crate::layer::generate::{GenerateOptions, TarGenerator};
        let path = self.resolve(tag, platform)?;
        let what = || format!("export {}", self.image(tag));
        let (manifest, config) = self.manifest_and_config(path.target()).doing(what)?;
        let n = manifest.layers.len();
        if n == 0 {
            return Err(Error::invalid(format!(
                "{}: the image has no layers to export",
                self.image(tag)
            )));
        }
        let mut tar = TarGenerator::new(out, GenerateOptions::default());
        let stats = crate::surgery::merge_layers(self.cas(), &manifest, &config, 0, n, &mut tar)
            .doing(what)?;
        let out = tar.finish().doing(what)?;
        out.flush()
            .map_err(|e| Error::new(ErrorKind::of_io(&e), e))
            .doing(what)?;
        Ok(stats)
    }

    /// Make a new single-layer image from the root filesystem archive
    /// `input` (like `docker import`) and tag it `tag`: the archive is read
    /// through rumoci's tar reader and rewritten through its generator
    /// (see [`crate::surgery::import_tar`]), compressed as repack's layers
    /// are; the config is a new image's for `platform`, with `change`
    /// applied. A refused archive writes nothing to the store's
    /// `index.json` (and leaves no blob).
    pub fn import(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        input: &mut dyn std::io::Read,
        import: &Import,
    ) -> Result<DescriptorPath> {
        use crate::layer::generate::{GenerateOptions, TarGenerator};
        self.check_lock(lock)?;
        refs::check_tag(tag)?;
        let what = || format!("import into {}", self.image(tag));
        let compression = import.compression.unwrap_or(Compression::Gzip);
        // the layer first: a refused archive leaves nothing behind
        let blob = self.cas().begin_blob().doing(what)?;
        let enc = compression
            .writer(blob)
            .map_err(|e| Error::new(ErrorKind::of_io(&e), e))
            .doing(what)?;
        let sink = HashingWriter {
            inner: enc,
            diff: crate::oci::Algorithm::Sha256.hasher(),
            plain: 0,
        };
        let mut tar = TarGenerator::new(
            sink,
            GenerateOptions {
                clamp_mtime: import.clamp_mtime,
                ..GenerateOptions::default()
            },
        );
        crate::surgery::import_tar(input, &mut tar, import.rules).doing(what)?;
        let sink = tar.finish().doing(what)?;
        let blob = sink
            .inner
            .finish()
            .map_err(|e| Error::new(ErrorKind::of_io(&e), e))
            .doing(what)?;
        let (digest, size) = blob.commit(None).doing(what)?;
        let mut desc = Descriptor::new(compression.media_type(), digest, size);
        if sink.plain != size {
            desc.annotations.insert(
                crate::mutate::UNCOMPRESSED_SIZE_ANNOTATION.to_string(),
                sink.plain.to_string(),
            );
        }
        let diff_id = sink.diff.finish();
        // then a blank image with it, the change applied
        let config = blank_config(import.platform.clone())?;
        let config_desc = ext::put_json(self.cas(), media::CONFIG, &config).doing(what)?;
        let manifest = Manifest::new(config_desc);
        let mdesc = ext::put_json(self.cas(), media::MANIFEST, &manifest).doing(what)?;
        let mut m = Mutator::new(lock, DescriptorPath(vec![mdesc])).doing(what)?;
        import.change.apply(&mut m)?;
        let author = m.config().author.clone();
        let history = import
            .history
            .as_ref()
            .map(|h| h.to_history(&author, false))
            .transpose()?;
        m.push_layer(desc, diff_id, history);
        let path = m.commit().doing(what)?;
        refs::set_tag(lock, tag, path.root()).doing(what)?;
        Ok(path)
    }

    /// Create a blank image (no layers) for `platform` (default: the
    /// host's, with its ARM variant as umoci records it), created at
    /// [`default_created`], and tag it.
    pub fn new_image(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: Option<PlatformSpec>,
    ) -> Result<Descriptor> {
        self.check_lock(lock)?;
        let config = blank_config(platform)?;
        let config_desc = ext::put_json(self.cas(), media::CONFIG, &config)?;
        let manifest = Manifest::new(config_desc);
        let desc = ext::put_json(self.cas(), media::MANIFEST, &manifest)?;
        refs::set_tag(lock, tag, &desc).doing(|| format!("tag {tag}"))?;
        Ok(desc)
    }

    /// Point `new` at the manifest `tag` resolves to. The lock is held
    /// from reading `tag` until `new` is written, so gc cannot sweep the
    /// manifest if `tag` moves meanwhile.
    pub fn tag(
        &self,
        lock: &WriteLock<'_>,
        tag: &str,
        platform: Option<&PlatformSpec>,
        new: &str,
    ) -> Result<Descriptor> {
        self.check_lock(lock)?;
        refs::check_tag(new)?;
        let path = self.resolve(tag, platform)?;
        refs::set_tag(lock, new, path.target()).doing(|| format!("tag {new}"))?;
        Ok(path.target().clone())
    }

    /// Remove every `index.json` entry named `tag`; returns how many went
    /// (none is not an error, as in umoci).
    pub fn remove_tag(&self, lock: &WriteLock<'_>, tag: &str) -> Result<usize> {
        self.check_lock(lock)?;
        refs::remove_tag(lock, tag).doing(|| format!("remove tag {tag}"))
    }

    /// The image configuration `tag` resolves to (env, labels, history…).
    pub fn config(&self, tag: &str, platform: Option<&PlatformSpec>) -> Result<Image> {
        let path = self.resolve(tag, platform)?;
        let what = || format!("read the config of {}", self.image(tag));
        let (_, config) = self.manifest_and_config(path.target()).doing(what)?;
        Ok(config)
    }

    /// The manifest, config and history of `tag` (umoci's `stat`).
    pub fn stat(&self, tag: &str, platform: Option<&PlatformSpec>) -> Result<ManifestStat> {
        let path = self.resolve(tag, platform)?;
        crate::stat::stat(self.cas(), path.target()).doing(|| format!("stat {}", self.image(tag)))
    }

    /// Delete every blob `index.json` does not reach, and temporaries of
    /// dead writers (waits for writers holding the lock).
    pub fn gc(&self) -> Result<GcStats> {
        crate::cas::gc::gc(self.cas()).doing(|| format!("gc {}", self.name))
    }

    /// Check every reachable object (sizes, digests, formats, layer
    /// diff_ids); empty when the store is sound.
    pub fn verify(&self) -> Vec<Problem> {
        self.verify_report().problems
    }

    /// [`Store::verify`] with the warnings: what is odd but sound (a
    /// `subject` or foreign layer not in the store, a document whose own
    /// media type is its descriptor's Docker or OCI twin).
    pub fn verify_report(&self) -> Report {
        crate::cas::check::check_layout(self.cas(), &mut crate::rootfs::check_layer)
    }
}

/// The configuration of a new image (no layers, no history) for
/// `platform` (default: the host's, as umoci records it), created at
/// [`default_created`].
fn blank_config(platform: Option<PlatformSpec>) -> Result<Image> {
    let platform = platform.unwrap_or_else(PlatformSpec::host_for_new_image);
    Ok(Image {
        created: Some(default_created()?),
        author: String::new(),
        architecture: platform.architecture,
        os: platform.os,
        os_version: String::new(),
        os_features: Vec::new(),
        variant: platform.variant,
        config: Default::default(),
        rootfs: Default::default(),
        history: Vec::new(),
        extra: Default::default(),
    })
}

/// Copy `src_tag` of `from` (and everything it reaches: all platforms, or
/// the one `opts.platform` names; referrers on request) to `to` as
/// `dst_tag`, verified, skipping blobs already there, tagging last. `each`
/// hears of every blob.
///
/// ```
/// # use rumoci_engine::image::{Store, copy};
/// # let dir = tempfile::tempdir()?;
/// let a = Store::create(dir.path().join("a"))?;
/// a.new_image(&a.lock()?, "base", None)?;
/// let b = Store::create(dir.path().join("b"))?;
/// let stats = copy(&a, "base", &b, "copied", &Default::default(), &mut |_, _| {})?;
/// assert_eq!(stats.copied, 2);
/// assert!(b.resolve("copied", None).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn copy(
    from: &Store,
    src_tag: &str,
    to: &Store,
    dst_tag: &str,
    opts: &CopyOptions,
    each: &mut dyn FnMut(&Descriptor, BlobOutcome),
) -> Result<CopyStats> {
    crate::cas::copy::copy_image(from.cas(), to.cas(), src_tag, dst_tag, opts, each)
        .doing(|| format!("copy {} to {}", from.image(src_tag), to.image(dst_tag)))
}

/// `--refresh-bundle`: point `bundle` at the image `outcome` made, so a
/// later repack diffs against it.
pub fn refresh_bundle(bundle: impl AsRef<Path>, outcome: &RepackOutcome) -> Result<()> {
    let bundle = bundle.as_ref();
    crate::bundle::repack::refresh_bundle(bundle, outcome)
        .doing(|| format!("refresh {}", show::name(&bundle)))
}

/// Extraction options as the command line takes them: id maps
/// (`CONTAINER:HOST[:SIZE]`, parsed with [`IdMapping::parse`]); `rootless`
/// with no maps maps 0 to the invoking user, as umoci does; `keep_dirlinks`
/// keeps symlinks to directories. Builders may prefer
/// [`ExtractOptions::rootless`] and its setters, which say what they set.
pub fn extract_options(
    uid_map: Vec<IdMapping>,
    gid_map: Vec<IdMapping>,
    rootless: bool,
    keep_dirlinks: bool,
) -> ExtractOptions {
    let mut opts = if rootless {
        ExtractOptions::rootless()
    } else {
        ExtractOptions::privileged()
    };
    if !uid_map.is_empty() || !rootless {
        opts = opts.uid_map(uid_map);
    }
    if !gid_map.is_empty() || !rootless {
        opts = opts.gid_map(gid_map);
    }
    opts.keep_dirlinks(keep_dirlinks)
}

// ---- times ----

/// Validate an RFC 3339 time and normalise it as Go's RFC3339Nano would
/// (the offset and the significant digits of the fraction kept; `+00:00`
/// becomes `Z`). `what` names it in the error (`--created "…"`).
pub fn parse_time(what: &str, s: &str) -> Result<String> {
    crate::oci::gotime::normalize_rfc3339(s).doing(|| format!("{what} {s:?}"))
}

// ---- changes ----

/// A field [`ConfigChange::clear`] empties first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigField {
    /// `config.labels`
    Labels,
    /// `config.exposedports`
    ExposedPorts,
    /// `config.env`
    Env,
    /// `config.volume`
    Volumes,
    /// `config.cmd`
    Cmd,
    /// `config.entrypoint`
    Entrypoint,
    /// `manifest.annotations`
    Annotations,
}

impl std::str::FromStr for ConfigField {
    type Err = Error;

    /// umoci's `--clear` names.
    fn from_str(s: &str) -> Result<ConfigField> {
        Ok(match s {
            "config.labels" => ConfigField::Labels,
            "config.exposedports" => ConfigField::ExposedPorts,
            "config.env" => ConfigField::Env,
            "config.volume" => ConfigField::Volumes,
            "config.cmd" => ConfigField::Cmd,
            "config.entrypoint" => ConfigField::Entrypoint,
            "manifest.annotations" => ConfigField::Annotations,
            "rootfs.diffids" => {
                return Err(Error::invalid("--clear rootfs.diffids: not safe to clear"));
            }
            other => return Err(Error::invalid(format!("--clear {other:?}: unknown field"))),
        })
    }
}

/// A change to an image's configuration and manifest (`rumoci config`):
/// fields cleared first, then each given value set or added.
#[derive(Debug, Clone, Default)]
pub struct ConfigChange {
    /// Fields emptied first.
    pub clear: Vec<ConfigField>,
    /// The user (`user`, `uid`, `user:group`, `uid:gid`).
    pub user: Option<String>,
    /// Exposed ports added (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// Environment variables added or replaced (see [`set_env`]).
    pub env: Vec<(String, String)>,
    /// The entrypoint, if set.
    pub entrypoint: Option<Vec<String>>,
    /// The default command, if set.
    pub cmd: Option<Vec<String>>,
    /// Volumes added.
    pub volumes: Vec<String>,
    /// Labels added or replaced.
    pub labels: Vec<(String, String)>,
    /// The working directory.
    pub working_dir: Option<String>,
    /// The stop signal.
    pub stop_signal: Option<String>,
    /// The creation time (normalised with [`parse_time`]).
    pub created: Option<String>,
    /// The author.
    pub author: Option<String>,
    /// The operating system.
    pub os: Option<String>,
    /// The architecture.
    pub architecture: Option<String>,
    /// The CPU variant.
    pub variant: Option<String>,
    /// Manifest annotations added or replaced.
    pub annotations: Vec<(String, String)>,
    /// The history entry (an `empty_layer` one; its author defaults to
    /// the image's, after this change).
    pub history: Option<HistoryEntry>,
}

/// Set `key=value` in an environment list: the first `key=` entry is
/// replaced, else the entry is appended.
pub fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    let prefix = format!("{key}=");
    match env.iter_mut().find(|e| e.starts_with(&prefix)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

impl ConfigChange {
    /// Apply the change to the image `m` holds.
    pub fn apply(&self, m: &mut Mutator<'_>) -> Result<()> {
        for field in &self.clear {
            let cfg = &mut m.config_mut().config;
            match field {
                ConfigField::Labels => cfg.labels.clear(),
                ConfigField::ExposedPorts => cfg.exposed_ports.clear(),
                ConfigField::Env => cfg.env.clear(),
                ConfigField::Volumes => cfg.volumes.clear(),
                ConfigField::Cmd => cfg.cmd.clear(),
                ConfigField::Entrypoint => cfg.entrypoint.clear(),
                ConfigField::Annotations => m.manifest_mut().annotations.clear(),
            }
        }
        let img = m.config_mut();
        if let Some(u) = &self.user {
            img.config.user = u.clone();
        }
        for p in &self.exposed_ports {
            img.config
                .exposed_ports
                .insert(p.clone(), Value::Object(Default::default()));
        }
        for (k, v) in &self.env {
            set_env(&mut img.config.env, k, v);
        }
        if let Some(e) = &self.entrypoint {
            img.config.entrypoint = e.clone();
        }
        if let Some(c) = &self.cmd {
            img.config.cmd = c.clone();
        }
        for v in &self.volumes {
            img.config
                .volumes
                .insert(v.clone(), Value::Object(Default::default()));
        }
        for (k, v) in &self.labels {
            img.config.labels.insert(k.clone(), v.clone());
        }
        if let Some(w) = &self.working_dir {
            img.config.working_dir = w.clone();
        }
        if let Some(s) = &self.stop_signal {
            img.config.stop_signal = s.clone();
        }
        if let Some(c) = &self.created {
            img.created = Some(c.clone());
        }
        if let Some(a) = &self.author {
            img.author = a.clone();
        }
        if let Some(os) = &self.os {
            img.os = os.clone();
        }
        if let Some(a) = &self.architecture {
            img.architecture = a.clone();
        }
        if let Some(v) = &self.variant {
            img.variant = v.clone();
        }
        let author = img.author.clone();
        for (k, v) in &self.annotations {
            m.manifest_mut().annotations.insert(k.clone(), v.clone());
        }
        if let Some(h) = &self.history {
            m.add_history(h.to_history(&author, true)?);
        }
        Ok(())
    }
}

/// What [`Store::insert`] adds: a host tree at `target`, or (no `source`)
/// a whiteout deleting `target`.
#[derive(Debug, Clone, Default)]
pub struct Insert {
    /// The host file or directory (`None`: a whiteout).
    pub source: Option<PathBuf>,
    /// Where in the image (bytes: names need not be UTF-8).
    pub target: BString,
    /// Make `target` opaque first, so the tree replaces it.
    pub opaque: bool,
    /// Layer compression (`None`: follow the last layer, else gzip).
    pub compression: Option<Compression>,
    /// The history entry (its author defaults to empty).
    pub history: Option<HistoryEntry>,
    /// Host uids mapped back into the container.
    pub uid_map: Vec<IdMapping>,
    /// Host gids mapped back into the container.
    pub gid_map: Vec<IdMapping>,
    /// Owners from the `user.rootlesscontainers` xattr.
    pub rootless: bool,
    /// How mtimes are clamped (default: to [`source_date_epoch`], as the
    /// command line does).
    pub clamp_mtime: MtimeClamp,
}

impl Insert {
    /// Check what can be checked before the store is touched: non-empty
    /// paths, and a source that exists.
    pub fn check(&self) -> Result<()> {
        if self.target.is_empty()
            || self
                .source
                .as_ref()
                .is_some_and(|s| s.as_os_str().is_empty())
        {
            return Err(Error::invalid("insert: arguments must not be empty"));
        }
        if let Some(s) = &self.source {
            std::fs::symlink_metadata(s).doing(|| format!("insert source {}", show::name(&s)))?;
        }
        Ok(())
    }

    /// Insert the host path `source` at `target`.
    pub fn tree(source: impl Into<PathBuf>, target: impl AsRef<OsStr>) -> Insert {
        Insert {
            source: Some(source.into()),
            target: crate::path::bytes(target.as_ref()).to_owned(),
            ..Insert::default()
        }
    }
}

// ---- surgery ----

/// Which layers [`Store::squash`] merges: `start..end` counted from 0 at
/// the bottom, `end` exclusive (`None`: to the top).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerRange {
    /// The first layer merged.
    pub start: usize,
    /// The layer after the last one merged (`None`: all above `start`).
    pub end: Option<usize>,
}

impl LayerRange {
    /// Parse `A:B`, `A:` or `:B` (the `--layers` flag).
    pub fn parse(s: &str) -> Result<LayerRange> {
        let bad = || {
            Error::invalid(format!(
                "--layers {s:?}: expected A:B, A: or :B (layer numbers from 0, B exclusive)"
            ))
        };
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        let start = if a.is_empty() {
            0
        } else {
            a.parse().map_err(|_| bad())?
        };
        let end = if b.is_empty() {
            None
        } else {
            Some(b.parse().map_err(|_| bad())?)
        };
        Ok(LayerRange { start, end })
    }

    /// The range in an image of `n` layers; outside it (or empty) is an
    /// error.
    pub fn resolve(&self, n: usize) -> Result<(usize, usize)> {
        let end = self.end.unwrap_or(n);
        if self.start >= end || end > n {
            return Err(Error::invalid(format!(
                "layer range {}:{end} is outside the image's {n} layers (ranges run from 0 to {n}, end exclusive, at least one layer)",
                self.start
            )));
        }
        Ok((self.start, end))
    }
}

/// What [`Store::squash`] does.
#[derive(Debug, Clone, Default)]
pub struct Squash {
    /// The layers merged (default: all).
    pub range: LayerRange,
    /// Compression of the new layer (`None`: follow the image's last
    /// compressed layer, else gzip).
    pub compression: Option<Compression>,
    /// The history entry of the new layer (`None`: the merged layers'
    /// entries go and none comes). An empty `created_by` becomes
    /// `rumoci squash: ` and the merged entries' `created_by`s joined by
    /// ` && `.
    pub history: Option<HistoryEntry>,
    /// Clamp mtimes to this ([`source_date_epoch`]).
    pub clamp_mtime: Option<i64>,
}

/// What [`Store::import`] makes.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// The platform of the new image (default: the host's).
    pub platform: Option<PlatformSpec>,
    /// Configuration applied to the new image (its own history entry, if
    /// any, is an `empty_layer` one before the layer's).
    pub change: ConfigChange,
    /// Compression of the layer (default gzip).
    pub compression: Option<Compression>,
    /// The layer's history entry.
    pub history: Option<HistoryEntry>,
    /// What the archive may hold (device nodes only as root).
    pub rules: crate::surgery::ImportRules,
    /// Clamp mtimes to this ([`source_date_epoch`]).
    pub clamp_mtime: Option<i64>,
}

/// Compresses, hashes (diff_id) and counts an uncompressed layer.
struct HashingWriter<W: std::io::Write> {
    inner: crate::mutate::Compressor<'static, W>,
    diff: crate::oci::Hasher,
    plain: u64,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.diff.update(&buf[..n]);
        self.plain += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Index of the history entry of each layer (entries that are not
/// `empty_layer`, in order), when the history names every layer exactly.
fn layer_entries(history: &[History], n: usize) -> Option<Vec<usize>> {
    let idx: Vec<usize> = history
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.empty_layer)
        .map(|(i, _)| i)
        .collect();
    (idx.len() == n).then_some(idx)
}

/// The default `created_by` of a squash entry.
fn squash_created_by(history: &[History], n: usize, start: usize, end: usize) -> String {
    let merged: Vec<&str> = match layer_entries(history, n) {
        Some(idx) => idx[start..end]
            .iter()
            .map(|&i| history[i].created_by.as_str())
            .filter(|s| !s.is_empty())
            .collect(),
        None => Vec::new(),
    };
    if merged.is_empty() {
        format!("rumoci squash (layers {start}:{end})")
    } else {
        format!(
            "rumoci squash (layers {start}:{end}): {}",
            merged.join(" && ")
        )
    }
}

/// The history after layers `start..end` of `n` became one: their entries
/// go, `entry` takes the place of the last of them, `empty_layer` entries
/// stay where they were. A history that does not name every layer exactly
/// is kept as it is, `entry` appended.
fn splice_history(
    history: &[History],
    n: usize,
    start: usize,
    end: usize,
    entry: Option<History>,
) -> Vec<History> {
    let Some(idx) = layer_entries(history, n) else {
        if !history.is_empty() {
            tracing::warn!(
                "the history does not name each layer ({} entries for {n} layers): kept as it is, the squash entry appended",
                history.len()
            );
        }
        let mut out = history.to_vec();
        out.extend(entry);
        return out;
    };
    let merged: std::collections::HashSet<usize> = idx[start..end].iter().copied().collect();
    let last = idx[end - 1];
    let mut out = Vec::with_capacity(history.len());
    for (i, h) in history.iter().enumerate() {
        if i == last {
            out.extend(entry.clone());
        } else if !merged.contains(&i) {
            out.push(h.clone());
        }
    }
    out
}

// ---- stores through drivers ----

/// How [`Store::open_with`] opens a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// It must exist.
    Existing,
    /// It must not exist (an empty directory may, for a plugin): `init`.
    Create,
    /// Created if missing (an empty directory for a plugin); a
    /// repository behind `url=` is opened as it is: `copy`'s
    /// destination.
    OrCreate,
}

/// What opens content stores by driver: `rumoci::image::Drivers` (the
/// `--driver` specs, crate `rumoci-wasm`) is one.
pub trait StoreOpener {
    /// The content store for the layout (or repository) `path`.
    fn open_cas(&self, path: &Path, how: Open) -> Result<Box<dyn Cas>>;

    /// The existing content store `path`, for a command that reads only
    /// the refs `refs` of its index and never writes it ([`Cas::want_refs`],
    /// told before the store is first used). The default opens it, then
    /// tells it.
    fn open_cas_reading(&self, path: &Path, refs: &[String]) -> Result<Box<dyn Cas>> {
        let cas = self.open_cas(path, Open::Existing)?;
        cas.want_refs(refs);
        Ok(cas)
    }
}

impl Store {
    /// Open the layout (or repository) `path` through the content store
    /// `drivers` name (default: the built-in directory driver).
    pub fn open_with(
        drivers: &dyn StoreOpener,
        path: impl AsRef<Path>,
        how: Open,
    ) -> Result<Store> {
        let path = path.as_ref();
        Ok(Store::from_cas(drivers.open_cas(path, how)?, path))
    }

    /// Open the existing layout (or repository) `path` for a command that
    /// reads only the tags `refs` of it and never writes its index
    /// ([`Store::want_refs`]; a registry then resolves those tags alone).
    pub fn open_reading(
        drivers: &dyn StoreOpener,
        path: impl AsRef<Path>,
        refs: &[String],
    ) -> Result<Store> {
        let path = path.as_ref();
        Ok(Store::from_cas(drivers.open_cas_reading(path, refs)?, path))
    }
}
