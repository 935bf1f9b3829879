//! `rumoci raw …`: advanced tooling.

use anyhow::{Context, Result};
use rumoci::cas::refs;
use rumoci::mutate::Mutator;

use super::util::{CompressArgs, HistoryArgs, ImageArgs, MapArgs, TagArgs};

/// The `raw` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Add an uncompressed tar archive as a new layer.
    AddLayer(AddLayerArgs),
    /// Unpack an image's layers into a root filesystem (no bundle).
    Unpack(UnpackArgs),
    /// Generate only the runtime config.json of an image.
    #[command(visible_alias = "config")]
    RuntimeConfig(RuntimeConfigArgs),
}

/// Arguments of `raw runtime-config`.
#[derive(clap::Args, Debug)]
pub struct RuntimeConfigArgs {
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    map: MapArgs,
    /// A root filesystem to resolve user and group names in.
    #[arg(long)]
    rootfs: Option<std::path::PathBuf>,
    /// Where to write config.json.
    config: std::path::PathBuf,
}

/// Arguments of `raw unpack`.
#[derive(clap::Args, Debug)]
pub struct UnpackArgs {
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    map: MapArgs,
    /// Keep existing symlinks to directories instead of replacing them.
    #[arg(long = "keep-dirlinks")]
    keep_dirlinks: bool,
    /// The root filesystem directory (created if missing; an existing one is
    /// extracted over).
    rootfs: std::path::PathBuf,
}

/// Arguments of `raw add-layer`.
#[derive(clap::Args, Debug)]
pub struct AddLayerArgs {
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    tag: TagArgs,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    compress: CompressArgs,
    /// The layer: an uncompressed tar archive.
    layer: std::path::PathBuf,
}

/// Dispatch.
pub fn run(c: Command) -> Result<()> {
    match c {
        Command::AddLayer(a) => add_layer(a),
        Command::Unpack(a) => raw_unpack(a),
        Command::RuntimeConfig(a) => runtime_config(a),
    }
}

fn add_layer(a: AddLayerArgs) -> Result<()> {
    if a.layer.is_dir() {
        anyhow::bail!(
            "layer {}: is a directory, expected a tar archive",
            a.layer.display()
        );
    }
    let mut file = std::fs::File::open(&a.layer)
        .with_context(|| format!("open layer {}", a.layer.display()))?;
    let (cas, r) = a.image.open()?;
    let dest = a.tag.destination(&r.tag)?.to_string();
    let _guard = cas.writer_guard()?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", r.layout.display(), r.tag))?;
    let mut m = Mutator::new(cas.as_ref(), path)?;
    let compression = a.compress.pick(&m.manifest().layers)?;
    let author = m.config().author.clone();
    let history = a.history.entry("umoci raw add-layer", &author, false)?;
    m.add_layer(&mut file, compression, history)
        .with_context(|| format!("add layer {}", a.layer.display()))?;
    let new_path = m.commit()?;
    refs::set_tag(cas.as_ref(), &dest, new_path.root())?;
    Ok(())
}

fn raw_unpack(a: UnpackArgs) -> Result<()> {
    let opts = a.map.options(a.keep_dirlinks)?;
    let (cas, r) = a.image.open()?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", r.layout.display(), r.tag))?;
    let manifest = rumoci::cas::ext::fetch_manifest(cas.as_ref(), path.target())?;
    let config = rumoci::cas::ext::fetch_config(cas.as_ref(), &manifest.config)?;
    match std::fs::create_dir_all(&a.rootfs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("create {}", a.rootfs.display())),
    }
    rumoci::unpack::unpack_rootfs(cas.as_ref(), &manifest, &config, &a.rootfs, opts)
        .with_context(|| format!("unpack {}:{}", r.layout.display(), r.tag))?;
    Ok(())
}

fn runtime_config(a: RuntimeConfigArgs) -> Result<()> {
    use rumoci::bundle::runtime::{RuntimeMapping, runtime_config, to_json};
    let opts = a.map.options(false)?;
    let (cas, r) = a.image.open()?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", r.layout.display(), r.tag))?;
    let manifest = rumoci::cas::ext::fetch_manifest(cas.as_ref(), path.target())?;
    let config = rumoci::cas::ext::fetch_config(cas.as_ref(), &manifest.config)?;
    let root = a
        .rootfs
        .as_ref()
        .map(|p| {
            rumoci::layer::root::Root::open(p)
                .with_context(|| format!("open rootfs {}", p.display()))
        })
        .transpose()?;
    let name = a
        .rootfs
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs".into());
    let spec = runtime_config(
        &config,
        root.as_ref(),
        &name,
        &RuntimeMapping {
            uid_map: opts.uid_map,
            gid_map: opts.gid_map,
            rootless: opts.rootless,
        },
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("runtime config of {}:{}", r.layout.display(), r.tag))?;
    let data = to_json(&spec).map_err(anyhow::Error::msg)?;
    rumoci::bundle::write_atomic(&a.config, &data).map_err(anyhow::Error::msg)?;
    Ok(())
}
