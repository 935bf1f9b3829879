//! `rumoci config --image PATH[:TAG] [--config.* …]`

use anyhow::Result;
use rumoci::image::{ConfigChange, parse_time};

use super::driver::Session;
use super::util::{EditArgs, parse_kv};

/// Arguments of `config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    edit: EditArgs,
    #[command(flatten)]
    flags: ConfigFlags,
}

/// The `--config.*`, `--created`, `--author`, `--platform.*`,
/// `--manifest.annotation` and `--clear` flags (`config`, `import`).
#[derive(clap::Args, Debug, Default)]
pub struct ConfigFlags {
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

impl ConfigFlags {
    /// The change the flags ask for (every `KEY=VALUE` and time
    /// validated), with `history` as its history entry.
    pub fn change(&self, history: Option<rumoci::image::HistoryEntry>) -> Result<ConfigChange> {
        change(self, history)
    }
}

/// The change the flags ask for (every `KEY=VALUE` and time validated).
fn change(a: &ConfigFlags, history: Option<rumoci::image::HistoryEntry>) -> Result<ConfigChange> {
    let pairs = |flag: &str, v: &[String]| -> Result<Vec<(String, String)>> {
        v.iter()
            .map(|e| parse_kv(flag, e).map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    };
    let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    Ok(ConfigChange {
        env: pairs("--config.env", &a.env)?,
        labels: pairs("--config.label", &a.label)?,
        annotations: pairs("--manifest.annotation", &a.annotation)?,
        created: a
            .created
            .as_deref()
            .map(|c| parse_time("--created", c))
            .transpose()?,
        clear: a
            .clear
            .iter()
            .map(|f| f.parse())
            .collect::<rumoci::Result<_>>()?,
        user: a.user.clone(),
        exposed_ports: a.exposed_ports.clone(),
        entrypoint: nonempty(&a.entrypoint),
        cmd: nonempty(&a.cmd),
        volumes: a.volume.clone(),
        working_dir: a.workingdir.clone(),
        stop_signal: a.stopsignal.clone(),
        author: a.author.clone(),
        os: a.os.clone(),
        architecture: a.arch.clone(),
        variant: a.variant.clone(),
        history,
    })
}

/// Change the image configuration, write new config and manifest blobs, and
/// retag.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let (store, r, dest) = a.edit.open(s)?;
    let change = a.flags.change(a.edit.history.entry("umoci config")?)?;
    let lock = store.lock()?;
    let platform = a.edit.image.platform()?;
    store.configure(&lock, &r.tag, platform.as_ref(), &dest, &change)?;
    tracing::info!("updated {}:{dest}", rumoci::show::name(&r.layout));
    Ok(())
}
