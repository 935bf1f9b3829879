//! `--policy FILE` (global): the containers-policy.json that `unpack`,
//! `copy` (its source) and `verify --signatures` apply. Without the flag,
//! skopeo's files: `$HOME/.config/containers/policy.json`, else
//! `/etc/containers/policy.json`; with neither, nothing is checked (as
//! umoci, which has no policy).
//!
//! An image is known to the policy by where it is: in a registry (a
//! `url=` content-store plugin, the registry plugin) it is transport
//! `docker`, `HOST:PORT/REPO:TAG`; otherwise transport `oci`, the layout's
//! resolved directory.

use std::path::Path;

use anyhow::Result;
use rumoci::image::Store;
use rumoci::sign::policy::{Accepted, ImageIdentity, Policy};
use rumoci::sign::reference::DockerRef;

use super::driver::Session;

/// The policy to apply, if any.
pub fn load(s: &Session) -> Result<Option<Policy>> {
    let path = match s.policy_flag() {
        Some(p) => p.to_path_buf(),
        None => match Policy::default_path() {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    tracing::debug!("policy: {}", path.display());
    Ok(Some(Policy::load(&path)?))
}

/// How the policy knows `PATH:TAG` opened through the content store
/// `spec` (as `copy`'s `--from-driver`; `None`: the global choice).
pub fn identity(s: &Session, spec: Option<&str>, path: &Path, tag: &str) -> Result<ImageIdentity> {
    let spec = s.content_spec(spec)?;
    if let Some(spec) = &spec
        && let Some(url) = &spec.url
        && spec.store_options.is_empty()
    {
        let authority = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        let repo = spec
            .repo
            .clone()
            .unwrap_or_else(|| path.to_string_lossy().into_owned());
        let text = format!("{authority}/{repo}:{tag}");
        return Ok(ImageIdentity::Docker(DockerRef::parse(&text)?));
    }
    let dir = spec
        .and_then(|s| s.dir)
        .unwrap_or_else(|| path.to_path_buf());
    Ok(ImageIdentity::oci(&dir, tag))
}

/// The refs a command that reads the tag `tag` alone of the layout
/// `path` (opened through `spec`, as `copy`'s `--from-driver`; `None`: the
/// global choice), and writes no index there, needs of its index: `[tag]`
/// (a registry then resolves that tag without listing every tag), or
/// `None` (the whole index) when the policy checks signatures of the
/// image, which are found by tags of their own (`sha256-….sig`). For
/// [`Session::open_layout_reading`] and [`rumoci::image::Store::want_refs`]
/// only: every index write through a store told so fails.
pub fn tag_only(
    s: &Session,
    spec: Option<&str>,
    path: &Path,
    tag: &str,
) -> Result<Option<Vec<String>>> {
    if let Some(policy) = load(s)? {
        let image = identity(s, spec, path, tag)?;
        let (_, reqs) = policy.requirements_for(&image);
        let plain = |r: &rumoci::sign::policy::Requirement| {
            use rumoci::sign::policy::Requirement as R;
            matches!(r, R::InsecureAcceptAnything | R::Reject)
        };
        if !reqs.iter().all(plain) {
            return Ok(None);
        }
    }
    Ok(Some(vec![tag.to_string()]))
}

/// Apply the policy (if any) to `PATH:TAG` in `store`: one error line
/// naming the image, the rule and why when it is refused.
pub fn check(
    s: &Session,
    spec: Option<&str>,
    store: &Store,
    path: &Path,
    tag: &str,
) -> Result<Option<Accepted>> {
    match load(s)? {
        Some(policy) => check_with(&policy, s, spec, store, path, tag).map(Some),
        None => Ok(None),
    }
}

/// [`check`] with the policy already loaded (a command checking many tags
/// reads the file once).
pub fn check_with(
    policy: &Policy,
    s: &Session,
    spec: Option<&str>,
    store: &Store,
    path: &Path,
    tag: &str,
) -> Result<Accepted> {
    let image = identity(s, spec, path, tag)?;
    let ok = match rumoci::sign::check_image(policy, store.cas(), &image, tag) {
        Ok(ok) => ok,
        // a refusal names the image, the rule and why already
        Err(rumoci::sign::SignError::Denied(d)) => return Err(anyhow::Error::new(*d)),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("policy check of {image}"))),
    };
    tracing::info!("{image}: accepted by policy {} ({})", policy.path, ok.scope);
    Ok(ok)
}
