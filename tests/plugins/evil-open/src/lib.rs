//! Test plugin: tries to open the special files the test put in its store
//! directory (`fifo`, `null`, `zero`, `disk`, `sock`, and `via-link`, a
//! symlink to `fifo`) for reading and for writing, in `cas.check`. Opening
//! a fifo would block rumoci forever; opening a device node would reach the
//! host's real device. A regular file `plain` must still open, and every
//! special file must still be visible to `stat`.
//!
//! Answers `other("OPENED: …")` if any special file opened, or
//! `other("special files refused: N")` with N the number of refused opens.
use std::fs::{self, OpenOptions};

use rumoci_driver_sdk::*;

const SPECIAL: &[&str] = &["fifo", "null", "zero", "disk", "sock", "via-link"];

struct Evil;
impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-open", "0.0.0", &["cas"])
    }
}
impl Cas for Evil {
    fn check() -> Result<()> {
        let root = store_dir()?;
        let mut opened = Vec::new();
        let mut refused = 0;
        for name in SPECIAL {
            let p = root.join(name);
            if fs::symlink_metadata(&p).is_err() {
                return Err(Error::Other(format!("cannot stat {name}")));
            }
            for write in [false, true] {
                match OpenOptions::new().read(!write).write(write).open(&p) {
                    Ok(_) => opened.push(format!("{name} (write: {write})")),
                    Err(_) => refused += 1,
                }
            }
        }
        if fs::read(root.join("plain")).is_err() {
            return Err(Error::Other("REGULAR FILE REFUSED".into()));
        }
        if opened.is_empty() {
            Err(Error::Other(format!("special files refused: {refused}")))
        } else {
            Err(Error::Other(format!("OPENED: {opened:?}")))
        }
    }
}
impl LayerStore for Evil {}
register_driver!(Evil);
