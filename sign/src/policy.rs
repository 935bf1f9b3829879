//! containers-policy.json (containers/image's `signature/policy_config.go`):
//! which requirements apply to an image (by transport and scope, most
//! specific first) and whether its signatures meet them
//! (`policy_eval*.go`, `policy_reference_match.go`).
//!
//! Transports `docker` (an image in a registry, through the registry
//! plugin: `HOST:PORT/REPO:TAG`) and `oci` (a layout: its resolved
//! directory) are evaluated; the other transports' sections are read and
//! ignored. Requirements: `insecureAcceptAnything`, `reject`,
//! `sigstoreSigned` with `keyPath` or `keyData` and every `signedIdentity`
//! rule. `signedBy` (GPG) and keyless `sigstoreSigned` (`fulcio`,
//! `rekorPublicKey*`) deny the image, saying they are not supported.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rumoci_core::oci::Digest;
use serde_json::Value;

use crate::attach::Attached;
use crate::key::PublicKey;
use crate::payload::Payload;
use crate::reference::{DockerRef, namespaces};

/// Errors of policy files.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file cannot be read.
    #[error("policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("policy {path}: {why}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

impl PolicyError {
    /// What kind of failure this is.
    pub fn kind(&self) -> rumoci_core::ErrorKind {
        match self {
            PolicyError::Read { source, .. } => rumoci_core::ErrorKind::of_io(source),
            PolicyError::Invalid { .. } => rumoci_core::ErrorKind::InvalidInput,
        }
    }
}

/// Which signed identities a `sigstoreSigned` requirement accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityRule {
    /// Exactly the image's reference (tag).
    MatchExact,
    /// The image's reference; for a digest reference, any tag of its
    /// repository (the default).
    MatchRepoDigestOrExact,
    /// Any reference in the image's repository.
    MatchRepository,
    /// Exactly this reference, whatever the image is called.
    ExactReference(String),
    /// Any reference in this repository.
    ExactRepository(String),
    /// The image's reference with `prefix` replaced by `signed_prefix`,
    /// then as [`IdentityRule::MatchRepoDigestOrExact`].
    RemapIdentity {
        /// The prefix of the image's reference.
        prefix: String,
        /// What it is signed as instead.
        signed_prefix: String,
    },
}

impl fmt::Display for IdentityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityRule::MatchExact => f.write_str("matchExact"),
            IdentityRule::MatchRepoDigestOrExact => f.write_str("matchRepoDigestOrExact"),
            IdentityRule::MatchRepository => f.write_str("matchRepository"),
            IdentityRule::ExactReference(r) => write!(f, "exactReference {r}"),
            IdentityRule::ExactRepository(r) => write!(f, "exactRepository {r}"),
            IdentityRule::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                write!(f, "remapIdentity {prefix} -> {signed_prefix}")
            }
        }
    }
}

/// Where a `sigstoreSigned` requirement's public key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `keyPath`.
    Path(PathBuf),
    /// `keyData` (the PEM, base64-decoded).
    Data(Vec<u8>),
}

/// One requirement of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `insecureAcceptAnything`.
    InsecureAcceptAnything,
    /// `reject`.
    Reject,
    /// `sigstoreSigned` with a public key.
    SigstoreSigned {
        /// The key.
        key: KeySource,
        /// `signedIdentity`.
        identity: IdentityRule,
    },
    /// A requirement rumoci cannot check (`signedBy`, keyless
    /// `sigstoreSigned`): it denies, saying why.
    Unsupported {
        /// Its type.
        kind: String,
        /// Why it cannot be checked.
        why: String,
    },
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::InsecureAcceptAnything => f.write_str("insecureAcceptAnything"),
            Requirement::Reject => f.write_str("reject"),
            Requirement::SigstoreSigned { key, identity } => {
                match key {
                    KeySource::Path(p) => write!(f, "sigstoreSigned (keyPath {}", p.display())?,
                    KeySource::Data(_) => f.write_str("sigstoreSigned (keyData")?,
                }
                write!(f, ", signedIdentity {identity})")
            }
            Requirement::Unsupported { kind, .. } => f.write_str(kind),
        }
    }
}

/// Where an image is, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageIdentity {
    /// In a registry (transport `docker`): its reference, with the tag.
    Docker(DockerRef),
    /// In an OCI layout (transport `oci`): the layout's resolved directory
    /// and the tag. It has no Docker reference.
    Oci {
        /// The layout directory, absolute, symlinks resolved.
        dir: PathBuf,
        /// The tag.
        tag: String,
    },
}

