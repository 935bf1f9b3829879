//! One HTTP/1.1 exchange (TLS for `https`), with bounded waits, on a kept
//! alive connection of the [`Pool`] when one is idle, else a fresh one.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

use super::{Network, Origin};

/// The longest each wait of one exchange may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) connect: Duration,
    pub(super) first_byte: Duration,
}

fn fail(msg: String) -> Error {
    Error::InternalError(Some(msg))
}

/// Most connections a [`Pool`] keeps (idle or still reading a response).
const POOL_MAX: usize = 16;

type Sender = hyper::client::conn::http1::SendRequest<WasiBody>;

/// The HTTP/1.1 connections of one plugin's network, kept after their
/// exchange for the next request to the same origin: over a link with
/// latency each fresh connection costs a round trip (two with TLS) before
/// the request leaves. A connection is reused only once its last response
/// was read to the end (hyper then reports it ready); one whose response
/// was dropped half-read is closed by hyper and pruned here.
#[derive(Default)]
pub(super) struct Pool {
    conns: Mutex<Vec<(Origin, Sender)>>,
}

impl Pool {
    /// An idle connection to `origin`, taken out of the pool.
    fn take(&self, origin: &Origin) -> Option<Sender> {
        let mut conns = self.conns.lock().ok()?;
        conns.retain(|(_, s)| !s.is_closed());
        let i = conns
            .iter()
            .position(|(o, s)| o == origin && s.is_ready())?;
        Some(conns.swap_remove(i).1)
    }

    /// Keep `sender` (its response may still be streaming) for later.
    fn put(&self, origin: Origin, sender: Sender) {
        if let Ok(mut conns) = self.conns.lock() {
            conns.retain(|(_, s)| !s.is_closed());
            if conns.len() >= POOL_MAX {
                // forget an idle one (a busy one finishes its response
                // either way, then closes)
                match conns.iter().position(|(_, s)| s.is_ready()) {
                    Some(i) => drop(conns.remove(i)),
                    None => return,
                }
            }
            conns.push((origin, sender));
        }
    }
}

/// Send `body` to `uri` and wait for the response head: on an idle
/// connection of `pool` if there is one (a request the connection could
/// not take, e.g. because the server had just closed it, goes on a fresh
/// one), else on a fresh connection, which is kept in `pool` afterwards.
pub(super) async fn once(
    tls: &super::tls::TlsConfig,
    pool: &Pool,
    method: &Method,
    uri: &Uri,
    headers: HeaderMap,
    body: WasiBody,
    limits: Limits,
) -> Result<Response<hyper::body::Incoming>, Error> {
    let origin = Origin::of(uri).map_err(|why| fail(format!("{uri}: {why}")))?;
    let mut req = request(method, uri, headers, body, &origin)?;
    while let Some(mut sender) = pool.take(&origin) {
        match tokio::time::timeout(limits.first_byte, sender.try_send_request(req)).await {
            Err(_) => {
                return Err(fail(format!(
                    "{origin}: no answer within {:?}",
                    limits.first_byte
                )));
            }
            Ok(Ok(resp)) => {
                pool.put(origin, sender);
                return Ok(resp);
            }
            Ok(Err(mut e)) => match e.take_message() {
                // not sent: try the next connection, or a fresh one
                Some(r) => req = r,
                None => {
                    return Err(fail(format!("HTTP with {origin}: {}", e.into_error())));
                }
            },
        }
    }
    let mut sender = connect(tls, &origin, limits).await?;
    let resp = tokio::time::timeout(limits.first_byte, sender.send_request(req))
        .await
        .map_err(|_| {
            fail(format!(
                "{origin}: no answer within {:?}",
                limits.first_byte
            ))
        })?
        .map_err(|e| fail(format!("HTTP with {origin}: {e}")))?;
    pool.put(origin, sender);
    Ok(resp)
}

/// A fresh connection to `origin` (TLS for `https`), its task spawned.
async fn connect(
    tls: &super::tls::TlsConfig,
    origin: &Origin,
    limits: Limits,
) -> Result<Sender, Error> {
    let tcp = tokio::time::timeout(
        limits.connect,
        TcpStream::connect((origin.host.as_str(), origin.port)),
    )
    .await
    .map_err(|_| {
        fail(format!(
            "connect {origin}: no answer within {:?}",
            limits.connect
        ))
    })?
    .map_err(|e| fail(format!("connect {origin}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = if origin.https {
        let stream = super::tls::connect(tls, origin, tcp, limits.connect)
            .await
            .map_err(fail)?;
        handshake(Box::new(stream), origin).await?
    } else {
        handshake(Box::new(tcp), origin).await?
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("HTTP connection: {e}");
        }
    });
    Ok(sender)
}

