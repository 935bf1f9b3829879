//! The ISA-L gzip reader never panics or crashes on any input, whatever
//! size the reads come in, and where both it and flate2's zlib-rs accept a
//! stream they agree on every byte.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use rumoci::layer::inflate::GzReader;

/// Hands out at most `step` bytes per read.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(self.1).min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Output beyond this is not compared (a small input can inflate a lot).
const CAP: u64 = 8 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&first, gz)) = data.split_first() else {
        return;
    };
    let step = usize::from(first).max(1) * 97;
    let mut ours = Vec::new();
    let a = GzReader::new(Trickle(gz, step))
        .take(CAP)
        .read_to_end(&mut ours);
    let mut theirs = Vec::new();
    let b = flate2::read::MultiGzDecoder::new(gz)
        .take(CAP)
        .read_to_end(&mut theirs);
    if a.is_ok() && b.is_ok() {
        assert!(ours == theirs, "ISA-L and zlib-rs disagree");
    }
});
