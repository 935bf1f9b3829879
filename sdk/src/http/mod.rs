//! HTTP for drivers that reach a network through `url=` (feature `http`).
//!
//! A driver has no sockets: it sends `wasi:http` requests, and the host
//! sends them for it (TLS, credentials, a registry's login challenges and
//! redirects, an object store's request signing are the host's business,
//! never the plugin's) and refuses any address but the origin of the
//! driver's `url=` option. This module is a small blocking client over
//! `wasi:http/outgoing-handler`:
//!
//! * [`Endpoint`]: where requests go ([`Endpoint::parse`] reads a `url=`
//!   option), with [`Endpoint::request`] and [`Endpoint::request_retrying`];
//! * [`Body`]: a request body (none, bytes, or a reader of known length);
//! * [`Response`]: status, headers, and the body as a [`std::io::Read`],
//!   with bounded reads ([`Response::read_body`]);
//! * [`RangeReader`]: a [`BlobRead`](crate::BlobRead) over `Range:` GETs
//!   of one resource, continuing sequential reads on the open response and
//!   resuming one that failed mid-body;
//! * [`sanitize`]: text from a response, fit for an error message.
//!
//! Responses are treated as hostile: bodies are only read into memory up
//! to a caller-given bound, and text from them should go through
//! [`sanitize`] before it goes into an error message.
//!
//! On the build machine (any target but `wasm32`), where there is no
//! `wasi:http`, requests are answered by `http::fake` instead, from a queue
//! of raw HTTP/1.1 answers a unit test gives: a driver's native unit tests
//! run its request code unchanged.

use std::fmt;
use std::io::{self, Read};

#[cfg(not(target_arch = "wasm32"))]
pub mod fake;
mod range;
#[cfg(target_arch = "wasm32")]
mod wasi;

pub use range::{RESUMES, RangeReader, RangeSource};

/// A transport or protocol failure (the status code is not an error here).
#[derive(Debug)]
pub struct HttpError(pub String);

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> HttpError {
        HttpError(e.to_string())
    }
}

/// Where requests go: `http[s]://HOST[:PORT]`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https` rather than `http`.
    pub https: bool,
    /// `HOST[:PORT]` as given in the URL.
    pub authority: String,
    /// The `User-Agent` sent with every request ([`Endpoint::parse`] sets
    /// `rumoci-driver/VERSION`; see [`Endpoint::with_user_agent`]).
    pub user_agent: String,
}

/// A request body.
pub enum Body<'a> {
    /// No body (`Content-Length: 0` for PUT/POST/PATCH).
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes read from a reader (a spooled file).
    Reader(&'a mut dyn Read, u64),
}

impl Body<'_> {
    /// The `Content-Length` to send, if any.
    fn length(&self, method: &str) -> Option<u64> {
        match self {
            Body::Empty if matches!(method, "PUT" | "POST" | "PATCH") => Some(0),
            Body::Empty => None,
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Reader(_, n) => Some(*n),
        }
    }
}

/// A response: status, headers and a streaming body (read it through
/// [`Read`]).
pub struct Response {
    /// The status code (100–599).
    pub status: u16,
    /// The reason phrase (the standard one for the code, possibly empty).
    pub reason: String,
    /// Header names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    body: Box<dyn Read>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A `url=` option as an endpoint: `http[s]://HOST[:PORT]`, a trailing
    /// `/` allowed, nothing more. The error says what is expected;
    /// `hint`, when not empty, is added to the message about a path, query
    /// or user (`…(no path, query or user: HINT)`), to say where such a
    /// thing goes instead.
    pub fn parse(url: &str, hint: &str) -> Result<Endpoint, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("url {url:?}: expected http[s]://HOST[:PORT]"));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            let hint = if hint.is_empty() {
                String::new()
            } else {
                format!(": {hint}")
            };
            return Err(format!(
                "url {url:?}: expected http[s]://HOST[:PORT] (no path, query or user{hint})"
            ));
        }
        Ok(Endpoint {
            https,
            authority: authority.to_string(),
            user_agent: format!("rumoci-driver/{}", env!("CARGO_PKG_VERSION")),
        })
    }

    /// The same endpoint, sending `User-Agent: user_agent`
    /// (`rumoci-mine/0.1.0`: `concat!("rumoci-mine/", env!("CARGO_PKG_VERSION"))`).
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Endpoint {
        self.user_agent = user_agent.into();
        self
    }

    /// Send one request for `target` (path and query) and read the
    /// response head. `headers` are sent as given (names in any case), plus
    /// `User-Agent` and the `Content-Length` of `body`.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Response, HttpError> {
        #[cfg(target_arch = "wasm32")]
        {
            wasi::request(self, method, target, headers, body)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            fake::request(self, method, target, headers, body)
        }
    }

    /// [`Endpoint::request`], sent again while the server answers 500,
    /// 502, 503 or 504, up to `retries` more times, after a pause of 50 ms
    /// doubled each time; the last answer is returned whatever it is. Use
    /// it for idempotent requests. A [`Body::Reader`] cannot be sent twice:
    /// such a request is sent once. A transport error is returned at once.
    pub fn request_retrying(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        retries: usize,
    ) -> Result<Response, HttpError> {
        if !matches!(body, Body::Reader(..)) {
            let mut delay = std::time::Duration::from_millis(50);
            for _ in 0..retries {
                let again = match &body {
                    Body::Bytes(b) => Body::Bytes(b),
                    _ => Body::Empty,
                };
                let r = self.request(method, target, headers, again)?;
                if !matches!(r.status, 500 | 502 | 503 | 504) {
                    return Ok(r);
                }
                drop(r);
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
        self.request(method, target, headers, body)
    }
}

/// The standard reason phrase of the codes registries and object stores
/// answer.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// `Content-Length` of `headers` (names lowercase), if present (several
/// must agree).
pub fn content_length(headers: &[(String, String)]) -> Result<Option<u64>, HttpError> {
    let mut found: Option<u64> = None;
    for (k, v) in headers {
        if k != "content-length" {
            continue;
        }
        let n: u64 = v
            .trim()
            .parse()
            .map_err(|_| HttpError(format!("bad Content-Length {:?}", sanitize(v, 40))))?;
        if found.is_some_and(|f| f != n) {
            return Err(HttpError("conflicting Content-Length headers".into()));
        }
        found = Some(n);
    }
    Ok(found)
}

impl Response {
    fn new(status: u16, headers: Vec<(String, String)>, body: Box<dyn Read>) -> Response {
        Response {
            status,
            reason: reason(status).to_string(),
            headers,
            body,
        }
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, if the response has one.
    pub fn content_length(&self) -> Result<Option<u64>, HttpError> {
        content_length(&self.headers)
    }

    /// The whole body, failing if it is longer than `max` bytes.
    pub fn read_body(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        if let Some(n) = self.content_length()?
            && n > max as u64
        {
            return Err(HttpError(format!(
                "response body of {n} bytes is larger than the {max} accepted"
            )));
        }
        let mut buf = Vec::new();
        self.take((max as u64).saturating_add(1))
            .read_to_end(&mut buf)?;
        if buf.len() > max {
            return Err(HttpError(format!(
                "response body larger than the {max} bytes accepted"
            )));
        }
        Ok(buf)
    }

    /// Up to `max` bytes of the body for an error message; never fails.
    pub fn read_body_lossy(&mut self, max: usize) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = self.take(max as u64).read_to_end(&mut buf);
        buf
    }

    /// The response if its status is one of `ok`, else the error `err`
    /// makes of it (reading the body for a message, say).
    pub fn expect_status<E>(
        mut self,
        ok: &[u16],
        err: impl FnOnce(&mut Response) -> E,
    ) -> Result<Response, E> {
        if ok.contains(&self.status) {
            Ok(self)
        } else {
            Err(err(&mut self))
        }
    }

    /// What an error message may quote of the answer to a `method`
    /// request: up to `max` bytes of the body ([`Response::read_body_lossy`]),
    /// nothing for a `HEAD` (its answer has no body to wait for).
    pub fn error_body(&mut self, method: &str, max: usize) -> Vec<u8> {
        if method == "HEAD" {
            Vec::new()
        } else {
            self.read_body_lossy(max)
        }
    }
}

impl Read for Response {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.body.read(out)
    }
}

