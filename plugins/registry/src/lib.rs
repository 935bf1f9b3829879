//! `registry`: a rumoci content-store driver keeping blobs and tags in an
//! OCI distribution registry (HTTP API v2), e.g. Debian's `docker-registry`
//! (CNCF distribution 2.8), GHCR, Docker Hub, Quay, Harbor, zot.
//!
//! Options (from `--driver registry.wasm,url=https://HOST[:PORT],repo=NAME`):
//! `url` (the registry; the host lets the plugin's `wasi:http` requests
//! reach exactly that origin, and does TLS, logins and redirects itself:
//! the plugin never sees a password or token) and `repo` (the repository;
//! by default the layout path of the command).
//!
//! Mapping: blobs are `/v2/<repo>/blobs/<digest>`, manifests and indexes
//! `/v2/<repo>/manifests/<digest>` (distribution does not serve manifests
//! under `/blobs`), and `index.json` is made from the repository's tags
//! (`tags/list` plus a `HEAD` per tag). Writes are spooled in the store
//! directory and uploaded on commit. A tag is removed by deleting its
//! manifest (only when no remaining tag names it, and where the registry
//! allows deletes). What the API cannot do is answered `unsupported`:
//! deleting blobs, listing blobs (so no gc).
//! The host verifies every digest and size it reads back.

mod blobs;
mod conf;
mod names;
mod request;
mod tags;

