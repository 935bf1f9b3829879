//! Blob reads (ranged GETs, continued while sequential) and writes (one
//! PUT, or a multipart upload while written).

use super::*;
use std::io::Read;

/// Times a read is resumed after its response failed.
const RESUMES: usize = 3;
/// The largest object `PUT …` with `x-amz-copy-source` copies in one go;
/// larger ones are copied part by part.
const MAX_COPY: u64 = 5 << 30;
/// The parts of a multipart copy.
const COPY_PART: u64 = 1 << 30;

// ---------------------------------------------------------------------------
// Reading

/// A blob served by GETs; sequential reads continue on the open response,
/// a seek starts a new `Range:` request.
pub(crate) struct BlobReader {
    c: Conf,
    key: String,
    size: u64,
    /// The open response and the blob offset it is at.
    stream: Option<(u64, Response)>,
}

impl BlobReader {
    /// Open with a plain GET (its response serves the reads from 0).
    pub(crate) fn open(c: Conf, d: &Digest) -> Result<BlobReader> {
        let key = c.blob_key(d);
        let call = object(&c, "GET", &key, "");
        let mut r = call.send(&[], Body::Empty, true)?;
        match r.status {
            200 => {}
            404 => {
                return Err(Error::NotFound(format!(
                    "blob {d} not found: no {} on {}",
                    c.show(&key),
                    c.url
                )));
            }
            _ => return Err(call.status_error(&mut r)),
        }
        let size = r
            .content_length()
            .map_err(|e| call.transport(e))?
            .ok_or_else(|| Error::Io(format!("{}: no Content-Length", call.what())))?;
        Ok(BlobReader {
            c,
            key,
            size,
            stream: Some((0, r)),
        })
    }

    fn start(&mut self, offset: u64) -> Result<()> {
        let call = object(&self.c, "GET", &self.key, "");
        let range = format!("bytes={offset}-");
        let mut r = call.expect(&[("Range", &range)], Body::Empty, &[200, 206])?;
        if r.status == 206 {
            let ok = r
                .header("content-range")
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .is_some_and(|start| start == offset.to_string());
            if !ok {
                return Err(Error::Io(format!(
                    "{}: Content-Range does not start at {offset}",
                    call.what()
                )));
            }
        } else if offset > 0 {
            // the server ignored Range: skip to the offset
            let skipped = std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
                .map_err(|e| call.transport(e.into()))?;
            if skipped != offset {
                return Err(Error::Io(format!(
                    "{}: body ended before offset {offset}",
                    call.what()
                )));
            }
        }
        self.stream = Some((offset, r));
        Ok(())
    }

    fn read_from_stream(&mut self, len: u32) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(len as usize);
        if let Some((pos, r)) = &mut self.stream {
            r.take(u64::from(len)).read_to_end(&mut buf)?;
            *pos += buf.len() as u64;
        }
        Ok(buf)
    }
}

