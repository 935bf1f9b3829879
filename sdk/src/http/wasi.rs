//! Requests through `wasi:http/outgoing-handler`.

use std::io::{self, Read};

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingResponse, Method, OutgoingBody, OutgoingRequest,
    Scheme,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use super::{Body, Endpoint, HttpError, Response};

/// Largest piece of a request body handed to the host at once.
const CHUNK: usize = 1 << 20;

fn method_of(m: &str) -> Method {
    match m {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        other => Method::Other(other.to_string()),
    }
}

/// The host's words for a failed request (it names the address and the
/// reason when it refused or could not send it).
fn error_code(e: &ErrorCode) -> String {
    match e {
        ErrorCode::InternalError(Some(m)) => m.clone(),
        other => format!("{other:?}"),
    }
}

fn stream_error(e: StreamError) -> io::Error {
    match e {
        StreamError::Closed => io::Error::new(io::ErrorKind::UnexpectedEof, "stream closed"),
        StreamError::LastOperationFailed(err) => {
            let msg = match wasip2::http::types::http_error_code(&err) {
                Some(code) => error_code(&code),
                None => err.to_debug_string(),
            };
            io::Error::other(msg)
        }
    }
}

/// Send one request through the host (see [`Endpoint::request`]).
pub(super) fn request(
    ep: &Endpoint,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Result<Response, HttpError> {
    let mut list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    list.push(("user-agent".into(), ep.user_agent.as_bytes().to_vec()));
    if let Some(n) = body.length(method) {
        list.push(("content-length".into(), n.to_string().into_bytes()));
    }
    let fields =
        Fields::from_list(&list).map_err(|e| HttpError(format!("request headers: {e:?}")))?;
    let req = OutgoingRequest::new(fields);
    let bad = |what: &str| HttpError(format!("invalid request {what}"));
    req.set_method(&method_of(method))
        .map_err(|_| bad("method"))?;
    req.set_scheme(Some(if ep.https {
        &Scheme::Https
    } else {
        &Scheme::Http
    }))
    .map_err(|_| bad("scheme"))?;
    req.set_authority(Some(&ep.authority))
        .map_err(|_| bad("authority"))?;
    req.set_path_with_query(Some(target))
        .map_err(|_| bad("path"))?;
    let out = req.body().map_err(|_| bad("body"))?;
    let pending = outgoing_handler::handle(req, None).map_err(|e| HttpError(error_code(&e)))?;
    // A body the host stops taking (it failed to send the request, or the
    // server answered early) is not the error to report: the response is.
    let mut body_error = None;
    if !matches!(body, Body::Empty) {
        let stream = out.write().map_err(|_| bad("body stream"))?;
        let written = match body {
            Body::Empty => Ok(()),
            Body::Bytes(b) => write_all(&stream, b),
            Body::Reader(r, n) => write_reader(&stream, r, n),
        };
        body_error = written
            .and_then(|()| {
                stream
                    .blocking_flush()
                    .map_err(|e| HttpError(format!("request body: {}", stream_error(e))))
            })
            .err();
    }
    if body_error.is_none() {
        OutgoingBody::finish(out, None).map_err(|e| HttpError(error_code(&e)))?;
    } else {
        drop(out);
    }
    pending.subscribe().block();
    let resp = match pending.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(HttpError(error_code(&e))),
        Some(Err(())) | None => {
            return Err(body_error.unwrap_or_else(|| HttpError("no response".into())));
        }
    };
    let status = resp.status();
    let headers = resp
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).trim().to_string(),
            )
        })
        .collect();
    let body = resp.consume().map_err(|_| bad("response body"))?;
    let stream = body.stream().map_err(|_| bad("response body stream"))?;
    Ok(Response::new(
        status,
        headers,
        Box::new(Incoming {
            stream: Some(stream),
            _body: Some(body),
            _resp: resp,
        }),
    ))
}

/// Hand `n` bytes of `r` to the host.
fn write_reader(stream: &OutputStream, r: &mut dyn Read, n: u64) -> Result<(), HttpError> {
    let mut left = n;
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(n).unwrap_or(CHUNK))];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = r.read(&mut buf[..want])?;
        if got == 0 {
            return Err(HttpError(format!(
                "request body: {} of {n} bytes available",
                n - left
            )));
        }
        write_all(stream, &buf[..got])?;
        left -= got as u64;
    }
    Ok(())
}

/// Hand `data` to the host as fast as it takes it.
fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), HttpError> {
    let err = |e: StreamError| HttpError(format!("request body: {}", stream_error(e)));
    while !data.is_empty() {
        let room = stream.check_write().map_err(err)?;
        if room == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        stream.write(&data[..n]).map_err(err)?;
        data = &data[n..];
    }
    Ok(())
}

/// A response body; the fields drop in order (the stream before its body,
/// the body before its response), as `wasi:http` requires.
struct Incoming {
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
    _resp: IncomingResponse,
}

impl Read for Incoming {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let Some(s) = &self.stream else {
            return Ok(0);
        };
        if out.is_empty() {
            return Ok(0);
        }
        match s.blocking_read(out.len() as u64) {
            Ok(bytes) => {
                let n = bytes.len().min(out.len());
                out[..n].copy_from_slice(&bytes[..n]);
                Ok(n)
            }
            Err(StreamError::Closed) => {
                self.stream = None;
                Ok(0)
            }
            Err(e) => Err(stream_error(e)),
        }
    }
}
