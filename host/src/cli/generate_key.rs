//! `rumoci generate-key [--passphrase-file F] PREFIX`: a sigstore key
//! pair, `PREFIX.key` (encrypted, as cosign writes it) and `PREFIX.pub`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rumoci::sign::key;

/// Arguments of `generate-key`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read the passphrase from the first line of this file (default: ask
    /// on the terminal, twice). An empty passphrase is allowed, as with
    /// cosign.
    #[arg(long = "passphrase-file", value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Label the private key's PEM block `ENCRYPTED SIGSTORE PRIVATE KEY`,
    /// as cosign 2 does, instead of `ENCRYPTED COSIGN PRIVATE KEY` (the
    /// default: cosign 1 and 2 read it, and it is the only one skopeo 1.9's
    /// containers/image reads).
    #[arg(long = "sigstore-pem")]
    sigstore_pem: bool,
    /// Where to write: PREFIX.key and PREFIX.pub (neither may exist).
    #[arg(value_name = "PREFIX")]
    prefix: PathBuf,
}

/// Create `path` (mode `mode`, which must not exist) holding `text`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    let shown = rumoci::show::name(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("create {shown}"))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {shown}"))
}

/// Generate and write the key pair.
pub fn run(a: Args) -> Result<()> {
    let with_suffix = |suffix: &str| {
        let mut p = a.prefix.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    let (key_path, pub_path) = (with_suffix(".key"), with_suffix(".pub"));
    for p in [&key_path, &pub_path] {
        if std::fs::symlink_metadata(p).is_ok() {
            anyhow::bail!("generate-key: {} already exists", rumoci::show::name(p));
        }
    }
    let pass = super::secret::get(a.passphrase_file.as_deref(), "the new private key", true)?;
    let label = if a.sigstore_pem {
        key::SIGSTORE_PEM_LABEL
    } else {
        key::COSIGN_PEM_LABEL
    };
    let (private, public) = key::generate(&pass, label)?;
    write_new(&key_path, &private, 0o600)?;
    if let Err(e) = write_new(&pub_path, &public, 0o644) {
        let _ = std::fs::remove_file(&key_path);
        return Err(e);
    }
    tracing::info!(
        "private key written to {}, public key to {}",
        rumoci::show::name(&key_path),
        rumoci::show::name(&pub_path)
    );
    Ok(())
}
