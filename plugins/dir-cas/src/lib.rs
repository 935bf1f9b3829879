//! `dir-cas`: a rumoci content-store driver keeping an OCI image layout in
//! its one preopened directory (the layout path the user gives).
//!
//! Layout: `oci-layout`, `index.json`, `blobs/<alg>/<enc>`; temporaries are
//! `.rumoci-tmp-*` files at the top (the same names the built-in driver
//! uses, so either driver's `clean` removes the other's leftovers).
//! Writes are atomic (temporary + rename). Compare-and-swap of `index.json`
//! is atomic within one process; the host serialises calls per instance.

mod store;

pub use store::DirCasDriver;

rumoci_driver_sdk::register_driver!(DirCasDriver);
