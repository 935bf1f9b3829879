//! rumoci's engine: everything between the ground floor (`rumoci-core`)
//! and the tools on top (the wasm driver host, the command line). Use it
//! through the `rumoci` crate, which re-exports every module here at the
//! same path.
//!
//! * [`cas`]: the content-store trait, the built-in OCI layout directory
//!   driver, verified reads, references, garbage collection, `verify`;
//! * [`layer`]: tar layers to a root filesystem and back;
//! * [`mtree`]: go-mtree compatible manifests;
//! * [`layer_store`] and [`rootfs`]: an image's layer chain applied to a
//!   root filesystem, in place or through a layer store;
//! * [`bundle`]: runtime bundles (unpack, repack, mount);
//! * [`mutate`]: new layers, configs and manifests, retagged atomically;
//! * [`stat`]: what a manifest, its config and history hold;
//! * [`surgery`]: layers merged (squash), an image flattened into one
//!   tar (export), a root filesystem tar taken in (import);
//! * [`image`]: the builder-facing entry points.

pub mod bundle;
pub mod cas;
pub mod image;
pub mod layer;
pub mod layer_store;
pub mod mtree;
pub mod mutate;
mod parallel;
mod readahead;
pub mod rootfs;
pub mod stat;
pub mod surgery;

// The ground floor, at the paths the modules use.
use rumoci_core::error;
pub use rumoci_core::{Error, ErrorKind, Result};
pub use rumoci_core::{fs, limits, oci, path, progress, show};
