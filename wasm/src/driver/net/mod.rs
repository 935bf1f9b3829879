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
//!   call's deadline;
//! - an object-store plugin (`net.aws-sigv4` in its `meta.info`, or
//!   `sign=aws-sigv4`) has its requests signed by the host with AWS
//!   Signature V4 ([`sigv4`]) instead: the same rule, the plugin never
//!   sees the secret; with `bucket=` (path-style addressing) its requests
//!   are confined to that bucket's paths, and `x-amz-copy-source` to
//!   objects of that bucket.

mod auth;
mod origin;
mod send;
pub mod sigv4;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub use auth::Credentials;
pub use origin::Origin;
pub use sigv4::AwsCredentials;

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
    /// `creds=` (or `--creds`); otherwise looked up in the auth files
    /// (AWS's variables and credentials file when requests are signed).
    pub creds: Option<Credentials>,
    /// `sign=`: how requests are authenticated.
    pub sign: Sign,
    /// `region=`: the region requests are signed for (default
    /// `$AWS_REGION`, `$AWS_DEFAULT_REGION`, `us-east-1`).
    pub region: Option<String>,
    /// `bucket=` with path-style addressing: the only bucket signed
    /// requests may reach (`/BUCKET`, `/BUCKET/…`).
    pub bucket: Option<String>,
}

/// How the host authenticates a plugin's requests (`sign=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sign {
    /// As the plugin asks: AWS Signature V4 if its `meta.info` declares
    /// `net.aws-sigv4`, else the registry's challenges.
    #[default]
    Auto,
    /// `sign=aws-sigv4`: AWS Signature V4.
    AwsSigV4,
    /// `sign=none`: no credentials at all (registry challenges unanswered,
    /// object-store requests unsigned).
    None,
}

/// The capability with which a plugin asks for AWS Signature V4.
pub const SIGV4_CAPABILITY: &str = "net.aws-sigv4";

impl std::fmt::Debug for NetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSpec")
            .field("origin", &self.origin)
            .field("ca", &self.ca)
            .field("tls_verify", &self.tls_verify)
            .field("creds", &self.creds.as_ref().map(|_| "<redacted>"))
            .field("sign", &self.sign)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .finish()
    }
}

/// The live network of one plugin, shared by its instances.
pub(crate) struct Network {
    origin: Origin,
    tls: tls::TlsConfig,
    auth: auth::Auth,
    /// Object-store signing (`None`: registry authentication, or none).
    aws: Option<Aws>,
    /// The plugin's per-call timeout: the longest single wait.
    timeout: Duration,
    /// When the current plugin call must end.
    deadline: Mutex<Instant>,
    /// Connections kept alive between requests.
    pool: send::Pool,
}

/// An object store's requests: signed (when there are credentials) and
/// confined to a bucket (path-style `bucket=`).
struct Aws {
    signer: Option<sigv4::Signer>,
    bucket: Option<String>,
    warned: std::sync::atomic::AtomicBool,
}

