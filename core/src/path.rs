//! Paths inside an image or a root filesystem, as bytes.
//!
//! Linux file names are arbitrary bytes except `/` and NUL, and real images
//! carry names that are not UTF-8 (Latin-1 `caf\xe9`, say). rumoci keeps
//! every in-image path as a [`BString`] from the tar header to the
//! filesystem call and back, and only ever shows one lossily (in messages,
//! through [`Display`](std::fmt::Display)) or encodes one losslessly (go-mtree's
//! `vis` in manifests, `rumoci::mtree::vis`).
//!
//! An in-image path here is *relative* and *clean*: `/`-separated, no empty,
//! `.` or `..` components, the root itself being the empty path (see
//! [`clean`]).

pub use bstr::{BStr, BString, ByteSlice, ByteVec};

/// Lexically clean an archive path: rooted, `.` and `..` resolved (never
/// above the root), made relative. The root itself is the empty path.
pub fn clean(p: &[u8]) -> BString {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    BString::from(parts.join(&b'/'))
}

/// Split a clean path into (parent, name); the root has no name.
pub fn split_parent(p: &BStr) -> (&BStr, &BStr) {
    match p.rfind_byte(b'/') {
        Some(i) => (p[..i].as_bstr(), p[i + 1..].as_bstr()),
        None => (b"".as_bstr(), p),
    }
}

/// The last component of a clean path (the path itself when it has no `/`).
pub fn base_name(p: &BStr) -> &BStr {
    split_parent(p).1
}

/// `dir/name`, or `name` when `dir` is the root.
pub fn join(dir: &[u8], name: &[u8]) -> BString {
    let mut out = BString::from(Vec::with_capacity(dir.len() + 1 + name.len()));
    if !dir.is_empty() {
        out.push_str(dir);
        out.push_byte(b'/');
    }
    out.push_str(name);
    out
}

/// Whether `path` is `dir` itself or lies beneath it (the root contains
/// everything).
pub fn is_within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || path == dir
        || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

/// The components of the relative path `dir` (empty ones skipped), each
/// with the path of its parent and its own path: `"a/b"` gives
/// `("", "a", "a")` and `("a", "b", "a/b")`.
pub fn components(dir: &BStr) -> impl Iterator<Item = (BString, &BStr, BString)> {
    let mut at = BString::from("");
    dir.split_str("/")
        .filter(|c| !c.is_empty())
        .map(move |comp| {
            let parent = at.clone();
            if !at.is_empty() {
                at.push_byte(b'/');
            }
            at.push_str(comp);
            (parent, comp.as_bstr(), at.clone())
        })
}

/// The number of components of a clean path (0 for the root).
pub fn depth(p: &[u8]) -> usize {
    if p.is_empty() {
        0
    } else {
        p.iter().filter(|&&b| b == b'/').count() + 1
    }
}

/// A path as an [`OsStr`](std::ffi::OsStr) for `std::fs` (no conversion:
/// Unix paths are bytes).
pub fn os(p: &[u8]) -> &std::ffi::OsStr {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(p)
}

/// The bytes of an [`OsStr`](std::ffi::OsStr) (a host file name).
pub fn bytes(p: &std::ffi::OsStr) -> &BStr {
    use std::os::unix::ffi::OsStrExt;
    p.as_bytes().as_bstr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_never_climbs() {
        assert_eq!(clean(b"/../../etc/passwd"), "etc/passwd");
        assert_eq!(clean(b"./a/./b/../c/"), "a/c");
        assert_eq!(clean(b"../"), "");
        assert_eq!(clean(b"."), "");
        assert_eq!(clean(b"caf\xe9/../men\xfc"), &b"men\xfc"[..]);
    }

    #[test]
    fn split_join_within() {
        assert_eq!(
            split_parent(b"a/b/c".as_bstr()),
            (b"a/b".as_bstr(), b"c".as_bstr())
        );
        assert_eq!(
            split_parent(b"c".as_bstr()),
            (b"".as_bstr(), b"c".as_bstr())
        );
        assert_eq!(join(b"", b"x"), "x");
        assert_eq!(join(b"a\xff", b"x"), &b"a\xff/x"[..]);
        assert!(is_within(b"a/b", b"a"));
        assert!(is_within(b"a", b"a"));
        assert!(!is_within(b"ab", b"a"));
        assert!(is_within(b"anything", b""));
        let c: Vec<_> = components(b"a/\xe9".as_bstr()).collect();
        assert_eq!(c[1].0, "a");
        assert_eq!(c[1].1, &b"\xe9"[..]);
        assert_eq!(c[1].2, &b"a/\xe9"[..]);
        assert_eq!(depth(b""), 0);
        assert_eq!(depth(b"a/b"), 2);
    }
}
