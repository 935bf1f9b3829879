//! Blob reads (ranges, resumed on a seek), writes (spooled, uploaded on
//! commit) and manifest uploads.

use super::*;

// ---------------------------------------------------------------------------
// Reading

/// A blob of the repository, read by ranged GETs ([`RangeReader`]:
/// sequential reads continue on the open response, a seek or a failed
/// response starts a new `Range:` request).
pub(crate) struct BlobSource {
    pub(crate) c: Conf,
    pub(crate) digest: Digest,
}

impl BlobSource {
    fn call(&self) -> Call<'_> {
        call(&self.c, "GET", blob_path(&self.c, &self.digest))
    }
}

impl RangeSource for BlobSource {
    fn get(&self, headers: &[(&str, &str)]) -> Result<Response> {
        self.call().expect(headers, Body::Empty, &[200, 206])
    }

    fn what(&self) -> String {
        self.call().what()
    }

    fn name(&self) -> String {
        blob_path(&self.c, &self.digest)
    }
}

/// A manifest, fetched whole (they are small).
pub(crate) struct MemReader(pub(crate) Vec<u8>);

impl BlobRead for MemReader {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, offset: u64, len: u32) -> Result<Vec<u8>> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        let end = start.saturating_add(len as usize).min(self.0.len());
        Ok(self.0[start..end].to_vec())
    }
}

// ---------------------------------------------------------------------------
// Writing

/// Bytes spooled in the store directory until commit.
pub(crate) struct Writer {
    pub(crate) c: Conf,
    pub(crate) path: PathBuf,
    pub(crate) file: Option<File>,
    pub(crate) written: u64,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.file = None;
        let _ = fs::remove_file(&self.path);
    }
}

impl BlobWrite for Writer {
    fn write(&mut self, data: &[u8]) -> Result<u64> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| Error::FailedPrecondition("writer already finished".into()))?;
        f.write_all(data)
            .map_err(|e| Error::io(self.path.display(), e))?;
        self.written += data.len() as u64;
        Ok(self.written)
    }

    fn commit(&mut self, digest: &Digest, size: u64) -> Result<()> {
        if size != self.written {
            return Err(Error::FailedPrecondition(format!(
                "commit of {digest}: {size} bytes announced, {} written",
                self.written
            )));
        }
        let mut f = self
            .file
            .take()
            .ok_or_else(|| Error::FailedPrecondition("writer already finished".into()))?;
        let what = self.path.display().to_string();
        f.flush().map_err(|e| Error::io(&what, e))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&what, e))?;
        let manifest = if size <= MAX_MANIFEST as u64 {
            let mut bytes = Vec::new();
            (&mut f)
                .take(size)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(&what, e))?;
            manifest_type(&bytes).map(|mt| (bytes, mt))
        } else {
            None
        };
        match manifest {
            Some((bytes, mt)) => {
                let d = digest.to_string();
                if head_manifest(&self.c, &d)?.is_some_and(|h| h.digest == *digest) {
                    return Ok(());
                }
                put_manifest(&self.c, &d, &bytes, &mt)
            }
            None => {
                f.seek(SeekFrom::Start(0))
                    .map_err(|e| Error::io(&what, e))?;
                upload_blob(&self.c, digest, &mut f, size)
            }
        }
    }
}

/// The media type to PUT a committed document with, if it is a manifest
/// or an index.
pub(crate) fn manifest_type(bytes: &[u8]) -> Option<String> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let o = v.as_object()?;
    match o.get("mediaType") {
        Some(Value::String(mt)) => MANIFEST_TYPES
            .iter()
            .find(|t| **t == mt)
            .map(|t| t.to_string()),
        Some(_) => None,
        None if o.get("manifests").is_some_and(Value::is_array) => Some(OCI_INDEX.into()),
        None if o.contains_key("config") && o.get("layers").is_some_and(Value::is_array) => {
            Some(OCI_MANIFEST.into())
        }
        None => None,
    }
}

pub(crate) fn put_manifest(c: &Conf, reference: &str, bytes: &[u8], mt: &str) -> Result<()> {
    let call = call(c, "PUT", manifest_path(c, reference));
    let r = call.expect(&[("Content-Type", mt)], Body::Bytes(bytes), &[200, 201])?;
    let want = sha256_digest(bytes);
    match r.header("docker-content-digest") {
        Some(h) if h != want => Err(Error::Integrity(format!(
            "{}: the registry stored {:?}, expected {want}",
            call.what(),
            sanitize(h, 150)
        ))),
        _ => Ok(()),
    }
}

/// Monolithic upload: `POST uploads/` then `PUT <location>?digest=` with
/// the whole body; an existing blob is not uploaded again.
pub(crate) fn upload_blob(c: &Conf, d: &Digest, f: &mut File, size: u64) -> Result<()> {
    if head_blob(c, d)?.is_some() {
        return Ok(());
    }
    let post = call(c, "POST", format!("/v2/{}/blobs/uploads/", c.repo));
    let r = post.expect(&[], Body::Empty, &[202])?;
    let loc = r
        .header("location")
        .ok_or_else(|| Error::Io(format!("{}: no Location in the answer", post.what())))?;
    let target = resolve_location(c, loc).map_err(|why| {
        Error::Io(format!(
            "{}: Location {:?}: {why}",
            post.what(),
            sanitize(loc, 200)
        ))
    })?;
    drop(r);
    let sep = if target.contains('?') { '&' } else { '?' };
    let enc = d.to_string().replace(':', "%3A");
    let put = call(c, "PUT", format!("{target}{sep}digest={enc}"));
    let r = put.expect(
        &[("Content-Type", "application/octet-stream")],
        Body::Reader(f, size),
        &[201, 204],
    )?;
    check_digest_header(&put, &r, d)
}

/// A Location header as a request target on the configured registry:
/// relative (`/v2/…`) or absolute on the same `HOST:PORT`.
pub(crate) fn resolve_location(c: &Conf, loc: &str) -> std::result::Result<String, String> {
    let path = if loc.starts_with('/') {
        loc
    } else if let Some(rest) = loc
        .strip_prefix("http://")
        .or_else(|| loc.strip_prefix("https://"))
    {
        let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !auth.eq_ignore_ascii_case(&c.ep.authority) {
            return Err(format!(
                "points to another host ({auth}, not {})",
                c.ep.authority
            ));
        }
        if path.is_empty() { "/" } else { path }
    } else {
        return Err("neither absolute nor an absolute path".into());
    };
    if path.len() > 8192 || path.bytes().any(|b| b <= b' ' || b >= 0x7f) {
        return Err("contains spaces or control characters".into());
    }
    Ok(path.split('#').next().unwrap_or_default().to_string())
}
