//! `rumoci import --image PATH[:TAG] [--platform P] [--config.* …] FILE|-`

use std::path::PathBuf;

use anyhow::{Context, Result};
use rumoci::cas::refs::PlatformSpec;
use rumoci::image::{Import, source_date_epoch};
use rumoci::surgery::ImportRules;

use super::config::ConfigFlags;
use super::driver::Session;
use super::util::{CompressArgs, HistoryArgs};

/// Arguments of `import`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The new image: a layout path (it must exist) and a tag (default
    /// "latest").
    #[arg(long, value_name = "PATH[:TAG]")]
    image: String,
    /// The platform of the new image (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    compress: CompressArgs,
    #[command(flatten)]
    config: ConfigFlags,
    /// The root filesystem tar (uncompressed; `-`: standard input).
    #[arg(value_name = "FILE|-")]
    input: PathBuf,
}

/// Make a single-layer image from a root filesystem tar.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let r = rumoci::cas::refs::ImageRef::parse(&a.image)?;
    let platform = a.platform.as_deref().map(PlatformSpec::parse).transpose()?;
    let import = Import {
        platform,
        change: a.config.change(None)?,
        // auto has no layer to follow here: gzip
        compression: a.compress.parse()?,
        history: a.history.entry("rumoci import")?,
        rules: ImportRules {
            devices: rustix::process::geteuid().is_root(),
        },
        clamp_mtime: source_date_epoch()?,
    };
    let mut input: Box<dyn std::io::Read> = if a.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(&a.input).with_context(|| format!("open {}", a.input.display()))?,
        )
    };
    let mut input = std::io::BufReader::with_capacity(1 << 20, &mut input);
    let store = s.open_layout(&r.layout)?;
    let lock = store.lock()?;
    let path = store.import(&lock, &r.tag, &mut input, &import)?;
    tracing::info!(
        "imported {} as {}:{}",
        path.target().digest,
        rumoci::show::name(&r.layout),
        r.tag
    );
    Ok(())
}
