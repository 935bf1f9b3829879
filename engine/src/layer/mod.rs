//! Tar layers to a root filesystem (unpack) and back (generate).

pub mod compress;
pub mod copy;
pub mod extract;
pub mod generate;
pub mod idmap;
#[cfg(feature = "isal")]
pub mod inflate;
pub mod overlayfs;
pub(crate) mod pipe;
pub mod tarread;
