//! Requests and their errors, the bits of XML the S3 API answers, and
//! HTTP dates.

use super::*;

/// Retries of a request that met a server error: the pauses (50 ms,
/// doubling) add up to 3.2 s, long enough for a burst of `SlowDown` or a
/// server coming back.
pub(crate) const RETRIES: usize = 6;
/// Bytes of an error response read for the message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// One request's description, for error messages.
pub(crate) struct Call<'a> {
    pub(crate) c: &'a Conf,
    pub(crate) method: &'a str,
    /// The object (`s3://BUCKET/KEY`) or bucket named in messages.
    pub(crate) object: String,
    /// The request target (path and query).
    pub(crate) target: String,
}

/// A request on object `key` (`query` may be empty).
pub(crate) fn object<'a>(c: &'a Conf, method: &'a str, key: &str, query: &str) -> Call<'a> {
    Call {
        c,
        method,
        object: c.show(key),
        target: c.object_path(key, query),
    }
}

/// A request on the bucket.
pub(crate) fn bucket<'a>(c: &'a Conf, method: &'a str, query: &str) -> Call<'a> {
    Call {
        c,
        method,
        object: format!("s3://{}", c.bucket),
        target: c.bucket_path(query),
    }
}

impl Call<'_> {
    pub(crate) fn what(&self) -> String {
        format!("{} {} ({})", self.method, self.object, self.c.url)
    }

    pub(crate) fn transport(&self, e: HttpError) -> Error {
        Error::Io(format!("{}: {e}", self.what()))
    }

    /// Send; a server error (500, 502, 503 — S3's
    /// `SlowDown` — or 504) is answered by sending the request again after
    /// a growing pause, up to [`RETRIES`] times. Every body is in memory,
    /// so every request can be sent again: a 5xx means the server did not
    /// apply it, and a conditional write whose first answer was lost after
    /// all is refused by its own condition the second time (the
    /// compare-and-swap loop then reads the index again).
    pub(crate) fn send(&self, headers: &[(&str, &str)], body: Body<'_>) -> Result<Response> {
        self.c
            .ep
            .request_retrying(self.method, &self.target, headers, body, RETRIES)
            .map_err(|e| self.transport(e))
    }

    /// A bodiless idempotent request: the response on 200, `None` on 404,
    /// else an error.
    pub(crate) fn found(&self) -> Result<Option<Response>> {
        let mut r = self.send(&[], Body::Empty)?;
        match r.status {
            200 => Ok(Some(r)),
            404 => Ok(None),
            _ => Err(self.status_error(&mut r)),
        }
    }

    /// The `Content-Length` of `r`, required.
    pub(crate) fn size(&self, r: &Response) -> Result<u64> {
        r.content_length()
            .map_err(|e| self.transport(e))?
            .ok_or_else(|| Error::Io(format!("{}: no Content-Length", self.what())))
    }

    /// [`Call::send`], then an error unless the status is one of `ok`.
    pub(crate) fn expect(
        &self,
        headers: &[(&str, &str)],
        body: Body<'_>,
        ok: &[u16],
    ) -> Result<Response> {
        self.send(headers, body)?
            .expect_status(ok, |r| self.status_error(r))
    }

    /// An error for an unexpected status, with S3's error code.
    pub(crate) fn status_error(&self, resp: &mut Response) -> Error {
        let body = resp.error_body(self.method, MAX_ERROR_BODY);
        let (code, message) = s3_error(&body);
        let mut msg = format!("{}: HTTP {} {}", self.what(), resp.status, resp.reason);
        if !code.is_empty() {
            msg.push_str(&format!(": {code}"));
        }
        if !message.is_empty() {
            msg.push_str(&format!(": {message}"));
        }
        match (resp.status, code.as_str()) {
            (404, "NoSuchBucket") => Error::NotFound(format!(
                "bucket {} does not exist on {} ({})",
                self.c.bucket, self.c.url, msg
            )),
            (404, _) => Error::NotFound(msg),
            (403, _) | (401, _) => Error::Other(format!(
                "{msg} (access denied: check the credentials the host signs with: creds=, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE)"
            )),
            (412, _) | (409, "ConditionalRequestConflict") => Error::FailedPrecondition(msg),
            (400 | 416, _) => Error::InvalidArgument(msg),
            (405 | 501, _) => Error::Unsupported(msg),
            (500..=599, _) => Error::Io(msg),
            _ => Error::Other(msg),
        }
    }
}

