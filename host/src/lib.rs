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
//! * [`surgery`]: layers squashed into one, an image exported as one
//!   root filesystem tar, a root filesystem tar imported as an image.
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

// The engine (crate `rumoci-engine`) and the ground floor (crate
// `rumoci-core`), at the paths they always had.
pub use rumoci_core::{Error, ErrorKind, Result};
pub use rumoci_core::{fs, limits, oci, path, progress, show};
pub use rumoci_engine::{bundle, cas, layer, layer_store, mtree, mutate, rootfs, stat, surgery};

/// Image signatures: sigstore keys, signing as skopeo does, and
/// containers-policy.json (crate `rumoci-sign`, feature `sign`).
#[cfg(feature = "sign")]
pub use rumoci_sign as sign;

/// Sandboxed WebAssembly storage drivers (crate `rumoci-wasm`).
#[cfg(feature = "wasm")]
pub use rumoci_wasm::driver;

/// The builder-facing entry points (see `rumoci_engine::image`), and with
/// the `wasm` feature [`image::Drivers`]: stores through `--driver` specs.
pub mod image {
    pub use rumoci_engine::image::*;
    #[cfg(feature = "wasm")]
    pub use rumoci_wasm::drivers::Drivers;
}
