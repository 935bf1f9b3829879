//! One 512-byte tar header block: its layout, its format and its fields,
//! read as Go's `archive/tar` reads them (so every layer Docker, containerd
//! and the Go umoci accept reads the same here).

use super::TarError;

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// The header formats told apart by their magic (after the checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Unix V7: no magic; no owner names, devices or prefix.
    V7,
    /// POSIX ustar (also PAX): `ustar\0` magic, a 155-byte name prefix.
    Ustar,
    /// GNU (and old GNU): `ustar  \0` magic; atime/ctime and the old sparse
    /// map where ustar has its prefix.
    Gnu,
    /// Schily's star: ustar magic with a `tar\0` trailer; a shorter prefix
    /// and atime/ctime.
    Star,
}

// field ranges (offset, length)
const NAME: (usize, usize) = (0, 100);
const MODE: (usize, usize) = (100, 8);
const UID: (usize, usize) = (108, 8);
const GID: (usize, usize) = (116, 8);
const SIZE: (usize, usize) = (124, 12);
const MTIME: (usize, usize) = (136, 12);
const CHKSUM: (usize, usize) = (148, 8);
const TYPEFLAG: usize = 156;
const LINKNAME: (usize, usize) = (157, 100);
const MAGIC: (usize, usize) = (257, 6);
const VERSION: (usize, usize) = (263, 2);
const DEVMAJOR: (usize, usize) = (329, 8);
const DEVMINOR: (usize, usize) = (337, 8);
const USTAR_PREFIX: (usize, usize) = (345, 155);
const STAR_PREFIX: (usize, usize) = (345, 131);
const STAR_ATIME: (usize, usize) = (476, 12);
const STAR_TRAILER: (usize, usize) = (508, 4);
const GNU_ATIME: (usize, usize) = (345, 12);
const GNU_CTIME: (usize, usize) = (357, 12);
/// The old GNU sparse map in the header: 4 entries of offset and length.
const GNU_SPARSE: usize = 386;
const GNU_SPARSE_ENTRIES: usize = 4;
const GNU_IS_EXTENDED: usize = 482;
const GNU_REALSIZE: (usize, usize) = (483, 12);
/// An old GNU sparse extension block: 21 entries, then the extended flag.
const EXT_SPARSE_ENTRIES: usize = 21;
const EXT_IS_EXTENDED: usize = 504;

fn field(b: &[u8; BLOCK], (off, len): (usize, usize)) -> &[u8] {
    &b[off..off + len]
}

/// A string field: cut at the first NUL.
pub fn cut_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// A numeric field: base-256 when the high bit of the first byte is set,
/// else octal with NULs and spaces around it ignored (empty reads as 0).
pub fn numeric(b: &[u8]) -> Option<i64> {
    if let Some(&first) = b.first()
        && first & 0x80 != 0
    {
        // two's complement, big-endian, sign in bit 6 of the first byte
        let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
        let mut x: u64 = 0;
        for (i, &c) in b.iter().enumerate() {
            let mut c = c ^ inv;
            if i == 0 {
                c &= 0x7f;
            }
            if x >> 56 != 0 {
                return None;
            }
            x = (x << 8) | u64::from(c);
        }
        if x >> 63 != 0 {
            return None;
        }
        let x = x as i64;
        return Some(if inv == 0xff { !x } else { x });
    }
    octal(b)
}

