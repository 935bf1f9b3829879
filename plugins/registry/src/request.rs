//! Requests and their errors, paths, and reads of manifests.

use super::*;

// ---------------------------------------------------------------------------
// Requests and error mapping

/// Retries of a bodiless GET or HEAD that met a server error.
pub(crate) const RETRIES: usize = 4;

/// One request's description, for error messages.
pub(crate) struct Call<'a> {
    pub(crate) c: &'a Conf,
    pub(crate) method: &'a str,
    pub(crate) path: String,
}

impl Call<'_> {
    pub(crate) fn what(&self) -> String {
        format!("{} {}{}", self.method, self.c.url, self.path)
    }

    pub(crate) fn transport(&self, e: HttpError) -> Error {
        Error::Io(format!("{}: {e}", self.what()))
    }

    pub(crate) fn send(&self, headers: &[(&str, &str)], body: Body<'_>) -> Result<Response> {
        // A bodiless GET or HEAD is retried on a server error: distribution
        // answers 500 ("invalid checksum digest format") to a read of a tag
        // that another client is writing at that moment.
        let retry = matches!(body, Body::Empty) && matches!(self.method, "GET" | "HEAD");
        let retries = if retry { RETRIES } else { 0 };
        self.c
            .ep
            .request_retrying(self.method, &self.path, headers, body, retries)
            .map_err(|e| self.transport(e))
    }

    /// An error for an unexpected status, with the registry's error codes.
    pub(crate) fn status_error(&self, resp: &mut Response) -> Error {
        let body = resp.error_body(self.method, MAX_ERROR_BODY);
        let (codes, detail) = registry_errors(&body);
        let mut msg = format!(
            "{} {}: HTTP {} {}",
            self.method, self.path, resp.status, resp.reason
        );
        if !detail.is_empty() {
            msg.push_str(": ");
            msg.push_str(&detail);
        }
        msg.push_str(&format!(" (registry {})", self.c.url));
        let has = |c: &str| codes.iter().any(|x| x == c);
        match resp.status {
            404 => Error::NotFound(msg),
            400 if has("DIGEST_INVALID") || has("SIZE_INVALID") => Error::Integrity(msg),
            400 | 416 => Error::InvalidArgument(msg),
            405 => Error::Unsupported(msg),
            409 | 412 => Error::FailedPrecondition(msg),
            500..=599 => Error::Io(msg),
            _ => Error::Other(msg),
        }
    }

    /// Send and require one of `ok`.
    pub(crate) fn expect(
        &self,
        headers: &[(&str, &str)],
        body: Body<'_>,
        ok: &[u16],
    ) -> Result<Response> {
        self.send(headers, body)?
            .expect_status(ok, |r| self.status_error(r))
    }
}

pub(crate) fn call<'a>(c: &'a Conf, method: &'a str, path: String) -> Call<'a> {
    Call { c, method, path }
}

/// The codes and a message from distribution's
/// `{"errors":[{"code","message","detail"}]}`, or a sanitised snippet of a
/// body that is not such a document.
pub(crate) fn registry_errors(body: &[u8]) -> (Vec<String>, String) {
    if body.is_empty() {
        return (Vec::new(), String::new());
    }
    let parsed: Option<Vec<(String, String)>> =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            v.get("errors")?.as_array().map(|a| {
                a.iter()
                    .take(8)
                    .map(|e| {
                        let s = |k: &str| {
                            e.get(k)
                                .and_then(Value::as_str)
                                .map(|s| sanitize(s, 200))
                                .unwrap_or_default()
                        };
                        (s("code"), s("message"))
                    })
                    .collect()
            })
        });
    match parsed {
        Some(errs) if !errs.is_empty() => {
            let detail = errs
                .iter()
                .map(|(c, m)| format!("{c}: {m}"))
                .collect::<Vec<_>>()
                .join("; ");
            (errs.into_iter().map(|(c, _)| c).collect(), detail)
        }
        _ => (
            Vec::new(),
            sanitize(String::from_utf8_lossy(body).trim(), 200),
        ),
    }
}

pub(crate) fn blob_path(c: &Conf, d: &Digest) -> String {
    format!("/v2/{}/blobs/{d}", c.repo)
}

pub(crate) fn manifest_path(c: &Conf, reference: &str) -> String {
    format!("/v2/{}/manifests/{reference}", c.repo)
}

pub(crate) fn accept() -> String {
    MANIFEST_TYPES.join(", ")
}

