//! `rumoci raw …`: advanced tooling.

use anyhow::{Context, Result};
use rumoci::cas::refs;

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
    /// Check a tree against an mtree manifest (like `gomtree validate`).
    #[command(hide = true)]
    MtreeValidate(MtreeValidateArgs),
}

/// Arguments of `raw mtree-validate`.
#[derive(clap::Args, Debug)]
pub struct MtreeValidateArgs {
    /// The mtree manifest.
    #[arg(short = 'f', long = "manifest", visible_alias = "file")]
    manifest: std::path::PathBuf,
    /// The tree to check.
    #[arg(short = 'p', long)]
    path: std::path::PathBuf,
    /// Keywords to add to the set (comma or space separated).
    #[arg(short = 'K', long = "add-keywords")]
    add_keywords: Vec<String>,
    /// Use only these keywords (comma or space separated).
    #[arg(short = 'k', long = "use-keywords")]
    use_keywords: Vec<String>,
    /// Use umoci's keyword set.
    #[arg(long = "umoci-keywords")]
    umoci_keywords: bool,
    /// Accepted for compatibility (ownership is compared as recorded).
    #[arg(long)]
    rootless: bool,
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
        Command::MtreeValidate(a) => mtree_validate(a),
    }
}

fn split_keywords(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|s| s.split([',', ' ']))
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

fn mtree_validate(a: MtreeValidateArgs) -> Result<()> {
    use rumoci::mtree::{UMOCI_KEYWORDS, diff, parse};
    let f = std::fs::File::open(&a.manifest)
        .with_context(|| format!("open {}", rumoci::show::name(&a.manifest)))?;
    let mut spec = parse::parse(std::io::BufReader::new(f))
        .with_context(|| format!("parse {}", rumoci::show::name(&a.manifest)))?;
    let _ = a.rootless;
    // -k, else --umoci-keywords, else what the manifest uses; plus -K; type always
    let mut keys = split_keywords(&a.use_keywords);
    if keys.is_empty() && a.umoci_keywords {
        keys = UMOCI_KEYWORDS.split(',').map(str::to_string).collect();
    }
    if !keys.is_empty() {
        keys.extend(split_keywords(&a.add_keywords));
        keys.push("type".into());
        for kw in spec.entries.values_mut() {
            kw.retain(|k, _| {
                keys.iter()
                    .any(|w| w == k || (w == "xattr" && k.starts_with("xattr.")))
            });
        }
        spec.keywords = Some(keys.clone());
    }
    let (deltas, _) = diff::compare(&a.path, &spec, None)
        .with_context(|| format!("walk {}", rumoci::show::name(&a.path)))?;
    for d in &deltas {
        let kind = match d.kind {
            diff::DeltaKind::Missing => "missing",
            diff::DeltaKind::Extra => "extra",
            diff::DeltaKind::Modified => "modified",
        };
        let p = String::from_utf8_lossy(&d.path);
        let p = if p.is_empty() { ".".into() } else { p };
        super::util::print_out(&format!("{p}: {kind}\n"))?;
    }
    if !deltas.is_empty() {
        anyhow::bail!("validation failed: {} differences found", deltas.len());
    }
    Ok(())
}

fn add_layer(a: AddLayerArgs) -> Result<()> {
    if a.layer.is_dir() {
        anyhow::bail!(
            "layer {}: is a directory, expected a tar archive",
            rumoci::show::name(&a.layer)
        );
    }
    let (cas, r) = a.image.open()?;
    let dest = a.tag.destination(&r.tag)?.to_string();
    let _guard = cas.writer_guard()?;
    super::util::mutate_tag(cas.as_ref(), &a.image, &dest, &mut |m| {
        let mut file = std::fs::File::open(&a.layer)
            .with_context(|| format!("open layer {}", rumoci::show::name(&a.layer)))?;
        let compression = a.compress.pick(&m.manifest().layers)?;
        let author = m.config().author.clone();
        let history = a.history.entry("umoci raw add-layer", &author, false)?;
        m.add_layer(&mut file, compression, history)
            .with_context(|| format!("add layer {}", rumoci::show::name(&a.layer)))?;
        Ok(())
    })?;
    Ok(())
}

fn raw_unpack(a: UnpackArgs) -> Result<()> {
    let opts = a.map.options(a.keep_dirlinks)?;
    let (cas, r) = a.image.open()?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", rumoci::show::name(&r.layout), r.tag))?;
    let manifest = rumoci::cas::ext::fetch_manifest(cas.as_ref(), path.target())?;
    let config = rumoci::cas::ext::fetch_config(cas.as_ref(), &manifest.config)?;
    match std::fs::create_dir_all(&a.rootfs) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| format!("create {}", rumoci::show::name(&a.rootfs)));
        }
    }
    rumoci::unpack::unpack_rootfs(cas.as_ref(), &manifest, &config, &a.rootfs, opts)
        .with_context(|| format!("unpack {}:{}", rumoci::show::name(&r.layout), r.tag))?;
    Ok(())
}

fn runtime_config(a: RuntimeConfigArgs) -> Result<()> {
    use rumoci::bundle::runtime::{RuntimeMapping, runtime_config, to_json};
    let opts = a.map.options(false)?;
    let (cas, r) = a.image.open()?;
    let path = refs::resolve(cas.as_ref(), &r.tag, a.image.platform()?.as_ref())
        .with_context(|| format!("resolve {}:{}", rumoci::show::name(&r.layout), r.tag))?;
    let manifest = rumoci::cas::ext::fetch_manifest(cas.as_ref(), path.target())?;
    let config = rumoci::cas::ext::fetch_config(cas.as_ref(), &manifest.config)?;
    let root = a
        .rootfs
        .as_ref()
        .map(|p| {
            rumoci::layer::root::Root::open(p)
                .with_context(|| format!("open rootfs {}", rumoci::show::name(&p)))
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
    .with_context(|| {
        format!(
            "runtime config of {}:{}",
            rumoci::show::name(&r.layout),
            r.tag
        )
    })?;
    let data = to_json(&spec).map_err(anyhow::Error::msg)?;
    rumoci::bundle::write_atomic(&a.config, &data).map_err(anyhow::Error::msg)?;
    Ok(())
}