fn octal(b: &[u8]) -> Option<i64> {
    let trim = |c: &u8| *c == b' ' || *c == 0;
    let start = b.iter().position(|c| !trim(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !trim(c)).map_or(start, |i| i + 1);
    let s = cut_nul(&b[start..end]);
    if s.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(s).ok()?;
    let v = u64::from_str_radix(s, 8).ok()?;
    Some(v as i64)
}

/// A parsed header block, before PAX records and long names apply.
#[derive(Debug, Clone)]
pub struct RawHeader {
    /// The format its magic says (its checksum checked).
    pub format: Format,
    /// The type flag as written.
    pub typeflag: u8,
    /// The name, with the ustar/star prefix (or the Go 1.7 writer's GNU
    /// "prefix") joined in.
    pub name: Vec<u8>,
    /// The link target.
    pub link: Vec<u8>,
    /// The size field (what the member stores).
    pub size: i64,
    /// Mode bits.
    pub mode: i64,
    /// Owner.
    pub uid: i64,
    /// Group.
    pub gid: i64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Access time where the format carries one (GNU, star).
    pub atime: Option<i64>,
    /// Device numbers.
    pub devmajor: i64,
    /// Device numbers.
    pub devminor: i64,
}

/// Whether `b` is the all-zero block (end of archive).
pub fn is_zero(b: &[u8; BLOCK]) -> bool {
    b.iter().all(|&c| c == 0)
}

/// The format of a block whose checksum matches, else `None`.
fn format(b: &[u8; BLOCK]) -> Option<Format> {
    let stored = octal(field(b, CHKSUM))?;
    let (mut unsigned, mut signed) = (0i64, 0i64);
    for (i, &c) in b.iter().enumerate() {
        let c = if (CHKSUM.0..CHKSUM.0 + CHKSUM.1).contains(&i) {
            b' '
        } else {
            c
        };
        unsigned += i64::from(c);
        signed += i64::from(c as i8);
    }
    if stored != unsigned && stored != signed {
        return None;
    }
    let magic = field(b, MAGIC);
    let version = field(b, VERSION);
    Some(
        if magic == b"ustar\0" && field(b, STAR_TRAILER) == b"tar\0" {
            Format::Star
        } else if magic == b"ustar\0" {
            Format::Ustar
        } else if magic == b"ustar " && version == b" \0" {
            Format::Gnu
        } else {
            Format::V7
        },
    )
}

/// Parse a header block at stream offset `offset`.
pub fn parse(b: &[u8; BLOCK], offset: u64) -> Result<RawHeader, TarError> {
    let bad = |what: &str| TarError::Header {
        offset,
        reason: what.to_string(),
    };
    let format = format(b).ok_or_else(|| bad("checksum mismatch (not a tar header)"))?;
    let num = |f: (usize, usize), what: &str| {
        numeric(field(b, f)).ok_or_else(|| bad(&format!("invalid {what} field")))
    };
    let mut h = RawHeader {
        format,
        typeflag: b[TYPEFLAG],
        name: cut_nul(field(b, NAME)).to_vec(),
        link: cut_nul(field(b, LINKNAME)).to_vec(),
        size: num(SIZE, "size")?,
        mode: num(MODE, "mode")?,
        uid: num(UID, "uid")?,
        gid: num(GID, "gid")?,
        mtime: num(MTIME, "mtime")?,
        atime: None,
        devmajor: 0,
        devminor: 0,
    };
    if format == Format::V7 {
        return Ok(h);
    }
    h.devmajor = num(DEVMAJOR, "devmajor")?;
    h.devminor = num(DEVMINOR, "devminor")?;
    let prefix: &[u8] = match format {
        Format::Ustar => cut_nul(field(b, USTAR_PREFIX)),
        Format::Star => {
            h.atime = Some(num(STAR_ATIME, "atime")?);
            cut_nul(field(b, STAR_PREFIX))
        }
        Format::Gnu => {
            // Go before 1.8 wrote a ustar prefix into GNU headers, over
            // the atime and ctime fields: when those do not parse as
            // numbers, the field is read as that prefix if it is ASCII.
            let time = |f| {
                let raw = field(b, f);
                if raw[0] == 0 {
                    Some(None)
                } else {
                    numeric(raw).map(Some)
                }
            };
            match (time(GNU_ATIME), time(GNU_CTIME)) {
                (Some(atime), Some(_)) => {
                    h.atime = atime;
                    b""
                }
                _ => {
                    let p = cut_nul(field(b, USTAR_PREFIX));
                    if p.is_ascii() { p } else { b"" }
                }
            }
        }
        Format::V7 => b"",
    };
    if !prefix.is_empty() {
        let mut name = prefix.to_vec();
        name.push(b'/');
        name.extend_from_slice(&h.name);
        h.name = name;
    }
    Ok(h)
}

/// Sparse map entries as written: (offset, length), unchecked.
pub type SparseEntries = Vec<(i64, i64)>;

/// The old GNU sparse fields of the header block `b` (of `format`, as
/// [`parse`] found it): the real size, the map entries in the header, and
/// whether extension blocks follow.
pub fn gnu_sparse(
    b: &[u8; BLOCK],
    format: Format,
    offset: u64,
) -> Result<(i64, SparseEntries, bool), TarError> {
    if format != Format::Gnu {
        return Err(TarError::Header {
            offset,
            reason: "old GNU sparse member without a GNU header".into(),
        });
    }
    let real = numeric(field(b, GNU_REALSIZE)).ok_or_else(|| TarError::Header {
        offset,
        reason: "invalid sparse real size".into(),
    })?;
    let (entries, more) =
        sparse_entries(b, GNU_SPARSE, GNU_SPARSE_ENTRIES, GNU_IS_EXTENDED, offset)?;
    Ok((real, entries, more))
}

/// The entries of an old GNU sparse extension block, and whether another
/// follows.
pub fn gnu_sparse_ext(b: &[u8; BLOCK], offset: u64) -> Result<(SparseEntries, bool), TarError> {
    sparse_entries(b, 0, EXT_SPARSE_ENTRIES, EXT_IS_EXTENDED, offset)
}

fn sparse_entries(
    b: &[u8; BLOCK],
    start: usize,
    count: usize,
    is_extended: usize,
    offset: u64,
) -> Result<(SparseEntries, bool), TarError> {
    let mut out = Vec::new();
    for i in 0..count {
        let at = start + i * 24;
        // as GNU tar, bsdtar and Go: an entry starting with NUL ends the map
        if b[at] == 0 {
            break;
        }
        let (Some(off), Some(len)) = (numeric(&b[at..at + 12]), numeric(&b[at + 12..at + 24]))
        else {
            return Err(TarError::Header {
                offset,
                reason: "invalid old GNU sparse map entry".into(),
            });
        };
        out.push((off, len));
    }
    Ok((out, b[is_extended] != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields_as_go_reads_them() {
        assert_eq!(numeric(b"0000644\0"), Some(0o644));
        assert_eq!(numeric(b"  644 \0\0"), Some(0o644));
        assert_eq!(numeric(b"\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(numeric(b"        "), Some(0));
        assert_eq!(numeric(b"0000644\0junk"), Some(0o644));
        assert_eq!(numeric(b"0009\0"), None);
        // base-256, positive and negative
        assert_eq!(numeric(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(numeric(&[0xff; 8]), Some(-1));
        // overflow
        assert_eq!(
            numeric(&[0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }

    #[test]
    fn names_cut_at_nul() {
        assert_eq!(cut_nul(b"abc\0def"), b"abc");
        assert_eq!(cut_nul(b"abc"), b"abc");
    }
}
