//! The gzip inflater: ISA-L's `isal_inflate` (hand-written AVX2/AVX-512
//! assembly, about 1.3–1.6× the speed of zlib-rs on layers here) behind a
//! [`Read`] that accepts what Go's `gzip.Reader` accepts: any number of
//! concatenated members (pigz and rumoci's own parallel writer make many),
//! each member's CRC-32 and length checked, a truncated stream refused.
//!
//! Built when the `isal` feature is on (the default; building it needs
//! `nasm` and autotools). Without it, or with `RUMOCI_INFLATE=zlib-rs` in
//! the environment (benchmarks compare the two in one run), layers go
//! through flate2's zlib-rs.

// The one place rumoci-engine calls C: ISA-L's inflate through its FFI
// bindings. Every pointer handed to it is set just before the call from a
// buffer this reader owns or borrows for the call.
#![allow(unsafe_code)]

use std::io::{self, Read};

use isal_sys::igzip_lib as isal;

/// Compressed input is read in chunks of this size.
const IN_BUF: usize = 1 << 20;

/// A multi-member gzip decoder over `R`, driven by ISA-L.
pub struct GzReader<R> {
    inner: R,
    /// ISA-L's state: about 66 KiB, so boxed. Its `next_in` points into
    /// `input` (also heap-allocated, so neither moves with `self`).
    state: Box<isal::inflate_state>,
    input: Box<[u8]>,
    /// The inner reader returned end of file.
    eof: bool,
    /// Bytes of compressed input consumed before the current member began
    /// (for error messages).
    member_start: u64,
    consumed: u64,
    /// ISA-L has not yet been called on the current member: its header
    /// must be in the buffer whole first (ISA-L misreads a header with
    /// optional fields that arrives split across calls).
    at_member_start: bool,
}

// SAFETY: the raw pointers in `state` point only into `input` and into the
// caller's buffer during `read`; both are owned or borrowed by this value.
unsafe impl<R: Send> Send for GzReader<R> {}

impl<R: Read> GzReader<R> {
    /// A decoder reading gzip from `inner`.
    pub fn new(inner: R) -> Self {
        let mut state: Box<std::mem::MaybeUninit<isal::inflate_state>> = Box::new_uninit();
        // SAFETY: isal_inflate_init initialises every field ISA-L reads.
        let mut state = unsafe {
            isal::isal_inflate_init(state.as_mut_ptr());
            state.assume_init()
        };
        state.crc_flag = isal::ISAL_GZIP;
        state.next_in = std::ptr::null_mut();
        state.avail_in = 0;
        GzReader {
            inner,
            state,
            input: vec![0u8; IN_BUF].into_boxed_slice(),
            eof: false,
            member_start: 0,
            consumed: 0,
            at_member_start: true,
        }
    }

    /// Refill the input buffer: keep the unconsumed tail, read more after
    /// it. Returns the number of bytes read (0 at end of file).
    fn refill(&mut self) -> io::Result<usize> {
        let left = self.state.avail_in as usize;
        let start = if left == 0 || self.state.next_in.is_null() {
            0
        } else {
            // SAFETY: next_in points into `input` with `left` bytes after it.
            let off = unsafe { self.state.next_in.offset_from(self.input.as_ptr()) } as usize;
            self.input.copy_within(off..off + left, 0);
            left
        };
        let n = loop {
            match self.inner.read(&mut self.input[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.state.next_in = self.input.as_mut_ptr();
        self.state.avail_in = (start + n) as u32;
        Ok(n)
    }

    /// At a member's start, read until its whole header is buffered (or
    /// the input ends: ISA-L then reports the truncation).
    fn buffer_header(&mut self) -> io::Result<()> {
        loop {
            let avail = self.state.avail_in as usize;
            let buffered: &[u8] = if avail == 0 || self.state.next_in.is_null() {
                &[]
            } else {
                // SAFETY: next_in points at `avail` initialised bytes of `input`.
                unsafe { std::slice::from_raw_parts(self.state.next_in, avail) }
            };
            if self.eof || header_len(buffered).is_some() {
                return Ok(());
            }
            if avail == self.input.len() {
                return Err(self.invalid("header larger than 1 MiB"));
            }
            self.refill()?;
        }
    }

    fn invalid(&self, what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "gzip: {what} (member starting at compressed byte {})",
                self.member_start
            ),
        )
    }
}

impl<R: Read> Read for GzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // ISA-L counts in u32; a larger buffer is filled in several reads.
        let want = buf.len().min(u32::MAX as usize);
        loop {
            if self.state.avail_in == 0 && !self.eof {
                self.refill()?;
            }
            if self.state.block_state == isal::isal_block_state_ISAL_BLOCK_FINISH {
                // A member ended, its trailer checked. More input is another
                // member; none is the end of the stream.
                if self.state.avail_in == 0 {
                    if self.eof {
                        return Ok(0);
                    }
                    continue;
                }
                // SAFETY: the state was initialised by isal_inflate_init.
                let (next_in, avail_in) = (self.state.next_in, self.state.avail_in);
                unsafe { isal::isal_inflate_reset(&mut *self.state) };
                self.state.crc_flag = isal::ISAL_GZIP;
                self.state.next_in = next_in;
                self.state.avail_in = avail_in;
                self.member_start = self.consumed;
                self.at_member_start = true;
            }
            if self.at_member_start {
                self.buffer_header()?;
                self.at_member_start = false;
            }
            let in_before = self.state.avail_in;
            self.state.next_out = buf.as_mut_ptr();
            self.state.avail_out = want as u32;
            // SAFETY: next_in/avail_in describe initialised bytes of
            // `input`; next_out/avail_out describe `buf`.
            let ret = unsafe { isal::isal_inflate(&mut *self.state) };
            self.state.next_out = std::ptr::null_mut();
            let produced = want - self.state.avail_out as usize;
            self.state.avail_out = 0;
            // ISA-L can hand back bytes it had buffered in an earlier call
            // (at a member's end): avail_in may grow.
            self.consumed = (self.consumed + u64::from(in_before))
                .saturating_sub(u64::from(self.state.avail_in));
            match ret {
                0 => {}
                isal::ISAL_INVALID_BLOCK => return Err(self.invalid("invalid deflate block")),
                isal::ISAL_INVALID_SYMBOL => return Err(self.invalid("invalid deflate symbol")),
                isal::ISAL_INVALID_LOOKBACK => {
                    return Err(self.invalid("invalid back-reference distance"));
                }
                isal::ISAL_INVALID_WRAPPER => return Err(self.invalid("invalid gzip header")),
                isal::ISAL_UNSUPPORTED_METHOD => {
                    return Err(self.invalid("compression method is not deflate"));
                }
                isal::ISAL_INCORRECT_CHECKSUM => {
                    return Err(
                        self.invalid("CRC-32 or length in the trailer does not match the data")
                    );
                }
                other => return Err(self.invalid(&format!("inflate failed (ISA-L code {other})"))),
            }
            if produced > 0 {
                return Ok(produced);
            }
            let finished = self.state.block_state == isal::isal_block_state_ISAL_BLOCK_FINISH;
            if !finished && self.state.avail_in == in_before {
                // No progress with the input at hand: it needs more.
                if self.eof {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "gzip: stream truncated (member starting at compressed byte {})",
                            self.member_start
                        ),
                    ));
                }
                if self.state.avail_in as usize == self.input.len() {
                    return Err(self.invalid("no progress through a full input buffer"));
                }
                self.refill()?;
            }
            // (input used up at the end without finishing: the next pass
            // makes no progress and reports the truncation)
        }
    }
}

