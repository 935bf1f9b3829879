//! Sparse members: their maps (old GNU `S`, PAX GNU 0.0, 0.1 and 1.0),
//! checked as Go's `archive/tar` checks them, and the real file written
//! back with its holes left as holes.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use sha2::Digest as _;

/// One data segment of a sparse file: `len` bytes at `offset`; the bytes
/// between segments (and after the last, up to the file's size) are a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Where the data starts in the real file.
    pub offset: u64,
    /// How many bytes of data.
    pub len: u64,
}

/// A failure writing a sparse member out.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the member's data failed.
    Read(io::Error),
    /// Writing the file failed.
    Write(io::Error),
}

/// Check a map against the real `size`: offsets and lengths non-negative,
/// segments in order without overlap, none past the end. The segments, or
/// why not.
pub fn validate(entries: &[(i64, i64)], size: i64) -> Result<Vec<Segment>, String> {
    if size < 0 {
        return Err(format!("negative real size {size}"));
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut end = 0u64;
    for &(offset, len) in entries {
        let (Ok(o), Ok(l)) = (u64::try_from(offset), u64::try_from(len)) else {
            return Err(format!("negative sparse entry {offset}+{len}"));
        };
        let seg_end = o
            .checked_add(l)
            .filter(|&e| e <= size as u64)
            .ok_or_else(|| format!("sparse entry {o}+{l} past the real size {size}"))?;
        if o < end {
            return Err(format!("sparse entry {o}+{l} overlaps the one before"));
        }
        end = seg_end;
        out.push(Segment { offset: o, len: l });
    }
    Ok(out)
}

/// The bytes the segments hold.
pub fn data_len(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| s.len).sum()
}

/// Parse a GNU 0.1 map (`GNU.sparse.map`, `off,len,off,len…`) of `count`
/// entries (`GNU.sparse.numblocks`).
pub fn parse_map_01(count: &[u8], map: &[u8]) -> Result<Vec<(i64, i64)>, String> {
    let n = super::pax::int(count)
        .filter(|&n| n >= 0)
        .ok_or("invalid GNU.sparse.numblocks")?;
    let fields: Vec<&[u8]> = if map.is_empty() {
        Vec::new()
    } else {
        map.split(|&c| c == b',').collect()
    };
    if fields.len() as u64 != 2 * n as u64 {
        return Err(format!(
            "GNU.sparse.map has {} numbers for {n} entries",
            fields.len()
        ));
    }
    fields
        .chunks(2)
        .map(|p| match (super::pax::int(p[0]), super::pax::int(p[1])) {
            (Some(o), Some(l)) => Ok((o, l)),
            _ => Err("invalid number in GNU.sparse.map".to_string()),
        })
        .collect()
}

/// Read a GNU 1.0 map from the start of the member's data: decimal
/// numbers one per line (the count, then offset and length pairs), in
/// whole blocks. At most `limit` bytes of map. Returns the entries and the
/// bytes consumed (a multiple of 512).
pub fn read_map_10(r: &mut impl Read, limit: u64) -> Result<(Vec<(i64, i64)>, u64), String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    let mut block = [0u8; 512];
    let mut next = |buf: &mut Vec<u8>, pos: &mut usize| -> Result<i64, String> {
        loop {
            if let Some(i) = buf[*pos..].iter().position(|&c| c == b'\n') {
                let tok = &buf[*pos..*pos + i];
                let v = super::pax::int(tok)
                    .ok_or_else(|| "invalid number in the GNU 1.0 sparse map".to_string())?;
                *pos += i + 1;
                return Ok(v);
            }
            if buf.len() as u64 + 512 > limit {
                return Err(format!("GNU 1.0 sparse map exceeds {limit} bytes"));
            }
            r.read_exact(&mut block)
                .map_err(|e| format!("GNU 1.0 sparse map: {e}"))?;
            buf.extend_from_slice(&block);
        }
    };
    let n = next(&mut buf, &mut pos)?;
    if n < 0 {
        return Err("negative GNU 1.0 sparse map size".into());
    }
    let mut entries = Vec::new();
    for _ in 0..n {
        let o = next(&mut buf, &mut pos)?;
        let l = next(&mut buf, &mut pos)?;
        entries.push((o, l));
    }
    Ok((entries, buf.len() as u64))
}

