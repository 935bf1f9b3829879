//! Displaying paths and names in error messages.
//!
//! Paths, tags and file names in errors come from outside (a layout, a
//! tar, a plugin, the command line) and may be kilobytes long or hold
//! control characters and bytes that are not UTF-8. [`name`] renders any of
//! them on one line and at most about [`MAX_SHOWN`] bytes long: the start
//! and the end are kept (the parts that tell where and what), the middle is
//! replaced by `…(N bytes)…`. Control characters are escaped (`\n`,
//! `\u{1b}`), bytes that are not UTF-8 are shown as `\xNN`.

use std::borrow::Cow;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Longest rendering (in input bytes) shown whole; longer input keeps
/// its first and last [`KEEP`] bytes.
pub const MAX_SHOWN: usize = 256;
/// Bytes kept at each end of a shortened name.
pub const KEEP: usize = 100;

/// Something with a byte representation that can be shown in an error:
/// paths, OS strings, strings and raw bytes (file names from tar headers).
pub trait NameBytes {
    /// The raw bytes of the name.
    fn name_bytes(&self) -> Cow<'_, [u8]>;
}

impl NameBytes for [u8] {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}
impl NameBytes for Vec<u8> {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}
impl NameBytes for str {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}
impl NameBytes for String {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_bytes())
    }
}
impl NameBytes for OsStr {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        use std::os::unix::ffi::OsStrExt;
        Cow::Borrowed(self.as_bytes())
    }
}
impl NameBytes for OsString {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        self.as_os_str().name_bytes()
    }
}
impl NameBytes for Path {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        self.as_os_str().name_bytes()
    }
}
impl NameBytes for PathBuf {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        self.as_os_str().name_bytes()
    }
}
impl NameBytes for bstr::BStr {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self)
    }
}
impl NameBytes for bstr::BString {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.as_slice())
    }
}
impl<T: NameBytes + ?Sized> NameBytes for &T {
    fn name_bytes(&self) -> Cow<'_, [u8]> {
        (**self).name_bytes()
    }
}

/// `name` rendered for an error message: one line, escaped, and shortened
/// to its start and end when longer than [`MAX_SHOWN`] bytes.
pub fn name<T: NameBytes + ?Sized>(name: &T) -> String {
    let b = name.name_bytes();
    if b.len() <= MAX_SHOWN {
        return render(&b);
    }
    // cut at character boundaries (a continuation byte is 0b10xx_xxxx)
    let mut head = KEEP;
    while head > KEEP - 3 && b[head] & 0xc0 == 0x80 {
        head -= 1;
    }
    let mut tail = b.len() - KEEP;
    while tail < b.len() - KEEP + 3 && b[tail] & 0xc0 == 0x80 {
        tail += 1;
    }
    format!(
        "{}…({} bytes)…{}",
        render(&b[..head]),
        tail - head,
        render(&b[tail..])
    )
}

fn render(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for x in chunk.invalid() {
            out.push_str(&format!("\\x{x:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_shown_whole_and_escaped() {
        assert_eq!(name("a/b c"), "a/b c");
        assert_eq!(name(Path::new("x\ny")), "x\\ny");
        assert_eq!(name(&b"caf\xc3\xa9 \xff"[..]), "café \\xff");
        assert_eq!(name("back\\slash"), "back\\\\slash");
    }

    #[test]
    fn long_names_keep_start_and_end() {
        let long = format!("/start/{}end", "d/".repeat(3000));
        assert_eq!(long.len(), 6010);
        let s = name(Path::new(&long));
        assert!(s.len() < 2 * KEEP + 40, "{}", s.len());
        assert!(s.starts_with("/start/d/d/"), "{s}");
        assert!(s.ends_with("d/d/end"), "{s}");
        assert!(s.contains("…(5810 bytes)…"), "{s}");
        // raw bytes, not UTF-8, and a multi-byte character on the cut
        let mut raw = vec![0xffu8; 10];
        raw.extend("é".repeat(3000).as_bytes());
        let s = name(&raw);
        assert!(s.starts_with("\\xff"), "{s}");
        assert!(s.ends_with('é') && !s.contains('\u{fffd}'), "{s}");
        assert!(s.len() < 2 * KEEP + 80, "{}", s.len());
    }
}
