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

use rumoci_driver_sdk::{
    Cas, Digest, DiskUsage, Driver, DriverInfo, Labels, LayerStore, MountSpec, Prepared, Result,
    SnapshotInfo, SnapshotPage, config, log, store_dir,
};

use store::{Options, Store};

/// The driver.
pub struct LayerCache;

/// Parse the options, load the store, run `f`, forward the store's log
/// messages to the host. Unknown or malformed options fail every call.
fn with_store<T>(f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
    let opts = Options::parse(&config())?;
    let root = store_dir()?;
    let mut s = Store::open(&root, opts)?;
    let r = f(&mut s);
    for (level, message) in s.take_notes() {
        log(level, &message);
    }
    r
}

impl Driver for LayerCache {
    fn info() -> DriverInfo {
        DriverInfo::new(
            "layer-cache",
            env!("CARGO_PKG_VERSION"),
            &["layer-store", "layer-store.copy"],
        )
    }
}

/// No content store: every `cas` call answers `unsupported`.
impl Cas for LayerCache {}

impl LayerStore for LayerCache {
    fn stat(name: String) -> Result<Option<SnapshotInfo>> {
        with_store(|s| s.stat(&name))
    }

    fn prepare(
        key: String,
        parent: Option<String>,
        target: Option<String>,
        labels: Labels,
    ) -> Result<Prepared> {
        with_store(|s| s.prepare(&key, parent.as_deref(), target.as_deref(), labels))
    }

    fn view(key: String, parent: String) -> Result<Vec<MountSpec>> {
        with_store(|s| s.view(&key, &parent))
    }

    fn mounts(key: String) -> Result<Vec<MountSpec>> {
        with_store(|s| s.mounts(&key))
    }

    fn commit(name: String, key: String, diff_id: Digest, labels: Labels) -> Result<SnapshotInfo> {
        with_store(|s| s.commit(&name, &key, &diff_id, labels))
    }

    fn remove(name: String) -> Result<()> {
        with_store(|s| s.remove(&name))
    }

    fn usage(name: String) -> Result<DiskUsage> {
        with_store(|s| s.usage(&name))
    }

    fn list_snapshots(cursor: Option<String>, limit: u32) -> Result<SnapshotPage> {
        with_store(|s| s.list(cursor.as_deref(), limit))
    }
}

rumoci_driver_sdk::register_driver!(LayerCache);
