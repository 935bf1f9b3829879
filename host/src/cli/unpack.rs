//! `rumoci unpack --image PATH[:TAG] BUNDLE`

use std::path::PathBuf;

use anyhow::{Context, Result};
use rumoci::bundle::create::unpack_bundle;
use rumoci::cas::refs;

use super::util::{ImageArgs, MapArgs};

/// Arguments of `unpack`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    map: MapArgs,
    /// Keep existing symlinks to directories instead of replacing them.
    #[arg(long = "keep-dirlinks")]
    keep_dirlinks: bool,
    /// The bundle directory to create.
    bundle: PathBuf,
}

/// Unpack an image into a runtime bundle.
pub fn run(a: Args) -> Result<()> {
    let opts = a.map.options(a.keep_dirlinks)?;
    let (cas, r) = a.image.open()?;
    let layers = super::driver::open_layer_store()?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", rumoci::show::name(&r.layout), r.tag))?;
    unpack_bundle(cas.as_ref(), &path, &a.bundle, opts, layers.as_deref()).with_context(|| {
        format!(
            "unpack {}:{} into {}",
            rumoci::show::name(&r.layout),
            r.tag,
            rumoci::show::name(&a.bundle)
        )
    })?;
    tracing::info!(
        "unpacked {}:{} into {}",
        rumoci::show::name(&r.layout),
        r.tag,
        rumoci::show::name(&a.bundle)
    );
    Ok(())
}
