//! Content-addressable storage.
