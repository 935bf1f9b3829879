//! Image signatures that skopeo and cosign read, and the
//! containers-policy.json that says which signatures an image needs.
//!
//! * [`key`]: sigstore key pairs (ECDSA P-256; the private key encrypted
//!   with scrypt and NaCl secretbox, in cosign's PEM form);
//! * [`payload`]: the signed document (containers/image's sigstore
//!   payload: the manifest digest and the Docker reference signed for);
//! * [`attach`]: signatures kept beside an image in any content store
//!   (the cosign convention: a manifest tagged `sha256-<hex>.sig`);
//! * [`reference`](mod@reference): Docker references as containers/image normalises them;
//! * [`policy`]: containers-policy.json, evaluated for an image.
//!
//! Signing happens in the calling process: keys and passphrases never
//! reach a storage plugin, which only stores the signature it is given.
//!
//! ```
//! use rumoci_engine::image::Store;
//! use rumoci_sign::{key::PrivateKey, reference::DockerRef};
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("img"))?;
//! store.new_image(&store.lock()?, "app", None)?;
//! let key = PrivateKey::generate();
//! let identity = DockerRef::parse("registry.example/app:1")?;
//! rumoci_sign::sign_image(&store, "app", &identity, &key)?;
//! let policy = rumoci_sign::policy::Policy::parse(
//!     format!(r#"{{"default":[{{"type":"sigstoreSigned","keyData":"{}",
//!         "signedIdentity":{{"type":"exactReference","dockerReference":"registry.example/app:1"}}}}]}}"#,
//!         base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.public().to_pem()?)).as_bytes(),
//!     "policy.json", dir.path())?;
//! let image = rumoci_sign::policy::ImageIdentity::oci(&dir.path().join("img"), "app");
//! assert!(rumoci_sign::check_image(&policy, store.cas(), &image, "app").is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod attach;
pub mod key;
pub mod payload;
pub mod policy;
pub mod reference;

use rumoci_core::oci::{Descriptor, Digest};
use rumoci_engine::cas::ext::read_bytes;
use rumoci_engine::cas::refs::tag_root;
use rumoci_engine::cas::{Cas, CasError};
use rumoci_engine::image::Store;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Errors of signing and of checking an image against a policy.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The store failed, or the tag is missing.
    #[error("{image}: {source}")]
    Cas {
        /// The image (`STORE:TAG`).
        image: String,
        /// What failed.
        #[source]
        source: Box<CasError>,
    },
    /// Reading or writing the signature attachment failed.
    #[error("{image}: {source}")]
    Attach {
        /// The image.
        image: String,
        /// What failed.
        #[source]
        source: Box<attach::AttachError>,
    },
    /// A key could not be used.
    #[error(transparent)]
    Key(#[from] key::KeyError),
    /// The identity is not a full reference.
    #[error("identity {0}: a signed identity needs a tag or digest (as skopeo's --sign-identity)")]
    NameOnly(String),
    /// The policy refused the image.
    #[error(transparent)]
    Denied(Box<policy::Denied>),
}

impl SignError {
    /// What kind of failure this is.
    pub fn kind(&self) -> rumoci_core::ErrorKind {
        match self {
            SignError::Cas { source, .. } => source.kind(),
            SignError::Attach { source, .. } => source.kind(),
            SignError::Key(e) => e.kind(),
            SignError::NameOnly(_) => rumoci_core::ErrorKind::InvalidInput,
            SignError::Denied(d) => d.kind(),
        }
    }
}

rumoci_core::wraps!(
    SignError,
    policy::PolicyError,
    key::KeyError,
    reference::ReferenceError
);

impl reference::ReferenceError {
    /// What kind of failure this is.
    pub fn kind(&self) -> rumoci_core::ErrorKind {
        rumoci_core::ErrorKind::InvalidInput
    }
}

/// What [`sign_image`] did.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The manifest (or index) signed: what the tag names.
    pub manifest: Digest,
    /// The identity signed for.
    pub identity: String,
    /// The attachment manifest now tagged `sha256-<hex>.sig`.
    pub attachment: Descriptor,
}

/// The descriptor `tag` names, its manifest read and verified (so the
/// digest signed or checked is the content's).
fn tag_target(cas: &dyn Cas, image: &str, tag: &str) -> Result<Descriptor, SignError> {
    let wrap = |source| SignError::Cas {
        image: image.to_string(),
        source: Box::new(source),
    };
    let root = tag_root(cas, tag).map_err(wrap)?;
    read_bytes(cas, &root).map_err(wrap)?;
    Ok(root)
}

