//! HTTP for the S3 API, through `wasi:http`: the plugin has no sockets.
//! The host sends each request (TLS and the AWS Signature V4 of every
//! request are its business, never the plugin's) and refuses any address
//! but the endpoint's.
//!
//! Responses are still treated as hostile: bodies are only read into
//! memory up to a caller-given bound, and text from them is sanitised
//! before it goes into an error message.

use std::fmt;
use std::io::{self, Read};

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod fake;
#[cfg(target_arch = "wasm32")]
mod wasi;

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
}

/// A request body.
pub enum Body<'a> {
    /// No body (`Content-Length: 0` for PUT/POST/PATCH).
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
}

impl Body<'_> {
    /// The `Content-Length` to send, if any.
    fn length(&self, method: &str) -> Option<u64> {
        match self {
            Body::Empty if matches!(method, "PUT" | "POST" | "PATCH") => Some(0),
            Body::Empty => None,
            Body::Bytes(b) => Some(b.len() as u64),
        }
    }
}

/// A response: status, headers and a streaming body.
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
    /// Send one request and read the response head.
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
}

/// The standard reason phrase of the codes an object store answers.
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

/// `Content-Length` of `headers`, if present (several must agree).
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
}

impl Read for Response {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.body.read(out)
    }
}

/// Printable ASCII only, at most `max` characters (for error messages).
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