impl ImageIdentity {
    /// A layout's image: `dir` is resolved (absolute, symlinks resolved),
    /// as containers/image's `oci:` transport resolves it.
    pub fn oci(dir: &Path, tag: &str) -> ImageIdentity {
        let abs = std::fs::canonicalize(dir)
            .unwrap_or_else(|_| std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
        ImageIdentity::Oci {
            dir: abs,
            tag: tag.to_string(),
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            ImageIdentity::Docker(_) => "docker",
            ImageIdentity::Oci { .. } => "oci",
        }
    }

    /// The scope names to look up, most specific first.
    fn scopes(&self) -> Vec<String> {
        match self {
            ImageIdentity::Docker(r) => {
                let mut v = vec![r.to_string()];
                v.extend(namespaces(r));
                v
            }
            ImageIdentity::Oci { dir, .. } => {
                let mut v = Vec::new();
                let mut p = dir.to_string_lossy().into_owned();
                while p != "/" {
                    v.push(p.clone());
                    match p.rfind('/') {
                        Some(0) | None => break,
                        Some(i) => p.truncate(i),
                    }
                }
                v
            }
        }
    }
}

impl fmt::Display for ImageIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageIdentity::Docker(r) => write!(f, "docker://{r}"),
            ImageIdentity::Oci { dir, tag } => write!(f, "oci:{}:{tag}", dir.display()),
        }
    }
}

/// A policy file, parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file it was read from (for messages).
    pub path: String,
    default: Vec<Requirement>,
    transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// Why an image was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{image}: refused by policy {policy} ({scope}: {rule}): {why}")]
pub struct Denied {
    /// The image.
    pub image: String,
    /// The policy file.
    pub policy: String,
    /// The scope whose requirements applied (`default`,
    /// `transports.docker["…"]`).
    pub scope: String,
    /// The requirement that refused.
    pub rule: String,
    /// Why.
    pub why: String,
}

impl Denied {
    /// What kind of failure this is.
    pub fn kind(&self) -> rumoci_core::ErrorKind {
        rumoci_core::ErrorKind::Integrity
    }
}

/// An accepted image: the scope whose requirements applied and what each
/// said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The scope.
    pub scope: String,
    /// One line per requirement.
    pub rules: Vec<String>,
}

const KNOWN_TRANSPORTS: &[&str] = &[
    "atomic",
    "containers-storage",
    "dir",
    "docker",
    "docker-archive",
    "docker-daemon",
    "oci",
    "oci-archive",
    "ostree",
    "sif",
    "tarball",
];

