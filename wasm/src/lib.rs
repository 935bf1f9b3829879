//! rumoci's WebAssembly storage-driver host: [`driver`] loads, sandboxes
//! and runs plugins; [`drivers`] turns `--driver` specs into opened content
//! and layer stores ([`Drivers`], which [`rumoci_engine::image::Store`]
//! opens stores through). Use it through the `rumoci` crate (feature
//! `wasm`), which re-exports both.

pub mod driver;
pub mod drivers;

pub use drivers::Drivers;

// What the modules use, at the paths they use it.
use rumoci_core::{Error, ErrorKind, Result};
use rumoci_core::{error, fs, limits, oci, show};
use rumoci_engine::{cas, layer_store};
