//! `rumoci squash --image PATH[:TAG] [--from N | --layers A:B] [--tag NEW]`

use anyhow::Result;
use rumoci::image::{LayerRange, Squash, source_date_epoch};

use super::driver::Session;
use super::util::{CompressArgs, HistoryArgs, ImageArgs, TagArgs};

/// Arguments of `squash`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    tag: TagArgs,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    compress: CompressArgs,
    /// Merge the layers from this one (counted from 0 at the bottom) to
    /// the top.
    #[arg(long, value_name = "N", conflicts_with = "layers")]
    from: Option<usize>,
    /// Merge layers A up to B (from 0, B exclusive; `A:` to the top, `:B`
    /// from the bottom).
    #[arg(long, value_name = "A:B")]
    layers: Option<String>,
}

/// Merge layers into one and retag.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let range = match (&a.layers, a.from) {
        (Some(l), _) => LayerRange::parse(l)?,
        (None, Some(n)) => LayerRange {
            start: n,
            end: None,
        },
        (None, None) => LayerRange::default(),
    };
    let (store, r) = a.image.open(s)?;
    let dest = a.tag.destination(&r.tag)?.to_string();
    let squash = Squash {
        range,
        compression: a.compress.parse()?,
        // an empty created_by: the library names the merged entries
        history: a.history.entry("")?,
        clamp_mtime: source_date_epoch()?,
    };
    let lock = store.lock()?;
    let (path, stats) =
        store.squash(&lock, &r.tag, a.image.platform()?.as_ref(), &dest, &squash)?;
    tracing::info!(
        "squashed into {} ({} entries, {} whiteouts kept, {} dropped); tagged {}:{dest}",
        path.target().digest,
        stats.entries,
        stats.whiteouts,
        stats.dropped_whiteouts,
        rumoci::show::name(&r.layout)
    );
    Ok(())
}
