//! The filesystem layer every walk, copy, extraction and xattr access of
//! rumoci goes through: descriptors rather than paths, symlinks never
//! followed, paths as bytes.
//!
//! * [`root`]: a directory opened as a root (`openat2` with
//!   `RESOLVE_IN_ROOT`), and trees removed, emptied or measured beneath a
//!   descriptor without following anything;
//! * [`walk`]: the one tree walk (depth first, sorted, descriptor by
//!   descriptor, never through a symlink);
//! * [`dir`]: the names in an open directory, and `/proc/self/fd` paths
//!   that reach an entry without following it;
//! * [`xattr`]: extended attributes of an open descriptor or of a name
//!   that is not followed (list, get, set, all at once);
//! * [`atomic`]: whole-file writes a crash cannot leave half done;
//! * [`unpriv`]: trees of directories an unprivileged owner cannot enter,
//!   opened up for as long as rumoci reads them.

pub mod atomic;
pub mod dir;
pub mod root;
pub mod unpriv;
pub mod walk;
pub mod xattr;
