//! Tar layers to a root filesystem (unpack) and back (generate).
