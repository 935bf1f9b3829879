//! `rumoci tag --image PATH[:TAG] NEW-TAG`

use anyhow::{Context, Result};
use rumoci::cas::refs;

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
pub fn run(a: Args) -> Result<()> {
    refs::check_tag(&a.new_tag)?;
    let (cas, r) = a.image.open()?;
    // From reading the source tag until the new tag is written, gc must not
    // run: the source tag may move meanwhile and its old manifest would be
    // swept, leaving the new tag dangling.
    let lock = rumoci::cas::WriteLock::new(cas.as_ref())?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", rumoci::show::name(&r.layout), r.tag))?;
    refs::set_tag(&lock, &a.new_tag, path.target())
        .with_context(|| format!("tag {}", a.new_tag))?;
    tracing::info!("created new tag {}", a.new_tag);
    Ok(())
}
