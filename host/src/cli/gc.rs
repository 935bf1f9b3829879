//! `rumoci gc --layout PATH`

use anyhow::Result;

use super::driver::Session;
use super::util::LayoutArgs;

/// Arguments of `gc`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    layout: LayoutArgs,
}

/// Delete every blob not reachable from `index.json`, and stale temporaries.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let stats = s.open_layout(a.layout.path()?)?.gc()?;
    tracing::info!(
        "gc: kept {} blobs, removed {}",
        stats.kept,
        stats.removed.len()
    );
    Ok(())
}
