//! `rumoci raw …`: advanced tooling.

use anyhow::{Context, Result};

use super::driver::Session;
use super::util::{CompressArgs, EditArgs, ExtractArgs, ImageArgs, MapArgs};

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
    /// Walk as umoci's rootless mode does: paths the user owns but cannot
    /// read or search are made readable for the check, then restored.
    #[arg(long)]
    rootless: bool,
    #[command(flatten)]
    json: super::output::JsonArgs,
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
    extract: ExtractArgs,
    /// The root filesystem directory (created if missing; an existing one is
    /// extracted over).
    rootfs: std::path::PathBuf,
}

/// Arguments of `raw add-layer`.
#[derive(clap::Args, Debug)]
pub struct AddLayerArgs {
    #[command(flatten)]
    edit: EditArgs,
    #[command(flatten)]
    compress: CompressArgs,
    /// The layer: an uncompressed tar archive.
    layer: std::path::PathBuf,
}

/// Dispatch.
pub fn run(c: Command, s: &Session) -> Result<()> {
    match c {
        Command::AddLayer(a) => add_layer(a, s),
        Command::Unpack(a) => raw_unpack(a, s),
        Command::RuntimeConfig(a) => runtime_config(a, s),
        Command::MtreeValidate(a) => mtree_validate(a),
    }
}

fn split_keywords(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|s| s.split([',', ' ']))
        .filter(|k| !k.is_empty())
        .map(|k| keyword_synonym(k).to_string())
        .collect()
}

/// go-mtree's canonical spelling of a keyword (`KeywordSynonym`).
fn keyword_synonym(k: &str) -> &str {
    match k {
        "md5" => "md5digest",
        "rmd160" | "rmd160digest" => "ripemd160digest",
        "sha1" => "sha1digest",
        "sha256" => "sha256digest",
        "sha384" => "sha384digest",
        "sha512" => "sha512digest",
        "sha512256" => "sha512256digest",
        "xattrs" => "xattr",
        other => other,
    }
}

/// The keywords go-mtree's walk knows, and which entries it gives each a
/// value for on Linux (`flags` never).
fn keyword_applies(kw: &str, md: &std::fs::Metadata, path: &std::path::Path) -> Option<bool> {
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    Some(match kw {
        "size" | "type" | "uid" | "gid" | "uname" | "gname" | "mode" | "nlink" | "time"
        | "tar_time" | "inode" => true,
        "link" => ft.is_symlink(),
        "device" => ft.is_block_device() || ft.is_char_device(),
        "flags" => false,
        "cksum" | "md5digest" | "ripemd160digest" | "sha1digest" | "sha256digest"
        | "sha384digest" | "sha512digest" | "sha512256digest" => ft.is_file(),
        "xattr" => {
            (ft.is_file() || ft.is_dir())
                && rumoci::fs::xattr::list(rumoci::fs::xattr::Node::Path(path))
                    .is_ok_and(|l| !l.is_empty())
        }
        _ => return None,
    })
}

/// Requested keywords the manifest records for no entry still get a value
/// from go-mtree's walk, so every entry they apply to differs (`keyword
/// "NAME"` in the message, as go-mtree reports the key). Returns each such
/// difference: the path and the keyword.
fn unrecorded_keywords(
    root: &std::path::Path,
    keys: &[String],
    used: &std::collections::BTreeSet<String>,
) -> Result<Vec<(String, String)>> {
    let lacking: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| *k != "type" && !used.contains(*k))
        // go-mtree compares time and tar_time with each other
        .filter(|k| !(*k == "time" && used.contains("tar_time")))
        .filter(|k| !(*k == "tar_time" && used.contains("time")))
        .collect();
    let mut out = Vec::new();
    if lacking.is_empty() {
        return Ok(out);
    }
    let mut stack = vec![(root.to_path_buf(), String::from("."))];
    while let Some((host, rel)) = stack.pop() {
        let md = std::fs::symlink_metadata(&host)
            .with_context(|| format!("lstat {}", host.display()))?;
        for k in &lacking {
            if keyword_applies(k, &md, &host) == Some(true) {
                out.push((rel.clone(), k.to_string()));
            }
        }
        if md.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&host)
                .with_context(|| format!("read {}", host.display()))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("read {}", host.display()))?;
            names.sort();
            for n in names.into_iter().rev() {
                let name = n.to_string_lossy();
                let child = if rel == "." {
                    name.into_owned()
                } else {
                    format!("{rel}/{name}")
                };
                stack.push((host.join(&n), child));
            }
        }
    }
    Ok(out)
}

