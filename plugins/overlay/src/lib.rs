//! `overlay`: a rumoci layer-store driver keeping each layer extracted
//! alone, in overlayfs form, in its own directory; a bundle's rootfs is an
//! overlay mount of those directories.
//!
//! The host extracts each layer into an empty directory with whiteouts in
//! overlayfs form (character device 0:0, `trusted.overlay.opaque` or
//! `user.overlay.opaque`) and performs the overlay mount; this plugin only
//! chooses the directories and keeps the records (see [`store`]). A
//! committed layer directory is shared by every chain that contains it.

pub mod store;

use rumoci_driver_sdk::{
    Cas, Digest, DiskUsage, Driver, DriverInfo, Error, Labels, LayerStore, MountSpec, Prepared,
    Result, SnapshotInfo, SnapshotPage, config, log, store_dir,
};

use store::Store;

/// The driver.
pub struct Overlay;

/// Refuse options (there are none), load the store, run `f`, forward the
/// store's log messages to the host.
fn with_store<T>(f: impl FnOnce(&mut Store) -> Result<T>) -> Result<T> {
    if let Some((k, _)) = config().first() {
        return Err(Error::InvalidArgument(format!(
            "unknown option {k:?} (the overlay driver has none)"
        )));
    }
    let root = store_dir()?;
    let mut s = Store::open(&root)?;
    let r = f(&mut s);
    for (level, message) in s.take_notes() {
        log(level, &message);
    }
    r
}

impl Driver for Overlay {
    fn info() -> DriverInfo {
        DriverInfo::new(
            "overlay",
            env!("CARGO_PKG_VERSION"),
            &["layer-store", "layer-store.overlay"],
        )
    }
}

/// No content store: every `cas` call answers `unsupported`.
impl Cas for Overlay {}

impl LayerStore for Overlay {
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

rumoci_driver_sdk::register_driver!(Overlay);
