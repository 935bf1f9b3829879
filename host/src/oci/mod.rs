//! OCI image-spec types, digests and media types.
//!
//! Parsing is hardened as umoci 0.5 does (CVE-2021-41190): an index that
//! carries `config` or `layers`, a manifest that carries `manifests`, and a
//! document whose `mediaType` disagrees with the descriptor that led to it are
//! all refused.

mod digest;
pub mod gotime;
mod json;
pub mod media;
mod types;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use json::to_go_json;
pub use types::{Descriptor, History, Image, ImageConfig, Index, Manifest, Platform, RootFs};

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a document could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// Not valid JSON, or not the expected shape.
    #[error("malformed {what}: {source}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The document contradicts the spec or its descriptor.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being parsed.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// A parsed blob, by media type.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Blob {
    /// An image index.
    Index(Index),
    /// An image manifest.
    Manifest(Manifest),
    /// An image configuration.
    Config(Image),
    /// A descriptor stored as a blob.
    Descriptor(Descriptor),
    /// The empty JSON document.
    Empty,
    /// Anything else (layers, unknown artifacts): not parsed.
    Other,
}

impl Blob {
    /// The descriptors this blob refers to (for walks and gc).
    pub fn children(&self) -> Vec<&Descriptor> {
        match self {
            Blob::Index(i) => i.manifests.iter().chain(i.subject.as_ref()).collect(),
            Blob::Manifest(m) => std::iter::once(&m.config)
                .chain(m.layers.iter())
                .chain(m.subject.as_ref())
                .collect(),
            Blob::Descriptor(d) => vec![d],
            Blob::Config(_) | Blob::Empty | Blob::Other => Vec::new(),
        }
    }
}

fn object<'a>(
    what: &'static str,
    v: &'a Value,
) -> Result<&'a serde_json::Map<String, Value>, OciError> {
    v.as_object().ok_or_else(|| OciError::Invalid {
        what,
        reason: "not a JSON object".to_string(),
    })
}

fn check_media_type(
    what: &'static str,
    obj: &serde_json::Map<String, Value>,
    expected: &str,
    required: bool,
) -> Result<(), OciError> {
    match obj.get("mediaType") {
        None if !required => Ok(()),
        None => Err(OciError::Invalid {
            what,
            reason: format!("mediaType missing, expected {expected}"),
        }),
        Some(Value::String(s)) if s == expected => Ok(()),
        Some(other) => Err(OciError::Invalid {
            what,
            reason: format!("mediaType {other} does not match its descriptor's {expected}"),
        }),
    }
}

fn from_value<T: DeserializeOwned>(what: &'static str, v: Value) -> Result<T, OciError> {
    serde_json::from_value(v).map_err(|source| OciError::Malformed { what, source })
}

/// Parse a blob of the given media type, with umoci 0.5's hardening.
pub fn parse_blob(media_type: &str, bytes: &[u8]) -> Result<Blob, OciError> {
    let parse_value = |what| {
        serde_json::from_slice::<Value>(bytes)
            .map_err(|source| OciError::Malformed { what, source })
    };
    match media_type {
        media::INDEX => {
            let v = parse_value("index")?;
            let obj = object("index", &v)?;
            for key in ["config", "layers"] {
                if obj.contains_key(key) {
                    return Err(OciError::Invalid {
                        what: "index",
                        reason: format!("an index must not contain {key:?}"),
                    });
                }
            }
            check_media_type("index", obj, media::INDEX, false)?;
            Ok(Blob::Index(from_value("index", v)?))
        }
        media::MANIFEST => {
            let v = parse_value("manifest")?;
            let obj = object("manifest", &v)?;
            if obj.contains_key("manifests") {
                return Err(OciError::Invalid {
                    what: "manifest",
                    reason: "a manifest must not contain \"manifests\"".to_string(),
                });
            }
            check_media_type("manifest", obj, media::MANIFEST, false)?;
            Ok(Blob::Manifest(from_value("manifest", v)?))
        }
        media::CONFIG => {
            let v = parse_value("config")?;
            object("config", &v)?;
            Ok(Blob::Config(from_value("config", v)?))
        }
        media::DESCRIPTOR => {
            let v = parse_value("descriptor")?;
            object("descriptor", &v)?;
            Ok(Blob::Descriptor(from_value("descriptor", v)?))
        }
        media::EMPTY_JSON => {
            if bytes != b"{}" {
                return Err(OciError::Invalid {
                    what: "empty JSON blob",
                    reason: "content must be exactly {}".to_string(),
                });
            }
            Ok(Blob::Empty)
        }
        _ => Ok(Blob::Other),
    }
}