impl Policy {
    /// The file skopeo reads without `--policy`:
    /// `$HOME/.config/containers/policy.json`, else
    /// `/etc/containers/policy.json`, if either exists.
    pub fn default_path() -> Option<PathBuf> {
        let home = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".config/containers/policy.json"))
            .filter(|p| p.exists());
        home.or_else(|| Some(PathBuf::from("/etc/containers/policy.json")).filter(|p| p.exists()))
    }

    /// Read and parse a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let shown = rumoci_core::show::name(&path);
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: shown.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Policy::parse(&bytes, &shown, base)
    }

    /// Parse a policy document; `path` names it in messages, `base` is
    /// where relative `keyPath`s are resolved from (containers/image
    /// takes them relative to the policy file).
    pub fn parse(bytes: &[u8], path: &str, base: &Path) -> Result<Policy, PolicyError> {
        let bad = |why: String| PolicyError::Invalid {
            path: path.to_string(),
            why,
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let top = v
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let mut default = None;
        let mut transports = BTreeMap::new();
        for (k, v) in top {
            match k.as_str() {
                "default" => default = Some(requirements(v, "default", base).map_err(bad)?),
                "transports" => {
                    let t = v
                        .as_object()
                        .ok_or_else(|| bad("transports: not an object".into()))?;
                    for (name, scopes) in t {
                        if !KNOWN_TRANSPORTS.contains(&name.as_str()) {
                            return Err(bad(format!("unknown transport {name:?}")));
                        }
                        let scopes = scopes
                            .as_object()
                            .ok_or_else(|| bad(format!("transports.{name}: not an object")))?;
                        let mut map = BTreeMap::new();
                        for (scope, reqs) in scopes {
                            check_scope(name, scope).map_err(|why| {
                                bad(format!("transports.{name}[{scope:?}]: {why}"))
                            })?;
                            let what = format!("transports.{name}[{scope:?}]");
                            map.insert(
                                scope.clone(),
                                requirements(reqs, &what, base).map_err(bad)?,
                            );
                        }
                        transports.insert(name.clone(), map);
                    }
                }
                other => return Err(bad(format!("unknown field {other:?}"))),
            }
        }
        Ok(Policy {
            path: path.to_string(),
            default: default.ok_or_else(|| bad("default policy is missing".into()))?,
            transports,
        })
    }

    /// The requirements for `image` and the scope they come from: the
    /// image's own scope, else its namespaces most specific first, else
    /// the transport's `""`, else `default`.
    pub fn requirements_for(&self, image: &ImageIdentity) -> (String, &[Requirement]) {
        let t = image.transport();
        if let Some(scopes) = self.transports.get(t) {
            for s in image.scopes() {
                if let Some(r) = scopes.get(&s) {
                    return (format!("transports.{t}[{s:?}]"), r);
                }
            }
            if let Some(r) = scopes.get("") {
                return (format!("transports.{t}[\"\"]"), r);
            }
        }
        ("default".to_string(), &self.default)
    }

    /// Whether `image`, whose manifest (what its tag names) is `digest`,
    /// with the signatures `signatures` found beside it, is accepted:
    /// every requirement of its scope must accept it.
    pub fn evaluate(
        &self,
        image: &ImageIdentity,
        digest: &Digest,
        signatures: &[Attached],
    ) -> Result<Accepted, Denied> {
        let (scope, reqs) = self.requirements_for(image);
        self.evaluate_in(image, scope, reqs, digest, signatures)
    }

    /// [`Policy::evaluate`] with `image`'s scope and requirements
    /// ([`Policy::requirements_for`]) already looked up.
    pub(crate) fn evaluate_in(
        &self,
        image: &ImageIdentity,
        scope: String,
        reqs: &[Requirement],
        digest: &Digest,
        signatures: &[Attached],
    ) -> Result<Accepted, Denied> {
        let deny = |rule: String, why: String| Denied {
            image: image.to_string(),
            policy: self.path.clone(),
            scope: scope.clone(),
            rule,
            why,
        };
        if reqs.is_empty() {
            return Err(deny(
                "[]".into(),
                "no requirements (an empty list accepts nothing)".into(),
            ));
        }
        let mut rules = Vec::new();
        for req in reqs {
            match req {
                Requirement::InsecureAcceptAnything => rules.push(req.to_string()),
                Requirement::Reject => {
                    return Err(deny(req.to_string(), "images here are rejected".into()));
                }
                Requirement::Unsupported { why, .. } => {
                    return Err(deny(req.to_string(), why.clone()));
                }
                Requirement::SigstoreSigned { key, identity } => {
                    let key = load_key(key).map_err(|why| deny(req.to_string(), why))?;
                    let n = check_sigstore(&key, identity, image, digest, signatures)
                        .map_err(|why| deny(req.to_string(), why))?;
                    rules.push(format!("{req}: signature {n} verified"));
                }
            }
        }
        Ok(Accepted { scope, rules })
    }
}

fn load_key(key: &KeySource) -> Result<PublicKey, String> {
    match key {
        KeySource::Path(p) => {
            let shown = rumoci_core::show::name(&p);
            let pem = std::fs::read(p).map_err(|e| format!("keyPath {shown}: {e}"))?;
            PublicKey::from_pem(&pem, &format!("keyPath {shown}")).map_err(|e| e.to_string())
        }
        KeySource::Data(pem) => PublicKey::from_pem(pem, "keyData").map_err(|e| e.to_string()),
    }
}

/// The first of `signatures` (numbered from 1) that verifies with `key`,
/// is for `digest` and whose identity `rule` accepts for `image`; else
/// why none did.
fn check_sigstore(
    key: &PublicKey,
    rule: &IdentityRule,
    image: &ImageIdentity,
    digest: &Digest,
    signatures: &[Attached],
) -> Result<usize, String> {
    if signatures.is_empty() {
        return Err(format!(
            "no signature (no {} attachment)",
            crate::attach::attachment_tag(digest)
        ));
    }
    let mut whys = Vec::new();
    for (i, s) in signatures.iter().enumerate() {
        match check_one(key, rule, image, digest, s) {
            Ok(()) => return Ok(i + 1),
            Err(why) => whys.push(if signatures.len() == 1 {
                why
            } else {
                format!("signature {}: {why}", i + 1)
            }),
        }
    }
    Err(whys.join("; "))
}

