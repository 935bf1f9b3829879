//! `rumoci unpack --image PATH[:TAG] BUNDLE`

use std::path::PathBuf;

use anyhow::Result;

use super::driver::Session;
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
pub fn run(a: Args, s: &Session) -> Result<()> {
    let opts = a.map.options(a.keep_dirlinks)?;
    let (store, r) = a.image.open(s)?;
    let layers = s.open_layer_store()?;
    let platform = a.image.platform()?;
    store.unpack(
        &r.tag,
        platform.as_ref(),
        &a.bundle,
        opts,
        layers.as_deref(),
    )?;
    tracing::info!(
        "unpacked {}:{} into {}",
        rumoci::show::name(&r.layout),
        r.tag,
        rumoci::show::name(&a.bundle)
    );
    Ok(())
}
