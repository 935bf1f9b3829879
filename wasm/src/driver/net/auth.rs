//! Registry authentication, done by the host: credentials from where
//! users keep them, `401` challenges (Basic, Bearer), tokens cached per
//! scope until they expire.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use wasmtime_wasi_http::Error;

use super::{Network, Origin, send, small_body};

/// A user name and password. Never printed, never given to a plugin.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.user)
    }
}

impl Credentials {
    /// `USER:PASSWORD` (the password may contain `:`).
    pub fn parse(s: &str) -> Result<Credentials, super::InvalidInput> {
        match s.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            }),
            _ => Err("expected USER:PASSWORD".into()),
        }
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password (the secret access key, for an object store).
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    fn basic(&self) -> Option<HeaderValue> {
        let raw = format!("{}:{}", self.user, self.password);
        let enc = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// The auth files consulted, in order: `$REGISTRY_AUTH_FILE` alone if
    /// set, else `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `~/.config/containers/auth.json` and `~/.docker/config.json`.
    pub fn auth_files() -> Vec<PathBuf> {
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
            return vec![PathBuf::from(f)];
        }
        let mut out = Vec::new();
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            out.push(PathBuf::from(d).join("containers/auth.json"));
        }
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            let h = PathBuf::from(h);
            out.push(h.join(".config/containers/auth.json"));
            out.push(h.join(".docker/config.json"));
        }
        out
    }

    /// The credentials the auth files hold for `origin` (their `auths`
    /// entries; credential helpers are not run).
    pub fn lookup(origin: &Origin) -> Result<Option<Credentials>, super::InvalidInput> {
        for file in Credentials::auth_files() {
            let text = match std::fs::read(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: {e}", crate::show::name(&file)).into()),
            };
            let doc: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| format!("{}: not an auth file: {e}", crate::show::name(&file)))?;
            let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
                continue;
            };
            for (key, entry) in auths {
                if !key_matches(key, origin) {
                    continue;
                }
                let shown = crate::show::name(&file);
                let creds = entry_credentials(entry)
                    .map_err(|why| format!("{shown}: the entry for {key:?}: {why}"))?;
                if let Some(c) = creds {
                    tracing::debug!("credentials for {origin} from {shown}");
                    return Ok(Some(c));
                }
            }
        }
        Ok(None)
    }
}

/// Whether an `auths` key (`HOST[:PORT]`, maybe with a scheme and a path)
/// names `origin`.
fn key_matches(key: &str, origin: &Origin) -> bool {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or_default().to_ascii_lowercase();
    k == origin.authority() || (origin.default_port() && k == origin.host)
}

fn entry_credentials(entry: &serde_json::Value) -> Result<Option<Credentials>, String> {
    if let Some(auth) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.is_empty())
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "\"auth\" is not base64".to_string())?;
        let text = String::from_utf8(raw).map_err(|_| "\"auth\" is not text".to_string())?;
        return Credentials::parse(&text)
            .map(Some)
            .map_err(|_| "\"auth\" is not base64 of USER:PASSWORD".into());
    }
    let field = |k: &str| entry.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    if !field("username").is_empty() {
        return Ok(Some(Credentials {
            user: field("username").to_string(),
            password: field("password").to_string(),
        }));
    }
    Ok(None)
}

/// What the registry asked for.
#[derive(Debug, Clone, PartialEq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` value: `SCHEME k="v",k=v…`.
fn parse_challenge(v: &str) -> Option<(Challenge, Option<String>)> {
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let k = k.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            (out, &q[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k, value);
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    let scope = params.get("scope").cloned();
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some((Challenge::Basic, None)),
        "bearer" => Some((
            Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            },
            scope,
        )),
        _ => None,
    }
}

/// The token scopes a request needs (`repository:NAME:ACTIONS`…).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Scope(Vec<String>);