fn check_one(
    key: &PublicKey,
    rule: &IdentityRule,
    image: &ImageIdentity,
    digest: &Digest,
    s: &Attached,
) -> Result<(), String> {
    let b64 = s.signature.as_deref().ok_or_else(|| {
        format!(
            "payload {} has no {} annotation",
            s.layer.digest,
            crate::attach::SIGNATURE_ANNOTATION
        )
    })?;
    let sig = B64
        .decode(b64)
        .map_err(|e| format!("signature of payload {}: not base64 ({e})", s.layer.digest))?;
    key.verify(&s.payload, &sig).map_err(|_| {
        format!(
            "wrong key: the signature of payload {} does not verify with the policy's key (or the signature or payload was changed)",
            s.layer.digest
        )
    })?;
    let p = Payload::parse(&s.payload).map_err(|e| e.to_string())?;
    if p.manifest_digest != digest.to_string() {
        return Err(format!(
            "digest mismatch: the signature is for manifest {}, the image is {digest}",
            p.manifest_digest
        ));
    }
    identity_matches(rule, image, &p.docker_reference)
}

/// Whether the signed reference `signed` is acceptable for `image` by
/// `rule` (`policy_reference_match.go`).
fn identity_matches(
    rule: &IdentityRule,
    image: &ImageIdentity,
    signed: &str,
) -> Result<(), String> {
    let sig = DockerRef::parse(signed).map_err(|e| format!("signed identity: {e}"))?;
    let mismatch = |wanted: String| {
        Err(format!(
            "identity mismatch: signed for {signed}, {rule} wants {wanted}"
        ))
    };
    let intended = || match image {
        ImageIdentity::Docker(r) => Ok(r.clone()),
        ImageIdentity::Oci { .. } => Err(format!(
            "{rule} needs the image's Docker reference, and an image in an OCI layout has none (use exactReference or exactRepository; signed for {signed})"
        )),
    };
    // the three comparisons of the rules, each given the reference the
    // signature must match
    let exact = |i: DockerRef| {
        if !i.is_name_only() && !sig.is_name_only() && sig.to_string() == i.to_string() {
            Ok(())
        } else {
            mismatch(i.to_string())
        }
    };
    let repository = |i: DockerRef| {
        if sig.name() == i.name() {
            Ok(())
        } else {
            mismatch(format!("repository {}", i.name()))
        }
    };
    let repo_digest_or_exact = |i: DockerRef| {
        let ok = if i.tag.is_some() {
            sig.to_string() == i.to_string()
        } else if i.digest.is_some() {
            sig.name() == i.name()
        } else {
            false
        };
        if ok { Ok(()) } else { mismatch(i.to_string()) }
    };
    let parse = |r: &str| DockerRef::parse(r).map_err(|e| e.to_string());
    match rule {
        IdentityRule::MatchExact => exact(intended()?),
        IdentityRule::MatchRepoDigestOrExact => repo_digest_or_exact(intended()?),
        IdentityRule::MatchRepository => repository(intended()?),
        IdentityRule::ExactReference(r) => exact(parse(r)?),
        IdentityRule::ExactRepository(r) => repository(parse(r)?),
        IdentityRule::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let mut i = intended()?;
            let s = i.to_string();
            if ref_matches_prefix(&s, prefix) {
                let remapped = format!("{signed_prefix}{}", &s[prefix.len()..]);
                i = DockerRef::parse(&remapped).map_err(|e| format!("remapped identity: {e}"))?;
            }
            repo_digest_or_exact(i)
        }
    }
}

fn ref_matches_prefix(r: &str, prefix: &str) -> bool {
    if r.len() < prefix.len() || !r.starts_with(prefix) {
        return false;
    }
    if r.len() == prefix.len() {
        return true;
    }
    matches!(r.as_bytes()[prefix.len()], b':' | b'/' | b'@')
}

