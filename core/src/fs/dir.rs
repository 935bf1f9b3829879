//! Directory listings and `/proc/self/fd` paths.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::io::Errno;

/// The names in the open directory `fd`, `.` and `..` left out, sorted by
/// bytes.
pub fn names<Fd: AsFd>(fd: Fd) -> Result<Vec<CString>, Errno> {
    let mut d = rustix::fs::Dir::read_from(fd)?;
    let mut names = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name();
        if n != c"." && n != c".." {
            names.push(n.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// `/proc/self/fd/<fd>[/<name>]`: the magic link (a descriptor, not a
/// symlink in any tree) is followed, `name` is left to the caller's `l*`
/// or `*at` call, which does not follow it.
pub fn proc_path(fd: BorrowedFd<'_>, name: Option<&CStr>) -> CString {
    let mut p = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        p.push(b'/');
        p.extend_from_slice(name.to_bytes());
    }
    // Neither part can hold a NUL byte.
    CString::new(p).unwrap_or_default()
}
