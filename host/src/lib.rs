//! rumoci: umoci, the OCI image tool, rebuilt in Rust.
//!
//! The crate is both the `rumoci` command-line tool and a library. Start
//! with [`image`]: the entry points the command is made of (open a store,
//! resolve, unpack, repack, insert, configure, tag, stat, gc, verify,
//! copy), each returning one error type, [`Error`] (with an
//! [`ErrorKind`]). The pieces underneath can be used on their own:
//!
//! * [`oci`]: image-spec types (lossless serde structs) and [`oci::Digest`].
//! * [`cas`]: the content-addressable store trait, the built-in OCI layout
//!   directory driver, verified reads, references, and garbage collection.
//! * [`layer`]: tar layers to a root filesystem and back.
//! * `driver` (feature `wasm`, on by default): sandboxed WebAssembly storage
//!   drivers (`driver::WasmCas`).
//! * [`mtree`]: go-mtree compatible manifests of a root filesystem: writing,
//!   parsing, and comparing a tree with one.
//! * [`rootfs`]: an image's layer chain applied to a root filesystem,
//!   directly or through a layer store ([`layer_store`]).
//! * [`bundle`]: runtime bundles: unpack an image into one, repack its
//!   changes as a new layer, mount and unmount overlay bundles.
//! * [`mutate`]: new layers, configs and manifests, retagged atomically.
//! * [`stat`]: what a manifest, its config and history hold, in umoci's
//!   text and JSON forms.
//! * [`limits`]: the bounds every walk over outside data obeys, and
//!   [`show`]: paths and names shortened for error messages.
//!
//! ```
//! use rumoci::{Error, ErrorKind};
//! let e = rumoci::image::Store::open("/nonexistent/layout").unwrap_err();
//! assert_eq!(e.kind(), ErrorKind::NotFound);
//! ```
//!
//! The ground floor (`oci`, `path`, `fs`, `limits`, `show`, `progress` and
//! the error type) is the crate `rumoci-core`, re-exported here at the
//! same paths: it depends on nothing of rumoci's, and the compiler keeps it
//! so.

pub mod bundle;
pub mod cas;
#[cfg(feature = "wasm")]
pub mod driver;
pub mod image;
pub mod layer;
pub mod layer_store;
pub mod mtree;
pub mod mutate;
pub mod rootfs;
pub mod stat;

// The ground floor (crate `rumoci-core`), at the paths it always had.
use rumoci_core::error;
pub use rumoci_core::{Error, ErrorKind, Result};
pub use rumoci_core::{fs, limits, oci, path, progress, show};