/// Whether `scope` may appear under transport `t` (containers/image's
/// `ValidatePolicyConfigurationScope` for `docker` and `oci`).
fn check_scope(t: &str, scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Ok(());
    }
    match t {
        "docker" => {
            if let Some(domain) = scope.strip_prefix("*.") {
                if domain.is_empty() || domain.contains('/') || domain.contains('*') {
                    return Err("invalid wildcard scope".into());
                }
                return Ok(());
            }
            // containers/image checks nothing else: a scope that is no
            // normalised reference, namespace or registry never matches
            Ok(())
        }
        "oci" => {
            let dir = scope.split(':').next().unwrap_or("");
            if !dir.starts_with('/') {
                return Err("must be an absolute path".into());
            }
            if dir == "/" {
                return Err("\"/\" is not allowed (use \"\" for the transport's default)".into());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Parse a list of requirements.
fn requirements(v: &Value, what: &str, base: &Path) -> Result<Vec<Requirement>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("{what}: not a list of requirements"))?;
    list.iter()
        .enumerate()
        .map(|(i, r)| requirement(r, base).map_err(|why| format!("{what}[{i}]: {why}")))
        .collect()
}

/// Refuse a field of `o` not in `allowed`.
fn fields(o: &serde_json::Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown field {k:?}")),
        None => Ok(()),
    }
}

fn string(o: &serde_json::Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match o.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{k}: not a string")),
    }
}

fn requirement(v: &Value, base: &Path) -> Result<Requirement, String> {
    let o = v.as_object().ok_or("not an object")?;
    let t = string(o, "type")?.ok_or("no type")?;
    match t.as_str() {
        "insecureAcceptAnything" => {
            fields(o, &["type"])?;
            Ok(Requirement::InsecureAcceptAnything)
        }
        "reject" => {
            fields(o, &["type"])?;
            Ok(Requirement::Reject)
        }
        "signedBy" => Ok(Requirement::Unsupported {
            kind: "signedBy".into(),
            why: "GPG simple signing (signedBy) is not supported by rumoci; use sigstoreSigned"
                .into(),
        }),
        "sigstoreSigned" => {
            fields(
                o,
                &[
                    "type",
                    "keyPath",
                    "keyData",
                    "fulcio",
                    "rekorPublicKeyPath",
                    "rekorPublicKeyData",
                    "signedIdentity",
                ],
            )?;
            let identity = match o.get("signedIdentity") {
                None => IdentityRule::MatchRepoDigestOrExact,
                Some(i) => identity_rule(i).map_err(|e| format!("signedIdentity: {e}"))?,
            };
            let path = string(o, "keyPath")?;
            let data = string(o, "keyData")?;
            let keyless = o.contains_key("fulcio");
            let rekor =
                o.contains_key("rekorPublicKeyPath") || o.contains_key("rekorPublicKeyData");
            let n =
                usize::from(path.is_some()) + usize::from(data.is_some()) + usize::from(keyless);
            if n != 1 {
                return Err(
                    "sigstoreSigned needs exactly one of keyPath, keyData and fulcio".into(),
                );
            }
            if keyless || rekor {
                return Ok(Requirement::Unsupported {
                    kind: "sigstoreSigned (fulcio/rekor)".into(),
                    why: "keyless sigstoreSigned requirements (fulcio, rekorPublicKeyPath, rekorPublicKeyData) are not supported by rumoci; use keyPath or keyData".into(),
                });
            }
            let key = match (path, data) {
                (Some(p), _) => {
                    let p = PathBuf::from(p);
                    KeySource::Path(if p.is_absolute() { p } else { base.join(p) })
                }
                (None, Some(d)) => KeySource::Data(
                    B64.decode(d.as_bytes())
                        .map_err(|e| format!("keyData: not base64 ({e})"))?,
                ),
                (None, None) => return Err("no key".into()),
            };
            Ok(Requirement::SigstoreSigned { key, identity })
        }
        other => Err(format!("unknown requirement type {other:?}")),
    }
}

