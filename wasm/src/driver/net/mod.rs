//! The network a plugin is granted, and the host side of its `wasi:http`
//! requests.
//!
//! A plugin has no sockets. Its only way out is `wasi:http`, and every
//! request it makes arrives here (`Hooks::send_request`):
//! - requests to anything but the origin of its `url=` (scheme, host and
//!   port) are refused, with an error naming the plugin and the address;
//! - the host answers the registry's `401` challenges itself (Basic, or
//!   the Bearer token flow with tokens cached per scope until they expire),
//!   so passwords and tokens never enter the sandbox (the plugin may not
//!   even set an `Authorization` header);
//! - the host follows the redirects the registry itself answers to a GET
//!   or HEAD (blobs served from object storage), without credentials; a
//!   redirect answered by anyone else is refused;
//! - TLS is the host's: the system trust store, plus `ca=` certificates,
//!   or no verification with `tls-verify=false`;
//! - every wait (connect, first byte, between bytes) ends with the plugin
//!   call's deadline.

mod auth;
mod origin;
mod send;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub use auth::Credentials;
pub use origin::Origin;

/// Why an address (`url=`, a request's URI) or credentials given to the
/// network layer are refused: the reason, to be prefixed with the object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl From<&str> for InvalidInput {
    fn from(s: &str) -> InvalidInput {
        InvalidInput(s.to_string())
    }
}

impl From<String> for InvalidInput {
    fn from(s: String) -> InvalidInput {
        InvalidInput(s)
    }
}

use super::DriverError;

/// Largest request body buffered so that it can be sent again after an
/// authentication challenge (manifests, empty upload steps); larger bodies
/// (blob uploads) stream once, with credentials prepared beforehand.
const MAX_REPLAY: u64 = 4 << 20;
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// The network settings of a `--driver` spec (`url=`, `ca=`,
/// `tls-verify=`, `creds=`).
#[derive(Clone, PartialEq)]
pub struct NetSpec {
    /// The registry: the only origin the plugin may send requests to.
    pub origin: Origin,
    /// `ca=`: a PEM file of certificates trusted besides the system's.
    pub ca: Option<std::path::PathBuf>,
    /// `tls-verify=false` turns certificate verification off.
    pub tls_verify: bool,
    /// `creds=` (or `--creds`); otherwise looked up in the auth files.
    pub creds: Option<Credentials>,
}