impl Scope {
    /// The scopes of `method uri` in the distribution API.
    pub(super) fn of(method: &Method, uri: &Uri) -> Scope {
        let path = uri.path();
        let mut out = Vec::new();
        if let Some(rest) = path.strip_prefix("/v2/") {
            let name = ["/manifests/", "/blobs/", "/tags/", "/referrers/"]
                .iter()
                .filter_map(|m| rest.rfind(m))
                .min()
                .map(|at| &rest[..at]);
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                let actions = match *method {
                    Method::GET | Method::HEAD => "pull",
                    Method::DELETE => "delete",
                    _ => "pull,push",
                };
                out.push(format!("repository:{name}:{actions}"));
                // cross-repository mount: reading the source repository too
                let from = uri
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("from="));
                if let Some(from) = from.filter(|f| !f.is_empty() && *f != name) {
                    out.push(format!("repository:{}:pull", percent_decode(from)));
                }
            } else if rest == "_catalog" {
                out.push("registry:catalog:*".into());
            }
        }
        Scope(out)
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// Query values keep only RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn percent_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

struct Token {
    value: HeaderValue,
    until: Instant,
}

#[derive(Default)]
struct State {
    challenge: Option<Challenge>,
    pinged: bool,
    tokens: HashMap<String, Token>,
    warned: bool,
}

/// The authentication state of one registry.
pub(super) struct Auth {
    creds: Option<Credentials>,
    state: Mutex<State>,
}

/// Longest token answer read.
const MAX_TOKEN_ANSWER: usize = 1 << 20;