fn identity_rule(v: &Value) -> Result<IdentityRule, String> {
    let o = v.as_object().ok_or("not an object")?;
    let t = string(o, "type")?.ok_or("no type")?;
    Ok(match t.as_str() {
        "matchExact" => {
            fields(o, &["type"])?;
            IdentityRule::MatchExact
        }
        "matchRepoDigestOrExact" => {
            fields(o, &["type"])?;
            IdentityRule::MatchRepoDigestOrExact
        }
        "matchRepository" => {
            fields(o, &["type"])?;
            IdentityRule::MatchRepository
        }
        "exactReference" => {
            fields(o, &["type", "dockerReference"])?;
            let r = string(o, "dockerReference")?.ok_or("exactReference: no dockerReference")?;
            let p = DockerRef::parse(&r).map_err(|e| e.to_string())?;
            if p.is_name_only() {
                return Err(format!("dockerReference {r:?} has neither tag nor digest"));
            }
            IdentityRule::ExactReference(r)
        }
        "exactRepository" => {
            fields(o, &["type", "dockerRepository"])?;
            let r = string(o, "dockerRepository")?.ok_or("exactRepository: no dockerRepository")?;
            DockerRef::parse(&r).map_err(|e| e.to_string())?;
            IdentityRule::ExactRepository(r)
        }
        "remapIdentity" => {
            fields(o, &["type", "prefix", "signedPrefix"])?;
            IdentityRule::RemapIdentity {
                prefix: string(o, "prefix")?.ok_or("remapIdentity: no prefix")?,
                signed_prefix: string(o, "signedPrefix")?
                    .ok_or("remapIdentity: no signedPrefix")?,
            }
        }
        other => return Err(format!("unknown type {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(s: &str) -> ImageIdentity {
        ImageIdentity::Docker(DockerRef::parse(s).expect("ref"))
    }

    #[test]
    fn scopes_most_specific_first() {
        let p = Policy::parse(
            br#"{"default":[{"type":"reject"}],
                 "transports":{"docker":{"127.0.0.1:5000/a":[{"type":"insecureAcceptAnything"}],
                                         "*.0.1":[{"type":"reject"}]},
                               "oci":{"/srv/images":[{"type":"insecureAcceptAnything"}]}}}"#,
            "p.json",
            Path::new("/"),
        )
        .expect("parse");
        assert_eq!(
            p.requirements_for(&docker("127.0.0.1:5000/a:t")).0,
            "transports.docker[\"127.0.0.1:5000/a\"]"
        );
        assert_eq!(
            p.requirements_for(&docker("127.0.0.1:5000/b:t")).0,
            "transports.docker[\"*.0.1\"]"
        );
        assert_eq!(p.requirements_for(&docker("quay.io/x:t")).0, "default");
        let oci = ImageIdentity::Oci {
            dir: "/srv/images/app".into(),
            tag: "t".into(),
        };
        assert_eq!(
            p.requirements_for(&oci).0,
            "transports.oci[\"/srv/images\"]"
        );
    }

    #[test]
    fn identity_rules() {
        let img = docker("127.0.0.1:5000/a:t");
        let m = |r: IdentityRule, s: &str| identity_matches(&r, &img, s).is_ok();
        assert!(m(
            IdentityRule::MatchRepoDigestOrExact,
            "127.0.0.1:5000/a:t"
        ));
        assert!(!m(
            IdentityRule::MatchRepoDigestOrExact,
            "127.0.0.1:5000/a:u"
        ));
        assert!(m(IdentityRule::MatchRepository, "127.0.0.1:5000/a:u"));
        assert!(!m(IdentityRule::MatchExact, "127.0.0.1:5000/a"));
        assert!(m(
            IdentityRule::ExactReference("example.com/x:1".into()),
            "example.com/x:1"
        ));
        assert!(m(
            IdentityRule::ExactRepository("example.com/x".into()),
            "example.com/x:2"
        ));
        assert!(m(
            IdentityRule::RemapIdentity {
                prefix: "127.0.0.1:5000".into(),
                signed_prefix: "example.com".into()
            },
            "example.com/a:t"
        ));
        let oci = ImageIdentity::Oci {
            dir: "/l".into(),
            tag: "t".into(),
        };
        assert!(
            identity_matches(
                &IdentityRule::MatchRepoDigestOrExact,
                &oci,
                "example.com/x:1"
            )
            .is_err()
        );
        assert!(
            identity_matches(
                &IdentityRule::ExactReference("example.com/x:1".into()),
                &oci,
                "example.com/x:1"
            )
            .is_ok()
        );
    }

    #[test]
    fn refuses_bad_policies() {
        for (doc, want) in [
            (r#"{"transports":{}}"#, "default policy is missing"),
            (
                r#"{"default":[{"type":"sigstoreSigned"}]}"#,
                "exactly one of keyPath",
            ),
            (
                r#"{"default":[],"transports":{"nope":{}}}"#,
                "unknown transport",
            ),
            (
                r#"{"default":[{"type":"accept"}]}"#,
                "unknown requirement type",
            ),
        ] {
            let e = Policy::parse(doc.as_bytes(), "p", Path::new("/")).expect_err(doc);
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