/// The length of the gzip header at the start of `buf` (RFC 1952 2.3:
/// ten fixed bytes, then the optional extra field, name, comment and
/// header CRC the flags announce), or `None` if `buf` does not hold all
/// of it. Bytes that are not a gzip header count as complete: ISA-L
/// refuses them.
fn header_len(buf: &[u8]) -> Option<usize> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if buf.len() >= 2 && buf[..2] != [0x1f, 0x8b] {
        return Some(0);
    }
    let flags = *buf.get(3)?;
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let len = buf.get(pos..pos + 2)?;
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            pos += buf.get(pos..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    (buf.len() >= pos).then_some(pos)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut x: u32 = 12345;
        while v.len() < n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            // compressible: a small alphabet with runs
            let b = b"abcdefgh  \n"[(x >> 16) as usize % 11];
            for _ in 0..(x >> 28) {
                v.push(b);
            }
        }
        v.truncate(n);
        v
    }

    /// A reader that hands out at most `step` bytes per read.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn inflate(gz: &[u8], step: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzReader::new(Trickle(gz, step)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn matches_flate2_over_members_and_chunkings() {
        let a = sample(3 << 20);
        let b = sample(1000);
        let mut gz = gzip(&a, 6);
        gz.extend(gzip(b"", 1)); // an empty member, as rumoci's writer makes
        gz.extend(gzip(&b, 9));
        let mut want = a.clone();
        want.extend(&b);
        for step in [1usize, 7, 4096, usize::MAX] {
            let got = inflate(&gz, step).unwrap();
            assert!(
                got == want,
                "step {step}: {} bytes, want {}",
                got.len(),
                want.len()
            );
        }
    }

    #[test]
    fn header_fields_are_skipped() {
        let data = sample(100_000);
        let mut e = flate2::GzBuilder::new()
            .filename(&b"layer.tar"[..])
            .comment(&b"made by a test"[..])
            .extra(vec![7u8; 300])
            .write(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        let one = e.finish().unwrap();
        // two such members: the second header arrives mid-stream
        let gz = [one.clone(), one].concat();
        let data = [data.clone(), data].concat();
        for step in [1usize, 3, 4096, usize::MAX] {
            assert!(inflate(&gz, step).unwrap() == data, "step {step}");
        }
    }

    #[test]
    fn empty_input_is_refused_like_flate2_and_go() {
        let e = inflate(b"", usize::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let mut v = Vec::new();
        let f = flate2::read::MultiGzDecoder::new(&b""[..]).read_to_end(&mut v);
        assert_eq!(f.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn refuses_bad_crc_truncation_and_garbage() {
        let data = sample(200_000);
        let gz = gzip(&data, 6);
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 6] ^= 0xff; // CRC-32 in the trailer
        let e = inflate(&bad, usize::MAX).unwrap_err();
        assert!(e.to_string().contains("CRC-32"), "{e}");

        let e = inflate(&gz[..gz.len() / 2], usize::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let e = inflate(&gz[..gz.len() - 3], 5).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");

        let mut trailing = gz.clone();
        trailing.extend(b"not gzip at all");
        assert!(inflate(&trailing, usize::MAX).is_err());

        let e = inflate(b"\x1f\x8b\x09\x00\x00\x00\x00\x00\x00\x03rest", usize::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    }
}
