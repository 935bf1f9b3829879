//! The transport of a driver's native unit tests (any target but `wasm32`:
//! there is no `wasi:http` there): requests are answered from a queue of
//! raw HTTP/1.1 answers that the test gives with [`serve`], per thread.
//!
//! ```
//! use rumoci_driver_sdk::http::{Body, fake};
//! let ep = fake::serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec()]);
//! let mut r = ep.request("GET", "/x", &[], Body::Empty).unwrap();
//! assert_eq!((r.status, r.read_body(10).unwrap()), (200, b"hi".to_vec()));
//! // the answers are used up: nothing listens any more
//! assert!(ep.request("GET", "/x", &[], Body::Empty).is_err());
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Read;

use super::{Body, Endpoint, HttpError, Response};

thread_local! {
    static ANSWERS: RefCell<VecDeque<Vec<u8>>> = const { RefCell::new(VecDeque::new()) };
}

/// Answer the next requests with `answers`, in order (each a status line,
/// headers and body, as a server would send them); once they are used
/// up, requests fail as if nothing listened (`connect
/// http://127.0.0.1:5000: connection refused`). Returns the endpoint,
/// `http://127.0.0.1:5000`. A `Content-Length` in an answer cuts its body.
/// The requests' targets and headers are not looked at; a request body is
/// read and must have its declared length.
pub fn serve(answers: Vec<Vec<u8>>) -> Endpoint {
    ANSWERS.with(|a| *a.borrow_mut() = answers.into());
    Endpoint {
        https: false,
        authority: "127.0.0.1:5000".into(),
        user_agent: format!("rumoci-driver/{}", env!("CARGO_PKG_VERSION")),
    }
}

/// Answer one request from the queue (see [`Endpoint::request`]).
pub(super) fn request(
    ep: &Endpoint,
    method: &str,
    _target: &str,
    _headers: &[(&str, &str)],
    body: Body<'_>,
) -> Result<Response, HttpError> {
    let declared = body.length(method).unwrap_or(0);
    let sent = match body {
        Body::Empty => 0,
        Body::Bytes(b) => b.len() as u64,
        Body::Reader(r, n) => std::io::copy(&mut r.take(n), &mut std::io::sink())?,
    };
    if sent != declared {
        return Err(HttpError(format!(
            "request body: {sent} bytes sent, {declared} declared"
        )));
    }
    let scheme = if ep.https { "https" } else { "http" };
    let raw = ANSWERS
        .with(|a| a.borrow_mut().pop_front())
        .ok_or_else(|| {
            HttpError(format!(
                "connect {scheme}://{}: connection refused",
                ep.authority
            ))
        })?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| HttpError("malformed test answer".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError("malformed test status line".into()))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if let Ok(Some(n)) = super::content_length(&headers) {
        body.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    }
    Ok(Response::new(
        status,
        headers,
        Box::new(std::io::Cursor::new(body)),
    ))
}
