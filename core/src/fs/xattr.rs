//! Extended attributes, read and written in one way everywhere: through an
//! open descriptor (`f*xattr`) or a path whose last component is not
//! followed (`l*xattr`; for an entry in a directory descriptor, a
//! [`super::dir::proc_path`]).
//!
//! A filesystem without xattrs (`ENOTSUP`) has none; a name removed between
//! listing and reading (`ENODATA`) is absent. Buffers grow up to the
//! kernel's limits (64 KiB for a list and for a value).

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::path::Path;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

/// Extended attributes that are never image content, as in umoci: they
/// belong to the host (SELinux labels, NFSv4 ACLs), so layers neither carry
/// them nor set them, and mtrees do not record them.
pub const FORBIDDEN: &[&str] = &["security.selinux", "system.nfs4_acl"];

/// The kernel's `XATTR_LIST_MAX` and `XATTR_SIZE_MAX`.
pub const MAX: usize = 1 << 16;

/// What an xattr call acts on.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// An open descriptor (not an `O_PATH` one).
    Fd(BorrowedFd<'a>),
    /// A path; its last component is never followed.
    Path(&'a Path),
}

impl<'a> Node<'a> {
    /// The entry at the `/proc/self/fd/<dir>/<name>` path `proc`.
    pub fn proc(proc: &'a std::ffi::CStr) -> Node<'a> {
        use std::os::unix::ffi::OsStrExt;
        Node::Path(Path::new(std::ffi::OsStr::from_bytes(proc.to_bytes())))
    }

    fn list_raw(self, buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            Node::Fd(fd) => rustix::fs::flistxattr(fd, buf),
            Node::Path(p) => rustix::fs::llistxattr(p, buf),
        }
    }

    fn get_raw(self, name: &[u8], buf: &mut [u8]) -> Result<usize, Errno> {
        match self {
            Node::Fd(fd) => rustix::fs::fgetxattr(fd, name, buf),
            Node::Path(p) => rustix::fs::lgetxattr(p, name, buf),
        }
    }
}

/// Call `f` with a buffer that grows (from `start` up to [`MAX`]) while the
/// kernel answers `ERANGE`; the bytes it filled.
fn grow(
    start: usize,
    mut f: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; start];
    loop {
        match f(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if buf.len() < MAX => buf.resize((buf.len() * 4).min(MAX), 0),
            Err(e) => return Err(e),
        }
    }
}

/// The names of `node`'s xattrs (none where the filesystem has none).
pub fn list(node: Node<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    match grow(1024, |b| node.list_raw(b)) {
        Ok(buf) => Ok(buf
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(<[u8]>::to_vec)
            .collect()),
        Err(Errno::NOTSUP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The value of `node`'s xattr `name`; `None` if it has none.
pub fn get(node: Node<'_>, name: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
    match grow(256, |b| node.get_raw(name, b)) {
        Ok(v) => Ok(Some(v)),
        Err(Errno::NODATA | Errno::NOTSUP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Set `node`'s xattr `name` to `value`.
pub fn set(node: Node<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    match node {
        Node::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
        Node::Path(p) => rustix::fs::lsetxattr(p, name, value, XattrFlags::empty()),
    }
}

/// Every xattr of `node` whose (lossily decoded) name `skip` does not
/// refuse, by name.
pub fn read_all(
    node: Node<'_>,
    skip: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>, Errno> {
    let mut out = BTreeMap::new();
    for name in list(node)? {
        let key = String::from_utf8_lossy(&name).into_owned();
        if skip(&key) {
            continue;
        }
        if let Some(v) = get(node, &name)? {
            out.insert(key, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn values_past_the_first_buffer_and_names_by_fd_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        // user.* xattrs may be unsupported (tmpfs without user_xattr)
        if set(Node::Path(&p), b"user.small", b"v").is_err() {
            return;
        }
        // past the first buffers (256, 1024), within what ext4 keeps inline
        let big = vec![7u8; 3000];
        set(Node::Fd(f.as_fd()), b"user.big", &big).unwrap();
        assert_eq!(get(Node::Path(&p), b"user.big").unwrap().unwrap(), big);
        assert_eq!(get(Node::Fd(f.as_fd()), b"user.none").unwrap(), None);
        let all = read_all(Node::Fd(f.as_fd()), |n| n == "user.small").unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["user.big"]);
        let mut names = list(Node::Path(&p)).unwrap();
        names.sort();
        assert_eq!(names, [b"user.big".to_vec(), b"user.small".to_vec()]);
    }
}
