//! `rumoci generate man DIR` and `rumoci generate completions DIR` (hidden):
//! the files `scripts/install.sh` installs, made from the clap definition.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;

/// `rumoci generate …`
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Write a man page per command: `rumoci.1`, `rumoci-unpack.1`,
    /// `rumoci-raw-add-layer.1`, … (section 1).
    Man {
        /// The directory to write into (created if missing).
        dir: PathBuf,
    },
    /// Write shell completions: `rumoci.bash`, `_rumoci` (zsh) and
    /// `rumoci.fish`.
    Completions {
        /// The directory to write into (created if missing).
        dir: PathBuf,
    },
}

/// The command tree as the man pages show it (the version in the footer).
fn definition() -> clap::Command {
    super::Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .about("modify Open Container images (umoci-compatible)")
}

fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", rumoci::show::name(&dir)))
}

/// Run a `generate` subcommand.
pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Man { dir } => {
            create(&dir)?;
            clap_mangen::generate_to(definition(), &dir)
                .with_context(|| format!("write man pages into {}", rumoci::show::name(&dir)))
        }
        Command::Completions { dir } => {
            create(&dir)?;
            let mut cmd = super::Cli::command();
            for shell in [
                clap_complete::Shell::Bash,
                clap_complete::Shell::Zsh,
                clap_complete::Shell::Fish,
            ] {
                clap_complete::generate_to(shell, &mut cmd, "rumoci", &dir).with_context(|| {
                    format!(
                        "write {shell} completions into {}",
                        rumoci::show::name(&dir)
                    )
                })?;
            }
            Ok(())
        }
    }
}
