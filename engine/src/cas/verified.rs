//! A reader that checks size and digest of what it passes through.

use std::io::{self, Read};

use super::CasError;
use crate::oci::{Digest, Hasher};

/// Wraps a blob stream and fails the read that reaches the end if the content
/// is longer, shorter or different than its descriptor says. Never reads more
/// than `size + 1` bytes from the inner stream, so an endless blob cannot
/// exhaust anything.
pub struct VerifiedReader<R> {
    inner: R,
    expected: Digest,
    size: u64,
    seen: u64,
    hasher: Option<Hasher>,
    driver: Option<String>,
}

impl<R: Read> VerifiedReader<R> {
    /// Verify `inner` against `expected` and `size`.
    pub fn new(inner: R, expected: Digest, size: u64) -> Self {
        let hasher = Some(expected.algorithm().hasher());
        VerifiedReader {
            inner,
            expected,
            size,
            seen: 0,
            hasher,
            driver: None,
        }
    }

    /// Name the driver the content comes from in a failed check
    /// ([`CasError::ReadThrough`]); `None`: the built-in driver.
    pub fn through(mut self, driver: Option<String>) -> Self {
        self.driver = driver;
        self
    }

    fn fail(&self, e: CasError) -> io::Error {
        let e = match &self.driver {
            Some(d) => CasError::ReadThrough {
                driver: d.clone(),
                inner: Box::new(e),
            },
            None => e,
        };
        crate::error::Kinded::io(io::ErrorKind::InvalidData, e.kind(), e)
    }

    fn finish(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        // The content must end exactly at `size`: probe for one more byte.
        let mut probe = [0u8; 1];
        let extra = loop {
            match self.inner.read(&mut probe) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        // As umoci's verified reader: the digest of what was read (at most
        // `size` bytes) takes precedence, then the size. So a blob with a
        // byte added at its start is a digest mismatch, one with a byte
        // added at its end a size mismatch.
        let actual = hasher.finish();
        if actual != self.expected {
            return Err(self.fail(CasError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            }));
        }
        if self.seen != self.size || extra != 0 {
            return Err(self.fail(CasError::SizeMismatch {
                digest: self.expected.clone(),
                expected: self.size,
                actual: self.seen + extra as u64,
                longer: extra != 0,
            }));
        }
        Ok(())
    }

    /// Read (and verify) whatever is left. Call this when the consumer may
    /// stop before EOF, to still check the blob.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let left = self.size - self.seen;
        if left == 0 {
            self.finish()?;
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            self.finish()?;
            return Ok(0);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.seen += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], digest: &Digest, size: u64) -> Result<Vec<u8>, CasError> {
        let mut out = Vec::new();
        VerifiedReader::new(data, digest.clone(), size)
            .read_to_end(&mut out)
            .map_err(|e| CasError::io("test", e))?;
        Ok(out)
    }

    #[test]
    fn accepts_exact_and_refuses_lies() {
        let d = Digest::sha256_of(b"hello");
        assert_eq!(read_all(b"hello", &d, 5).expect("ok"), b"hello");
        // the digest of what was read is checked first (as umoci does)
        assert!(matches!(
            read_all(b"hell", &d, 5),
            Err(CasError::DigestMismatch { .. })
        ));
        let d4 = Digest::sha256_of(b"hell");
        assert!(matches!(
            read_all(b"hell", &d4, 5),
            Err(CasError::SizeMismatch { actual: 4, .. })
        ));
        assert!(matches!(
            read_all(b"hello!", &d, 5),
            Err(CasError::SizeMismatch { longer: true, .. })
        ));
        assert!(matches!(
            read_all(b"jello", &d, 5),
            Err(CasError::DigestMismatch { .. })
        ));
        assert!(matches!(
            read_all(b"hello", &d, 4),
            Err(CasError::DigestMismatch { .. })
        ));
        assert!(matches!(
            read_all(b"hello", &d4, 4),
            Err(CasError::SizeMismatch { longer: true, .. })
        ));
    }

    #[test]
    fn messages_say_what_umoci_says_and_name_the_blob() {
        let d = Digest::sha256_of(b"hello");
        let e = read_all(b"jello", &d, 5).expect_err("mismatch").to_string();
        assert!(e.contains("verified reader digest mismatch"), "{e}");
        assert!(e.contains(&d.to_string()), "{e}");
        // the digest of what was read comes first: shorter content is a
        // digest mismatch, the right content with more after it a size one
        let e = read_all(b"hell", &d, 5).expect_err("mismatch").to_string();
        assert!(e.contains("verified reader digest mismatch"), "{e}");
        let e = read_all(b"hello!", &d, 5)
            .expect_err("mismatch")
            .to_string();
        assert!(e.contains("verified reader size mismatch"), "{e}");
        assert!(e.contains(&d.to_string()), "{e}");
        let e = read_all(b" hello", &d, 5)
            .expect_err("mismatch")
            .to_string();
        assert!(e.contains("verified reader digest mismatch"), "{e}");
    }
}