/// `Docker-Content-Digest`, if present, must name `d`.
pub(crate) fn check_digest_header(call: &Call<'_>, r: &Response, d: &Digest) -> Result<()> {
    match r.header("docker-content-digest") {
        Some(h) if h != d.to_string() => Err(Error::Integrity(format!(
            "{}: the registry answered for {:?}",
            call.what(),
            sanitize(h, 150)
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn required_length(call: &Call<'_>, r: &Response) -> Result<u64> {
    r.content_length()
        .map_err(|e| call.transport(e))?
        .ok_or_else(|| Error::Io(format!("{}: no Content-Length in the answer", call.what())))
}

/// `HEAD /blobs/<d>`: the size, `None` if absent.
pub(crate) fn head_blob(c: &Conf, d: &Digest) -> Result<Option<u64>> {
    let call = call(c, "HEAD", blob_path(c, d));
    let mut r = call.send(&[], Body::Empty)?;
    match r.status {
        200 => {
            check_digest_header(&call, &r, d)?;
            required_length(&call, &r).map(Some)
        }
        404 => Ok(None),
        _ => Err(call.status_error(&mut r)),
    }
}

/// What `HEAD /manifests/<reference>` says.
pub(crate) struct ManifestHead {
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
    pub(crate) size: u64,
}

pub(crate) fn head_manifest(c: &Conf, reference: &str) -> Result<Option<ManifestHead>> {
    let call = call(c, "HEAD", manifest_path(c, reference));
    let acc = accept();
    let mut r = call.send(&[("Accept", &acc)], Body::Empty)?;
    match r.status {
        200 => {}
        404 => return Ok(None),
        _ => return Err(call.status_error(&mut r)),
    }
    let size = required_length(&call, &r)?;
    let digest = r
        .header("docker-content-digest")
        .ok_or_else(|| {
            Error::Io(format!(
                "{}: no Docker-Content-Digest in the answer",
                call.what()
            ))
        })
        .and_then(|h| {
            Digest::parse(h).map_err(|_| {
                Error::Integrity(format!(
                    "{}: bad Docker-Content-Digest {:?}",
                    call.what(),
                    sanitize(h, 150)
                ))
            })
        })?;
    let media_type = media_type_of(&r);
    Ok(Some(ManifestHead {
        digest,
        media_type,
        size,
    }))
}

/// The response's Content-Type without parameters if it is a sane token,
/// else the OCI manifest type.
pub(crate) fn media_type_of(r: &Response) -> String {
    let mt = r
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .unwrap_or_default()
        .trim();
    let ok = !mt.is_empty()
        && mt.len() <= 255
        && mt
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/+.-_".contains(&b));
    if ok { mt } else { OCI_MANIFEST }.to_string()
}

/// A manifest as `GET /manifests/<reference>` answered it.
struct Fetched<'a> {
    call: Call<'a>,
    bytes: Vec<u8>,
    media_type: String,
    /// The `Docker-Content-Digest` header, if any.
    digest_header: Option<String>,
}

fn fetch_manifest<'a>(c: &'a Conf, reference: &str) -> Result<Fetched<'a>> {
    let call = call(c, "GET", manifest_path(c, reference));
    let acc = accept();
    let mut r = call.expect(&[("Accept", &acc)], Body::Empty, &[200])?;
    let media_type = media_type_of(&r);
    let digest_header = r.header("docker-content-digest").map(str::to_string);
    let bytes = r.read_body(MAX_MANIFEST).map_err(|e| call.transport(e))?;
    Ok(Fetched {
        call,
        bytes,
        media_type,
        digest_header,
    })
}

/// `GET /manifests/<reference>`: the bytes and their media type.
pub(crate) fn get_manifest(c: &Conf, reference: &str) -> Result<(Vec<u8>, String)> {
    let f = fetch_manifest(c, reference)?;
    Ok((f.bytes, f.media_type))
}

/// `GET /manifests/<tag>`: the bytes, their digest and media type. The
/// digest is the body's sha256; a `Docker-Content-Digest` naming another
/// sha256 is an integrity error (one of another algorithm is taken as
/// the registry says: the host verifies every read of it).
pub(crate) fn get_tagged_manifest(c: &Conf, tag: &str) -> Result<(Vec<u8>, Digest, String)> {
    let Fetched {
        call,
        bytes,
        media_type: mt,
        digest_header: header,
    } = fetch_manifest(c, tag)?;
    let computed = sha256_digest(&bytes);
    let digest = match header {
        Some(h) if !h.starts_with("sha256:") => Digest::parse(&h).map_err(|_| {
            Error::Integrity(format!(
                "{}: bad Docker-Content-Digest {:?}",
                call.what(),
                sanitize(&h, 150)
            ))
        })?,
        Some(h) if h != computed => {
            return Err(Error::Integrity(format!(
                "{}: Docker-Content-Digest {:?}, but the body hashes to {computed}",
                call.what(),
                sanitize(&h, 150)
            )));
        }
        _ => Digest::parse(&computed)?,
    };
    Ok((bytes, digest, mt))
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in h {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
