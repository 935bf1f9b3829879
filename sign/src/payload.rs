//! The signed document: containers/image's sigstore payload (simple
//! signing JSON), written byte for byte as Go's `json.Marshal` of its maps
//! writes it (keys sorted) and read as strictly as
//! `UntrustedSigstorePayload.strictUnmarshalJSON`.

use serde_json::{Map, Value};

/// `critical.type` of every sigstore image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// Errors of payload parsing.
#[derive(Debug, thiserror::Error)]
#[error("invalid signature payload: {0}")]
pub struct PayloadError(pub String);

/// What a signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: String,
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
    /// `optional.creator`.
    pub creator: Option<String>,
    /// `optional.timestamp` (Unix seconds).
    pub timestamp: Option<i64>,
}

impl Payload {
    /// The JSON bytes, as containers/image writes them.
    pub fn to_bytes(&self) -> Vec<u8> {
        // keys in Go's order (sorted), written by hand so that the order
        // does not depend on serde_json's map features
        let s = |v: &str| Value::from(v).to_string();
        let mut out = format!(
            "{{\"critical\":{{\"identity\":{{\"docker-reference\":{}}},\"image\":{{\"docker-manifest-digest\":{}}},\"type\":{}}},\"optional\":{{",
            go_escape(&s(&self.docker_reference)),
            go_escape(&s(&self.manifest_digest)),
            s(SIGNATURE_TYPE)
        );
        let mut first = true;
        if let Some(c) = &self.creator {
            out.push_str(&format!("\"creator\":{}", go_escape(&s(c))));
            first = false;
        }
        if let Some(t) = self.timestamp {
            if !first {
                out.push(',');
            }
            out.push_str(&format!("\"timestamp\":{t}"));
        }
        out.push_str("}}");
        out.into_bytes()
    }

    /// Parse a payload: exactly `critical` and `optional`; in `critical`
    /// exactly `type`, `image`, `identity`; `optional` may be `null`
    /// (cosign writes that) and only its `creator` and integer
    /// `timestamp` are read.
    pub fn parse(bytes: &[u8]) -> Result<Payload, PayloadError> {
        let bad = |s: &str| PayloadError(s.to_string());
        let v: Value = serde_json::from_slice(bytes).map_err(|e| PayloadError(e.to_string()))?;
        let top = exact(&v, &["critical", "optional"], "the document")?;
        let critical = exact(&top["critical"], &["type", "image", "identity"], "critical")?;
        let t = critical["type"]
            .as_str()
            .ok_or_else(|| bad("critical.type is not a string"))?;
        if t != SIGNATURE_TYPE {
            return Err(PayloadError(format!("unrecognized signature type {t}")));
        }
        let image = exact(
            &critical["image"],
            &["docker-manifest-digest"],
            "critical.image",
        )?;
        let digest = image["docker-manifest-digest"]
            .as_str()
            .ok_or_else(|| bad("docker-manifest-digest is not a string"))?;
        if digest.parse::<rumoci_core::oci::Digest>().is_err() {
            return Err(PayloadError(format!(
                "invalid docker-manifest-digest value {digest:?}"
            )));
        }
        let identity = exact(
            &critical["identity"],
            &["docker-reference"],
            "critical.identity",
        )?;
        let reference = identity["docker-reference"]
            .as_str()
            .ok_or_else(|| bad("docker-reference is not a string"))?;
        let mut creator = None;
        let mut timestamp = None;
        match &top["optional"] {
            Value::Null => {}
            Value::Object(o) => {
                if let Some(c) = o.get("creator") {
                    creator = Some(
                        c.as_str()
                            .ok_or_else(|| bad("optional.creator is not a string"))?
                            .to_string(),
                    );
                }
                if let Some(t) = o.get("timestamp") {
                    let n = t
                        .as_f64()
                        .ok_or_else(|| bad("optional.timestamp is not a number"))?;
                    let i = n as i64;
                    if i as f64 != n {
                        return Err(bad("optional.timestamp is not an integer"));
                    }
                    timestamp = Some(i);
                }
            }
            _ => return Err(bad("optional is not an object")),
        }
        Ok(Payload {
            manifest_digest: digest.to_string(),
            docker_reference: reference.to_string(),
            creator,
            timestamp,
        })
    }
}

/// `v` as an object with exactly the fields `names`.
fn exact<'a>(
    v: &'a Value,
    names: &[&str],
    what: &str,
) -> Result<&'a Map<String, Value>, PayloadError> {
    let o = v
        .as_object()
        .ok_or_else(|| PayloadError(format!("{what} is not a JSON object")))?;
    for k in o.keys() {
        if !names.contains(&k.as_str()) {
            return Err(PayloadError(format!("{what}: unexpected field {k:?}")));
        }
    }
    for n in names {
        if !o.contains_key(*n) {
            return Err(PayloadError(format!("{what}: field {n:?} missing")));
        }
    }
    Ok(o)
}

/// Go's `json.Marshal` escapes `<`, `>` and `&` in strings.
fn go_escape(s: &str) -> String {
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_as_go_and_reads_back() {
        let p = Payload {
            manifest_digest:
                "sha256:0123456789012345678901234567890123456789012345678901234567890123".into(),
            docker_reference: "127.0.0.1:5000/app:t".into(),
            creator: Some("rumoci 0.1.0".into()),
            timestamp: Some(1700000000),
        };
        let text = String::from_utf8(p.to_bytes()).expect("utf-8");
        assert_eq!(
            text,
            "{\"critical\":{\"identity\":{\"docker-reference\":\"127.0.0.1:5000/app:t\"},\"image\":{\"docker-manifest-digest\":\"sha256:0123456789012345678901234567890123456789012345678901234567890123\"},\"type\":\"cosign container image signature\"},\"optional\":{\"creator\":\"rumoci 0.1.0\",\"timestamp\":1700000000}}"
        );
        assert_eq!(Payload::parse(text.as_bytes()).expect("parse"), p);
        assert!(Payload::parse(text.replace("\"type\"", "\"typo\"").as_bytes()).is_err());
        assert!(Payload::parse(text.replace("1700000000", "1.5").as_bytes()).is_err());
        let cosign = text.replace(
            "{\"creator\":\"rumoci 0.1.0\",\"timestamp\":1700000000}",
            "null",
        );
        assert!(Payload::parse(cosign.as_bytes()).is_ok());
    }
}
