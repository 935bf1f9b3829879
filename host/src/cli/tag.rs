//! `rumoci tag --image PATH[:TAG] NEW-TAG`

use anyhow::Result;
use rumoci::cas::refs;

use super::driver::Session;
use super::util::ImageArgs;

/// Arguments of `tag`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    /// The new tag.
    new_tag: String,
}

/// Point `NEW-TAG` at the manifest the source tag resolves to.
pub fn run(a: Args, s: &Session) -> Result<()> {
    refs::check_tag(&a.new_tag)?;
    let (store, r) = a.image.open(s)?;
    let lock = store.lock()?;
    store.tag(&lock, &r.tag, a.image.platform()?.as_ref(), &a.new_tag)?;
    tracing::info!("created new tag {}", a.new_tag);
    Ok(())
}
