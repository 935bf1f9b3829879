//! Tar layers to a root filesystem (unpack) and back (generate).

pub mod generate;