/// Write a sparse member's data (`data`, the segments' bytes one after the
/// other) into `file` at the segments' offsets, leaving holes unwritten,
/// then give the file its real `size`. Returns the sha256 of the real
/// content (holes read as zeros).
pub fn write_out(
    data: &mut impl Read,
    file: &File,
    segments: &[Segment],
    size: u64,
) -> Result<[u8; 32], CopyError> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    let zeros = |hasher: &mut sha2::Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(ZEROS.len() as u64) as usize;
            hasher.update(&ZEROS[..k]);
            n -= k as u64;
        }
    };
    for s in segments {
        zeros(&mut hasher, s.offset.saturating_sub(at));
        let mut left = s.len;
        let mut off = s.offset;
        while left > 0 {
            let k = left.min(buf.len() as u64) as usize;
            data.read_exact(&mut buf[..k]).map_err(CopyError::Read)?;
            hasher.update(&buf[..k]);
            file.write_all_at(&buf[..k], off)
                .map_err(CopyError::Write)?;
            off += k as u64;
            left -= k as u64;
        }
        at = s.offset + s.len;
    }
    zeros(&mut hasher, size.saturating_sub(at));
    file.set_len(size).map_err(CopyError::Write)?;
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_checked_like_go() {
        assert!(validate(&[(0, 5), (10, 5)], 15).is_ok());
        assert!(validate(&[(0, 5), (10, 5)], 14).is_err(), "past the end");
        assert!(validate(&[(0, 5), (4, 5)], 20).is_err(), "overlap");
        assert!(validate(&[(10, 5), (0, 5)], 20).is_err(), "out of order");
        assert!(validate(&[(-1, 5)], 20).is_err());
        assert!(validate(&[(i64::MAX, 5)], i64::MAX).is_err(), "overflow");
        assert!(validate(&[], 0).is_ok());
        assert!(validate(&[(15, 0)], 15).is_ok(), "GNU tar's end marker");
    }

    #[test]
    fn maps_01_and_10() {
        assert_eq!(parse_map_01(b"2", b"0,5,10,5"), Ok(vec![(0, 5), (10, 5)]));
        assert_eq!(parse_map_01(b"0", b""), Ok(vec![]));
        assert!(parse_map_01(b"3", b"0,5,10,5").is_err());
        assert!(parse_map_01(b"x", b"").is_err());
        let mut m = b"2\n0\n5\n10\n5\n".to_vec();
        m.resize(512, 0);
        m.extend_from_slice(b"DATA");
        let mut r = &m[..];
        assert_eq!(
            read_map_10(&mut r, 1 << 20),
            Ok((vec![(0, 5), (10, 5)], 512))
        );
        assert_eq!(r, b"DATA");
        let mut endless = std::io::repeat(b'1');
        assert!(read_map_10(&mut endless, 4096).is_err());
    }

    #[test]
    fn holes_stay_holes() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("f");
        let file = File::create(&path).expect("create");
        let segs = [
            Segment { offset: 0, len: 3 },
            Segment {
                offset: 4 << 20,
                len: 2,
            },
        ];
        let digest = write_out(&mut &b"abcde"[..], &file, &segs, 8 << 20).expect("write");
        let content = std::fs::read(&path).expect("read");
        assert_eq!(content.len(), 8 << 20);
        assert_eq!(&content[..3], b"abc");
        assert_eq!(&content[4 << 20..(4 << 20) + 2], b"de");
        assert_eq!(digest, <[u8; 32]>::from(sha2::Sha256::digest(&content)));
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&path).expect("stat").blocks();
        assert!(blocks * 512 < 1 << 20, "holes written: {blocks} blocks");
    }
}
