//! `rumoci new --image PATH[:TAG]`

use anyhow::Result;

use super::driver::Session;
use super::util::ImageArgs;

/// Arguments of `new`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
}

/// Create a blank image (no layers) for `--platform` (default: the host's,
/// with its ARM variant as umoci records it) and tag it.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let platform = a.image.platform()?;
    let (store, r) = a.image.open(s)?;
    let lock = store.lock()?;
    store.new_image(&lock, &r.tag, platform)?;
    tracing::info!(
        "created new image {}:{}",
        rumoci::show::name(&r.layout),
        r.tag
    );
    Ok(())
}
