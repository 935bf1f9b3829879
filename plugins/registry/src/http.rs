//! A small HTTP/1.1 client over one TCP connection per request
//! (`Connection: close`), written for the distribution API: request bodies
//! from memory or a file, response bodies framed by `Content-Length`,
//! `Transfer-Encoding: chunked` or the end of the connection.
//!
//! Every response is treated as hostile: the header block is bounded
//! ([`MAX_HEADERS`]), malformed status lines, headers and chunk sizes are
//! errors (never panics), and bodies are only read into memory up to a
//! caller-given bound.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest response header block accepted (status line included).
pub const MAX_HEADERS: usize = 64 << 10;
/// Most header lines accepted.
const MAX_HEADER_COUNT: usize = 256;
/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Socket read/write timeout: a registry that stops answering fails the
/// call instead of blocking rumoci forever (the host's per-call deadline
/// cannot interrupt a blocking socket call; 25 s fits its default of 30 s).
const IO_TIMEOUT: Duration = Duration::from_secs(25);

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
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                HttpError(format!("no answer within {} s", IO_TIMEOUT.as_secs()))
            }
            _ => HttpError(e.to_string()),
        }
    }
}

/// Where requests go: the addresses to connect to and the `Host` header.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `HOST:PORT` as given in the URL (the `Host` header).
    pub authority: String,
    /// Socket addresses to try, in order (IP literals only: the sandbox
    /// has no name lookup).
    pub connect: Vec<String>,
}

/// A request body.
pub enum Body<'a> {
    /// No body (no `Content-Length` either, except for PUT/POST/PATCH: 0).
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// `len` bytes read from a reader (a spooled file).
    Reader(&'a mut dyn Read, u64),
}

