//! `rumoci config --image PATH[:TAG] [--config.* …]`

use anyhow::Result;
use rumoci::mutate::Mutator;
use serde_json::Value;

use super::util::{HistoryArgs, ImageArgs, TagArgs, parse_kv, parse_time};

/// Arguments of `config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    tag: TagArgs,
    #[command(flatten)]
    history: HistoryArgs,
    /// Set the user (`user`, `uid`, `user:group`, `uid:gid`).
    #[arg(long = "config.user", allow_hyphen_values = true)]
    user: Option<String>,
    /// Add an exposed port (`80/tcp`).
    #[arg(long = "config.exposedports")]
    exposed_ports: Vec<String>,
    /// Add or replace an environment variable (`KEY=VALUE`).
    #[arg(long = "config.env", allow_hyphen_values = true)]
    env: Vec<String>,
    /// Set the entrypoint (repeat for each argument).
    #[arg(long = "config.entrypoint", allow_hyphen_values = true)]
    entrypoint: Vec<String>,
    /// Set the default command (repeat for each argument).
    #[arg(long = "config.cmd", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// Add a volume.
    #[arg(long = "config.volume")]
    volume: Vec<String>,
    /// Add or replace a label (`KEY=VALUE`).
    #[arg(long = "config.label", allow_hyphen_values = true)]
    label: Vec<String>,
    /// Set the working directory.
    #[arg(long = "config.workingdir", allow_hyphen_values = true)]
    workingdir: Option<String>,
    /// Set the stop signal.
    #[arg(long = "config.stopsignal", allow_hyphen_values = true)]
    stopsignal: Option<String>,
    /// Set the creation time (RFC 3339).
    #[arg(long)]
    created: Option<String>,
    /// Set the author.
    #[arg(long)]
    author: Option<String>,
    /// Set the operating system.
    #[arg(long = "platform.os", visible_alias = "os")]
    os: Option<String>,
    /// Set the architecture.
    #[arg(long = "platform.arch", visible_alias = "architecture")]
    arch: Option<String>,
    /// Set the CPU variant (kept unless given).
    #[arg(long = "platform.variant")]
    variant: Option<String>,
    /// Add or replace a manifest annotation (`KEY=VALUE`).
    #[arg(long = "manifest.annotation", allow_hyphen_values = true)]
    annotation: Vec<String>,
    /// Clear a field first: config.labels, manifest.annotations,
    /// config.exposedports, config.env, config.volume, config.cmd,
    /// config.entrypoint.
    #[arg(long)]
    clear: Vec<String>,
}

fn apply(a: &Args, m: &mut Mutator<'_>) -> Result<()> {
    // validate every K=V first, so a bad value changes nothing
    let envs = a
        .env
        .iter()
        .map(|e| parse_kv("--config.env", e))
        .collect::<Result<Vec<_>>>()?;
    let labels = a
        .label
        .iter()
        .map(|l| parse_kv("--config.label", l))
        .collect::<Result<Vec<_>>>()?;
    let annotations = a
        .annotation
        .iter()
        .map(|l| parse_kv("--manifest.annotation", l))
        .collect::<Result<Vec<_>>>()?;
    let created = a
        .created
        .as_deref()
        .map(|c| parse_time("--created", c))
        .transpose()?;

    for field in &a.clear {
        let cfg = &mut m.config_mut().config;
        match field.as_str() {
            "config.labels" => cfg.labels.clear(),
            "config.exposedports" => cfg.exposed_ports.clear(),
            "config.env" => cfg.env.clear(),
            "config.volume" => cfg.volumes.clear(),
            "config.cmd" => cfg.cmd.clear(),
            "config.entrypoint" => cfg.entrypoint.clear(),
            "manifest.annotations" => m.manifest_mut().annotations.clear(),
            "rootfs.diffids" => anyhow::bail!("--clear rootfs.diffids: not safe to clear"),
            other => anyhow::bail!("--clear {other:?}: unknown field"),
        }
    }
    let img = m.config_mut();
    if let Some(u) = &a.user {
        img.config.user = u.clone();
    }
    for p in &a.exposed_ports {
        img.config
            .exposed_ports
            .insert(p.clone(), Value::Object(Default::default()));
    }
    for (k, v) in envs {
        let entry = format!("{k}={v}");
        let prefix = format!("{k}=");
        match img.config.env.iter_mut().find(|e| e.starts_with(&prefix)) {
            Some(e) => *e = entry,
            None => img.config.env.push(entry),
        }
    }
    if !a.entrypoint.is_empty() {
        img.config.entrypoint = a.entrypoint.clone();
    }
    if !a.cmd.is_empty() {
        img.config.cmd = a.cmd.clone();
    }
    for v in &a.volume {
        img.config
            .volumes
            .insert(v.clone(), Value::Object(Default::default()));
    }
    for (k, v) in labels {
        img.config.labels.insert(k.to_string(), v.to_string());
    }
    if let Some(w) = &a.workingdir {
        img.config.working_dir = w.clone();
    }
    if let Some(s) = &a.stopsignal {
        img.config.stop_signal = s.clone();
    }
    if let Some(c) = created {
        img.created = Some(c);
    }
    if let Some(au) = &a.author {
        img.author = au.clone();
    }
    if let Some(os) = &a.os {
        img.os = os.clone();
    }
    if let Some(arch) = &a.arch {
        img.architecture = arch.clone();
    }
    if let Some(v) = &a.variant {
        img.variant = v.clone();
    }
    let author = img.author.clone();
    for (k, v) in annotations {
        m.manifest_mut()
            .annotations
            .insert(k.to_string(), v.to_string());
    }
    if let Some(h) = a.history.entry("umoci config", &author, true)? {
        m.add_history(h);
    }
    Ok(())
}

/// Change the image configuration, write new config and manifest blobs, and
/// retag.
pub fn run(a: Args) -> Result<()> {
    let (cas, r) = a.image.open()?;
    let dest = a.tag.destination(&r.tag)?.to_string();
    let lock = rumoci::cas::WriteLock::new(cas.as_ref())?;
    super::util::mutate_tag(&lock, &a.image, &dest, &mut |m| apply(&a, m))?;
    tracing::info!("updated {}:{dest}", rumoci::show::name(&r.layout));
    Ok(())
}
