//! A layer store as a value: [`SnapshotStore`] is a store loaded for one
//! call, with the `layer-store` operations as methods, and
//! [`SnapshotDriver`] turns it into a whole driver (no content store) for
//! [`register_driver!`](crate::register_driver).
//!
//! ```ignore
//! use rumoci_driver_sdk::{register_driver, SnapshotDriver, SnapshotStore};
//! struct Store { /* records */ }
//! impl SnapshotStore for Store { /* info, open_from_host, stat, prepare, … */ }
//! register_driver!(SnapshotDriver<Store>);
//! ```

use std::marker::PhantomData;

use crate::store_util::Notes;
use crate::{
    Cas, Digest, DiskUsage, Driver, DriverInfo, Labels, LayerStore, Mount, Prepared, Result,
    SnapshotInfo, SnapshotPage, log,
};

/// A layer store loaded for one host call. [`SnapshotDriver`] opens it with
/// [`SnapshotStore::open_from_host`] for every call, runs the operation,
/// then forwards [`SnapshotStore::take_notes`] to the host's log (also
/// when the operation failed). The methods mirror [`LayerStore`]'s, with
/// borrowed arguments.
pub trait SnapshotStore: Sized + 'static {
    /// Name, version and capabilities of the driver.
    fn info() -> DriverInfo;
    /// Load the store from the store directory
    /// ([`store_dir`](crate::store_dir)) with the host's options
    /// ([`config`](crate::config)); malformed options fail every call.
    fn open_from_host() -> Result<Self>;
    /// Log messages gathered so far, to forward to the host.
    fn take_notes(&mut self) -> Notes;
    /// `layer-store.stat`.
    fn stat(&self, name: &str) -> Result<Option<SnapshotInfo>>;
    /// `layer-store.prepare`.
    fn prepare(
        &mut self,
        key: &str,
        parent: Option<&str>,
        target: Option<&str>,
        labels: Labels,
    ) -> Result<Prepared>;
    /// `layer-store.view`.
    fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>>;
    /// `layer-store.mounts`.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    /// `layer-store.commit`.
    fn commit(
        &mut self,
        name: &str,
        key: &str,
        diff_id: &Digest,
        labels: Labels,
    ) -> Result<SnapshotInfo>;
    /// `layer-store.remove`.
    fn remove(&mut self, name: &str) -> Result<()>;
    /// `layer-store.usage`.
    fn usage(&self, name: &str) -> Result<DiskUsage>;
    /// `layer-store.list-snapshots`.
    fn list(&self, cursor: Option<&str>, limit: u32) -> Result<SnapshotPage>;
}

/// A driver made of a [`SnapshotStore`]: [`Driver`] answers
/// [`SnapshotStore::info`], [`LayerStore`] runs each call on a freshly
/// opened store, and every [`Cas`] call answers `unsupported`.
pub struct SnapshotDriver<S>(PhantomData<S>);

impl<S: SnapshotStore> SnapshotDriver<S> {
    /// Open the store, run `f`, forward the store's notes to the host.
    fn with_store<T>(f: impl FnOnce(&mut S) -> Result<T>) -> Result<T> {
        let mut s = S::open_from_host()?;
        let r = f(&mut s);
        for (level, message) in s.take_notes() {
            log(level, &message);
        }
        r
    }
}

impl<S: SnapshotStore> Driver for SnapshotDriver<S> {
    fn info() -> DriverInfo {
        S::info()
    }
}

/// No content store: every `cas` call answers `unsupported`.
impl<S: SnapshotStore> Cas for SnapshotDriver<S> {}

impl<S: SnapshotStore> LayerStore for SnapshotDriver<S> {
    fn stat(name: String) -> Result<Option<SnapshotInfo>> {
        Self::with_store(|s| s.stat(&name))
    }
    fn prepare(
        key: String,
        parent: Option<String>,
        target: Option<String>,
        labels: Labels,
    ) -> Result<Prepared> {
        Self::with_store(|s| s.prepare(&key, parent.as_deref(), target.as_deref(), labels))
    }
    fn view(key: String, parent: String) -> Result<Vec<Mount>> {
        Self::with_store(|s| s.view(&key, &parent))
    }
    fn mounts(key: String) -> Result<Vec<Mount>> {
        Self::with_store(|s| s.mounts(&key))
    }
    fn commit(name: String, key: String, diff_id: Digest, labels: Labels) -> Result<SnapshotInfo> {
        Self::with_store(|s| s.commit(&name, &key, &diff_id, labels))
    }
    fn remove(name: String) -> Result<()> {
        Self::with_store(|s| s.remove(&name))
    }
    fn usage(name: String) -> Result<DiskUsage> {
        Self::with_store(|s| s.usage(&name))
    }
    fn list_snapshots(cursor: Option<String>, limit: u32) -> Result<SnapshotPage> {
        Self::with_store(|s| s.list(cursor.as_deref(), limit))
    }
}
