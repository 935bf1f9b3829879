//! AWS Signature Version 4 for the requests of an object-store plugin
//! (`s3.wasm`): the host signs, so access keys never enter the sandbox.
//!
//! Credentials come from `creds=ACCESS_KEY:SECRET` (or `--creds`), else
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN`),
//! else the profile `AWS_PROFILE` (default `default`) of
//! `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`). Without
//! any, requests go unsigned (public buckets).
//!
//! A body the host buffers (at most `MAX_REPLAY` bytes) is signed by its
//! sha256; a body that streams through (multipart parts) is sent as
//! `UNSIGNED-PAYLOAD`: the host cannot hash it before sending its head,
//! and TLS protects it in transit (the content is verified by digest when
//! read back anyway).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest as _, Sha256};

use super::InvalidInput;

/// `x-amz-content-sha256` of a body sent without its hash.
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// AWS credentials: an access key, its secret and an optional session
/// token. Never printed, never given to a plugin.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    access_key: String,
    secret: String,
    token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AwsCredentials({}, <redacted>)", self.access_key)
    }
}

impl AwsCredentials {
    /// An access key and its secret (and a session token).
    pub fn new(access_key: &str, secret: &str, token: Option<&str>) -> AwsCredentials {
        AwsCredentials {
            access_key: access_key.to_string(),
            secret: secret.to_string(),
            token: token.filter(|t| !t.is_empty()).map(str::to_string),
        }
    }

    /// The access key id (not secret: it appears in every request).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// From the environment, then the shared credentials file; `None`
    /// when neither has any. Where they came from is the second value.
    pub fn lookup() -> Result<Option<(AwsCredentials, String)>, InvalidInput> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let (Some(ak), Some(sk)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            let token = var("AWS_SESSION_TOKEN");
            return Ok(Some((
                AwsCredentials::new(&ak, &sk, token.as_deref()),
                "the environment (AWS_ACCESS_KEY_ID)".into(),
            )));
        }
        let file = match var("AWS_SHARED_CREDENTIALS_FILE") {
            Some(f) => PathBuf::from(f),
            None => match var("HOME") {
                Some(h) => PathBuf::from(h).join(".aws/credentials"),
                None => return Ok(None),
            },
        };
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && var("AWS_PROFILE").is_none() => {
                return Ok(None);
            }
            Err(e) => return Err(format!("{}: {e}", crate::show::name(&file)).into()),
        };
        let shown = crate::show::name(&file);
        match profile_credentials(&text, &profile) {
            Some(c) => Ok(Some((c, format!("{shown} (profile {profile})")))),
            None if var("AWS_PROFILE").is_some() => Err(format!(
                "{shown}: no aws_access_key_id and aws_secret_access_key for profile {profile:?} (AWS_PROFILE)"
            )
            .into()),
            None => Ok(None),
        }
    }
}

/// The keys of `[profile]` in an INI credentials file.
fn profile_credentials(text: &str, profile: &str) -> Option<AwsCredentials> {
    let mut inside = false;
    let (mut ak, mut sk, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            inside =
                name == profile || name.strip_prefix("profile ").map(str::trim) == Some(profile);
            continue;
        }
        if !inside {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => ak = Some(v),
            "aws_secret_access_key" => sk = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    Some(AwsCredentials::new(&ak?, &sk?, token.as_deref()))
}

/// Signs requests for one region and service (`s3`).
#[derive(Debug, Clone)]
pub(crate) struct Signer {
    pub(crate) creds: AwsCredentials,
    pub(crate) region: String,
    pub(crate) service: String,
}

/// Headers signed besides `host` and every `x-amz-*` one.
const SIGNED: &[&str] = &[
    "content-md5",
    "content-type",
    "if-match",
    "if-none-match",
    "range",
];

impl Signer {
    /// Sign a request to `uri` now: set `x-amz-date`,
    /// `x-amz-content-sha256` (`payload`: the body's hex sha256 or
    /// [`UNSIGNED_PAYLOAD`]), `x-amz-security-token` and `authorization`
    /// in `headers`, replacing what was there.
    pub(crate) fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        payload: &str,
        now: SystemTime,
    ) -> Result<(), InvalidInput> {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| InvalidInput::from("the clock is before 1970"))?
            .as_secs();
        let amz_date = amz_date(secs);
        let date = &amz_date[..8];
        let put = |headers: &mut HeaderMap, k: &'static str, v: &str| {
            HeaderValue::from_str(v)
                .map(|v| {
                    headers.insert(k, v);
                })
                .map_err(|_| InvalidInput(format!("{k}: not a header value")))
        };
        headers.remove("x-amz-security-token");
        put(headers, "x-amz-date", &amz_date)?;
        put(headers, "x-amz-content-sha256", payload)?;
        if let Some(t) = &self.creds.token {
            put(headers, "x-amz-security-token", t)?;
        }
        let host = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or("no host")?;
        let mut signed: Vec<(String, String)> = vec![("host".into(), host)];
        for (k, v) in headers.iter() {
            let name = k.as_str();
            if name == "host" || !(name.starts_with("x-amz-") || SIGNED.contains(&name)) {
                continue;
            }
            let v = v
                .to_str()
                .map_err(|_| InvalidInput(format!("header {name}: not text")))?;
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            match signed.iter_mut().find(|(n, _)| n == name) {
                Some((_, old)) => {
                    old.push(',');
                    old.push_str(&v);
                }
                None => signed.push((name.to_string(), v)),
            }
        }
        signed.sort();
        let names = signed
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let mut canonical = format!(
            "{method}\n{}\n{}\n",
            canonical_path(uri.path()),
            canonical_query(uri.query().unwrap_or_default())
        );
        for (n, v) in &signed {
            let _ = writeln!(canonical, "{n}:{v}");
        }
        let _ = write!(canonical, "\n{names}\n{payload}");
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.creds.secret).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={names}, Signature={signature}",
            self.creds.access_key
        );
        let mut v = HeaderValue::from_str(&auth)
            .map_err(|_| InvalidInput::from("the access key is not a header value"))?;
        v.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, v);
        Ok(())
    }
}

/// The hex sha256 of a body, for `x-amz-content-sha256`.
pub(crate) fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac as _;
    // HMAC takes a key of any length: `new_from_slice` never fails
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// `YYYYMMDDTHHMMSSZ` of Unix time `secs` (0 past what chrono can show).
fn amz_date(secs: u64) -> String {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_default();
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// RFC 3986 unreserved characters stay, everything else is `%XX`.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// [`ENCODED`] but for `/`, which a path keeps.
const ENCODED_IN_PATH: &AsciiSet = &ENCODED.remove(b'/');

/// `s` decoded once, then encoded once with `set`.
fn reencode(s: &str, set: &'static AsciiSet) -> String {
    let bytes: Vec<u8> = percent_decode_str(s).collect();
    percent_encode(&bytes, set).to_string()
}

/// The path as S3 sees it: decoded once, encoded once.
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    reencode(path, ENCODED_IN_PATH)
}

/// The query's pairs, decoded, encoded and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (reencode(k, ENCODED), reencode(v, ENCODED))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn example() -> Signer {
        Signer {
            creds: AwsCredentials::new(
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                None,
            ),
            region: "us-east-1".into(),
            service: "s3".into(),
        }
    }

    /// 2013-05-24T00:00:00Z, the time of AWS's documented examples.
    fn may_24() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    #[test]
    fn hmac_rfc4231_case_2() {
        assert_eq!(
            hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // a key longer than a block is hashed first (case 6)
        assert_eq!(
            hex::encode(hmac(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), "20130524T000000Z");
        assert_eq!(amz_date(951_782_400 + 3_723), "20000229T010203Z");
    }

    /// The `authorization` header of `example()`'s signature of a GET of
    /// `uri` with `headers` (an empty payload) at [`may_24`].
    fn signed_get(uri: &str, mut headers: HeaderMap) -> String {
        let uri: Uri = uri.parse().unwrap();
        example()
            .sign(
                &Method::GET,
                &uri,
                &mut headers,
                &payload_hash(b""),
                may_24(),
            )
            .unwrap();
        headers["authorization"].to_str().unwrap().to_string()
    }

    /// AWS's documented example: GET Object with a Range header.
    #[test]
    fn aws_example_get_object() {
        let mut h = HeaderMap::new();
        h.insert("range", HeaderValue::from_static("bytes=0-9"));
        assert_eq!(
            signed_get("https://examplebucket.s3.amazonaws.com/test.txt", h),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// AWS's documented example: GET Bucket lifecycle (a query without a
    /// value) and ListObjects (a query with values).
    #[test]
    fn aws_example_queries() {
        for (uri, signature) in [
            (
                "https://examplebucket.s3.amazonaws.com/?lifecycle",
                "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
            (
                "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
        ] {
            let a = signed_get(uri, HeaderMap::new());
            assert!(a.ends_with(signature), "{a:?}");
        }
    }

    /// AWS's documented example: PUT Object with a signed payload.
    #[test]
    fn aws_example_put_object() {
        let uri: Uri = "https://examplebucket.s3.amazonaws.com/test$file.text"
            .parse()
            .unwrap();
        let body = b"Welcome to Amazon S3.";
        let mut h = HeaderMap::new();
        h.insert(
            "date",
            HeaderValue::from_static("Fri, 24 May 2013 00:00:00 GMT"),
        );
        h.insert(
            "x-amz-storage-class",
            HeaderValue::from_static("REDUCED_REDUNDANCY"),
        );
        example()
            .sign(&Method::PUT, &uri, &mut h, &payload_hash(body), may_24())
            .unwrap();
        let auth = h["authorization"].to_str().unwrap().to_string();
        // AWS's example also signs `date`; the rest of the request is the same
        assert!(
            auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-storage-class")
        );
        assert_eq!(
            h["x-amz-content-sha256"],
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_path("/b/a%20b/c+d"), "/b/a%20b/c%2Bd");
        assert_eq!(canonical_path(""), "/");
        assert_eq!(
            canonical_query("uploads&prefix=a%2Fb&list-type=2"),
            "list-type=2&prefix=a%2Fb&uploads="
        );
    }

    #[test]
    fn profiles() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[profile other]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        let d = profile_credentials(text, "default").unwrap();
        assert_eq!((d.access_key(), d.secret.as_str()), ("A", "B"));
        let o = profile_credentials(text, "other").unwrap();
        assert_eq!(o.token.as_deref(), Some("T"));
        assert!(profile_credentials(text, "none").is_none());
        assert!(!format!("{o:?}").contains('D'));
    }
}