impl Auth {
    pub(super) fn new(creds: Option<Credentials>) -> Auth {
        Auth {
            creds,
            state: Mutex::new(State::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Before a body that streams once: learn the registry's challenge
    /// (`GET /v2/`) if no request has yet.
    pub(super) async fn prepare(&self, net: &Network) -> Result<(), Error> {
        if self.with(|s| s.pinged || s.challenge.is_some()) {
            return Ok(());
        }
        let uri: Uri = format!("{}/v2/", net.origin)
            .parse()
            .map_err(|_| Error::InternalError(Some(format!("{}: bad address", net.origin))))?;
        let resp = send::once(
            &net.tls,
            &net.pool,
            &Method::GET,
            &uri,
            HeaderMap::new(),
            send::empty(),
            net.limits(None),
        )
        .await?;
        let challenge = (resp.status() == StatusCode::UNAUTHORIZED)
            .then(|| challenge_of(resp.headers()))
            .flatten();
        self.with(|s| {
            s.pinged = true;
            if let Some((c, _)) = challenge {
                s.challenge = Some(c);
            }
        });
        Ok(())
    }

    /// A `401` answered a request of `scope`: remember the challenge and
    /// forget the token that failed. `true` if trying again can help.
    pub(super) fn challenged(&self, headers: &HeaderMap, scope: &Scope) -> bool {
        let Some((c, _)) = challenge_of(headers) else {
            return false;
        };
        let can = match c {
            Challenge::Basic => self.creds.is_some(),
            Challenge::Bearer { .. } => true,
        };
        self.with(|s| {
            let changed = s.challenge.as_ref() != Some(&c);
            s.challenge = Some(c);
            let had = s.tokens.remove(&scope.key()).is_some();
            can && (changed || had)
        })
    }

    /// Say once why the registry still answers `401`.
    pub(super) fn warn_unauthorized(&self, plugin: &str, origin: &Origin) {
        if self.with(|s| std::mem::replace(&mut s.warned, true)) {
            return;
        }
        match &self.creds {
            None => tracing::warn!(
                "driver {plugin}: {origin} asks for credentials and none were found (give --creds USER:PASSWORD or creds=, or log in with `skopeo login`: auth files are read)"
            ),
            Some(c) => tracing::warn!(
                "driver {plugin}: {origin} refused the credentials of {:?}",
                c.user
            ),
        }
    }

    /// The `Authorization` header for a request of `scope`, fetching a
    /// token when the registry wants one.
    pub(super) async fn header(
        &self,
        net: &Network,
        scope: &Scope,
    ) -> Result<Option<HeaderValue>, Error> {
        let (challenge, cached) = self.with(|s| {
            let cached = s
                .tokens
                .get(&scope.key())
                .filter(|t| t.until > Instant::now())
                .map(|t| t.value.clone());
            (s.challenge.clone(), cached)
        });
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.creds.as_ref().and_then(Credentials::basic)),
            Some(Challenge::Bearer { .. }) if cached.is_some() => Ok(cached),
            Some(Challenge::Bearer { realm, service }) => {
                let token = self
                    .fetch_token(net, &realm, service.as_deref(), scope)
                    .await?;
                let value = token.value.clone();
                self.with(|s| s.tokens.insert(scope.key(), token));
                Ok(Some(value))
            }
        }
    }

    async fn fetch_token(
        &self,
        net: &Network,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<Token, Error> {
        let fail = |why: String| {
            Error::InternalError(Some(format!(
                "token server {realm} for {}: {why}",
                net.origin
            )))
        };
        let mut query = Vec::new();
        if let Some(s) = service {
            query.push(format!("service={}", percent_encode(s)));
        }
        for s in &scope.0 {
            query.push(format!("scope={}", percent_encode(s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = if query.is_empty() {
            realm.to_string()
        } else {
            format!("{realm}{sep}{}", query.join("&"))
        };
        let uri: Uri = url.parse().map_err(|_| fail("not a URL".into()))?;
        Origin::of(&uri).map_err(|e| fail(e.0))?;
        let mut headers = HeaderMap::new();
        if let Some(b) = self.creds.as_ref().and_then(Credentials::basic) {
            headers.insert(header::AUTHORIZATION, b);
        }
        let resp = send::once(
            &net.tls,
            &net.pool,
            &Method::GET,
            &uri,
            headers,
            send::empty(),
            net.limits(None),
        )
        .await?;
        let status = resp.status();
        let body = small_body(resp, MAX_TOKEN_ANSWER).await?;
        if !status.is_success() {
            let who = match &self.creds {
                Some(c) => format!("the credentials of {:?} were refused", c.user),
                None => "anonymous access was refused (give --creds USER:PASSWORD)".into(),
            };
            return Err(fail(format!("HTTP {status}: {who}")));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| fail(format!("not a token answer: {e}")))?;
        let token = doc
            .get("token")
            .or_else(|| doc.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("no token in the answer".into()))?;
        let life = doc
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .unwrap_or(60)
            .clamp(1, 24 * 3600);
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| fail("a token that is not header text".into()))?;
        value.set_sensitive(true);
        // renew a little before the registry would refuse it
        let margin = (life / 10).min(30);
        Ok(Token {
            value,
            until: Instant::now() + Duration::from_secs(life - margin),
        })
    }
}

fn challenge_of(headers: &HeaderMap) -> Option<(Challenge, Option<String>)> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(parse_challenge)
        .max_by_key(|(c, _)| matches!(c, Challenge::Bearer { .. }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (c, scope) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg.example".into())
            }
        );
        assert_eq!(scope.as_deref(), Some("repository:a/b:pull"));
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#).unwrap().0,
            Challenge::Basic
        );
        assert!(parse_challenge("Bearer service=x").is_none());
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
        assert!(parse_challenge("Negotiate").is_none());
    }

    #[test]
    fn scopes() {
        let s = |m: Method, u: &str| Scope::of(&m, &u.parse().unwrap()).0;
        assert_eq!(
            s(Method::GET, "http://h/v2/a/b/manifests/t"),
            ["repository:a/b:pull"]
        );
        assert_eq!(
            s(
                Method::POST,
                "http://h/v2/a/blobs/uploads/?mount=sha256:x&from=c%2Fd"
            ),
            ["repository:a:pull,push", "repository:c/d:pull"]
        );
        assert_eq!(
            s(Method::DELETE, "http://h/v2/x/manifests/sha256:1"),
            ["repository:x:delete"]
        );
        assert!(s(Method::GET, "http://h/v2/").is_empty());
    }

    #[test]
    fn auth_keys() {
        let o = Origin::parse_url("https://reg.example").unwrap();
        assert!(key_matches("reg.example", &o));
        assert!(key_matches("https://reg.example/v1/", &o));
        assert!(key_matches("reg.example:443", &o));
        assert!(!key_matches("other.example", &o));
        let o = Origin::parse_url("http://127.0.0.1:5000").unwrap();
        assert!(key_matches("127.0.0.1:5000", &o));
        assert!(!key_matches("127.0.0.1", &o));
        let c = entry_credentials(&serde_json::json!({"auth": "YWxpY2U6czpl"}))
            .unwrap()
            .unwrap();
        assert_eq!((c.user(), c.password.as_str()), ("alice", "s:e"));
        assert!(entry_credentials(&serde_json::json!({"auth": "!!"})).is_err());
        assert!(format!("{c:?}").contains("redacted") && !format!("{c:?}").contains("s:e"));
    }
}
