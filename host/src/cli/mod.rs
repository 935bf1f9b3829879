//! Command-line interface: parse, call the library, print. One file per
//! command; every error becomes one line on stderr and exit status 1.

mod config;
mod copy;
mod driver;
mod driver_test;
mod gc;
mod init;
mod insert;
mod list;
mod mount;
mod new;
mod raw;
mod referrers;
mod remove;
mod repack;
mod stat;
mod tag;
mod unpack;
mod util;
mod verify;

use std::io::IsTerminal;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// rumoci modifies Open Container images.
#[derive(Parser, Debug)]
#[command(
    name = "rumoci",
    about = "rumoci modifies Open Container images (umoci-compatible)",
    disable_version_flag = true,
    disable_help_subcommand = false
)]
pub struct Cli {
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    version: bool,

    /// Log level: debug, info, warn (or warning), error or fatal.
    #[arg(long, global = true, value_name = "LEVEL")]
    log: Option<String>,

    /// Alias for --log=info.
    #[arg(long, global = true)]
    verbose: bool,

    /// Accepted for compatibility with umoci (whose Go CPU profile has no
    /// equivalent here); ignored with a warning.
    #[arg(long = "cpu-profile", global = true, hide = true, value_name = "FILE")]
    cpu_profile: Option<std::path::PathBuf>,

    /// Storage driver: a built-in name (`dir`) or a plugin
    /// `PATH.wasm[,dir=PATH][,timeout=SECS][,memory=SIZE][,opt.KEY=VALUE…]`.
    /// Repeatable (one content-store driver at most); default: the built-in
    /// directory driver.
    #[arg(long = "driver", global = true, value_name = "SPEC")]
    drivers: Vec<String>,

    #[command(subcommand)]
    command: Option<Command>,
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
    /// Copy an image (a tag and everything it reaches) between two stores:
    /// layouts, plugin stores, registries.
    Copy(copy::Args),
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
    /// List the artifacts referring to an image (OCI 1.1 referrers), or
    /// attach one (an SBOM, a signature).
    Referrers {
        #[command(subcommand)]
        cmd: referrers::Command,
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

/// The version of umoci's command line and formats rumoci follows.
pub const UMOCI_COMPAT_VERSION: &str = "0.6.0";

/// `--version` / `-v`, shaped like umoci's: `NAME version X`, then the
/// specs (the runtime spec is the `ociVersion` rumoci writes to
/// `config.json`).
fn version_text(bin: &str) -> String {
    format!(
        "{bin} version {}\numoci compatibility: {UMOCI_COMPAT_VERSION}\nimage spec: 1.1.1\nruntime spec: {}\n",
        env!("CARGO_PKG_VERSION"),
        rumoci::bundle::runtime::OCI_VERSION,
    )
}

/// umoci's (urfave/cli's) help layout: `NAME:` then `   PATH - ABOUT`
/// (`PATH` is `umoci config` for a command), so that tools reading the
/// first lines of `umoci --help` see the same shape.
fn umoci_help_style(cmd: clap::Command, path: &str) -> clap::Command {
    // `{` would start a template placeholder
    let shown = path.replace(['{', '}'], "");
    cmd.help_template(format!(
        "NAME:\n   {shown} - {{about}}\n\nUSAGE:\n   {{usage}}\n\n{{all-args}}{{after-help}}"
    ))
    .mut_subcommands(|sub| {
        let p = format!("{path} {}", sub.get_name());
        umoci_help_style(sub, &p)
    })
}

/// The clap command with rumoci's help layout; `bin` is the name rumoci
/// was invoked as (`umoci` through a symlink).
fn command(bin: &str) -> clap::Command {
    umoci_help_style(
        Cli::command().about(format!("{bin} modifies Open Container images")),
        bin,
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
        "warning" => "warn".to_string(),
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

fn run(cli: Cli, bin: &str) -> anyhow::Result<()> {
    if cli.version {
        return util::print_out(&version_text(bin));
    }
    init_logging(&cli)?;
    if let Some(p) = &cli.cpu_profile {
        tracing::warn!(
            "--cpu-profile {}: CPU profiles are not supported, ignored",
            p.display()
        );
    }
    driver::set_specs(&cli.drivers)?;
    let Some(sub) = cli.command else {
        // like umoci: no command prints the help
        return util::print_out(&command(bin).render_help().to_string());
    };
    match sub {
        Command::Init(a) => init::run(a),
        Command::New(a) => new::run(a),
        Command::List(a) => list::run(a),
        Command::Tag(a) => tag::run(a),
        Command::Remove(a) => remove::run(a),
        Command::Stat(a) => stat::run(a),
        Command::Gc(a) => gc::run(a),
        Command::Config(a) => config::run(a),
        Command::Insert(a) => insert::run(a),
        Command::Copy(a) => copy::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Unpack(a) => unpack::run(a),
        Command::Repack(a) => repack::run(a),
        Command::Umount(a) => mount::umount(a),
        Command::Mount(a) => mount::mount(a),
        Command::Raw { cmd } => raw::run(cmd),
        Command::Referrers { cmd } => referrers::run(cmd),
        Command::Driver { cmd } => driver::run(cmd),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "rumoci", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Raise the soft limit on open files to the hard one, as Go programs (the
/// Go umoci among them) do at start: tree copies hold a few descriptors per
/// directory level, and images can be thousands of levels deep.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if let Some(max) = l.maximum
        && l.current.is_some_and(|c| c < max)
    {
        l.current = Some(max);
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::debug!("cannot raise the open file limit: {e}");
        }
    }
}

/// Entry point: returns the process exit status.
pub fn main() -> i32 {
    raise_open_file_limit();
    let args = util::normalise_args(std::env::args_os());
    let bin = args
        .first()
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rumoci".into());
    let parsed = command(&bin)
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match run(cli, &bin) {
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
