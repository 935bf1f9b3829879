//! `rumoci repack --image PATH[:TAG] BUNDLE`

use std::path::PathBuf;

use anyhow::Result;
use rumoci::bundle::repack::{REPACK_CREATED_BY, RepackOptions};
use rumoci::image::{refresh_bundle, source_date_epoch};

use super::driver::Session;
use super::util::{CompressArgs, HistoryArgs, ImageArgs};

/// Arguments of `repack`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    compress: CompressArgs,
    /// Leave changes at or beneath this path out of the layer (repeatable).
    #[arg(long = "mask-path", value_name = "PATH")]
    mask_path: Vec<String>,
    /// Include changes beneath the image's volumes (masked by default).
    #[arg(long = "no-mask-volumes")]
    no_mask_volumes: bool,
    /// Point the bundle at the new image afterwards (new mtree, stat cache
    /// and umoci.json), so a later repack diffs against it.
    #[arg(long = "refresh-bundle")]
    refresh_bundle: bool,
    /// The bundle made by `unpack`.
    bundle: PathBuf,
}

/// Add the changes made in a bundle's rootfs as a new layer, and tag it.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let compression = a.compress.parse()?;
    // SOURCE_DATE_EPOCH checked before anything is read
    source_date_epoch()?;
    let opts = RepackOptions {
        compression,
        mask_paths: a.mask_path.clone(),
        no_mask_volumes: a.no_mask_volumes,
        history: a.history.entry(REPACK_CREATED_BY)?,
        ..RepackOptions::default()
    };
    let (store, r) = a.image.open(s)?;
    let lock = store.lock()?;
    let out = store.repack(&lock, &a.bundle, &r.tag, &opts)?;
    if a.refresh_bundle {
        refresh_bundle(&a.bundle, &out)?;
    }
    tracing::info!(
        "repacked {} into {}:{} ({} entries; {} walked, {} unchanged by the stat cache, {} hashed)",
        rumoci::show::name(&a.bundle),
        rumoci::show::name(&r.layout),
        r.tag,
        out.entries,
        out.stats.walked,
        out.stats.cache_hits,
        out.stats.hashed
    );
    Ok(())
}
