//! OCI image-spec types, digests and media types.
//!
//! Parsing is hardened as umoci 0.5 does (CVE-2021-41190): an index that
//! carries `config` or `layers`, a manifest that carries `manifests`, and a
//! document whose `mediaType` names another kind than the descriptor that led
//! to it are all refused. Docker schema 2 documents are read like their OCI
//! twins ([`media::kind`]); a document whose `mediaType` is the twin of its
//! descriptor's (go-containerregistry's layouts: an OCI manifest descriptor,
//! a Docker manifest) is unambiguous and accepted, and
//! [`Blob::media_type_mismatch`] lets the walks warn about it.

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
    /// The descriptors this blob refers to (for walks and gc): an index's
    /// manifests, a manifest's config and layers, a descriptor blob's
    /// descriptor. Not the `subject`, a weak reference ([`Blob::subject`]).
    pub fn children(&self) -> Vec<&Descriptor> {
        match self {
            Blob::Index(i) => i.manifests.iter().collect(),
            Blob::Manifest(m) => std::iter::once(&m.config).chain(m.layers.iter()).collect(),
            Blob::Descriptor(d) => vec![d],
            Blob::Config(_) | Blob::Empty | Blob::Other => Vec::new(),
        }
    }

    /// The `subject` of an index or manifest: the image-spec calls it a
    /// weak reference (the subject need not be in the store).
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Blob::Index(i) => i.subject.as_ref(),
            Blob::Manifest(m) => m.subject.as_ref(),
            _ => None,
        }
    }

    /// The document's own `mediaType` when it differs from `descriptor`'s
    /// (a twin of the same kind: parsing refuses any other).
    pub fn media_type_mismatch(&self, descriptor: &str) -> Option<&str> {
        let own = match self {
            Blob::Index(i) => &i.media_type,
            Blob::Manifest(m) => &m.media_type,
            _ => return None,
        };
        (!own.is_empty() && own != descriptor).then_some(own.as_str())
    }
}

/// The descriptors a JSON document names under any reading of it: its
/// `manifests` (an index's), `config` and `layers` (a manifest's) and
/// `subject`, whatever its media type says. The walks that must keep or
/// copy everything reachable (gc, `copy`) follow these, so that a document
/// that is ambiguous, of an unknown media type, or refused by
/// [`parse_blob`]'s hardening never loses what it points at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LooseRefs {
    /// The document's own `mediaType`, if it has one.
    pub media_type: Option<String>,
    /// Whether it has a `manifests` array (reads as an index).
    pub has_manifests: bool,
    /// Whether it has a `config` object and a `layers` array (reads as a
    /// manifest).
    pub has_config_and_layers: bool,
    /// Everything under `manifests`, `config` and `layers`.
    pub children: Vec<Descriptor>,
    /// The `subject`.
    pub subject: Option<Descriptor>,
}

/// A descriptor read leniently: as a [`Descriptor`] if it is one, else its
/// `digest` alone if that is a valid digest (a descriptor with, say, a
/// negative size still names a blob to keep).
pub fn loose_descriptor(v: &Value) -> Option<Descriptor> {
    if let Ok(d) = serde_json::from_value::<Descriptor>(v.clone()) {
        return Some(d);
    }
    let obj = v.as_object()?;
    let digest: Digest = obj.get("digest")?.as_str()?.parse().ok()?;
    let media_type = obj.get("mediaType").and_then(Value::as_str).unwrap_or("");
    let size = obj.get("size").and_then(Value::as_u64).unwrap_or(0);
    Some(Descriptor::new(media_type, digest, size))
}

/// Read `bytes` as [`LooseRefs`]; `None` when it is not a JSON object.
pub fn loose_refs(bytes: &[u8]) -> Option<LooseRefs> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let obj = v.as_object()?;
    let array = |key: &str| obj.get(key).and_then(Value::as_array);
    let mut refs = LooseRefs {
        media_type: obj
            .get("mediaType")
            .and_then(Value::as_str)
            .map(str::to_string),
        has_manifests: array("manifests").is_some(),
        has_config_and_layers: obj.get("config").is_some_and(Value::is_object)
            && array("layers").is_some(),
        ..LooseRefs::default()
    };
    let listed = array("manifests").into_iter().flatten();
    let config = obj.get("config").filter(|c| c.is_object());
    let layers = array("layers").into_iter().flatten();
    refs.children = listed
        .chain(config)
        .chain(layers)
        .filter_map(loose_descriptor)
        .collect();
    refs.subject = obj.get("subject").and_then(loose_descriptor);
    Some(refs)
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

/// The document's own `mediaType`, when present, must be `expected` (its
/// descriptor's) or its twin ([`media::compatible`]).
fn check_media_type(
    what: &'static str,
    obj: &serde_json::Map<String, Value>,
    expected: &str,
) -> Result<(), OciError> {
    match obj.get("mediaType") {
        None => Ok(()),
        Some(Value::String(s)) if media::compatible(expected, s) => Ok(()),
        Some(other) => Err(OciError::Invalid {
            what,
            reason: format!("mediaType {other} does not match its descriptor's {expected}"),
        }),
    }
}

