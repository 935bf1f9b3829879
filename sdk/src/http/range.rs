//! A blob read through `Range:` GETs.

use std::io::{self, Read};

use super::Response;
use crate::{BlobRead, Error, Level, Result, log};

/// Times [`RangeReader::read_at`] resumes after a response failed
/// mid-body, before it gives up.
pub const RESUMES: usize = 3;

/// What a [`RangeReader`] reads: one resource, fetched with GETs.
pub trait RangeSource: 'static {
    /// Send the resource's `GET` with `headers` (a `Range: bytes=N-`),
    /// retried as the driver retries reads, and answer the response if
    /// its status is 200 or 206; any other status is an error (the
    /// driver's own message for it).
    fn get(&self, headers: &[(&str, &str)]) -> Result<Response>;
    /// How error messages name the request: they read `WHAT: problem`
    /// (`GET s3://bucket/key (http://127.0.0.1:8333)`).
    fn what(&self) -> String;
    /// How the log's warning names the resource when a read is resumed.
    fn name(&self) -> String;
}

/// A [`BlobRead`] of `size` bytes served by GETs of a [`RangeSource`]:
/// reads that follow each other continue on the open response, a seek
/// starts a new `Range:` request, and a response that fails or ends early
/// mid-body (a dropped connection, an idle one the server closed) is
/// resumed with a `Range:` request from where the reads are, up to
/// [`RESUMES`] times per read (each logged as a warning). A server that
/// ignores `Range:` (answers 200) is read up to the offset; a `206` whose
/// `Content-Range` does not start at the offset is an `io` error.
pub struct RangeReader<S> {
    source: S,
    size: u64,
    /// The open response and the offset it is at.
    stream: Option<(u64, Response)>,
}

impl<S: RangeSource> RangeReader<S> {
    /// A reader whose first read sends the first GET.
    pub fn new(source: S, size: u64) -> RangeReader<S> {
        RangeReader {
            source,
            size,
            stream: None,
        }
    }

    /// A reader whose reads from offset 0 continue on `response` (the
    /// answer of a plain GET that told the size).
    pub fn with_response(source: S, size: u64, response: Response) -> RangeReader<S> {
        RangeReader {
            source,
            size,
            stream: Some((0, response)),
        }
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    fn io_error(&self, problem: impl std::fmt::Display) -> Error {
        Error::Io(format!("{}: {problem}", self.source.what()))
    }

    fn start(&mut self, offset: u64) -> Result<()> {
        let range = format!("bytes={offset}-");
        let mut r = self.source.get(&[("Range", &range)])?;
        if r.status == 206 {
            let ok = r
                .header("content-range")
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .is_some_and(|start| start == offset.to_string());
            if !ok {
                return Err(self.io_error(format_args!("Content-Range does not start at {offset}")));
            }
        } else if offset > 0 {
            // the server ignored Range: skip to the offset
            let skipped = io::copy(&mut (&mut r).take(offset), &mut io::sink())
                .map_err(|e| self.io_error(e))?;
            if skipped != offset {
                return Err(self.io_error(format_args!("body ended before offset {offset}")));
            }
        }
        self.stream = Some((offset, r));
        Ok(())
    }

    fn read_from_stream(&mut self, len: u32) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(len as usize);
        if let Some((pos, r)) = &mut self.stream {
            r.take(u64::from(len)).read_to_end(&mut buf)?;
            *pos += buf.len() as u64;
        }
        Ok(buf)
    }
}

impl<S: RangeSource> BlobRead for RangeReader<S> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, len: u32) -> Result<Vec<u8>> {
        if offset >= self.size || len == 0 {
            return Ok(Vec::new());
        }
        let len = len.min(u32::try_from(self.size - offset).unwrap_or(u32::MAX));
        let mut failures = 0;
        loop {
            if self.stream.as_ref().map(|(p, _)| *p) != Some(offset) {
                self.stream = None;
                self.start(offset)?;
            }
            let err = match self.read_from_stream(len) {
                Ok(b) if !b.is_empty() => return Ok(b),
                Ok(_) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the body ended at offset {offset} of {}", self.size),
                ),
                Err(e) => e,
            };
            self.stream = None;
            failures += 1;
            if failures > RESUMES {
                return Err(self.io_error(err));
            }
            log(
                Level::Warn,
                &format!("{}: {err}; resuming at offset {offset}", self.source.name()),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Body, Endpoint, fake};
    use super::*;

    struct Src(Endpoint);

    impl RangeSource for Src {
        fn get(&self, headers: &[(&str, &str)]) -> Result<Response> {
            let r = self
                .0
                .request("GET", "/b", headers, Body::Empty)
                .map_err(|e| Error::Io(format!("{}: {e}", self.what())))?;
            match r.status {
                200 | 206 => Ok(r),
                s => Err(Error::Other(format!("HTTP {s}"))),
            }
        }
        fn what(&self) -> String {
            "GET /b".into()
        }
        fn name(&self) -> String {
            "/b".into()
        }
    }

    #[test]
    fn sequential_reads_keep_the_response_and_seeks_start_a_new_range() {
        let blob: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let whole = {
            let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
            a.extend_from_slice(&blob);
            a
        };
        let part = |from: usize| {
            let mut a = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-999/1000\r\nContent-Length: {}\r\n\r\n",
                1000 - from
            )
            .into_bytes();
            a.extend_from_slice(&blob[from..]);
            a
        };
        // exactly three requests: from 0, the seek to 5, and a server that
        // ignores Range: for the seek to 900 (skipped to)
        let ep = fake::serve(vec![part(0), part(5), whole]);
        let mut r = RangeReader::new(Src(ep), 1000);
        assert_eq!(r.read_at(0, 10).unwrap(), &blob[..10]);
        assert_eq!(r.read_at(10, 500).unwrap(), &blob[10..510]);
        assert_eq!(r.read_at(5, 3).unwrap(), &blob[5..8]);
        assert_eq!(r.read_at(8, 2000).unwrap(), &blob[8..]);
        assert!(r.read_at(1000, 10).unwrap().is_empty());
        assert_eq!(r.read_at(900, 10).unwrap(), &blob[900..910]);
        // a further request finds nobody listening
        let e = r.read_at(0, 1).unwrap_err();
        assert!(
            matches!(&e, Error::Io(m) if m.starts_with("GET /b: ") && m.contains("connect")),
            "{e:?}"
        );
    }

    #[test]
    fn an_opening_response_serves_reads_from_zero_and_a_bad_range_is_refused() {
        let bad = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/4\r\nContent-Length: 4\r\n\r\nabcd";
        let ep = fake::serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            bad.to_vec(),
        ]);
        let open = ep.request("GET", "/b", &[], Body::Empty).unwrap();
        let mut r = RangeReader::with_response(Src(ep), 4, open);
        assert_eq!(r.read_at(0, 2).unwrap(), b"ab");
        // the seek's answer starts at 0, not 1
        let e = r.read_at(1, 2).unwrap_err();
        assert!(
            matches!(&e, Error::Io(m) if m == "GET /b: Content-Range does not start at 1"),
            "{e:?}"
        );
    }
}
