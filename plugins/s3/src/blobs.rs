//! Blob reads (ranged GETs, continued while sequential) and writes (one
//! PUT, or a multipart upload while written).

use super::*;

/// The largest object `PUT …` with `x-amz-copy-source` copies in one go;
/// larger ones are copied part by part.
const MAX_COPY: u64 = 5 << 30;
/// The parts of a multipart copy.
const COPY_PART: u64 = 1 << 30;

// ---------------------------------------------------------------------------
// Reading

/// A blob's object, read by GETs ([`RangeReader`]: sequential reads
/// continue on the open response, a seek or a failed response starts a new
/// `Range:` request).
pub(crate) struct BlobSource {
    c: Conf,
    key: String,
}

impl BlobSource {
    /// Open with a plain GET (its response serves the reads from 0).
    pub(crate) fn open(c: Conf, d: &Digest) -> Result<RangeReader<BlobSource>> {
        let key = c.blob_key(d);
        let call = object(&c, "GET", &key, "");
        let r = call.found()?.ok_or_else(|| {
            Error::NotFound(format!(
                "blob {d} not found: no {} on {}",
                c.show(&key),
                c.url
            ))
        })?;
        let size = call.size(&r)?;
        Ok(RangeReader::with_response(BlobSource { c, key }, size, r))
    }
}

impl RangeSource for BlobSource {
    fn get(&self, headers: &[(&str, &str)]) -> Result<Response> {
        object(&self.c, "GET", &self.key, "").expect(headers, Body::Empty, &[200, 206])
    }

    fn what(&self) -> String {
        object(&self.c, "GET", &self.key, "").what()
    }

    fn name(&self) -> String {
        self.c.show(&self.key)
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

impl Upload {
    /// The query naming the upload.
    fn query(&self) -> String {
        format!("uploadId={}", encode(&self.id, false))
    }

    /// The next part's number and the query sending it.
    fn next_part(&self) -> (u32, String) {
        let number = self.parts.len() as u32 + 1;
        (number, format!("partNumber={number}&{}", self.query()))
    }

    /// Abort it (best effort).
    fn abort(&self, c: &Conf) {
        let _ = object(c, "DELETE", &self.key, &self.query()).send(&[], Body::Empty);
    }
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
        let (number, q) = up.next_part();
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
            up.abort(&self.c);
        }
        if let Some(t) = self.temporary.take() {
            let _ = object(&self.c, "DELETE", &t, "").send(&[], Body::Empty);
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
    let call = object(c, "POST", &up.key, &up.query());
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
            let (number, q) = up.next_part();
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
        up.abort(c);
    }
    res
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rumoci_driver_sdk::http;

    #[test]
    fn blobs_open_with_a_get_and_seek_with_a_range() {
        // the SDK's RangeReader has the read cases; here: what is asked
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        let ep = http::fake::serve(vec![whole.to_vec()]);
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
        let mut r = BlobSource::open(c, &d).unwrap();
        assert_eq!((r.size(), r.read_at(0, 10).unwrap()), (3, b"abc".to_vec()));
        // the seek's request finds nobody listening, and says which object
        let e = r.read_at(1, 1).unwrap_err();
        assert!(
            matches!(&e, Error::Io(m) if m.contains("connect") && m.contains("s3://bk/blobs/sha256/000")),
            "{e:?}"
        );
    }
}
