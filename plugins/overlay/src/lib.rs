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

/// The driver: the [`store::Store`] loaded for every call (it takes no
/// options; any option fails every call); no content store.
pub type Overlay = rumoci_driver_sdk::SnapshotDriver<store::Store>;

rumoci_driver_sdk::register_driver!(Overlay);