impl BlobRead for BlobReader {
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
                Ok(_) => std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the body ended at offset {offset} of {}", self.size),
                ),
                Err(e) => e,
            };
            self.stream = None;
            failures += 1;
            if failures > RESUMES {
                return Err(object(&self.c, "GET", &self.key, "").transport(err.into()));
            }
            log(
                Level::Warn,
                &format!(
                    "{}: {err}; resuming at offset {offset}",
                    self.c.show(&self.key)
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Writing

/// A multipart upload in progress.
struct Upload {
    key: String,
    id: String,
    /// Part numbers and ETags.
    parts: Vec<(u32, String)>,
}

/// A blob being written: bytes are kept until a part is full; the first
/// full part starts a multipart upload.
pub(crate) struct Writer {
    c: Conf,
    expected: Option<Digest>,
    /// The expected blob is stored already (with the size hinted): the
    /// bytes are only counted.
    present: bool,
    buf: Vec<u8>,
    written: u64,
    upload: Option<Upload>,
    /// A completed temporary to remove when dropped.
    temporary: Option<String>,
    done: bool,
}

impl Writer {
    pub(crate) fn new(
        c: Conf,
        expected: Option<&Digest>,
        size_hint: Option<u64>,
    ) -> Result<Writer> {
        let present = match (expected, size_hint) {
            (Some(d), Some(n)) => head_object(&c, &c.blob_key(d))?.is_some_and(|h| h.size == n),
            _ => false,
        };
        Ok(Writer {
            c,
            expected: expected.cloned(),
            present,
            buf: Vec::new(),
            written: 0,
            upload: None,
            temporary: None,
            done: false,
        })
    }

    /// Start a multipart upload: to the expected blob's key, or to a
    /// temporary one.
    fn start(&mut self) -> Result<()> {
        let key = match &self.expected {
            Some(d) => self.c.blob_key(d),
            None => self.c.key(&format!("{UPLOADS}/{}", random_suffix())),
        };
        let id = create_multipart(&self.c, &key)?;
        self.upload = Some(Upload {
            key,
            id,
            parts: Vec::new(),
        });
        Ok(())
    }

    /// Send `self.buf[..n]` as the next part.
    fn send_part(&mut self, n: usize) -> Result<()> {
        if self.upload.is_none() {
            self.start()?;
        }
        let Some(up) = self.upload.as_mut() else {
            return Err(Error::Other("no upload".into()));
        };
        let number = up.parts.len() as u32 + 1;
        let q = format!("partNumber={number}&uploadId={}", encode(&up.id, false));
        let call = object(&self.c, "PUT", &up.key, &q);
        let r = call.expect(&[], Body::Bytes(&self.buf[..n]), &[200])?;
        let etag = r
            .header("etag")
            .ok_or_else(|| Error::Io(format!("{}: no ETag for part {number}", call.what())))?
            .to_string();
        up.parts.push((number, etag));
        self.buf.drain(..n);
        Ok(())
    }

    fn abort(&mut self) {
        if let Some(up) = self.upload.take() {
            let q = format!("uploadId={}", encode(&up.id, false));
            let _ = object(&self.c, "DELETE", &up.key, &q).send(&[], Body::Empty, true);
        }
        if let Some(t) = self.temporary.take() {
            let _ = object(&self.c, "DELETE", &t, "").send(&[], Body::Empty, true);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.abort();
    }
}

impl BlobWrite for Writer {
    fn write(&mut self, data: &[u8]) -> Result<u64> {
        if self.done {
            return Err(Error::FailedPrecondition("writer already finished".into()));
        }
        self.written += data.len() as u64;
        if self.present {
            return Ok(self.written);
        }
        self.buf.extend_from_slice(data);
        let part = usize::try_from(self.c.part_size).unwrap_or(usize::MAX);
        while self.buf.len() >= part {
            self.send_part(part)?;
        }
        Ok(self.written)
    }

    fn commit(&mut self, digest: &Digest, size: u64) -> Result<()> {
        if std::mem::replace(&mut self.done, true) {
            return Err(Error::FailedPrecondition("writer already finished".into()));
        }
        if size != self.written {
            return Err(Error::FailedPrecondition(format!(
                "commit of {digest}: {size} bytes announced, {} written",
                self.written
            )));
        }
        let key = self.c.blob_key(digest);
        if self.expected.as_ref().is_some_and(|e| e != digest) {
            self.abort();
            return Err(Error::Integrity(format!(
                "commit of {digest}: the bytes written are not the {} announced at create",
                self.expected
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            )));
        }
        if self.present {
            return Ok(());
        }
        if self.upload.is_none() {
            // small: one PUT
            let call = object(&self.c, "PUT", &key, "");
            call.expect(&[], Body::Bytes(&self.buf), &[200, 201, 204])?;
            self.buf = Vec::new();
            return Ok(());
        }
        if !self.buf.is_empty() {
            self.send_part(self.buf.len())?;
        }
        let Some(up) = self.upload.take() else {
            return Err(Error::Other("no upload".into()));
        };
        let completed = complete_multipart(&self.c, &up);
        if completed.is_err() {
            self.upload = Some(up);
            return completed;
        }
        if up.key == key {
            return Ok(());
        }
        // a temporary: copied on the server to the blob's key
        self.temporary = Some(up.key.clone());
        copy_object(&self.c, &up.key, &key, size)?;
        if let Some(t) = self.temporary.take() {
            object(&self.c, "DELETE", &t, "").expect(&[], Body::Empty, &[200, 204, 404])?;
        }
        Ok(())
    }
}

fn create_multipart(c: &Conf, key: &str) -> Result<String> {
    let call = object(c, "POST", key, "uploads=");
    let mut r = call.expect(&[], Body::Empty, &[200])?;
    let body = r.read_body(1 << 20).map_err(|e| call.transport(e))?;
    xml_text(&String::from_utf8_lossy(&body), "UploadId")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::Io(format!("{}: no UploadId in the answer", call.what())))
}

fn complete_multipart(c: &Conf, up: &Upload) -> Result<()> {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (n, etag) in &up.parts {
        xml.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            escape(etag)
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let q = format!("uploadId={}", encode(&up.id, false));
    let call = object(c, "POST", &up.key, &q);
    let mut r = call.expect(
        &[("Content-Type", "application/xml")],
        Body::Bytes(xml.as_bytes()),
        &[200],
    )?;
    ok_or_embedded_error(&call, &mut r)
}

/// S3 may answer 200 and an error document to a long request (complete,
/// copy).
fn ok_or_embedded_error(call: &Call<'_>, r: &mut Response) -> Result<()> {
    let body = r.read_body(1 << 20).map_err(|e| call.transport(e))?;
    let text = String::from_utf8_lossy(&body);
    if xml_elements(&text, "Error").is_empty() {
        return Ok(());
    }
    let (code, msg) = s3_error(&body);
    Err(Error::Io(format!("{}: {code}: {msg}", call.what())))
}

/// Server-side copy of `from` to `to` (`size` bytes).
fn copy_object(c: &Conf, from: &str, to: &str, size: u64) -> Result<()> {
    let source = c.copy_source(from);
    if size <= MAX_COPY {
        let call = object(c, "PUT", to, "");
        let mut r = call.expect(&[("x-amz-copy-source", &source)], Body::Empty, &[200])?;
        return ok_or_embedded_error(&call, &mut r);
    }
    let mut up = Upload {
        key: to.to_string(),
        id: create_multipart(c, to)?,
        parts: Vec::new(),
    };
    let mut copy = || -> Result<()> {
        let mut start = 0;
        while start < size {
            let end = (start + COPY_PART).min(size) - 1;
            let number = up.parts.len() as u32 + 1;
            let q = format!("partNumber={number}&uploadId={}", encode(&up.id, false));
            let call = object(c, "PUT", to, &q);
            let range = format!("bytes={start}-{end}");
            let mut r = call.expect(
                &[
                    ("x-amz-copy-source", &source),
                    ("x-amz-copy-source-range", &range),
                ],
                Body::Empty,
                &[200],
            )?;
            let body = r.read_body(1 << 20).map_err(|e| call.transport(e))?;
            let etag = xml_text(&String::from_utf8_lossy(&body), "ETag")
                .ok_or_else(|| Error::Io(format!("{}: no ETag for part {number}", call.what())))?;
            up.parts.push((number, etag));
            start = end + 1;
        }
        complete_multipart(c, &up)
    };
    let res = copy();
    if res.is_err() {
        let q = format!("uploadId={}", encode(&up.id, false));
        let _ = object(c, "DELETE", to, &q).send(&[], Body::Empty, true);
    }
    res
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_continue_sequentially_and_seek_with_a_range() {
        let blob: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let whole = {
            let mut a = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
            a.extend_from_slice(&blob);
            a
        };
        let mut part = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-999/1000\r\nContent-Length: 995\r\n\r\n".to_vec();
        part.extend_from_slice(&blob[5..]);
        // exactly two requests: the open (from 0), then the seek to 5
        let ep = http::fake::serve(vec![whole, part]);
        let c = Conf {
            url: "http://127.0.0.1:5000".into(),
            ep,
            bucket: "bk".into(),
            path_style: true,
            prefix: String::new(),
            part_size: DEFAULT_PART,
            gc_grace: 0,
            upload_grace: 0,
            single_writer: false,
        };
        let d = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        let mut r = BlobReader::open(c, &d).unwrap();
        assert_eq!(r.size(), 1000);
        assert_eq!(r.read_at(0, 10).unwrap(), &blob[..10]);
        assert_eq!(r.read_at(10, 500).unwrap(), &blob[10..510]);
        assert_eq!(r.read_at(5, 3).unwrap(), &blob[5..8]);
        assert_eq!(r.read_at(8, 2000).unwrap(), &blob[8..]);
        assert!(r.read_at(1000, 10).unwrap().is_empty());
        // a third request finds nobody listening, and says which object
        let e = r.read_at(0, 1).unwrap_err();
        assert!(
            matches!(&e, Error::Io(m) if m.contains("connect") && m.contains("s3://bk/blobs/sha256/000")),
            "{e:?}"
        );
    }
}