/// How the body of a response is delimited.
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length`: bytes left.
    Length(u64),
    /// Chunked: bytes left in the current chunk, `None` before the first
    /// chunk header; `done` after the last chunk.
    Chunked { left: Option<u64>, done: bool },
    /// Until the connection closes.
    Eof,
}

/// A response: status, headers and a streaming body.
pub struct Response {
    /// The status code (100–599).
    pub status: u16,
    /// The reason phrase (sanitised, possibly empty).
    pub reason: String,
    /// Header names lowercased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    stream: BufReader<TcpStream>,
    framing: Framing,
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
        let stream = self.connect()?;
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rumoci-registry/{}\r\nConnection: close\r\n",
            self.authority,
            env!("CARGO_PKG_VERSION")
        );
        for (k, v) in headers {
            if [k, v]
                .iter()
                .any(|s| s.bytes().any(|b| b == b'\r' || b == b'\n'))
            {
                return Err(HttpError(format!("header {k:?} contains a line break")));
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let len = match &body {
            Body::Empty => None,
            Body::Bytes(b) => Some(b.len() as u64),
            Body::Reader(_, n) => Some(*n),
        };
        match len {
            Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
            None if matches!(method, "PUT" | "POST" | "PATCH") => {
                head.push_str("Content-Length: 0\r\n")
            }
            None => {}
        }
        head.push_str("\r\n");
        let mut w = io::BufWriter::with_capacity(256 << 10, &stream);
        w.write_all(head.as_bytes())?;
        match body {
            Body::Empty => {}
            Body::Bytes(b) => w.write_all(b)?,
            Body::Reader(r, n) => {
                let copied = io::copy(&mut r.take(n), &mut w)?;
                if copied != n {
                    return Err(HttpError(format!(
                        "request body: {copied} of {n} bytes available"
                    )));
                }
            }
        }
        w.flush()?;
        drop(w);
        let mut stream = BufReader::with_capacity(256 << 10, stream);
        loop {
            let (status, reason, headers) = read_head(&mut stream)?;
            if (100..200).contains(&status) {
                // 100 Continue and friends: another head follows.
                continue;
            }
            let framing = framing(method, status, &headers)?;
            return Ok(Response {
                status,
                reason,
                headers,
                stream,
                framing,
            });
        }
    }

    fn connect(&self) -> Result<TcpStream, HttpError> {
        let mut last = None;
        for a in &self.connect {
            match TcpStream::connect(a.as_str()) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(format!("connect {a}: {e}")),
            }
        }
        Err(HttpError(
            last.unwrap_or_else(|| "no address to connect to".into()),
        ))
    }
}

/// Status, reason phrase and headers of a response.
type Head = (u16, String, Vec<(String, String)>);

/// Read the status line and headers (bounded).
fn read_head(r: &mut impl BufRead) -> Result<Head, HttpError> {
    let mut budget = MAX_HEADERS;
    let status_line = read_line(r, &mut budget)?
        .ok_or_else(|| HttpError("connection closed before a response".into()))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.")
        || code.len() != 3
        || !code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(HttpError(format!(
            "malformed status line {:?}",
            sanitize(&status_line, 100)
        )));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| HttpError("malformed status code".into()))?;
    if !(100..600).contains(&status) {
        return Err(HttpError(format!("status code {status} out of range")));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut budget)?
            .ok_or_else(|| HttpError("connection closed inside the response headers".into()))?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADER_COUNT {
            return Err(HttpError(format!("more than {MAX_HEADER_COUNT} headers")));
        }
        let (k, v) = line.split_once(':').ok_or_else(|| {
            HttpError(format!("malformed header line {:?}", sanitize(&line, 100)))
        })?;
        if k.is_empty() || k.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(HttpError(format!(
                "malformed header name {:?}",
                sanitize(k, 100)
            )));
        }
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((status, sanitize(reason, 100), headers))
}

/// One CRLF- (or LF-) terminated line, charged against `budget`; `None` at
/// a clean end of stream.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> Result<Option<String>, HttpError> {
    let mut buf = Vec::new();
    let limit = (*budget as u64).saturating_add(1);
    let n = r.take(limit).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(HttpError(format!(
            "response headers larger than {MAX_HEADERS} bytes"
        )));
    }
    *budget -= n;
    if buf.last() != Some(&b'\n') {
        return Err(HttpError("connection closed inside a header line".into()));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| HttpError("header line is not UTF-8".into()))
}

fn framing(method: &str, status: u16, headers: &[(String, String)]) -> Result<Framing, HttpError> {
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    let te = headers
        .iter()
        .filter(|(k, _)| k == "transfer-encoding")
        .map(|(_, v)| v.to_ascii_lowercase())
        .collect::<Vec<_>>();
    if !te.is_empty() {
        if te.last().map(|v| v.trim()) == Some("chunked") && te.len() == 1 {
            return Ok(Framing::Chunked {
                left: None,
                done: false,
            });
        }
        return Err(HttpError(format!(
            "unsupported Transfer-Encoding {:?}",
            sanitize(&te.join(", "), 100)
        )));
    }
    match content_length(headers)? {
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Eof),
    }
}

/// The `Content-Length` header, if present (several must agree).
pub fn content_length(headers: &[(String, String)]) -> Result<Option<u64>, HttpError> {
    let mut out = None;
    for (k, v) in headers {
        if k != "content-length" {
            continue;
        }
        if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError(format!(
                "malformed Content-Length {:?}",
                sanitize(v, 40)
            )));
        }
        let n: u64 = v
            .parse()
            .map_err(|_| HttpError("Content-Length out of range".into()))?;
        if out.is_some_and(|o| o != n) {
            return Err(HttpError("conflicting Content-Length headers".into()));
        }
        out = Some(n);
    }
    Ok(out)
}

impl Response {
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
        if let Framing::Length(n) = self.framing
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

    fn read_chunk_size(&mut self) -> io::Result<u64> {
        let mut budget = MAX_CHUNK_LINE;
        let line = read_line(&mut self.stream, &mut budget)
            .map_err(|e| io::Error::other(e.0))?
            .ok_or_else(|| io::Error::other("connection closed inside a chunked body"))?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        if hex.is_empty() || hex.len() > 15 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::other(format!(
                "malformed chunk size {:?}",
                sanitize(&line, 40)
            )));
        }
        u64::from_str_radix(hex, 16).map_err(|_| io::Error::other("malformed chunk size"))
    }

    /// Read at most `left` bytes into `out`; the stream ending first is an
    /// error (`eof` says where).
    fn read_upto(
        &mut self,
        out: &mut [u8],
        left: u64,
        eof: impl FnOnce() -> String,
    ) -> io::Result<usize> {
        let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.stream.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, eof()));
        }
        Ok(n)
    }

    fn end_of_chunk(&mut self) -> io::Result<()> {
        let mut crlf = [0u8; 2];
        self.stream.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(io::Error::other("chunk not terminated by CRLF"));
        }
        Ok(())
    }
}

impl Read for Response {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        match self.framing {
            Framing::Empty => Ok(0),
            Framing::Eof => self.stream.read(out),
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let n = self.read_upto(out, left, || {
                    format!("connection closed with {left} body bytes missing")
                })?;
                self.framing = Framing::Length(left - n as u64);
                Ok(n)
            }
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, done: false } => {
                let left = match left {
                    Some(0) => {
                        self.end_of_chunk()?;
                        self.read_chunk_size()?
                    }
                    Some(n) => n,
                    None => self.read_chunk_size()?,
                };
                if left == 0 {
                    // Last chunk: skip trailers up to the empty line.
                    let mut budget = MAX_HEADERS;
                    while let Some(l) = read_line(&mut self.stream, &mut budget)
                        .map_err(|e| io::Error::other(e.0))?
                    {
                        if l.is_empty() {
                            break;
                        }
                    }
                    self.framing = Framing::Chunked {
                        left: Some(0),
                        done: true,
                    };
                    return Ok(0);
                }
                let n = self.read_upto(out, left, || "connection closed inside a chunk".into())?;
                self.framing = Framing::Chunked {
                    left: Some(left - n as u64),
                    done: false,
                };
                Ok(n)
            }
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn heads() {
        let mut r: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nX:  y \r\n\r\nabc";
        let (s, reason, h) = read_head(&mut r).unwrap();
        assert_eq!((s, reason.as_str()), (404, "Not Found"));
        assert_eq!(h[1], ("x".into(), "y".into()));
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"FTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: y",
            b"",
            b"HTTP/1.1 999 OK\r\n\r\n",
        ] {
            let mut r = bad;
            assert!(read_head(&mut r).is_err(), "{bad:?}");
        }
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADERS));
        let mut r = big.as_bytes();
        assert!(read_head(&mut r).is_err());
        let h = vec![(
            "content-length".to_string(),
            "99999999999999999999".to_string(),
        )];
        assert!(content_length(&h).is_err());
    }

    /// A server on 127.0.0.1 answering each connection with the next of
    /// `answers` (after reading the request head), then refusing
    /// connections; returns the endpoint.
    pub(crate) fn serve(answers: Vec<Vec<u8>>) -> Endpoint {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let last = answers.len();
            let mut l = Some(l);
            for (i, a) in answers.into_iter().enumerate() {
                let Some(Ok((mut c, _))) = l.as_ref().map(|l| l.accept()) else {
                    return;
                };
                if i + 1 == last {
                    // close before the last answer: once the client has it,
                    // a further request is refused, never reset
                    l = None;
                }
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let _ = c.write_all(&a);
            }
        });
        Endpoint {
            authority: addr.clone(),
            connect: vec![addr],
        }
    }

    fn get(ep: &Endpoint) -> Result<Response, HttpError> {
        ep.request("GET", "/", &[], Body::Empty)
    }

    #[test]
    fn bodies() {
        let ep = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n".to_vec(),
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil eof".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nshort".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\nab".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".to_vec(),
        ]);
        assert_eq!(get(&ep).unwrap().read_body(100).unwrap(), b"hello");
        assert_eq!(get(&ep).unwrap().read_body(100).unwrap(), b"abcde");
        assert_eq!(get(&ep).unwrap().read_body(100).unwrap(), b"until eof");
        let e = get(&ep).unwrap().read_body(1 << 20).unwrap_err();
        assert!(e.0.contains("larger than"), "{e}");
        let e = get(&ep).unwrap().read_body(100).unwrap_err();
        assert!(e.0.contains("missing"), "{e}");
        let e = get(&ep).unwrap().read_body(100).unwrap_err();
        assert!(e.0.contains("chunk size"), "{e}");
        // a huge chunk is bounded by read_body, then the body ends early
        assert!(get(&ep).unwrap().read_body(100).is_err());
        assert!(get(&ep).is_err());
        assert!(get(&ep).is_err());
        // nothing listens any more
        let e = get(&ep).unwrap_err();
        assert!(e.0.contains("connect"), "{e}");
    }
}