use blobs::*;
use conf::*;
use request::*;
use tags::*;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use rumoci_driver_sdk::http::{
    Body, Endpoint, HttpError, RangeReader, RangeSource, Response, sanitize,
};
use rumoci_driver_sdk::{
    BlobInfo, BlobRead, BlobWrite, Cas, Digest, Driver, DriverInfo, Error, IndexDoc,
    IndexPrecondition, LayerStore, Result, config, store_dir, store_util::random_suffix,
    wanted_refs,
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

thread_local! {
    /// Digests the registry said are manifests (a tag's `HEAD`): opened
    /// as manifests straight away, not first asked for as blobs (a round
    /// trip saved).
    static MANIFESTS: RefCell<std::collections::BTreeSet<String>> =
        const { RefCell::new(std::collections::BTreeSet::new()) };
}

/// Remember that `digest` is a manifest of the repository.
pub(crate) fn known_manifest(digest: &Digest) {
    MANIFESTS.with(|m| m.borrow_mut().insert(digest.to_string()));
}

fn is_known_manifest(digest: &Digest) -> bool {
    MANIFESTS.with(|m| m.borrow().contains(&digest.to_string()))
}

/// Most bytes of manifests kept by [`keep_manifest`].
const MAX_KEPT: usize = 16 << 20;

thread_local! {
    /// Manifests fetched whole to resolve a tag (`read-index` with
    /// `wanted-refs`), by digest, checked: the host's `open` of that digest
    /// that follows costs no request. Content addressed, never stale.
    static KEPT: RefCell<(BTreeMap<String, Vec<u8>>, usize)> =
        const { RefCell::new((BTreeMap::new(), 0)) };
}

/// Keep `bytes`, the manifest `digest` (its digest checked by the caller).
pub(crate) fn keep_manifest(digest: &Digest, bytes: &[u8]) {
    KEPT.with(|k| {
        let (map, total) = &mut *k.borrow_mut();
        if *total + bytes.len() <= MAX_KEPT && !map.contains_key(&digest.to_string()) {
            *total += bytes.len();
            map.insert(digest.to_string(), bytes.to_vec());
        }
    });
}

fn kept_manifest(digest: &Digest) -> Option<Vec<u8>> {
    KEPT.with(|k| k.borrow().0.get(&digest.to_string()).cloned())
}

/// `GET /v2/`: whether `c.url` answers as a distribution registry; the
/// error says it does not (a 404 to a tag would otherwise read as "no such
/// tag").
pub(crate) fn probe(c: &Conf) -> Result<()> {
    let call = call(c, "GET", "/v2/".into());
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

/// The driver.
pub struct Registry;

rumoci_driver_sdk::register_driver!(Registry);

impl Driver for Registry {
    fn info() -> DriverInfo {
        DriverInfo::new(
            "registry",
            env!("CARGO_PKG_VERSION"),
            &["cas", "cas.init", "cas.tags-only"],
        )
    }
}

impl LayerStore for Registry {}

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
        // A command that resolves some tags alone sends their GETs next:
        // they find out as well whether the registry answers (and the
        // host answers its login challenge on the first 401), so no
        // round trip is spent on a probe first. Otherwise `GET /v2/`
        // tells a server that is no registry (whose 404 to
        // `tags/list` would read as "no tags") from an empty repository.
        if wanted_refs().is_some() {
            return Ok(());
        }
        probe(&c)
    }

    fn stat(digest: &Digest) -> Result<Option<BlobInfo>> {
        if let Some(bytes) = kept_manifest(digest) {
            return Ok(Some(BlobInfo {
                digest: digest.to_string(),
                size: bytes.len() as u64,
                committed_at: None,
                labels: vec![],
            }));
        }
        let c = conf()?;
        let blob = if is_known_manifest(digest) {
            None
        } else {
            head_blob(&c, digest)?
        };
        let size = match blob {
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
        if let Some(bytes) = kept_manifest(digest) {
            return Ok(Box::new(MemReader(bytes)));
        }
        let c = conf()?;
        // One GET (no HEAD first: over a link with latency each request
        // costs a round trip): its answer tells the size, and its body is
        // what the first reads return.
        let got = if is_known_manifest(digest) {
            None
        } else {
            let call = call(&c, "GET", blob_path(&c, digest));
            let mut r = call.send(&[], Body::Empty)?;
            match r.status {
                200 => {
                    check_digest_header(&call, &r, digest)?;
                    Some((required_length(&call, &r)?, r))
                }
                404 => {
                    // read the short error so that the connection is kept
                    let _ = r.read_body(MAX_ERROR_BODY);
                    None
                }
                _ => return Err(call.status_error(&mut r)),
            }
        };
        if let Some((size, r)) = got {
            let digest = digest.clone();
            return Ok(Box::new(RangeReader::with_response(
                BlobSource { c, digest },
                size,
                r,
            )));
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
        match wanted_refs() {
            // only these tags: one GET each, no listing
            Some(refs) => Ok(index_doc(&resolve_tags(&c, &refs)?)),
            None => Ok(index_doc(&current_tags(&c)?)),
        }
    }

    fn write_index(doc: Vec<u8>, precondition: IndexPrecondition) -> Result<String> {
        if let Some(refs) = wanted_refs() {
            // `other`, not `failed-precondition` (which the host retries)
            return Err(Error::Other(format!(
                "refusing to write the index: this command reads only the tags {} (host.wanted-refs), so the index it read is partial and writing it back would drop every other tag",
                refs.join(", ")
            )));
        }
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
    use rumoci_driver_sdk::http;

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
    fn blob_reads_are_ranged_gets_of_the_blob() {
        // the SDK's RangeReader has the read cases; here: what is asked
        let part = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-2/3\r\nContent-Length: 3\r\n\r\nabc";
        let ep = http::fake::serve(vec![part.to_vec()]);
        let digest = Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        let mut r = RangeReader::new(
            BlobSource {
                c: served(ep),
                digest,
            },
            3,
        );
        assert_eq!(r.read_at(0, 10).unwrap(), b"abc");
        // the seek's request finds nobody listening, and says which blob
        let e = r.read_at(1, 1).unwrap_err();
        let blob = "GET http://127.0.0.1:5000/v2/r/blobs/sha256:000";
        assert!(
            matches!(&e, Error::Io(m) if m.starts_with(blob) && m.contains("connect")),
            "{e:?}"
        );
    }

    #[test]
    fn a_read_meeting_a_server_error_is_retried() {
        let doc = br#"{"schemaVersion":2}"#;
        let ep = http::fake::serve(vec![
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 7\r\n\r\nunknown".to_vec(),
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n{}",
                doc.len(),
                String::from_utf8_lossy(doc)
            )
            .into_bytes(),
        ]);
        let (bytes, _) = get_manifest(&served(ep), "v1").unwrap();
        assert_eq!(bytes, doc);
    }

    /// A tag resolved by its GET: the digest is the body's, and a
    /// `Docker-Content-Digest` naming other bytes is an integrity error.
    #[test]
    fn a_tag_resolved_by_its_get_takes_the_bodys_digest() {
        let doc = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let want = sha256_digest(doc);
        let answer = |digest: Option<&str>| {
            let mut a = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n",
                doc.len()
            );
            if let Some(d) = digest {
                a.push_str(&format!("Docker-Content-Digest: {d}\r\n"));
            }
            a.push_str("\r\n");
            let mut a = a.into_bytes();
            a.extend_from_slice(doc);
            a
        };
        let other = format!("sha256:{}", "1".repeat(64));
        let ep = http::fake::serve(vec![
            answer(None),
            answer(Some(&want)),
            answer(Some(&other)),
        ]);
        let c = served(ep);
        for _ in 0..2 {
            let (bytes, digest, mt) = get_tagged_manifest(&c, "v1").unwrap();
            assert_eq!(bytes, doc);
            assert_eq!(digest.to_string(), want);
            assert_eq!(mt, OCI_MANIFEST);
        }
        let e = get_tagged_manifest(&c, "v1").unwrap_err();
        assert!(
            matches!(&e, Error::Integrity(m) if m.contains("hashes to")),
            "{e:?}"
        );
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
        // a server error of a GET is retried (RETRIES times, then once more)
        let tries = RETRIES + 1;
        let mut answers = vec![
            ans("404 Not Found", body),
            ans(
                "400 Bad Request",
                br#"{"errors":[{"code":"DIGEST_INVALID","message":"x"}]}"#,
            ),
        ];
        answers.extend(std::iter::repeat_n(
            ans("503 Service Unavailable", b"<html>down</html>"),
            tries,
        ));
        answers.extend(std::iter::repeat_n(
            ans("500 Internal Server Error", &vec![b'{'; 1 << 20]),
            tries,
        ));
        let ep = http::fake::serve(answers);
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
