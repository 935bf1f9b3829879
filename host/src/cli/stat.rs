//! `rumoci stat --image PATH[:TAG] [--json]`

use anyhow::Result;

use super::driver::Session;
use super::output::print_bytes;
use super::util::ImageArgs;

/// Arguments of `stat`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    /// Print the information as JSON (stable; the text form is not).
    #[arg(long)]
    json: bool,
}

/// Show the manifest, config and history of an image.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let (store, r) = a.image.open_reading(s)?;
    let stat = store.stat(&r.tag, a.image.platform()?.as_ref())?;
    let out = if a.json {
        stat.to_json()?
    } else {
        stat.format_text()
    };
    print_bytes(&out)
}
