//! `rumoci stat --image PATH[:TAG] [--json]`

use anyhow::{Context, Result};
use rumoci::cas::refs;

use super::util::{ImageArgs, print_bytes};

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
pub fn run(a: Args) -> Result<()> {
    let (cas, r) = a.image.open()?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", rumoci::show::name(&r.layout), r.tag))?;
    let stat = rumoci::stat::stat(cas.as_ref(), path.target())
        .with_context(|| format!("stat {}:{}", rumoci::show::name(&r.layout), r.tag))?;
    let out = if a.json {
        stat.to_json()?
    } else {
        stat.format_text()
    };
    print_bytes(&out)
}