fn mtree_validate(a: MtreeValidateArgs) -> Result<()> {
    use rumoci::mtree::{UMOCI_KEYWORDS, diff, parse};
    use rumoci::stat::gofmt::quote;
    let f = std::fs::File::open(&a.manifest)
        .with_context(|| format!("open {}", rumoci::show::name(&a.manifest)))?;
    let mut spec = parse::parse(std::io::BufReader::new(f))
        .with_context(|| format!("parse {}", rumoci::show::name(&a.manifest)))?;
    // umoci's --rootless walks through fseval.Rootless (what the user owns
    // but cannot read or search is opened up for the walk, then restored):
    // rumoci's comparison does so whenever it runs unprivileged
    // (`fs::unpriv`), reporting the original modes, so the flag changes
    // nothing
    let _ = a.rootless;
    let used: std::collections::BTreeSet<String> = spec
        .entries
        .values()
        .flat_map(|kw| kw.keys())
        .map(|k| {
            if k.starts_with("xattr.") {
                "xattr".to_string()
            } else {
                k.clone()
            }
        })
        .collect();
    // -k, else --umoci-keywords, else what the manifest uses; plus -K;
    // type always
    let mut keys = split_keywords(&a.use_keywords);
    if keys.is_empty() && a.umoci_keywords {
        keys = UMOCI_KEYWORDS.split(',').map(str::to_string).collect();
    }
    let add = split_keywords(&a.add_keywords);
    if keys.is_empty() && !add.is_empty() {
        keys = used.iter().cloned().collect();
    }
    let mut unrecorded = Vec::new();
    if !keys.is_empty() {
        keys.extend(add);
        keys.push("type".into());
        keys.sort();
        keys.dedup();
        if let Some(k) = keys.iter().find(|k| {
            !k.starts_with("xattr.") && !used.contains(*k) && {
                let md = std::fs::symlink_metadata(&a.path);
                md.is_ok_and(|md| keyword_applies(k, &md, &a.path).is_none())
            }
        }) {
            anyhow::bail!("unknown keyword {}", quote(k));
        }
        let want_tar_time = keys.iter().any(|k| k == "tar_time");
        for kw in spec.entries.values_mut() {
            // go-mtree compares time and tar_time with each other (a time
            // truncated to whole seconds) when one side has each
            if want_tar_time
                && !kw.contains_key("tar_time")
                && let Some(t) = kw.remove("time")
            {
                let secs = t.split('.').next().unwrap_or_default();
                kw.insert("tar_time".into(), format!("{secs}.000000000"));
            }
            kw.retain(|k, _| {
                keys.iter().any(|w| {
                    w == k
                        || (w == "xattr" && k.starts_with("xattr."))
                        || (w == "time" && k == "tar_time")
                })
            });
        }
        spec.keywords = Some(keys.clone());
        unrecorded = unrecorded_keywords(&a.path, &keys, &used)?;
    }
    let (deltas, _) = diff::compare(&a.path, &spec, None)
        .with_context(|| format!("walk {}", rumoci::show::name(&a.path)))?;
    let mut lines = Vec::with_capacity(deltas.len() + unrecorded.len());
    let mut json = Vec::with_capacity(lines.capacity());
    for d in &deltas {
        let p = String::from_utf8_lossy(&d.path);
        let p = if p.is_empty() { ".".into() } else { p };
        // go-mtree's wording (it names the first differing key of a
        // modified entry; rumoci's comparison stops at the first one)
        let (what, kind) = match d.kind {
            diff::DeltaKind::Missing => ("missing path", "missing"),
            diff::DeltaKind::Extra => ("unexpected path", "extra"),
            diff::DeltaKind::Modified => ("modified", "modified"),
        };
        lines.push(format!("{}: {what}", quote(&p)));
        json.push(serde_json::json!({
            "path": p,
            "kind": kind,
            "keywords": d.keyword.into_iter().collect::<Vec<_>>(),
        }));
    }
    for (p, k) in &unrecorded {
        lines.push(format!(
            "{}: keyword {}: not recorded in the manifest",
            quote(p),
            quote(k)
        ));
        json.push(serde_json::json!({ "path": p, "kind": "unrecorded", "keywords": [k] }));
    }
    let n = lines.len();
    if a.json.json {
        super::output::print_json(&serde_json::json!({
            "manifest": a.manifest.to_string_lossy(),
            "path": a.path.to_string_lossy(),
            "differences": json,
            "summary": { "ok": n == 0, "differences": n },
        }))?;
    } else if n > 0 {
        lines.push(String::new());
        super::output::print_out(&lines.join("\n"))?;
    }
    if n > 0 {
        return Err(super::output::ProblemsFound(format!(
            "validation failed: {n} differences found"
        ))
        .into());
    }
    Ok(())
}

fn add_layer(a: AddLayerArgs, s: &Session) -> Result<()> {
    if a.layer.is_dir() {
        anyhow::bail!(
            "layer {}: is a directory, expected a tar archive",
            rumoci::show::name(&a.layer)
        );
    }
    let (store, r, dest) = a.edit.open(s)?;
    let lock = store.lock()?;
    store.add_layer(
        &lock,
        &r.tag,
        a.edit.image.platform()?.as_ref(),
        &dest,
        &a.layer,
        a.compress.parse()?,
        a.edit.history.entry("umoci raw add-layer")?.as_ref(),
    )?;
    Ok(())
}

fn raw_unpack(a: UnpackArgs, s: &Session) -> Result<()> {
    let (opts, store, r) = a.extract.open(s)?;
    // the same signature policy as `unpack`: nothing is written if denied
    super::policy::check(s, None, &store, &r.layout, &r.tag)?;
    store.unpack_rootfs(
        &r.tag,
        a.extract.image.platform()?.as_ref(),
        &a.rootfs,
        opts,
    )?;
    Ok(())
}

fn runtime_config(a: RuntimeConfigArgs, s: &Session) -> Result<()> {
    let opts = a.map.options(false)?;
    let (store, r) = a.image.open_reading(s)?;
    let platform = a.image.platform()?;
    let data = store.runtime_config(&r.tag, platform.as_ref(), a.rootfs.as_deref(), &opts)?;
    rumoci::bundle::write_atomic(&a.config, &data)?;
    Ok(())
}
