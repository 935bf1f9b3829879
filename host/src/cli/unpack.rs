//! `rumoci unpack --image PATH[:TAG] BUNDLE`

use std::path::PathBuf;

use anyhow::Result;

use super::driver::Session;
use super::util::ExtractArgs;

/// Arguments of `unpack`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    extract: ExtractArgs,
    /// The bundle directory to create.
    bundle: PathBuf,
}

/// Unpack an image into a runtime bundle.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let (opts, store, r) = a.extract.open(s)?;
    super::policy::check(s, None, &store, &r.layout, &r.tag)?;
    let layers = s.open_layer_store()?;
    let platform = a.extract.image.platform()?;
    let out = store.unpack(
        &r.tag,
        platform.as_ref(),
        &a.bundle,
        opts,
        layers.as_deref(),
    )?;
    tracing::info!(
        "unpacked {}:{} into {} ({} of {} layers from the layer store's cache)",
        rumoci::show::name(&r.layout),
        r.tag,
        rumoci::show::name(&a.bundle),
        out.cached(),
        out.layers.len()
    );
    Ok(())
}
