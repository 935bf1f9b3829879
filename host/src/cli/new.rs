//! `rumoci new --image PATH[:TAG]`

use anyhow::{Context, Result};
use rumoci::cas::{ext, refs};
use rumoci::oci::{Image, Manifest, media};

use super::util::{ImageArgs, default_created};

/// Arguments of `new`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
}

/// Create a blank image (no layers) for `--platform` (default: the host's,
/// with its ARM variant as umoci records it) and tag it.
pub fn run(a: Args) -> Result<()> {
    let platform = a
        .image
        .platform()?
        .unwrap_or_else(refs::PlatformSpec::host_for_new_image);
    let (cas, r) = a.image.open()?;
    let config = Image {
        created: Some(default_created()?),
        author: String::new(),
        architecture: platform.architecture,
        os: platform.os,
        os_version: String::new(),
        os_features: Vec::new(),
        variant: platform.variant,
        config: Default::default(),
        rootfs: Default::default(),
        history: Vec::new(),
        extra: Default::default(),
    };
    let lock = rumoci::cas::WriteLock::new(cas.as_ref())?;
    let config_desc = ext::put_json(cas.as_ref(), media::CONFIG, &config)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: media::MANIFEST.to_string(),
        artifact_type: String::new(),
        config: config_desc,
        layers: Vec::new(),
        subject: None,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let desc = ext::put_json(cas.as_ref(), media::MANIFEST, &manifest)?;
    refs::set_tag(&lock, &r.tag, &desc).with_context(|| format!("tag {}", r.tag))?;
    tracing::info!(
        "created new image {}:{}",
        rumoci::show::name(&r.layout),
        r.tag
    );
    Ok(())
}
