//! `rumoci init --layout PATH`

use anyhow::Result;

use super::driver::Session;
use super::util::LayoutArgs;

/// Arguments of `init`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    layout: LayoutArgs,
}

/// Create a new, empty OCI layout (the path must not exist).
pub fn run(a: Args, s: &Session) -> Result<()> {
    let path = a.layout.path()?;
    s.create_layout(path)?;
    tracing::info!("created new OCI image layout {}", rumoci::show::name(&path));
    Ok(())
}