/// `Code` and `Message` of an S3 error document (sanitised), or the first
/// line of whatever else the body is.
pub(crate) fn s3_error(body: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(body);
    if let Some(code) = xml_text(&text, "Code") {
        let msg = xml_text(&text, "Message").unwrap_or_default();
        return (sanitize(&code, 100), sanitize(&msg, 300));
    }
    let line = text.lines().next().unwrap_or_default();
    (String::new(), sanitize(line, 200))
}

/// The text of the first `<tag>…</tag>` in `xml`, entities decoded.
pub(crate) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

/// The texts of every `<tag>…</tag>` in `xml`, in order, entities decoded.
pub(crate) fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    xml_elements(xml, tag).into_iter().map(unescape).collect()
}

/// The raw insides of every `<tag>…</tag>` (or `<tag attr…>…</tag>`).
pub(crate) fn xml_elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        // `<Tag>` or `<Tag …>`, not `<TagOther>`; `<Tag/>` is empty
        match after.chars().next() {
            Some('>') => {}
            Some(' ') | Some('\t') | Some('\n') | Some('/') => {}
            _ => {
                rest = after;
                continue;
            }
        }
        let Some(gt) = after.find('>') else { break };
        if after[..gt].ends_with('/') {
            out.push("");
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let Some(semi) = after.find(';').filter(|i| *i <= 10) else {
            out.push('&');
            rest = after;
            continue;
        };
        let ent = &after[..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// XML text escaping (for the bodies sent: part ETags).
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn seconds(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<u64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    u64::try_from(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s).ok()
}

/// Unix seconds of an ISO 8601 time as S3 lists them
/// (`2026-12-06T10:06:36.000Z`).
pub(crate) fn parse_iso(t: &str) -> Option<u64> {
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    if t.len() < 19 || t.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    seconds(
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    )
}

/// Unix seconds of an HTTP date (`Sun, 06 Dec 2026 10:06:36 GMT`).
pub(crate) fn parse_http_date(t: &str) -> Option<u64> {
    let parts: Vec<&str> = t.split_whitespace().collect();
    let [_, d, mon, y, hms, _] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mo = MONTHS.iter().position(|m| m == mon)? as i64 + 1;
    let mut hms = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    seconds(y.parse().ok()?, mo, d.parse().ok()?, h, mi, s)
}

/// Now, in Unix seconds: the server's `Date` if it sent one (its clock
/// stamps the objects), else ours.
pub(crate) fn server_now(r: &Response) -> u64 {
    r.header("date")
        .and_then(parse_http_date)
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn xml_pieces() {
        let listing = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated>
<Contents><Key>p/blobs/sha256/ab</Key><LastModified>2026-12-06T10:06:36.000Z</LastModified><Size>7</Size></Contents>
<Contents><Key>a&amp;b</Key><Size>0</Size></Contents><KeyCount>2</KeyCount></ListBucketResult>"#;
        let items = xml_elements(listing, "Contents");
        assert_eq!(items.len(), 2);
        assert_eq!(xml_text(items[0], "Key").unwrap(), "p/blobs/sha256/ab");
        assert_eq!(xml_text(items[1], "Key").unwrap(), "a&b");
        // <Key> is not <KeyCount>
        assert_eq!(xml_all(listing, "Key").len(), 2);
        assert_eq!(xml_text(listing, "IsTruncated").unwrap(), "true");
        assert_eq!(xml_text("<a><B/></a>", "B").unwrap(), "");
        assert_eq!(unescape("&lt;&#65;&#x42;&bogus;&"), "<AB&bogus;&");
        let (code, msg) = s3_error(
            b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.\n</Message></Error>",
        );
        assert_eq!(code, "NoSuchKey");
        assert_eq!(msg, "The specified key does not exist.?");
        assert_eq!(s3_error(b"<html>\nbad").1, "<html>");
    }

    #[test]
    fn times() {
        assert_eq!(parse_iso("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso("2026-12-06T10:06:36.000Z"), Some(1_796_551_596));
        assert_eq!(
            parse_http_date("Sun, 06 Dec 2026 10:06:36 GMT"),
            Some(1_796_551_596)
        );
        assert_eq!(parse_http_date("Feb 29 2000"), None);
        assert_eq!(parse_iso("2026-13-01T00:00:00Z"), None);
    }
}
