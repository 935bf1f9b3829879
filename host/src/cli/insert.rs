//! `rumoci insert --image PATH[:TAG] SOURCE TARGET` and
//! `rumoci insert --whiteout --image PATH[:TAG] TARGET`

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rumoci::layer::generate::{GenerateOptions, TarGenerator, add_tree};
use rumoci::path::{self, ByteSlice};

use super::util::{CompressArgs, HistoryArgs, ImageArgs, MapArgs, TagArgs, source_date_epoch};

/// Arguments of `insert`.
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
    /// Owners in the layer: host ids mapped back through these maps, or
    /// (--rootless) taken from the user.rootlesscontainers xattr.
    #[command(flatten)]
    map: MapArgs,
    /// Make TARGET opaque first, so the inserted tree replaces it.
    #[arg(long)]
    opaque: bool,
    /// Only delete TARGET (add a whiteout for it).
    #[arg(long, conflicts_with = "opaque")]
    whiteout: bool,
    /// SOURCE TARGET, or just TARGET with --whiteout (any bytes: file
    /// names need not be UTF-8).
    #[arg(required = true, num_args = 1..=2, value_name = "SOURCE TARGET")]
    paths: Vec<OsString>,
}

/// Add one layer built from a host path (or a whiteout).
pub fn run(a: Args) -> Result<()> {
    let (source, target) = match (a.whiteout, a.paths.as_slice()) {
        (true, [t]) => (None, path::bytes(t).to_owned()),
        (false, [s, t]) => (Some(PathBuf::from(s)), path::bytes(t).to_owned()),
        (true, _) => anyhow::bail!("insert --whiteout takes exactly one argument: TARGET"),
        (false, _) => anyhow::bail!("insert takes exactly two arguments: SOURCE TARGET"),
    };
    if target.is_empty() || source.as_ref().is_some_and(|s| s.as_os_str().is_empty()) {
        anyhow::bail!("insert: arguments must not be empty");
    }
    if let Some(s) = &source {
        std::fs::symlink_metadata(s)
            .with_context(|| format!("insert source {}", rumoci::show::name(&s)))?;
    }
    let (cas, r) = a.image.open()?;
    let dest = a.tag.destination(&r.tag)?.to_string();
    let lock = rumoci::cas::WriteLock::new(cas.as_ref())?;
    let map = a.map.options(false)?;
    let clamp = source_date_epoch()?;
    super::util::mutate_tag(&lock, &a.image, &dest, &mut |m| {
        let compression = a.compress.pick(&m.manifest().layers)?;
        let history = a.history.entry("umoci insert", "", false)?;
        let layer = m.begin_layer(compression)?;
        let opts = GenerateOptions {
            owner: rumoci::layer::idmap::owner_mapper(
                map.uid_map.clone(),
                map.gid_map.clone(),
                map.rootless,
            ),
            clamp_mtime: clamp,
            // a source tree with directories its owner cannot read
            grant: match &source {
                Some(src) => Some(
                    rumoci::layer::unpriv::TreeGrant::new(src)
                        .with_context(|| format!("insert source {}", src.display()))?,
                ),
                None => None,
            },
        };
        let mut tar = TarGenerator::new(layer, opts);
        match &source {
            Some(src) => add_tree(&mut tar, src, target.as_ref(), a.opaque),
            None => tar.add_whiteout(target.trim_with(|c| c == '/').as_bstr()),
        }
        .with_context(|| format!("insert {target:?}"))?;
        let layer = tar.finish()?;
        m.finish_layer(layer, history)?;
        Ok(())
    })?;
    Ok(())
}
