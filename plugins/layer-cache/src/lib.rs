//! `layer-cache`: a rumoci layer-store driver keeping a cache of unpacked
//! layer trees, with containerd-snapshotter bookkeeping.
//!
//! The host does all filesystem work on layer contents (extracting tars,
//! copying trees, ownership, xattrs); this plugin decides the layout and
//! keeps the records (see [`store`]). Every snapshot is a complete tree (the
//! whole chain up to that layer), so a committed snapshot never depends on
//! its parent's files and `parent` is informational.
//!
//! Options (`--driver layer-cache.wasm,opt.max-size=2G`): `max-size=N[KMGT]`
//! evicts least-recently-used committed snapshots after each commit.

pub mod store;

/// The driver: the [`store::Store`] loaded for every call (unknown or
/// malformed options fail every call); no content store.
pub type LayerCache = rumoci_driver_sdk::SnapshotDriver<store::Store>;

rumoci_driver_sdk::register_driver!(LayerCache);