impl Network {
    /// Set up the network of `spec` for plugin `label` (which declares
    /// `net.aws-sigv4` if `wants_sigv4`): TLS settings and credentials are
    /// read now, so that a bad `ca=` fails at load.
    pub(crate) fn new(
        label: &str,
        spec: &NetSpec,
        timeout: Duration,
        wants_sigv4: bool,
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
        let sigv4 = match spec.sign {
            Sign::Auto => wants_sigv4,
            Sign::AwsSigV4 => true,
            Sign::None => false,
        };
        let aws = if sigv4 {
            let creds = match &spec.creds {
                Some(c) => Some(AwsCredentials::new(c.user(), c.password(), None)),
                None => match AwsCredentials::lookup().map_err(|e| bad(e.0))? {
                    Some((c, from)) => {
                        tracing::debug!("driver {label}: AWS credentials from {from}");
                        Some(c)
                    }
                    None => None,
                },
            };
            let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            let region = spec
                .region
                .clone()
                .or_else(|| var("AWS_REGION"))
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into());
            Some(Aws {
                signer: creds.map(|creds| sigv4::Signer {
                    creds,
                    region,
                    service: "s3".into(),
                }),
                bucket: spec.bucket.clone(),
                warned: std::sync::atomic::AtomicBool::new(false),
            })
        } else {
            None
        };
        let creds = match (&spec.creds, spec.sign, &aws) {
            (_, Sign::None, _) | (_, _, Some(_)) => None,
            (Some(c), _, None) => Some(c.clone()),
            (None, _, None) => auth::Credentials::lookup(&spec.origin).map_err(|e| bad(e.0))?,
        };
        Ok(Arc::new(Network {
            origin: spec.origin.clone(),
            tls,
            auth: auth::Auth::new(creds),
            aws,
            timeout,
            deadline: Mutex::new(Instant::now() + timeout),
            pool: send::Pool::default(),
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

    /// Send `body` once (refused if it cannot be sent again), within the
    /// time left in the call.
    async fn send_once(
        &self,
        method: &Method,
        uri: &Uri,
        headers: http::HeaderMap,
        body: &mut send::Replayable,
        options: Option<&RequestOptions>,
    ) -> Result<Response<hyper::body::Incoming>, Error> {
        let limits = self.limits(options);
        let Some(b) = body.take() else {
            return Err(Error::InternalError(Some(format!(
                "{method} {uri}: the request body cannot be sent twice"
            ))));
        };
        send::once(&self.tls, &self.pool, method, uri, headers, b, limits).await
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
        if let Some(aws) = &self.aws {
            aws.confine(&parts.uri, &parts.headers)
                .map_err(|why| refused(plugin, &parts.uri.to_string(), &why))?;
            return self
                .clone()
                .fetch_signed(plugin, aws, parts, body, options)
                .await;
        }
        let scope = auth::Scope::of(&parts.method, &parts.uri);
        let mut body = replayable(&parts, body).await?;
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
            let resp = self
                .send_once(&parts.method, &uri, headers, &mut body, options.as_ref())
                .await?;
            let status = resp.status();
            tracing::debug!(
                "driver {plugin}: {} {}: {}",
                parts.method,
                uri.path_and_query().map_or("/", |p| p.as_str()),
                status.as_u16()
            );
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
                count_redirect(&mut hops, plugin, &next)?;
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

impl Aws {
    /// Refuse a request outside the bucket (path-style `bucket=`), and a
    /// server-side copy from outside it.
    fn confine(&self, uri: &Uri, headers: &http::HeaderMap) -> Result<(), String> {
        let Some(b) = &self.bucket else {
            return Ok(());
        };
        let inside = |p: &str| {
            let p = p.strip_prefix('/').unwrap_or(p);
            p.strip_prefix(b.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if !inside(uri.path()) {
            return Err(format!("not granted (outside the bucket {b})"));
        }
        for v in headers.get_all("x-amz-copy-source") {
            let src = v.to_str().unwrap_or_default();
            let decoded = percent_encoding::percent_decode_str(src).decode_utf8_lossy();
            if !inside(&decoded) || decoded.split('/').any(|s| s == "..") {
                return Err(format!("not granted (a copy from outside the bucket {b})"));
            }
        }
        Ok(())
    }
}

impl Network {
    /// Send one request of an object-store plugin: signed with AWS
    /// Signature V4 if there are credentials; no challenges, redirects of
    /// GET and HEAD on the origin only.
    async fn fetch_signed(
        self: Arc<Self>,
        plugin: &str,
        aws: &Aws,
        parts: http::request::Parts,
        body: WasiBody,
        options: Option<RequestOptions>,
    ) -> Result<Response<WasiBody>, Error> {
        let mut body = replayable(&parts, body).await?;
        let payload = match body.bytes() {
            Some(b) => sigv4::payload_hash(b),
            None => sigv4::UNSIGNED_PAYLOAD.to_string(),
        };
        let mut uri = parts.uri.clone();
        let mut hops = 0;
        loop {
            let mut headers = parts.headers.clone();
            if let Some(s) = &aws.signer {
                s.sign(
                    &parts.method,
                    &uri,
                    &mut headers,
                    &payload,
                    std::time::SystemTime::now(),
                )
                .map_err(|why| refused(plugin, &uri.to_string(), &why.0))?;
            }
            let resp = self
                .send_once(&parts.method, &uri, headers, &mut body, options.as_ref())
                .await?;
            let status = resp.status();
            if status == StatusCode::FORBIDDEN
                && aws.signer.is_none()
                && !aws.warned.swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(
                    "driver {plugin}: {} refused an unsigned request: no AWS credentials (creds=, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials)",
                    self.origin
                );
            }
            let redirect = status.is_redirection() && status != StatusCode::NOT_MODIFIED;
            let location = resp.headers().get(header::LOCATION).cloned();
            let (true, Some(location)) = (redirect, location) else {
                return Ok(send::boxed(resp, self.clone()));
            };
            let next = resolve(&uri, &location)
                .map_err(|why| refused(plugin, &format!("{location:?}"), &why))?;
            if !matches!(parts.method, Method::GET | Method::HEAD)
                || Origin::of(&next).ok().as_ref() != Some(&self.origin)
            {
                return Err(refused(
                    plugin,
                    &next.to_string(),
                    "not granted (an object store's redirect is followed only for a GET or HEAD on its own origin)",
                ));
            }
            aws.confine(&next, &parts.headers)
                .map_err(|why| refused(plugin, &next.to_string(), &why))?;
            count_redirect(&mut hops, plugin, &next)?;
            uri = next;
        }
    }
}

/// `body` of the request `parts` made replayable if it is small enough
/// (its `content-length` at most [`MAX_REPLAY`]).
async fn replayable(
    parts: &http::request::Parts,
    body: WasiBody,
) -> Result<send::Replayable, Error> {
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    send::Replayable::new(&parts.method, body, length, MAX_REPLAY).await
}

/// Count one more redirect (to `next`); refused past [`MAX_REDIRECTS`].
fn count_redirect(hops: &mut usize, plugin: &str, next: &Uri) -> Result<(), Error> {
    *hops += 1;
    if *hops > MAX_REDIRECTS {
        return Err(refused(
            plugin,
            &next.to_string(),
            &format!("more than {MAX_REDIRECTS} redirects"),
        ));
    }
    Ok(())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_object_store_plugin_stays_in_its_bucket() {
        let aws = Aws {
            signer: None,
            bucket: Some("imgs".into()),
            warned: std::sync::atomic::AtomicBool::new(false),
        };
        let none = http::HeaderMap::new();
        let uri = |p: &str| -> Uri { format!("http://127.0.0.1:9/{p}").parse().unwrap() };
        for ok in ["imgs", "imgs/", "imgs/a/index.json", "imgs?list-type=2"] {
            assert!(aws.confine(&uri(ok), &none).is_ok(), "{ok}");
        }
        for bad in ["", "imgs2/x", "other/imgs/x", "img"] {
            let e = aws.confine(&uri(bad), &none).unwrap_err();
            assert!(e.contains("outside the bucket imgs"), "{bad}: {e}");
        }
        let mut copy = http::HeaderMap::new();
        copy.insert(
            "x-amz-copy-source",
            "/imgs/a/.rumoci-uploads/x".parse().unwrap(),
        );
        assert!(aws.confine(&uri("imgs/a/blobs/sha256/x"), &copy).is_ok());
        for bad in [
            "/secret/key",
            "other%2Fkey",
            "/imgs/../secret/key",
            "%2Fsecret%2Fk",
        ] {
            let mut h = http::HeaderMap::new();
            h.insert("x-amz-copy-source", bad.parse().unwrap());
            assert!(aws.confine(&uri("imgs/x"), &h).is_err(), "{bad}");
        }
        // virtual-hosted: the origin is the bucket
        let vhost = Aws {
            bucket: None,
            ..aws
        };
        assert!(vhost.confine(&uri("anything"), &copy).is_ok());
    }
}
