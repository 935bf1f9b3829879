//! `rumoci repack --image PATH[:TAG] BUNDLE`

use std::path::PathBuf;

use anyhow::{Context, Result};
use rumoci::cas::refs;
use rumoci::repack::{RepackOptions, refresh_bundle, repack_bundle};

use super::util::{CompressArgs, HistoryArgs, ImageArgs, source_date_epoch};

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
pub fn run(a: Args) -> Result<()> {
    let compression = rumoci::mutate::Compression::parse(&a.compress.compress)?;
    let opts = RepackOptions {
        compression,
        mask_paths: a.mask_path.clone(),
        no_mask_volumes: a.no_mask_volumes,
        clamp_mtime: source_date_epoch()?,
        history: a.history.entry("umoci repack", "", false)?,
    };
    let (cas, r) = a.image.open()?;
    let lock = rumoci::cas::WriteLock::new(cas.as_ref())?;
    let what = || {
        format!(
            "repack {} into {}:{}",
            rumoci::show::name(&a.bundle),
            rumoci::show::name(&r.layout),
            r.tag
        )
    };
    let out = repack_bundle(&lock, &a.bundle, &opts).with_context(what)?;
    refs::set_tag(&lock, &r.tag, out.path.root()).with_context(what)?;
    if a.refresh_bundle {
        refresh_bundle(&a.bundle, &out)
            .with_context(|| format!("refresh {}", rumoci::show::name(&a.bundle)))?;
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
