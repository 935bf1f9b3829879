//! `rumoci rm --image PATH[:TAG]`

use anyhow::Result;

use super::driver::Session;
use super::util::ImageArgs;

/// Arguments of `remove`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
}

/// Remove every `index.json` entry with the tag (a missing tag is not an
/// error, as in umoci).
pub fn run(a: Args, s: &Session) -> Result<()> {
    let (store, r) = a.image.open(s)?;
    // an index update is a write: gc (and its clean-up of temporaries)
    // waits for it
    let lock = store.lock()?;
    let n = store.remove_tag(&lock, &r.tag)?;
    tracing::info!("removed {n} entries for tag {}", r.tag);
    Ok(())
}
