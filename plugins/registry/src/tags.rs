//! Tags: listing (Link paging), `index.json` made from them, and its
//! compare-and-swap write.

use super::*;

// ---------------------------------------------------------------------------
// The index: the repository's tags

/// One tag and where it points.
pub(crate) struct Tagged {
    pub(crate) digest: String,
    pub(crate) media_type: String,
    pub(crate) size: u64,
}

pub(crate) fn list_tags(c: &Conf) -> Result<Vec<String>> {
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
pub(crate) fn next_link(h: &str) -> Option<String> {
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

pub(crate) fn current_tags(c: &Conf) -> Result<BTreeMap<String, Tagged>> {
    let mut out = BTreeMap::new();
    for tag in list_tags(c)? {
        // A tag deleted between the listing and the HEAD is just gone.
        if let Some(h) = head_manifest(c, &tag)? {
            known_manifest(&h.digest);
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

/// The entries of just the tags `refs` (the host's `wanted-refs`): one
/// `GET /manifests/<tag>` each, its body kept ([`keep_manifest`]) so that
/// opening the manifest costs no second request. A ref that is not a
/// valid tag, or that the registry does not have, is left out (the host
/// then says the tag is not found); when the server answers a tag with
/// 404, `GET /v2/` tells whether it is a registry at all.
pub(crate) fn resolve_tags(c: &Conf, refs: &[String]) -> Result<BTreeMap<String, Tagged>> {
    let mut out = BTreeMap::new();
    for tag in refs {
        if !names::valid_tag(tag) || out.contains_key(tag) {
            continue;
        }
        let (bytes, digest, media_type) = match get_tagged_manifest(c, tag) {
            Ok(got) => got,
            Err(Error::NotFound(_)) => {
                // no such tag, or no registry there at all (no probe was
                // made at `check`): the probe tells which, only now
                crate::probe(c)?;
                continue;
            }
            Err(e) => return Err(e),
        };
        known_manifest(&digest);
        keep_manifest(&digest, &bytes);
        out.insert(
            tag.clone(),
            Tagged {
                digest: digest.to_string(),
                media_type,
                size: bytes.len() as u64,
            },
        );
    }
    Ok(out)
}

pub(crate) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The OCI index for `tags` (sorted by tag) and its version token.
pub(crate) fn index_doc(tags: &BTreeMap<String, Tagged>) -> IndexDoc {
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
pub(crate) fn wanted_tags(doc: &[u8]) -> Result<BTreeMap<String, Digest>> {
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

pub(crate) fn write_index(c: &Conf, doc: &[u8], pre: IndexPrecondition) -> Result<String> {
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
    // A tag goes by deleting its manifest (the registry API has no other
    // way), so only when no tag that stays names that manifest.
    let removed: BTreeMap<String, String> = tags
        .iter()
        .filter(|(t, _)| !want.contains_key(*t))
        .map(|(t, v)| (t.clone(), v.digest.clone()))
        .collect();
    for (tag, digest) in &removed {
        let kept: Vec<&String> = want
            .iter()
            .filter(|(_, d)| d.to_string() == *digest)
            .map(|(t, _)| t)
            .collect();
        if !kept.is_empty() {
            return Err(Error::Unsupported(format!(
                "cannot remove tag {tag} from {}: the registry API removes a tag only by deleting its manifest {digest}, which {} still name",
                c.repo,
                kept.iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
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
    let mut deleted = std::collections::BTreeSet::new();
    for (tag, digest) in &removed {
        if deleted.insert(digest.clone()) {
            delete_manifest(c, digest)?;
        }
        tags.remove(tag);
    }
    Ok(index_doc(&tags).version)
}

/// `DELETE` the manifest `digest` (and with it every tag naming it); an
/// absent one is fine.
pub(crate) fn delete_manifest(c: &Conf, digest: &str) -> Result<()> {
    let call = call(c, "DELETE", manifest_path(c, digest));
    let mut r = call.send(&[], Body::Empty)?;
    match r.status {
        200 | 202 | 404 => Ok(()),
        405 => Err(Error::Unsupported(format!(
            "{}: the registry does not allow deletes (distribution: storage.delete.enabled)",
            call.what()
        ))),
        _ => Err(call.status_error(&mut r)),
    }
}
