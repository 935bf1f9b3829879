//! rumoci's ground floor: what every other part of rumoci stands on and
//! that stands on nothing of rumoci's. The `rumoci` crate re-exports each
//! module at the same path (`rumoci::oci`, `rumoci::fs`, …); use that.
//!
//! * [`oci`]: image-spec types (lossless serde structs), digests, media
//!   types, Go-compatible JSON and times;
//! * [`path`]: in-image paths as bytes;
//! * [`fs`]: the filesystem layer (descriptors, never following symlinks);
//! * [`limits`]: the bounds every walk over outside data obeys;
//! * [`show`]: names shortened for error messages;
//! * [`progress`]: the `Progress` trait long operations report to;
//! * [`error`]: the one public error type and its kinds.

pub mod error;
pub mod fs;
pub mod limits;
pub mod oci;
pub mod path;
pub mod progress;
pub mod show;

pub use error::{Error, ErrorKind, Result};
