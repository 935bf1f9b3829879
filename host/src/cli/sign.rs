//! `rumoci sign --image PATH[:TAG] --key K.key [--passphrase-file F]
//! [--identity REF]`: a sigstore signature of what the tag names, kept
//! beside it as skopeo keeps one (`sha256-<hex>.sig`). Signing happens
//! here, in the host: the key and passphrase never reach a plugin.

use std::path::PathBuf;

use anyhow::{Context, Result};
use rumoci::sign::key::PrivateKey;
use rumoci::sign::policy::ImageIdentity;
use rumoci::sign::reference::DockerRef;

use super::driver::Session;

/// Arguments of `sign`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image: a layout path (a repository with a `url=` driver) and a
    /// tag (default "latest").
    #[arg(long, value_name = "PATH[:TAG]")]
    image: String,
    /// The private key (`generate-key`'s PREFIX.key, or cosign's).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Read the key's passphrase from the first line of this file
    /// (default: ask on the terminal).
    #[arg(long = "passphrase-file", value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// The Docker reference the signature is for (`HOST/REPO:TAG`, as
    /// skopeo's --sign-identity). Default: the image's own in a registry
    /// (`HOST:PORT/REPO:TAG`); an image in a layout has none, so it must be
    /// given (skopeo refuses an oci: destination without it too).
    #[arg(long, value_name = "REF")]
    identity: Option<String>,
}

/// Sign the image.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let r = rumoci::cas::refs::ImageRef::parse(&a.image)?;
    let identity = match &a.identity {
        Some(i) => DockerRef::parse(i)?,
        None => match super::policy::identity(s, None, &r.layout, &r.tag)? {
            ImageIdentity::Docker(d) => d,
            ImageIdentity::Oci { .. } => anyhow::bail!(
                "sign {}: an image in a layout has no registry name to sign for: give --identity HOST/REPO:TAG (the reference it will be pulled as)",
                a.image
            ),
        },
    };
    let shown = rumoci::show::name(&a.key);
    let pem = std::fs::read(&a.key).with_context(|| format!("key {shown}"))?;
    let pass = super::secret::get(a.passphrase_file.as_deref(), &shown, false)?;
    let key = PrivateKey::from_encrypted_pem(&pem, &pass, &format!("key {shown}"))?;
    let store = s.open_layout(&r.layout)?;
    let signed = rumoci::sign::sign_image(&store, &r.tag, &identity, &key)?;
    tracing::info!(
        "signed {} for {}: {}",
        signed.manifest,
        signed.identity,
        signed.attachment.digest
    );
    super::output::print_out(&format!("{}\n", signed.attachment.digest))
}