fn from_value<T: DeserializeOwned>(what: &'static str, v: Value) -> Result<T, OciError> {
    serde_json::from_value(v).map_err(|source| OciError::Malformed { what, source })
}

/// Parse a blob of the given media type (by its [`media::kind`]: Docker
/// schema 2 documents as their OCI twins), with umoci 0.5's hardening.
pub fn parse_blob(media_type: &str, bytes: &[u8]) -> Result<Blob, OciError> {
    use media::Kind;
    let parse_value = |what| {
        serde_json::from_slice::<Value>(bytes)
            .map_err(|source| OciError::Malformed { what, source })
    };
    match media::kind(media_type) {
        Kind::Index => {
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
            check_media_type("index", obj, media_type)?;
            Ok(Blob::Index(from_value("index", v)?))
        }
        Kind::Manifest => {
            let v = parse_value("manifest")?;
            let obj = object("manifest", &v)?;
            if obj.contains_key("manifests") {
                return Err(OciError::Invalid {
                    what: "manifest",
                    reason: "a manifest must not contain \"manifests\"".to_string(),
                });
            }
            check_media_type("manifest", obj, media_type)?;
            Ok(Blob::Manifest(from_value("manifest", v)?))
        }
        Kind::Config => {
            let v = parse_value("config")?;
            object("config", &v)?;
            Ok(Blob::Config(from_value("config", v)?))
        }
        Kind::Descriptor => {
            let v = parse_value("descriptor")?;
            object("descriptor", &v)?;
            Ok(Blob::Descriptor(from_value("descriptor", v)?))
        }
        Kind::EmptyJson => {
            if bytes != b"{}" {
                return Err(OciError::Invalid {
                    what: "empty JSON blob",
                    reason: "content must be exactly {}".to_string(),
                });
            }
            Ok(Blob::Empty)
        }
        Kind::Layer | Kind::Other => Ok(Blob::Other),
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

impl crate::oci::OciError {
    /// What kind of failure this is: always [`crate::error::ErrorKind::InvalidInput`].
    pub fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::InvalidInput
    }
}

crate::wraps!(crate::oci::OciError);

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
    fn docker_twins_parse_and_mismatch_is_reported() {
        // go-containerregistry's test_gc_index: the descriptor says OCI
        // manifest, the document says Docker
        let docker = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":330,"digest":"sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":167,"digest":"sha256:dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b"}]}"#;
        let blob = parse_blob(media::MANIFEST, docker).expect("a twin is accepted");
        assert_eq!(blob.children().len(), 2);
        assert_eq!(
            blob.media_type_mismatch(media::MANIFEST),
            Some(media::DOCKER_MANIFEST)
        );
        let same = parse_blob(media::DOCKER_MANIFEST, docker).expect("parse");
        assert_eq!(same.media_type_mismatch(media::DOCKER_MANIFEST), None);
        // a Docker list is an index; one claiming to be a manifest is not
        let list = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(matches!(
            parse_blob(media::DOCKER_MANIFEST_LIST, list),
            Ok(Blob::Index(_))
        ));
        assert!(parse_blob(media::INDEX, list).is_ok());
        assert!(parse_blob(media::DOCKER_MANIFEST, list).is_err());
        assert!(parse_blob(media::MANIFEST, list).is_err());
        assert!(matches!(
            parse_blob(media::DOCKER_CONFIG, br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#),
            Ok(Blob::Config(c)) if c.architecture == "arm64"
        ));
    }

    #[test]
    fn loose_refs_follow_every_reading() {
        // refused by the hardening (an index with layers), yet everything
        // it names is found
        let both = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}],"config":{"mediaType":"b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"digest":"sha256:6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e","size":-1}],"subject":{"mediaType":"c","digest":"sha256:dc52c6e48a1d51a96047b059f16889bc889c4b4c28f3b36b3f93187f62fc0b2b","size":1}}"#;
        assert!(parse_index(both).is_err());
        let refs = loose_refs(both).expect("an object");
        assert!(refs.has_manifests && refs.has_config_and_layers);
        let hexes: Vec<&str> = refs.children.iter().map(|d| &d.digest.hex()[..4]).collect();
        assert_eq!(hexes, ["e3b0", "4413", "6e0b"]);
        assert_eq!(
            refs.subject.map(|s| s.digest.hex()[..4].to_string()),
            Some("dc52".into())
        );
        assert_eq!(refs.media_type.as_deref(), Some(media::INDEX));
        assert_eq!(loose_refs(b"[1]"), None);
        assert_eq!(loose_refs(b"\x1f\x8b"), None);
        let plain = loose_refs(br#"{"layers":[]}"#).expect("object");
        assert!(!plain.has_manifests && !plain.has_config_and_layers);
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