/// Sign what `tag` names in `store` (the top-level manifest or index, as
/// skopeo signs) for `identity`, with `key`, and attach the signature as
/// skopeo does (`sha256-<hex>.sig`). Takes the store's write lock.
pub fn sign_image(
    store: &Store,
    tag: &str,
    identity: &reference::DockerRef,
    key: &key::PrivateKey,
) -> Result<Signed, SignError> {
    if identity.is_name_only() {
        return Err(SignError::NameOnly(identity.to_string()));
    }
    let image = format!("{}:{tag}", store.name());
    let lock = store.lock().map_err(|e| SignError::Cas {
        image: image.clone(),
        source: Box::new(CasError::Invalid(e.to_string())),
    })?;
    let root = tag_target(store.cas(), &image, tag)?;
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let payload = payload::Payload {
        manifest_digest: root.digest.to_string(),
        docker_reference: identity.to_string(),
        creator: Some(format!("rumoci {}", env!("CARGO_PKG_VERSION"))),
        timestamp: Some(timestamp),
    }
    .to_bytes();
    let sig = B64.encode(key.sign(&payload));
    let attachment =
        attach::add(&lock, &root.digest, &payload, &sig).map_err(|source| SignError::Attach {
            image: image.clone(),
            source: Box::new(source),
        })?;
    Ok(Signed {
        manifest: root.digest,
        identity: identity.to_string(),
        attachment,
    })
}

/// Check the image `tag` of `cas` (known to the policy as `image`)
/// against `policy`: the signatures beside what the tag names, verified.
pub fn check_image(
    policy: &policy::Policy,
    cas: &dyn Cas,
    image: &policy::ImageIdentity,
    tag: &str,
) -> Result<policy::Accepted, SignError> {
    let shown = image.to_string();
    let (scope, reqs) = policy.requirements_for(image);
    // nothing to read when every requirement accepts anything (the
    // default policy of most machines): the command's own errors stay its
    // own
    if !reqs.is_empty()
        && reqs
            .iter()
            .all(|r| *r == policy::Requirement::InsecureAcceptAnything)
    {
        return Ok(policy::Accepted {
            scope,
            rules: reqs.iter().map(ToString::to_string).collect(),
        });
    }
    let root = tag_target(cas, &shown, tag)?;
    // signatures are read only when a requirement asks for them
    let sigs = if reqs
        .iter()
        .any(|r| matches!(r, policy::Requirement::SigstoreSigned { .. }))
    {
        attach::read(cas, &root.digest).map_err(|source| SignError::Attach {
            image: shown.clone(),
            source: Box::new(source),
        })?
    } else {
        Vec::new()
    };
    policy
        .evaluate_in(image, scope, reqs, &root.digest, &sigs)
        .map_err(|d| SignError::Denied(Box::new(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_signature_is_appended_and_a_repeat_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(dir.path().join("img")).expect("layout");
        store
            .new_image(&store.lock().expect("lock"), "app", None)
            .expect("image");
        let (a, b) = (key::PrivateKey::generate(), key::PrivateKey::generate());
        let id = reference::DockerRef::parse("example.com/app:1").expect("ref");
        let first = sign_image(&store, "app", &id, &a).expect("sign");
        let second = sign_image(&store, "app", &id, &b).expect("sign");
        assert_ne!(first.attachment.digest, second.attachment.digest);
        let sigs = attach::read(store.cas(), &first.manifest).expect("read");
        assert_eq!(sigs.len(), 2);
        // the same layer again (same payload, same signature) is not added
        let lock = store.lock().expect("lock");
        let again = attach::add(
            &lock,
            &first.manifest,
            &sigs[0].payload,
            sigs[0].signature.as_deref().expect("signature"),
        )
        .expect("add");
        drop(lock);
        assert_eq!(again.digest, second.attachment.digest);
        // each key verifies its own signature
        let pubs = [a.public(), b.public()];
        for (s, p) in sigs.iter().zip(pubs.iter()) {
            let sig = B64
                .decode(s.signature.as_deref().expect("sig"))
                .expect("b64");
            p.verify(&s.payload, &sig).expect("verifies");
        }
        let e = sign_image(
            &store,
            "app",
            &reference::DockerRef::parse("example.com/app").expect("ref"),
            &a,
        )
        .expect_err("name only");
        assert!(e.to_string().contains("needs a tag or digest"), "{e}");
    }
}