/// The request for one hop: the path, the plugin's headers with this
/// hop's `Host`, a `User-Agent`.
fn request(
    method: &Method,
    uri: &Uri,
    headers: HeaderMap,
    body: WasiBody,
    origin: &Origin,
) -> Result<Request<WasiBody>, Error> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::builder().method(method.clone()).uri(path);
    if let Some(h) = req.headers_mut() {
        *h = headers;
        // the host of this hop (a redirect's target is not the plugin's)
        if let Ok(v) = header::HeaderValue::from_str(&origin_host(uri)) {
            h.insert(header::HOST, v);
        }
        if !h.contains_key(header::USER_AGENT) {
            h.insert(
                header::USER_AGENT,
                header::HeaderValue::from_static(concat!("rumoci/", env!("CARGO_PKG_VERSION"))),
            );
        }
    }
    req.body(body)
        .map_err(|e| fail(format!("a request to {origin}: {e}")))
}

fn origin_host(uri: &Uri) -> String {
    uri.authority().map(|a| a.to_string()).unwrap_or_default()
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T> Stream for T where T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}

type Conn = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, WasiBody>;

async fn handshake(
    io: Box<dyn Stream>,
    origin: &Origin,
) -> Result<(hyper::client::conn::http1::SendRequest<WasiBody>, Conn), Error> {
    hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| fail(format!("HTTP with {origin}: {e}")))
}

/// An empty request body.
pub(super) fn empty() -> WasiBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body that can be sent again (after a challenge, on a
/// redirect) when it is small, or once when it streams.
pub(super) enum Replayable {
    Bytes(Bytes),
    Once(Option<WasiBody>),
}

impl Replayable {
    /// Buffer `body` if it is empty (a GET, HEAD or DELETE without
    /// `content-length` has none) or declares (`content-length`) at most
    /// `max` bytes.
    pub(super) async fn new(
        method: &Method,
        body: WasiBody,
        length: Option<u64>,
        max: u64,
    ) -> Result<Replayable, Error> {
        let bodiless =
            length.is_none() && matches!(*method, Method::GET | Method::HEAD | Method::DELETE);
        if body.is_end_stream() || bodiless || length == Some(0) {
            return Ok(Replayable::Bytes(Bytes::new()));
        }
        match length {
            Some(n) if n <= max => {
                let limited =
                    http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
                let bytes = limited
                    .collect()
                    .await
                    .map_err(|e| fail(format!("request body: {e}")))?
                    .to_bytes();
                Ok(Replayable::Bytes(bytes))
            }
            _ => Ok(Replayable::Once(Some(body))),
        }
    }

    /// The whole body, when it is buffered.
    pub(super) fn bytes(&self) -> Option<&Bytes> {
        match self {
            Replayable::Bytes(b) => Some(b),
            Replayable::Once(_) => None,
        }
    }

    /// Whether [`Replayable::take`] works more than once.
    pub(super) fn can_replay(&self) -> bool {
        matches!(self, Replayable::Bytes(_))
    }

    /// The body to send now; `None` once a streaming body was sent.
    pub(super) fn take(&mut self) -> Option<WasiBody> {
        match self {
            Replayable::Bytes(b) if b.is_empty() => Some(empty()),
            Replayable::Bytes(b) => Some(
                Full::new(b.clone())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            ),
            Replayable::Once(b) => b.take(),
        }
    }
}

/// The response as the plugin gets it: its body fails when no byte came
/// for the plugin's timeout.
pub(super) fn boxed(
    resp: Response<hyper::body::Incoming>,
    net: Arc<Network>,
) -> Response<WasiBody> {
    let wait = net.timeout;
    resp.map(|incoming| {
        Timed {
            incoming,
            wait,
            sleep: Box::pin(tokio::time::sleep(wait)),
        }
        .boxed_unsync()
    })
}

/// A response body with a between-bytes limit.
struct Timed {
    incoming: hyper::body::Incoming,
    wait: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Timed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.wait;
                this.sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(fail(format!("reading a response body: {e}")))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(fail(format!(
                    "reading a response body: no data for {:?}",
                    this.wait
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
