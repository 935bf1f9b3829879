//! `registry`: a rumoci content-store driver keeping blobs and tags in an
//! OCI distribution registry (HTTP API v2, plain HTTP), e.g. Debian's
//! `docker-registry` (CNCF distribution 2.8).
//!
//! Options (from `--driver registry.wasm,url=http://HOST:PORT,repo=NAME`):
//! `url` (the registry; the host grants TCP to exactly that address) and
//! `repo` (the repository; by default the layout path of the command).
//!
//! Mapping: blobs are `/v2/<repo>/blobs/<digest>`, manifests and indexes
//! `/v2/<repo>/manifests/<digest>` (distribution does not serve manifests
//! under `/blobs`), and `index.json` is made from the repository's tags
//! (`tags/list` plus a `HEAD` per tag). Writes are spooled in the store
//! directory and uploaded on commit. What the API cannot do is answered
//! `unsupported`: deleting blobs, listing blobs (so no gc), removing tags.
//! The host verifies every digest and size it reads back.

mod http;
mod names;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use http::{Body, Endpoint, HttpError, Response, sanitize};
use rumoci_driver_sdk::{
    BlobInfo, BlobRead, BlobWrite, Cas, Digest, Driver, DriverInfo, Error, IndexDoc,
    IndexPrecondition, LayerStore, Result, config, store_dir, store_util::random_suffix,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Manifest and index media types the registry is asked for and that
/// make a committed JSON document a manifest.
const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Largest manifest handled (distribution refuses more than 4 MiB).
const MAX_MANIFEST: usize = 4 << 20;
/// Largest `tags/list` page or index document handled.
const MAX_JSON: usize = 16 << 20;
/// Bytes of an error response read for the message.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Most `tags/list` pages followed.
const MAX_PAGES: usize = 10_000;
/// Prefix of spool files in the store directory.
const SPOOL_PREFIX: &str = ".registry-spool-";

/// The driver.
pub struct Registry;

rumoci_driver_sdk::register_driver!(Registry);

impl Driver for Registry {
    fn info() -> DriverInfo {
        DriverInfo::new("registry", env!("CARGO_PKG_VERSION"), &["cas", "cas.init"])
    }
}

impl LayerStore for Registry {}

/// The parsed options.
#[derive(Clone)]
struct Conf {
    url: String,
    ep: Endpoint,
    repo: String,
}

thread_local! {
    static CONF: RefCell<Option<Conf>> = const { RefCell::new(None) };
}

fn conf() -> Result<Conf> {
    if let Some(c) = CONF.with(|c| c.borrow().clone()) {
        return Ok(c);
    }
    let mut url = None;
    let mut repo = None;
    for (k, v) in config() {
        match k.as_str() {
            "url" => url = Some(v),
            "repo" => repo = Some(v),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {k:?} (the registry driver takes url= and repo=)"
                )));
            }
        }
    }
    let url = url.ok_or_else(|| {
        Error::InvalidArgument(
            "no registry given: use --driver registry.wasm,url=http://HOST:PORT".into(),
        )
    })?;
    let ep = names::parse_url(&url).map_err(Error::InvalidArgument)?;
    let repo = repo.ok_or_else(|| {
        Error::InvalidArgument("no repository given: use repo=NAME or the layout path".into())
    })?;
    names::check_repo(&repo).map_err(Error::InvalidArgument)?;
    let c = Conf {
        url: url.trim_end_matches('/').to_string(),
        ep,
        repo,
    };
    CONF.with(|s| *s.borrow_mut() = Some(c.clone()));
    Ok(c)
}

// ---------------------------------------------------------------------------
// Requests and error mapping

/// Retries of a bodiless GET or HEAD that met a server error.
const RETRIES: usize = 4;

/// One request's description, for error messages.
struct Call<'a> {
    c: &'a Conf,
    method: &'a str,
    path: String,
}

