//! `rumoci gc --layout PATH`

use anyhow::{Context, Result};

use super::util::{LayoutArgs, open_layout};

/// Arguments of `gc`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    layout: LayoutArgs,
}

/// Delete every blob not reachable from `index.json`, and stale temporaries.
pub fn run(a: Args) -> Result<()> {
    let path = a.layout.path()?;
    let cas = open_layout(path)?;
    let stats = rumoci::cas::gc::gc(cas.as_ref())
        .with_context(|| format!("gc {}", rumoci::show::name(&path)))?;
    tracing::info!(
        "gc: kept {} blobs, removed {}",
        stats.kept,
        stats.removed.len()
    );
    Ok(())
}
