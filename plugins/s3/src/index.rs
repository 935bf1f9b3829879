//! `index.json` (compare-and-swap with conditional writes), object heads,
//! blob listings and the cleaning of temporaries.

use super::*;

/// What a `HEAD` says of an object.
pub(crate) struct Head {
    pub(crate) size: u64,
    pub(crate) modified: Option<u64>,
    pub(crate) etag: Option<String>,
}

/// `HEAD` of `key`; `None` if absent.
pub(crate) fn head_object(c: &Conf, key: &str) -> Result<Option<Head>> {
    let call = object(c, "HEAD", key, "");
    let Some(r) = call.found()? else {
        return Ok(None);
    };
    Ok(Some(Head {
        size: call.size(&r)?,
        modified: r.header("last-modified").and_then(parse_http_date),
        etag: r.header("etag").map(str::to_string),
    }))
}

pub(crate) fn head_index(c: &Conf) -> Result<Option<Head>> {
    head_object(c, &c.key("index.json"))
}

/// The index and its ETag; `None` if absent.
pub(crate) fn get_index(c: &Conf) -> Result<Option<(Vec<u8>, String)>> {
    let call = object(c, "GET", &c.key("index.json"), "");
    let Some(mut r) = call.found()? else {
        return Ok(None);
    };
    let etag = r.header("etag").map(str::to_string);
    let bytes = r.read_body(MAX_INDEX).map_err(|e| call.transport(e))?;
    // without an ETag (no server known does that) the bytes are
    // the version: preconditions then compare them
    let version = etag.unwrap_or_else(|| format!("bytes:{}", bytes.len()));
    Ok(Some((bytes, version)))
}

thread_local! {
    /// Whether the server honours conditional writes, once probed.
    static CONDITIONAL: RefCell<Option<bool>> = const { RefCell::new(None) };
}

/// Whether the server refuses a `PUT` whose `If-None-Match: *` or
/// `If-Match` does not hold (probed once per instance with a temporary
/// object beneath the prefix).
pub(crate) fn conditional_writes(c: &Conf) -> Result<bool> {
    if let Some(known) = CONDITIONAL.with(|k| *k.borrow()) {
        return Ok(known);
    }
    let key = c.key(&format!("{UPLOADS}/probe-{}", random_suffix()));
    let put = |headers: &[(&str, &str)]| -> Result<u16> {
        let call = object(c, "PUT", &key, "");
        let mut r = call.send(headers, Body::Bytes(b"probe"))?;
        match r.status {
            200 | 201 | 204 | 409 | 412 => Ok(r.status),
            _ => Err(call.status_error(&mut r)),
        }
    };
    let result = (|| -> Result<bool> {
        put(&[("If-None-Match", "*")])?;
        let create = put(&[("If-None-Match", "*")])?;
        let replace = put(&[("If-Match", "\"00000000000000000000000000000000\"")])?;
        Ok(matches!(create, 409 | 412) && matches!(replace, 409 | 412))
    })();
    let _ = object(c, "DELETE", &key, "").send(&[], Body::Empty);
    let ok = result?;
    if !ok && c.single_writer {
        log(
            Level::Warn,
            &format!(
                "{} does not honour conditional writes (If-None-Match / If-Match on PUT): index.json is written as by a single writer (opt.single-writer=true)",
                c.url
            ),
        );
    }
    CONDITIONAL.with(|k| *k.borrow_mut() = Some(ok));
    Ok(ok)
}

/// Replace the index if `pre` holds; answer the new ETag.
pub(crate) fn put_index(c: &Conf, doc: &[u8], pre: IndexPrecondition) -> Result<String> {
    let key = c.key("index.json");
    let conditional = conditional_writes(c)?;
    if !conditional && !c.single_writer {
        return Err(Error::Unsupported(format!(
            "{} does not honour conditional writes (If-Match / If-None-Match), so {} cannot be changed safely while others may write it; give opt.single-writer=true if only one rumoci at a time writes this layout",
            c.url,
            c.show(&key)
        )));
    }
    let lost = || Error::FailedPrecondition(format!("{} changed meanwhile", c.show(&key)));
    // the ETag the write requires, or `*` for "absent", or none at all
    let condition: Option<(&str, String)> = match pre {
        IndexPrecondition::Any => None,
        IndexPrecondition::Absent => {
            if !conditional && head_index(c)?.is_some() {
                return Err(lost());
            }
            Some(("If-None-Match", "*".into()))
        }
        IndexPrecondition::Version(v) => {
            if !conditional && get_index(c)?.map(|(_, e)| e) != Some(v.clone()) {
                return Err(lost());
            }
            Some(("If-Match", v))
        }
        IndexPrecondition::Bytes(b) => match get_index(c)? {
            Some((cur, etag)) if cur == b => Some(("If-Match", etag)),
            _ => return Err(lost()),
        },
    };
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some((h, v)) = &condition
        && conditional
        && !v.starts_with("bytes:")
    {
        headers.push((h, v.as_str()));
    }
    let call = object(c, "PUT", &key, "");
    let mut r = call.send(&headers, Body::Bytes(doc))?;
    match r.status {
        200 | 201 | 204 => {}
        // 404: an If-Match on an index deleted meanwhile
        412 | 409 | 404 if condition.is_some() => {
            let e = call.status_error(&mut r);
            return Err(Error::FailedPrecondition(format!(
                "{} changed meanwhile: {}",
                c.show(&key),
                match e {
                    Error::FailedPrecondition(m) | Error::NotFound(m) | Error::Other(m) => m,
                    other => format!("{other:?}"),
                }
            )));
        }
        _ => return Err(call.status_error(&mut r)),
    }
    match r.header("etag") {
        Some(e) => Ok(e.to_string()),
        None => Ok(head_index(c)?
            .and_then(|h| h.etag)
            .unwrap_or_else(|| format!("bytes:{}", doc.len()))),
    }
}

