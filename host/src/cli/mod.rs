//! Command-line interface: parse, call the library, print. One file per
//! command; every error becomes one line on stderr and exit status 1.

mod config;
mod driver;
mod gc;
mod init;
mod insert;
mod list;
mod mount;
mod new;
mod raw;
mod remove;
mod repack;
mod stat;
mod tag;
mod unpack;
mod util;
mod verify;

use std::io::IsTerminal;

use clap::{CommandFactory, Parser, Subcommand};

/// rumoci modifies Open Container images.
#[derive(Parser, Debug)]
#[command(
    name = "rumoci",
    version = version_string(),
    about = "rumoci modifies Open Container images (umoci-compatible)",
    propagate_version = true,
    disable_help_subcommand = false
)]
pub struct Cli {
    /// Log level: debug, info, warn, error or fatal.
    #[arg(long, global = true, value_name = "LEVEL")]
    log: Option<String>,

    /// Alias for --log=info.
    #[arg(long, global = true)]
    verbose: bool,

    /// Storage driver: a built-in name (`dir`) or a plugin
    /// `PATH.wasm[,dir=PATH][,timeout=SECS][,memory=SIZE][,opt.KEY=VALUE…]`.
    /// Repeatable (one content-store driver at most); default: the built-in
    /// directory driver.
    #[arg(long = "driver", global = true, value_name = "SPEC")]
    drivers: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Create a new OCI layout.
    Init(init::Args),
    /// Create a blank tagged OCI image.
    New(new::Args),
    /// List the set of tags in an OCI layout.
    #[command(visible_alias = "ls")]
    List(list::Args),
    /// Create a new tag in an OCI image.
    Tag(tag::Args),
    /// Remove a tag from an OCI image.
    #[command(visible_alias = "rm")]
    Remove(remove::Args),
    /// Display status information about an image tag.
    Stat(stat::Args),
    /// Garbage-collect an OCI layout.
    Gc(gc::Args),
    /// Modify the configuration of an image.
    Config(config::Args),
    /// Insert a file or directory into an image as a new layer.
    Insert(insert::Args),
    /// Check a layout: every reachable blob, its size, digest and format.
    Verify(verify::Args),
    /// Unpack an image into a runtime bundle.
    Unpack(unpack::Args),
    /// Add the changes made in a bundle's rootfs to the image as a new layer.
    Repack(repack::Args),
    /// Unmount the rootfs overlay of a bundle unpacked through an overlay layer store.
    Umount(mount::Args),
    /// Mount the rootfs overlay of such a bundle again (after umount).
    Mount(mount::Args),
    /// Advanced internal image tooling.
    Raw {
        #[command(subcommand)]
        cmd: raw::Command,
    },
    /// Inspect storage-driver plugins; list and remove layer-store snapshots.
    Driver {
        #[command(subcommand)]
        cmd: driver::Command,
    },
    /// Print shell completions for rumoci.
    Completion {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn version_string() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        "\nimage spec: 1.1.1\nruntime spec: 1.3.0"
    )
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let level = match (&cli.log, cli.verbose) {
        (Some(_), true) => anyhow::bail!("--verbose and --log are mutually exclusive"),
        (None, true) => "info".to_string(),
        (Some(l), false) => l.clone(),
        (None, false) => "warn".to_string(),
    };
    let filter = match level.as_str() {
        "debug" | "info" | "warn" | "error" => level,
        "fatal" => "error".to_string(),
        other => anyhow::bail!("--log {other:?}: expected debug, info, warn, error or fatal"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "rumoci={filter}"
        )))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(&cli)?;
    driver::set_specs(&cli.drivers)?;
    match cli.command {
        Command::Init(a) => init::run(a),
        Command::New(a) => new::run(a),
        Command::List(a) => list::run(a),
        Command::Tag(a) => tag::run(a),
        Command::Remove(a) => remove::run(a),
        Command::Stat(a) => stat::run(a),
        Command::Gc(a) => gc::run(a),
        Command::Config(a) => config::run(a),
        Command::Insert(a) => insert::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Unpack(a) => unpack::run(a),
        Command::Repack(a) => repack::run(a),
        Command::Umount(a) => mount::umount(a),
        Command::Mount(a) => mount::mount(a),
        Command::Raw { cmd } => raw::run(cmd),
        Command::Driver { cmd } => driver::run(cmd),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "rumoci", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Entry point: returns the process exit status.
pub fn main() -> i32 {
    let args = util::normalise_args(std::env::args_os());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            let mut msg = format!("{e}");
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            // a limit hit on what a content-store plugin answered: name it
            let limit = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<rumoci::cas::CasError>(),
                    Some(rumoci::cas::CasError::Limit(_))
                )
            });
            if limit && let Some(label) = driver::cas_label() {
                msg.push_str(&format!(" (content store: {label})"));
            }
            eprintln!("rumoci: {}", msg.replace('\n', " "));
            if e.chain()
                .filter_map(|c| c.downcast_ref::<std::io::Error>())
                .any(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
            {
                eprintln!("rumoci: maybe --rootless will help?");
            }
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