/// Parse an index (`index.json` or a nested one).
pub fn parse_index(bytes: &[u8]) -> Result<Index, OciError> {
    match parse_blob(media::INDEX, bytes)? {
        Blob::Index(i) => Ok(i),
        _ => unreachable_kind("index"),
    }
}

/// Parse a manifest.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, OciError> {
    match parse_blob(media::MANIFEST, bytes)? {
        Blob::Manifest(m) => Ok(m),
        _ => unreachable_kind("manifest"),
    }
}

/// Parse an image configuration.
pub fn parse_config(bytes: &[u8]) -> Result<Image, OciError> {
    match parse_blob(media::CONFIG, bytes)? {
        Blob::Config(c) => Ok(c),
        _ => unreachable_kind("config"),
    }
}

fn unreachable_kind<T>(what: &'static str) -> Result<T, OciError> {
    Err(OciError::Invalid {
        what,
        reason: "internal: wrong blob kind".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_image_matches_go_bytes() {
        // umoci's test/stat.bats "blank image": 135-byte config, sha256 e5101a46…
        let img = Image {
            created: Some("2025-09-05T13:05:10.12345+10:00".into()),
            author: String::new(),
            architecture: "amd64".into(),
            os: "linux".into(),
            os_version: String::new(),
            os_features: vec![],
            variant: String::new(),
            config: ImageConfig::default(),
            rootfs: RootFs::default(),
            history: vec![],
            extra: Default::default(),
        };
        let bytes = to_go_json(&img).expect("serialize");
        assert_eq!(
            std::str::from_utf8(&bytes).expect("utf8"),
            "{\"created\":\"2025-09-05T13:05:10.12345+10:00\",\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}\n"
        );
        assert_eq!(bytes.len(), 135);
        let d = Digest::sha256_of(&bytes);
        assert!(d.hex().starts_with("e5101a46"), "{d}");
        let manifest = Manifest {
            schema_version: 2,
            media_type: media::MANIFEST.into(),
            artifact_type: String::new(),
            config: Descriptor::new(media::CONFIG, d, 135),
            layers: vec![],
            subject: None,
            annotations: Default::default(),
            extra: Default::default(),
        };
        let mbytes = to_go_json(&manifest).expect("serialize");
        assert_eq!(mbytes.len(), 249);
        assert!(Digest::sha256_of(&mbytes).hex().starts_with("98a4b5d5"));
    }

    #[test]
    fn unknown_fields_round_trip() {
        let src = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0,"x-desc":[1,2]},"layers":[],"annotations":{"b":"2","a":"1"},"x-future":{"z":1,"a":true}}"#;
        let m = parse_manifest(src).expect("parse");
        let out = to_go_json(&m).expect("serialize");
        let again = parse_manifest(&out).expect("reparse");
        assert_eq!(m, again);
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("\"x-future\":{\"z\":1,\"a\":true}"), "{text}");
        assert!(text.contains("\"x-desc\":[1,2]"), "{text}");
        assert!(
            text.contains("\"annotations\":{\"a\":\"1\",\"b\":\"2\"}"),
            "{text}"
        );
    }

    #[test]
    fn hardening_refuses_confused_documents() {
        let idx_with_layers = br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#;
        assert!(parse_index(idx_with_layers).is_err());
        let man_with_manifests = br#"{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[],"manifests":[]}"#;
        assert!(parse_manifest(man_with_manifests).is_err());
        let wrong_type = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        assert!(parse_manifest(wrong_type).is_err());
        assert!(parse_blob(media::EMPTY_JSON, b"{ }").is_err());
        assert!(matches!(
            parse_blob(media::EMPTY_JSON, b"{}"),
            Ok(Blob::Empty)
        ));
        let neg = br#"{"schemaVersion":2,"manifests":[{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":-1}]}"#;
        assert!(parse_index(neg).is_err());
        let bad_digest = br#"{"schemaVersion":2,"manifests":[{"mediaType":"a","digest":"sha256:../../x","size":1}]}"#;
        let err = parse_index(bad_digest).expect_err("must fail").to_string();
        assert!(err.contains("sha256:../../x"), "{err}");
    }

    #[test]
    fn embedded_data_is_base64() {
        let mut d = Descriptor::new(media::EMPTY_JSON, Digest::sha256_of(b"{}"), 2);
        d.data = Some(b"{}".to_vec());
        let out = String::from_utf8(to_go_json(&d).expect("ser")).expect("utf8");
        assert!(out.contains("\"data\":\"e30=\""), "{out}");
        assert_eq!(d.digest.to_string(), media::EMPTY_JSON_DIGEST);
    }
}
