//! `rumoci insert --image PATH[:TAG] SOURCE TARGET` and
//! `rumoci insert --whiteout --image PATH[:TAG] TARGET`

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use rumoci::image::{Insert, source_date_epoch};
use rumoci::path;

use super::driver::Session;
use super::util::{CompressArgs, EditArgs, MapArgs};

/// Arguments of `insert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    edit: EditArgs,
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
pub fn run(a: Args, s: &Session) -> Result<()> {
    let (source, target) = match (a.whiteout, a.paths.as_slice()) {
        (true, [t]) => (None, path::bytes(t).to_owned()),
        (false, [s, t]) => (Some(PathBuf::from(s)), path::bytes(t).to_owned()),
        (true, _) => anyhow::bail!("insert --whiteout takes exactly one argument: TARGET"),
        (false, _) => anyhow::bail!("insert takes exactly two arguments: SOURCE TARGET"),
    };
    let mut insert = Insert {
        source,
        target,
        opaque: a.opaque,
        ..Insert::default()
    };
    insert.check()?;
    let (store, r, dest) = a.edit.open(s)?;
    let lock = store.lock()?;
    (insert.uid_map, insert.gid_map) = a.map.maps()?;
    insert.rootless = a.map.rootless;
    // SOURCE_DATE_EPOCH checked before anything is read (the insert clamps to it)
    source_date_epoch()?;
    insert.compression = a.compress.parse()?;
    insert.history = a.edit.history.entry("umoci insert")?;
    let platform = a.edit.image.platform()?;
    store.insert(&lock, &r.tag, platform.as_ref(), &dest, &insert)?;
    Ok(())
}