impl std::fmt::Debug for NetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSpec")
            .field("origin", &self.origin)
            .field("ca", &self.ca)
            .field("tls_verify", &self.tls_verify)
            .field("creds", &self.creds.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The live network of one plugin, shared by its instances.
pub(crate) struct Network {
    origin: Origin,
    tls: tls::TlsConfig,
    auth: auth::Auth,
    /// The plugin's per-call timeout: the longest single wait.
    timeout: Duration,
    /// When the current plugin call must end.
    deadline: Mutex<Instant>,
}

impl Network {
    /// Set up the network of `spec` for plugin `label`: TLS settings and
    /// credentials are read now, so that a bad `ca=` fails at load.
    pub(crate) fn new(
        label: &str,
        spec: &NetSpec,
        timeout: Duration,
    ) -> Result<Arc<Network>, DriverError> {
        let bad = |reason: String| DriverError::Load {
            plugin: label.to_string(),
            reason,
        };
        #[cfg(not(feature = "tls"))]
        if spec.origin.https {
            return Err(bad(format!("{}: {}", spec.origin, tls::NO_TLS)));
        }
        if !spec.tls_verify {
            tracing::warn!(
                "driver {label}: tls-verify=false: the certificate of {} is not checked",
                spec.origin
            );
        }
        let tls = tls::client_config(spec.ca.as_deref(), spec.tls_verify).map_err(bad)?;
        let creds = match &spec.creds {
            Some(c) => Some(c.clone()),
            None => auth::Credentials::lookup(&spec.origin).map_err(|e| bad(e.0))?,
        };
        Ok(Arc::new(Network {
            origin: spec.origin.clone(),
            tls,
            auth: auth::Auth::new(creds),
            timeout,
            deadline: Mutex::new(Instant::now() + timeout),
        }))
    }

    /// A plugin call starts: its network waits end at `now + timeout`.
    pub(crate) fn start_call(&self) {
        if let Ok(mut d) = self.deadline.lock() {
            *d = Instant::now() + self.timeout;
        }
    }

    fn deadline(&self) -> Instant {
        self.deadline
            .lock()
            .map(|d| *d)
            .unwrap_or_else(|_| Instant::now())
    }

    /// The waits of one request: the time left in the call. (A body's
    /// reads may each wait the plugin's timeout: they span calls.)
    fn limits(&self, options: Option<&RequestOptions>) -> send::Limits {
        let left = self.deadline().saturating_duration_since(Instant::now());
        let pick = |asked: Option<Duration>| asked.map_or(left, |a| a.min(left));
        send::Limits {
            connect: pick(options.and_then(|o| o.connect_timeout)),
            first_byte: pick(options.and_then(|o| o.first_byte_timeout)),
        }
    }

    /// Send one request of the plugin: the grant check, credentials,
    /// redirects.
    async fn fetch(
        self: Arc<Self>,
        plugin: &str,
        req: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, Error> {
        let target =
            Origin::of(req.uri()).map_err(|why| refused(plugin, &req.uri().to_string(), &why.0))?;
        if target != self.origin {
            return Err(refused(
                plugin,
                &req.uri().to_string(),
                &format!("not granted (the plugin may reach {} only)", self.origin),
            ));
        }
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(header::AUTHORIZATION);
        let scope = auth::Scope::of(&parts.method, &parts.uri);
        let length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = send::Replayable::new(&parts.method, body, length, MAX_REPLAY).await?;
        if !body.can_replay() {
            // it streams once: have the credentials ready before it goes
            self.auth.prepare(&self).await?;
        }
        let mut uri = parts.uri.clone();
        let mut on_registry = true;
        let mut hops = 0;
        let mut challenged = false;
        loop {
            let mut headers = parts.headers.clone();
            if on_registry {
                if let Some(h) = self.auth.header(&self, &scope).await? {
                    headers.insert(header::AUTHORIZATION, h);
                }
            } else {
                headers.remove(header::AUTHORIZATION);
            }
            let limits = self.limits(options.as_ref());
            let Some(b) = body.take() else {
                return Err(Error::InternalError(Some(format!(
                    "{} {uri}: the request body cannot be sent twice",
                    parts.method
                ))));
            };
            let resp = send::once(&self.tls, &parts.method, &uri, headers, b, limits).await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && on_registry && !challenged && body.can_replay()
            {
                challenged = true;
                if self.auth.challenged(resp.headers(), &scope) {
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED && on_registry {
                self.auth.warn_unauthorized(plugin, &self.origin);
            }
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let Some(location) = resp.headers().get(header::LOCATION) else {
                    return Ok(send::boxed(resp, self.clone()));
                };
                let next = resolve(&uri, location)
                    .map_err(|why| refused(plugin, &format!("{location:?}"), &why))?;
                if !on_registry || !matches!(parts.method, Method::GET | Method::HEAD) {
                    let why = if on_registry {
                        format!("a redirect of a {} is not followed", parts.method)
                    } else {
                        format!(
                            "not granted (a redirect answered by {}, not by the registry {})",
                            Origin::of(&uri).map(|o| o.to_string()).unwrap_or_default(),
                            self.origin
                        )
                    };
                    return Err(refused(plugin, &next.to_string(), &why));
                }
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(refused(
                        plugin,
                        &next.to_string(),
                        &format!("more than {MAX_REDIRECTS} redirects"),
                    ));
                }
                on_registry = Origin::of(&next).is_ok_and(|o| o == self.origin);
                tracing::debug!(
                    "driver {plugin}: {} {uri} redirected to {next}",
                    parts.method
                );
                uri = next;
                continue;
            }
            return Ok(send::boxed(resp, self.clone()));
        }
    }
}

/// An absolute redirect target: `location` resolved against `base`.
fn resolve(base: &Uri, location: &header::HeaderValue) -> Result<Uri, String> {
    let loc = location
        .to_str()
        .map_err(|_| "a Location header that is not text".to_string())?;
    let uri: Uri = loc
        .parse()
        .map_err(|_| format!("a malformed Location {loc:?}"))?;
    if uri.scheme().is_some() {
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("a redirect to the scheme of {loc:?}"));
        }
        return Ok(uri);
    }
    if !loc.starts_with('/') {
        return Err(format!("a relative Location {loc:?} is not followed"));
    }
    let mut b = Uri::builder();
    if let Some(s) = base.scheme() {
        b = b.scheme(s.clone());
    }
    if let Some(a) = base.authority() {
        b = b.authority(a.clone());
    }
    b.path_and_query(loc)
        .build()
        .map_err(|_| format!("a malformed Location {loc:?}"))
}

/// The error a plugin gets for a request the host does not send.
fn refused(plugin: &str, address: &str, why: &str) -> Error {
    tracing::debug!("driver {plugin}: request to {address} refused: {why}");
    Error::InternalError(Some(format!(
        "driver {plugin}: request to {address} refused: {why}"
    )))
}

/// The `wasi:http` hooks of one plugin instance.
pub(crate) struct Hooks {
    /// How errors name the plugin.
    pub(crate) plugin: String,
    /// The granted network; `None`: no `url=`, every request is refused.
    pub(crate) net: Option<Arc<Network>>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Hooks {
    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        // credentials are the host's: a plugin cannot set or forge them
        Arc::new(|name| {
            name == header::AUTHORIZATION
                || name == header::PROXY_AUTHORIZATION
                || wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
        })
    }

    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        drop(fut);
        let plugin = self.plugin.clone();
        let net = self.net.clone();
        Box::new(async move {
            let Some(net) = net else {
                return Err(refused(
                    &plugin,
                    &request.uri().to_string(),
                    "not granted (the plugin has no network: no url=)",
                ));
            };
            let resp = net.fetch(&plugin, request, options).await?;
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((resp, done))
        })
    }
}

/// Collect a small response body (token server answers, pings).
async fn small_body(resp: Response<hyper::body::Incoming>, max: usize) -> Result<Bytes, Error> {
    let limited = http_body_util::Limited::new(resp.into_body(), max);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Error::InternalError(Some(format!("reading an answer: {e}"))))
}
