//! A bound on the tar headers a layer can make rumoci hold in memory.
//!
//! The tar parser reads a PAX extended header (`x`, `g`) or a GNU long name
//! (`L`, `K`) whole into memory before the entry it describes. A hostile
//! layer can claim gigabytes for one (zeros compress to almost nothing), so
//! the layer stream passes through [`Guard`], which follows the tar block
//! structure as the parser consumes it and refuses such a header before the
//! parser buffers it. The limit is Go's `archive/tar` one (1 MiB, its
//! `maxSpecialFileSize`), so every layer the Go umoci reads passes. That one
//! limit also bounds the PAX records of an entry (their number and size)
//! and so its xattrs, which travel as PAX records.

use std::io::{self, Read};

/// Largest PAX extended header or GNU long name/link accepted, in bytes
/// ([`crate::limits::MAX_TAR_EXTENSION`]).
pub const MAX_EXTENSION: u64 = crate::limits::MAX_TAR_EXTENSION;

const BLOCK: usize = 512;

/// A reader of a tar stream that fails when a header extension exceeds
/// [`MAX_EXTENSION`]. It passes the bytes through unchanged.
pub struct Guard<R> {
    inner: R,
    /// The header block being gathered.
    header: [u8; BLOCK],
    filled: usize,
    /// Bytes of the current member's data still to pass.
    data_left: u64,
    /// Then bytes of its padding.
    pad_left: u64,
    /// The current member is a local PAX header: its data, for `size`.
    pax: Option<Vec<u8>>,
    /// `size` from the last local PAX header, for the next member.
    next_size: Option<u64>,
    /// Offset of the current header in the stream, for errors.
    offset: u64,
    pos: u64,
}

impl<R: Read> Guard<R> {
    /// Guard the tar stream `inner`.
    pub fn new(inner: R) -> Guard<R> {
        Guard {
            inner,
            header: [0; BLOCK],
            filled: 0,
            data_left: 0,
            pad_left: 0,
            pax: None,
            next_size: None,
            offset: 0,
            pos: 0,
        }
    }

    /// Account for `bytes`, just read.
    fn scan(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.data_left > 0 {
                let n = usize::try_from(self.data_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                if let Some(p) = &mut self.pax {
                    p.extend_from_slice(&bytes[..n]);
                }
                self.data_left -= n as u64;
                self.pos += n as u64;
                bytes = &bytes[n..];
                if self.data_left == 0
                    && let Some(p) = self.pax.take()
                {
                    self.next_size = pax_size(&p);
                }
                continue;
            }
            if self.pad_left > 0 {
                let n = usize::try_from(self.pad_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.pad_left -= n as u64;
                self.pos += n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (BLOCK - self.filled).min(bytes.len());
            if self.filled == 0 {
                self.offset = self.pos;
            }
            self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            self.pos += n as u64;
            bytes = &bytes[n..];
            if self.filled == BLOCK {
                self.filled = 0;
                self.header_done()?;
            }
        }
        Ok(())
    }

    /// A whole header block has passed: size its member.
    fn header_done(&mut self) -> io::Result<()> {
        if self.header.iter().all(|&b| b == 0) {
            // end-of-archive block
            return Ok(());
        }
        let h = tar::Header::from_byte_slice(&self.header);
        let kind = h.entry_type();
        let extension = kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink();
        // a malformed size field is the parser's to report
        let Ok(mut size) = h.entry_size() else {
            return Ok(());
        };
        if extension {
            if size > MAX_EXTENSION {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "tar header at offset {}: a {} of {size} bytes exceeds the limit of {MAX_EXTENSION} bytes (limit MAX_TAR_EXTENSION)",
                        self.offset,
                        match kind.as_byte() {
                            b'L' => "GNU long name",
                            b'K' => "GNU long link name",
                            b'g' => "PAX global header",
                            _ => "PAX extended header",
                        }
                    ),
                ));
            }
            if kind.is_pax_local_extensions() {
                self.pax = Some(Vec::with_capacity(size as usize));
            }
        } else if let Some(s) = self.next_size.take() {
            // the parser, too, takes the member's size from PAX `size`
            size = s;
        }
        self.data_left = size;
        self.pad_left = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        if size == 0
            && let Some(p) = self.pax.take()
        {
            self.next_size = pax_size(&p);
        }
        Ok(())
    }
}

/// The `size` record of PAX extended header data, if any (the last one
/// wins, as in the parser).
fn pax_size(data: &[u8]) -> Option<u64> {
    let mut found = None;
    for ext in tar::PaxExtensions::new(data) {
        let Ok(ext) = ext else { break };
        if ext.key_bytes() == b"size" {
            found = std::str::from_utf8(ext.value_bytes())
                .ok()
                .and_then(|v| v.parse().ok());
        }
    }
    found
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pax_entry(records: &[(&str, &[u8])], name: &str, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions(records.iter().copied())
            .expect("pax");
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).expect("append");
        b.into_inner().expect("finish")
    }

    fn read_all(bytes: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        // hand the guard odd-sized reads, as a decompressor would
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        Guard::new(Chunks(bytes, chunk)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn passes_real_archives_through_unchanged() {
        let big = vec![b'x'; 100_000];
        let mut t = pax_entry(&[("SCHILY.xattr.user.a", b"v")], "a", b"hello");
        t.extend(pax_entry(
            &[("path", "l".repeat(300).as_bytes())],
            "b",
            &big,
        ));
        for chunk in [1, 7, 511, 512, 4096, 1 << 20] {
            assert_eq!(read_all(&t, chunk).expect("read"), t);
        }
    }

    #[test]
    fn refuses_oversized_extensions() {
        let huge = vec![b'x'; MAX_EXTENSION as usize];
        let t = pax_entry(&[("SCHILY.xattr.user.big", &huge)], "a", b"x");
        let e = read_all(&t, 4096).expect_err("too big");
        assert!(e.to_string().contains("PAX extended header"), "{e}");
        assert!(
            e.to_string().contains("exceeds the limit of 1048576 bytes"),
            "{e}"
        );
        // just under the limit passes
        let ok = vec![b'x'; MAX_EXTENSION as usize - 100];
        let t = pax_entry(&[("SCHILY.xattr.user.big", &ok)], "a", b"x");
        assert!(read_all(&t, 4096).is_ok());
    }

    #[test]
    fn follows_pax_size_of_the_next_member() {
        // a PAX size record overrides the header's: the guard must stay in
        // step with the parser (else a crafted header hides in file data)
        let data = vec![b'y'; 2000];
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"2000"[..])])
            .expect("pax");
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("f").expect("path");
        h.set_cksum();
        let mut raw = b.into_inner().expect("finish");
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(&data);
        raw.extend(vec![0u8; 512 - 2000 % 512]);
        // then an oversized long name: found only if the guard skipped
        // the 2000 bytes of data
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(MAX_EXTENSION + 1);
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend(vec![b'n'; 4096]);
        let e = read_all(&raw, 333).expect_err("long name too long");
        assert!(e.to_string().contains("GNU long name"), "{e}");
    }
}
