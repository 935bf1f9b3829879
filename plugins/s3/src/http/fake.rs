//! For the plugin's unit tests on the build machine (no `wasi:http`
//! there): requests are answered from a queue of raw HTTP/1.1 answers.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::{Body, Endpoint, HttpError, Response};

thread_local! {
    static ANSWERS: RefCell<VecDeque<Vec<u8>>> = const { RefCell::new(VecDeque::new()) };
}

/// Answer the next requests with `answers`, in order (each a status line,
/// headers and body, as a server would send them); once they are used
/// up, requests fail as if nothing listened. Returns the endpoint.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn serve(answers: Vec<Vec<u8>>) -> Endpoint {
    ANSWERS.with(|a| *a.borrow_mut() = answers.into());
    Endpoint {
        https: false,
        authority: "127.0.0.1:5000".into(),
    }
}

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