/// Printable ASCII only, at most `max` characters (for error messages);
/// `…` marks a cut.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("http://127.0.0.1:5000", "").unwrap();
        assert_eq!((e.https, e.authority.as_str()), (false, "127.0.0.1:5000"));
        let e = Endpoint::parse("https://registry.example.com/", "").unwrap();
        assert_eq!(
            (e.https, e.authority.as_str()),
            (true, "registry.example.com")
        );
        for bad in [
            "ftp://x",
            "127.0.0.1:5000",
            "http://127.0.0.1:5000/v2",
            "http://u@127.0.0.1:1",
            "http://",
        ] {
            assert!(Endpoint::parse(bad, "").is_err(), "{bad}");
        }
        let e = Endpoint::parse("http://h/b", "").unwrap_err();
        assert!(e.ends_with("(no path, query or user)"), "{e}");
        let e = Endpoint::parse("http://h/b", "the bucket is bucket=").unwrap_err();
        assert!(
            e.ends_with("(no path, query or user: the bucket is bucket=)"),
            "{e}"
        );
        let e = Endpoint::parse("http://h", "")
            .unwrap()
            .with_user_agent("x/1");
        assert_eq!(e.user_agent, "x/1");
    }

    fn answer(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn server_errors_are_retried_then_answered() {
        let ep = fake::serve(vec![
            answer("503 Service Unavailable", "a"),
            answer("200 OK", "b"),
            answer("500 Internal Server Error", "c"),
            answer("502 Bad Gateway", "d"),
            answer("404 Not Found", "e"),
        ]);
        let mut r = ep
            .request_retrying("GET", "/", &[], Body::Empty, 4)
            .unwrap();
        assert_eq!((r.status, r.read_body(10).unwrap()), (200, b"b".to_vec()));
        // one retry: the second server error is the answer
        let mut r = ep
            .request_retrying("PUT", "/", &[], Body::Bytes(b"x"), 1)
            .unwrap();
        assert_eq!((r.status, r.reason.as_str()), (502, "Bad Gateway"));
        assert_eq!(r.read_body(10).unwrap(), b"d");
        // no retries: sent once
        let r = ep
            .request_retrying("GET", "/", &[], Body::Empty, 0)
            .unwrap();
        assert_eq!(r.status, 404);
        let e = ep.request("GET", "/", &[], Body::Empty).unwrap_err();
        assert!(e.0.contains("connection refused"), "{e}");
    }

    #[test]
    fn bodies_are_bounded() {
        let ep = fake::serve(vec![answer("200 OK", "abcdef"), answer("200 OK", "abc")]);
        let mut r = ep.request("GET", "/", &[], Body::Empty).unwrap();
        let e = r.read_body(5).unwrap_err();
        assert!(e.0.contains("larger than the 5 accepted"), "{e}");
        let mut r = ep.request("GET", "/", &[], Body::Empty).unwrap();
        assert_eq!(r.read_body_lossy(2), b"ab");
        assert_eq!(sanitize("a\nb", 2), "a?…");
    }
}