impl Call<'_> {
    fn what(&self) -> String {
        format!("{} {}{}", self.method, self.c.url, self.path)
    }

    fn transport(&self, e: HttpError) -> Error {
        Error::Io(format!("{}: {e}", self.what()))
    }

    fn send(&self, headers: &[(&str, &str)], body: Body<'_>) -> Result<Response> {
        // A bodiless GET or HEAD is retried on a server error: distribution
        // answers 500 ("invalid checksum digest format") to a read of a tag
        // that another client is writing at that moment.
        if matches!(body, Body::Empty) && matches!(self.method, "GET" | "HEAD") {
            let mut delay = std::time::Duration::from_millis(50);
            for _ in 0..RETRIES {
                let r = self
                    .c
                    .ep
                    .request(self.method, &self.path, headers, Body::Empty)
                    .map_err(|e| self.transport(e))?;
                if !matches!(r.status, 500 | 502 | 503 | 504) {
                    return Ok(r);
                }
                drop(r);
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
        self.c
            .ep
            .request(self.method, &self.path, headers, body)
            .map_err(|e| self.transport(e))
    }

    /// An error for an unexpected status, with the registry's error codes.
    fn status_error(&self, resp: &mut Response) -> Error {
        let body = if self.method == "HEAD" {
            Vec::new()
        } else {
            resp.read_body_lossy(MAX_ERROR_BODY)
        };
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
    fn expect(&self, headers: &[(&str, &str)], body: Body<'_>, ok: &[u16]) -> Result<Response> {
        let mut r = self.send(headers, body)?;
        if ok.contains(&r.status) {
            Ok(r)
        } else {
            Err(self.status_error(&mut r))
        }
    }
}

fn call<'a>(c: &'a Conf, method: &'a str, path: String) -> Call<'a> {
    Call { c, method, path }
}

/// The codes and a message from distribution's
/// `{"errors":[{"code","message","detail"}]}`, or a sanitised snippet of a
/// body that is not such a document.
fn registry_errors(body: &[u8]) -> (Vec<String>, String) {
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

fn blob_path(c: &Conf, d: &Digest) -> String {
    format!("/v2/{}/blobs/{d}", c.repo)
}

fn manifest_path(c: &Conf, reference: &str) -> String {
    format!("/v2/{}/manifests/{reference}", c.repo)
}

fn accept() -> String {
    MANIFEST_TYPES.join(", ")
}

/// `Docker-Content-Digest`, if present, must name `d`.
fn check_digest_header(call: &Call<'_>, r: &Response, d: &Digest) -> Result<()> {
    match r.header("docker-content-digest") {
        Some(h) if h != d.to_string() => Err(Error::Integrity(format!(
            "{}: the registry answered for {:?}",
            call.what(),
            sanitize(h, 150)
        ))),
        _ => Ok(()),
    }
}

fn required_length(call: &Call<'_>, r: &Response) -> Result<u64> {
    r.content_length()
        .map_err(|e| call.transport(e))?
        .ok_or_else(|| Error::Io(format!("{}: no Content-Length in the answer", call.what())))
}

/// `HEAD /blobs/<d>`: the size, `None` if absent.
fn head_blob(c: &Conf, d: &Digest) -> Result<Option<u64>> {
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
struct ManifestHead {
    digest: Digest,
    media_type: String,
    size: u64,
}

fn head_manifest(c: &Conf, reference: &str) -> Result<Option<ManifestHead>> {
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
fn media_type_of(r: &Response) -> String {
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

/// `GET /manifests/<reference>`: the bytes and their media type.
fn get_manifest(c: &Conf, reference: &str) -> Result<(Vec<u8>, String)> {
    let call = call(c, "GET", manifest_path(c, reference));
    let acc = accept();
    let mut r = call.expect(&[("Accept", &acc)], Body::Empty, &[200])?;
    let mt = media_type_of(&r);
    let bytes = r.read_body(MAX_MANIFEST).map_err(|e| call.transport(e))?;
    Ok((bytes, mt))
}

fn sha256_digest(bytes: &[u8]) -> String {
    let h = Sha256::digest(bytes);
    let mut s = String::from("sha256:");
    for b in h {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

// ---------------------------------------------------------------------------
// Reading

/// A blob served by ranged GETs; sequential reads continue on the open
/// response, a seek starts a new `Range:` request.
struct BlobReader {
    c: Conf,
    digest: Digest,
    size: u64,
    /// The open response and the blob offset it is at.
    stream: Option<(u64, Response)>,
}

impl BlobReader {
    fn start(&mut self, offset: u64) -> Result<()> {
        let call = call(&self.c, "GET", blob_path(&self.c, &self.digest));
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
            // The registry ignored Range: skip to the offset.
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
        let at = self.stream.as_ref().map(|(p, _)| *p);
        let fresh = at != Some(offset);
        if fresh {
            self.stream = None;
            self.start(offset)?;
        }
        match self.read_from_stream(len) {
            Ok(b) => Ok(b),
            Err(_) if !fresh => {
                // The kept-open connection failed (e.g. the registry closed
                // it while idle): retry once on a new request.
                self.stream = None;
                self.start(offset)?;
                self.read_from_stream(len).map_err(|e| self.read_err(e))
            }
            Err(e) => Err(self.read_err(e)),
        }
    }
}

impl BlobReader {
    fn read_err(&self, e: std::io::Error) -> Error {
        call(&self.c, "GET", blob_path(&self.c, &self.digest)).transport(e.into())
    }
}

/// A manifest, fetched whole (they are small).
struct MemReader(Vec<u8>);

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
struct Writer {
    c: Conf,
    path: PathBuf,
    file: Option<File>,
    written: u64,
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
fn manifest_type(bytes: &[u8]) -> Option<String> {
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

fn put_manifest(c: &Conf, reference: &str, bytes: &[u8], mt: &str) -> Result<()> {
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
fn upload_blob(c: &Conf, d: &Digest, f: &mut File, size: u64) -> Result<()> {
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
fn resolve_location(c: &Conf, loc: &str) -> std::result::Result<String, String> {
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

// ---------------------------------------------------------------------------
// The index: the repository's tags

/// One tag and where it points.
struct Tagged {
    digest: String,
    media_type: String,
    size: u64,
}

fn list_tags(c: &Conf) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut path = format!("/v2/{}/tags/list", c.repo);
    for _ in 0..MAX_PAGES {
        let call = call(c, "GET", path.clone());
        let mut r = call.send(&[], Body::Empty)?;
        match r.status {
            200 => {}
            // NAME_UNKNOWN: no repository yet, i.e. no tags.
            404 => return Ok(Vec::new()),
            _ => return Err(call.status_error(&mut r)),
        }
        let body = r.read_body(MAX_JSON).map_err(|e| call.transport(e))?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| Error::Io(format!("{}: not JSON: {e}", call.what())))?;
        match v.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) => {
                for t in a {
                    let t = t.as_str().filter(|t| names::valid_tag(t)).ok_or_else(|| {
                        Error::Integrity(format!("{}: invalid tag {t}", call.what()))
                    })?;
                    out.push(t.to_string());
                }
            }
            Some(_) => {
                return Err(Error::Io(format!(
                    "{}: \"tags\" is not a list",
                    call.what()
                )));
            }
        }
        match r.header("link").and_then(next_link) {
            Some(next) => {
                path = resolve_location(c, &next)
                    .map_err(|why| Error::Io(format!("{}: Link: {why}", call.what())))?
            }
            None => {
                out.sort();
                out.dedup();
                return Ok(out);
            }
        }
    }
    Err(Error::Io(format!(
        "GET /v2/{}/tags/list: more than {MAX_PAGES} pages",
        c.repo
    )))
}

/// The target of `Link: <…>; rel="next"`.
fn next_link(h: &str) -> Option<String> {
    h.split(',').find_map(|part| {
        let (url, params) = part.trim().split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn current_tags(c: &Conf) -> Result<BTreeMap<String, Tagged>> {
    let mut out = BTreeMap::new();
    for tag in list_tags(c)? {
        // A tag deleted between the listing and the HEAD is just gone.
        if let Some(h) = head_manifest(c, &tag)? {
            out.insert(
                tag,
                Tagged {
                    digest: h.digest.to_string(),
                    media_type: h.media_type,
                    size: h.size,
                },
            );
        }
    }
    Ok(out)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The OCI index for `tags` (sorted by tag) and its version token.
fn index_doc(tags: &BTreeMap<String, Tagged>) -> IndexDoc {
    let entries: Vec<String> = tags
        .iter()
        .map(|(tag, t)| {
            format!(
                "{{\"mediaType\":{},\"digest\":{},\"size\":{},\"annotations\":{{\"{REF_NAME}\":{}}}}}",
                json_str(&t.media_type),
                json_str(&t.digest),
                t.size,
                json_str(tag)
            )
        })
        .collect();
    let bytes = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[{}]}}",
        entries.join(",")
    )
    .into_bytes();
    let version = sha256_digest(&bytes);
    IndexDoc { bytes, version }
}

/// The tags a new index asks for: tag → digest.
fn wanted_tags(doc: &[u8]) -> Result<BTreeMap<String, Digest>> {
    let bad = |why: String| Error::InvalidArgument(format!("index: {why}"));
    let v: Value = serde_json::from_slice(doc).map_err(|e| bad(format!("not JSON: {e}")))?;
    let list = match v.get("manifests") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("\"manifests\" is not a list".into())),
    };
    let mut out = BTreeMap::new();
    for m in list {
        let d = m
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("an entry has no digest".into()))?;
        let d = Digest::parse(d)?;
        let tag = m
            .get("annotations")
            .and_then(|a| a.get(REF_NAME))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                bad(format!(
                    "entry {d} has no {REF_NAME} annotation: a registry cannot hold untagged index entries"
                ))
            })?;
        if !names::valid_tag(tag) {
            return Err(bad(format!(
                "{tag:?} is not a valid registry tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})"
            )));
        }
        if out.insert(tag.to_string(), d).is_some() {
            return Err(bad(format!("tag {tag:?} appears twice")));
        }
    }
    Ok(out)
}

fn write_index(c: &Conf, doc: &[u8], pre: IndexPrecondition) -> Result<String> {
    let mut tags = current_tags(c)?;
    let cur = index_doc(&tags);
    let holds = match &pre {
        IndexPrecondition::Any => true,
        IndexPrecondition::Absent => tags.is_empty(),
        IndexPrecondition::Bytes(b) => *b == cur.bytes,
        IndexPrecondition::Version(v) => *v == cur.version,
    };
    if !holds {
        return Err(Error::FailedPrecondition(format!(
            "the tags of {} changed since they were read",
            c.repo
        )));
    }
    let want = wanted_tags(doc)?;
    let removed: Vec<&str> = tags
        .keys()
        .filter(|t| !want.contains_key(*t))
        .map(String::as_str)
        .collect();
    if !removed.is_empty() {
        return Err(Error::Unsupported(format!(
            "the registry API cannot remove a tag without deleting the manifest it points to (and every other tag of it): not removing {} from {}",
            removed.join(", "),
            c.repo
        )));
    }
    for (tag, d) in &want {
        if tags.get(tag).is_some_and(|t| t.digest == d.to_string()) {
            continue;
        }
        let (bytes, mt) = get_manifest(c, &d.to_string())?;
        if d.algorithm() == "sha256" && sha256_digest(&bytes) != d.to_string() {
            return Err(Error::Integrity(format!(
                "GET {}: the registry served other bytes than {d}",
                manifest_path(c, &d.to_string())
            )));
        }
        put_manifest(c, tag, &bytes, &mt)?;
        // What a HEAD of the tag now answers: the manifest just put.
        tags.insert(
            tag.clone(),
            Tagged {
                digest: d.to_string(),
                size: bytes.len() as u64,
                media_type: mt,
            },
        );
    }
    // No tag is removed (refused above): the tags now are `tags`.
    Ok(index_doc(&tags).version)
}

// ---------------------------------------------------------------------------
// The cas interface

impl Cas for Registry {
    fn init(initial_index: Vec<u8>) -> Result<()> {
        let c = conf()?;
        let tags = list_tags(&c)?;
        if !tags.is_empty() {
            return Err(Error::AlreadyExists(format!(
                "repository {} on {} has tags already ({})",
                c.repo,
                c.url,
                tags.join(", ")
            )));
        }
        if !wanted_tags(&initial_index)?.is_empty() {
            write_index(&c, &initial_index, IndexPrecondition::Absent)?;
        }
        Ok(())
    }

    fn check() -> Result<()> {
        let c = conf()?;
        let call = call(&c, "GET", "/v2/".into());
        let mut r = call.send(&[], Body::Empty).map_err(|e| match e {
            Error::Io(m) => Error::Io(format!("registry {} is not reachable: {m}", c.url)),
            e => e,
        })?;
        if r.status != 200 {
            let e = call.status_error(&mut r);
            return Err(Error::Other(format!(
                "{}/v2/ does not answer 200, is it a distribution registry? {}",
                c.url,
                match e {
                    Error::NotFound(m) | Error::Other(m) | Error::Io(m) => m,
                    Error::InvalidArgument(m) | Error::Unsupported(m) => m,
                    Error::FailedPrecondition(m) | Error::Integrity(m) => m,
                    Error::AlreadyExists(m) => m,
                }
            )));
        }
        Ok(())
    }

    fn stat(digest: &Digest) -> Result<Option<BlobInfo>> {
        let c = conf()?;
        let size = match head_blob(&c, digest)? {
            Some(s) => Some(s),
            None => head_manifest(&c, &digest.to_string())?
                .filter(|h| h.digest == *digest)
                .map(|h| h.size),
        };
        Ok(size.map(|size| BlobInfo {
            digest: digest.to_string(),
            size,
            committed_at: None,
            labels: vec![],
        }))
    }

    fn open(digest: &Digest) -> Result<Box<dyn BlobRead>> {
        let c = conf()?;
        if let Some(size) = head_blob(&c, digest)? {
            return Ok(Box::new(BlobReader {
                c,
                digest: digest.clone(),
                size,
                stream: None,
            }));
        }
        match get_manifest(&c, &digest.to_string()) {
            Ok((bytes, _)) => Ok(Box::new(MemReader(bytes))),
            Err(Error::NotFound(_)) => Err(Error::NotFound(format!(
                "{digest} is neither a blob nor a manifest of {} on {}",
                c.repo, c.url
            ))),
            Err(e) => Err(e),
        }
    }

    fn create(expected: Option<&Digest>, size_hint: Option<u64>) -> Result<Box<dyn BlobWrite>> {
        let _ = (expected, size_hint);
        let c = conf()?;
        let path = store_dir()?.join(format!("{SPOOL_PREFIX}{}", random_suffix()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(path.display(), e))?;
        Ok(Box::new(Writer {
            c,
            path,
            file: Some(file),
            written: 0,
        }))
    }

    fn delete(digest: &Digest) -> Result<()> {
        Err(Error::Unsupported(format!(
            "cannot delete {digest}: the registry driver does not delete blobs (distribution deletes through its own garbage collector)"
        )))
    }

    fn list_blobs(cursor: Option<String>, limit: u32) -> Result<rumoci_driver_sdk::BlobPage> {
        let _ = (cursor, limit);
        Err(Error::Unsupported(
            "the registry API cannot list blobs, so gc cannot run through the registry driver (use the registry's own garbage-collect)".into(),
        ))
    }

    fn read_index() -> Result<IndexDoc> {
        let c = conf()?;
        Ok(index_doc(&current_tags(&c)?))
    }

    fn write_index(doc: Vec<u8>, precondition: IndexPrecondition) -> Result<String> {
        let c = conf()?;
        write_index(&c, &doc, precondition)
    }

    fn clean() -> Result<()> {
        let dir = store_dir()?;
        let entries = fs::read_dir(&dir).map_err(|e| Error::io(dir.display(), e))?;
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(SPOOL_PREFIX) {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn conf() -> Conf {
        Conf {
            url: "http://127.0.0.1:5000".into(),
            ep: names::parse_url("http://127.0.0.1:5000").unwrap(),
            repo: "a/b".into(),
        }
    }

    /// The configuration for repository `r` on a test server.
    fn served(ep: Endpoint) -> Conf {
        Conf {
            url: format!("http://{}", ep.authority),
            ep,
            repo: "r".into(),
        }
    }

    #[test]
    fn classifies_manifests() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(manifest_type(m).as_deref(), Some(OCI_MANIFEST));
        assert_eq!(
            manifest_type(br#"{"manifests":[]}"#).as_deref(),
            Some(OCI_INDEX)
        );
        assert_eq!(
            manifest_type(br#" {"config":{},"layers":[]}"#).as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(manifest_type(br#"{"config":{},"rootfs":{}}"#), None);
        assert_eq!(
            manifest_type(br#"{"mediaType":"x/y","manifests":[]}"#),
            None
        );
        assert_eq!(manifest_type(b"\x1f\x8b"), None);
        assert_eq!(manifest_type(b"{not json"), None);
    }

    #[test]
    fn locations() {
        let c = conf();
        assert_eq!(
            resolve_location(&c, "/v2/a/b/blobs/uploads/u?_state=x").unwrap(),
            "/v2/a/b/blobs/uploads/u?_state=x"
        );
        assert_eq!(
            resolve_location(&c, "http://127.0.0.1:5000/v2/x/uploads/u").unwrap(),
            "/v2/x/uploads/u"
        );
        assert!(resolve_location(&c, "http://evil:1/v2/").is_err());
        assert!(resolve_location(&c, "v2/rel").is_err());
        assert!(resolve_location(&c, "/a b").is_err());
        assert_eq!(
            next_link("</v2/a/tags/list?last=x&n=1>; rel=\"next\"").as_deref(),
            Some("/v2/a/tags/list?last=x&n=1")
        );
    }

    #[test]
    fn errors_and_indexes() {
        let (codes, msg) =
            registry_errors(br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#);
        assert_eq!(codes, ["BLOB_UNKNOWN"]);
        assert_eq!(msg, "BLOB_UNKNOWN: blob unknown");
        assert_eq!(registry_errors(b"<html>\n").1, "<html>");
        let mut tags = BTreeMap::new();
        tags.insert(
            "v1".to_string(),
            Tagged {
                digest: format!("sha256:{}", "a".repeat(64)),
                media_type: OCI_MANIFEST.into(),
                size: 7,
            },
        );
        let doc = index_doc(&tags);
        let want = wanted_tags(&doc.bytes).unwrap();
        assert_eq!(want.len(), 1);
        assert!(wanted_tags(br#"{"manifests":[{"digest":"sha256:x"}]}"#).is_err());
        let untagged = format!(
            r#"{{"manifests":[{{"digest":"sha256:{}"}}]}}"#,
            "a".repeat(64)
        );
        let e = wanted_tags(untagged.as_bytes()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(m) if m.contains("untagged")));
    }

    #[test]
    fn sequential_reads_keep_the_response_and_seeks_start_a_new_range() {
        let blob: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let part = |from: usize| {
            let mut a = format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-999/1000\r\nContent-Length: {}\r\n\r\n",
                1000 - from
            )
            .into_bytes();
            a.extend_from_slice(&blob[from..]);
            a
        };
        // exactly two requests may arrive: from 0, then from 5 (the seek)
        let ep = http::tests::serve(vec![part(0), part(5)]);
        let c = served(ep);
        let mut r = BlobReader {
            c,
            digest: Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap(),
            size: 1000,
            stream: None,
        };
        assert_eq!(r.read_at(0, 10).unwrap(), &blob[..10]);
        assert_eq!(r.read_at(10, 500).unwrap(), &blob[10..510]);
        assert_eq!(r.read_at(5, 3).unwrap(), &blob[5..8]);
        assert_eq!(r.read_at(8, 2000).unwrap(), &blob[8..]);
        assert!(r.read_at(1000, 10).unwrap().is_empty());
        // a third request finds nobody listening
        let e = r.read_at(0, 1).unwrap_err();
        assert!(matches!(&e, Error::Io(m) if m.contains("connect")), "{e:?}");
    }

    #[test]
    fn registry_error_bodies_become_variants() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        let ans = |status: &str, body: &[u8]| {
            let mut a = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            a.extend_from_slice(body);
            a
        };
        let ep = http::tests::serve(vec![
            ans("404 Not Found", body),
            ans(
                "400 Bad Request",
                br#"{"errors":[{"code":"DIGEST_INVALID","message":"x"}]}"#,
            ),
            ans("503 Service Unavailable", b"<html>down</html>"),
            ans("500 Internal Server Error", &vec![b'{'; 1 << 20]),
        ]);
        let c = served(ep);
        let e = get_manifest(&c, "v1").unwrap_err();
        assert!(
            matches!(&e, Error::NotFound(m) if m.contains("GET /v2/r/manifests/v1: HTTP 404 Not Found: MANIFEST_UNKNOWN: manifest unknown")),
            "{e:?}"
        );
        let e = get_manifest(&c, "v1").unwrap_err();
        assert!(
            matches!(&e, Error::Integrity(m) if m.contains("DIGEST_INVALID")),
            "{e:?}"
        );
        let e = get_manifest(&c, "v1").unwrap_err();
        assert!(
            matches!(&e, Error::Io(m) if m.contains("<html>down</html>")),
            "{e:?}"
        );
        let e = get_manifest(&c, "v1").unwrap_err();
        assert!(
            matches!(&e, Error::Io(m) if m.contains("HTTP 500") && m.len() < 1000),
            "{e:?}"
        );
    }
}