/// One `ListObjectsV2` page beneath `prefix`, after `start_after`: the
/// objects (key, size, modified), the server's time and whether more
/// follow.
pub(crate) struct Listing {
    pub(crate) objects: Vec<(String, u64, Option<u64>)>,
    pub(crate) now: u64,
    pub(crate) truncated: bool,
}

pub(crate) fn list_objects(
    c: &Conf,
    prefix: &str,
    start_after: Option<&str>,
    max: u32,
) -> Result<Listing> {
    let mut q = format!(
        "list-type=2&max-keys={}&prefix={}",
        max.clamp(1, 1000),
        encode(prefix, false)
    );
    if let Some(s) = start_after {
        q.push_str(&format!("&start-after={}", encode(s, false)));
    }
    let call = bucket(c, "GET", &q);
    let mut r = call.expect(&[], Body::Empty, &[200])?;
    let now = server_now(&r);
    let body = r.read_body(MAX_LISTING).map_err(|e| call.transport(e))?;
    let text = String::from_utf8_lossy(&body);
    let mut objects = Vec::new();
    for item in xml_elements(&text, "Contents") {
        let Some(key) = xml_text(item, "Key") else {
            continue;
        };
        let size = xml_text(item, "Size")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let modified = xml_text(item, "LastModified").and_then(|t| parse_iso(t.trim()));
        objects.push((key, size, modified));
    }
    let truncated = xml_text(&text, "IsTruncated").is_some_and(|t| t.trim() == "true");
    if truncated && objects.is_empty() {
        return Err(Error::Io(format!(
            "{}: a truncated listing without objects",
            call.what()
        )));
    }
    Ok(Listing {
        objects,
        now,
        truncated,
    })
}

/// A page of blobs: the keys `PREFIX/blobs/<alg>/<hex>` that are digests,
/// older than the gc grace period. The cursor is the last key seen.
pub(crate) fn list_blob_page(c: &Conf, cursor: Option<String>, limit: u32) -> Result<BlobPage> {
    let base = c.key("blobs/");
    if let Some(k) = &cursor
        && !k.starts_with(&base)
    {
        return Err(Error::InvalidArgument(format!(
            "cursor {:?} is not a key beneath {base}",
            sanitize(k, 200)
        )));
    }
    let mut after = cursor;
    loop {
        let page = list_objects(c, &base, after.as_deref(), limit)?;
        let mut items = Vec::new();
        for (key, size, modified) in &page.objects {
            let Some(name) = key.strip_prefix(&base) else {
                continue;
            };
            let Some(d) = name
                .split_once('/')
                .and_then(|(alg, hex)| Digest::parse(&format!("{alg}:{hex}")).ok())
            else {
                continue;
            };
            let young = modified.is_none_or(|m| m.saturating_add(c.gc_grace) > page.now);
            if young && c.gc_grace > 0 {
                continue;
            }
            items.push(BlobInfo {
                digest: d.to_string(),
                size: *size,
                committed_at: *modified,
                labels: vec![],
            });
        }
        after = page.objects.last().map(|(k, _, _)| k.clone());
        if !page.truncated {
            return Ok(BlobPage { items, next: None });
        }
        if !items.is_empty() {
            return Ok(BlobPage { items, next: after });
        }
    }
}

/// Remove temporaries (`PREFIX/.rumoci-uploads/…`) and abort multipart
/// uploads beneath the prefix older than the upload grace period: a
/// writer on another machine may still be at work on younger ones.
pub(crate) fn clean_uploads(c: &Conf) -> Result<()> {
    let base = c.key(&format!("{UPLOADS}/"));
    let mut after: Option<String> = None;
    loop {
        let page = list_objects(c, &base, after.as_deref(), 1000)?;
        for (key, _, modified) in &page.objects {
            if modified.is_some_and(|m| m.saturating_add(c.upload_grace) <= page.now) {
                object(c, "DELETE", key, "").expect(&[], Body::Empty, &[200, 204, 404])?;
            }
        }
        after = page.objects.last().map(|(k, _, _)| k.clone());
        if !page.truncated {
            break;
        }
    }
    // unfinished multipart uploads
    let q = format!("uploads=&prefix={}", encode(&c.key(""), false));
    let call = bucket(c, "GET", &q);
    let mut r = match call.expect(&[], Body::Empty, &[200]) {
        Ok(r) => r,
        Err(Error::Unsupported(m)) => {
            log(Level::Debug, &format!("listing multipart uploads: {m}"));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let now = server_now(&r);
    let body = r.read_body(MAX_LISTING).map_err(|e| call.transport(e))?;
    let text = String::from_utf8_lossy(&body);
    for up in xml_elements(&text, "Upload") {
        let (Some(key), Some(id)) = (xml_text(up, "Key"), xml_text(up, "UploadId")) else {
            continue;
        };
        let started = xml_text(up, "Initiated").and_then(|t| parse_iso(t.trim()));
        if started.is_some_and(|s| s.saturating_add(c.upload_grace) <= now) {
            let q = format!("uploadId={}", encode(&id, false));
            object(c, "DELETE", &key, &q).expect(&[], Body::Empty, &[200, 204, 404])?;
        }
    }
    Ok(())
}
