//! Command-line interface: parse, call the library, print. One file per
//! command; every error becomes one line on stderr (`rumoci: …`) and exit
//! status 1 (2 for `verify` and `raw mtree-validate` when they cannot run).

mod config;
mod copy;
mod driver;
mod driver_test;
mod export;
mod gc;
mod generate;
mod generate_key;
mod import;
mod index;
mod init;
mod insert;
mod list;
mod mount;
mod new;
mod output;
mod policy;
mod progress;
mod raw;
mod referrers;
mod remove;
mod repack;
mod secret;
mod settings;
mod sign;
mod squash;
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

    /// Errors only: no warnings, no progress bars.
    #[arg(short = 'q', long, global = true)]
    quiet: bool,

    /// Accepted for compatibility with umoci (whose Go CPU profile has no
    /// equivalent here); ignored with a warning.
    #[arg(long = "cpu-profile", global = true, hide = true, value_name = "FILE")]
    cpu_profile: Option<std::path::PathBuf>,

    /// Storage driver: a built-in name (`dir`), a driver named in the
    /// config file (`NAME[,KEY=VALUE…]`), or a plugin
    /// `PATH.wasm[,dir=PATH][,timeout=SECS][,memory=SIZE][,opt.KEY=VALUE…]`.
    /// Repeatable (one content-store driver at most); default:
    /// RUMOCI_DRIVER, else the config file's defaults, else the built-in
    /// directory driver.
    #[arg(long = "driver", global = true, value_name = "SPEC")]
    drivers: Vec<String>,

    /// Registry credentials for every driver with `url=` and no `creds=`
    /// (otherwise read from REGISTRY_AUTH_FILE,
    /// $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json).
    /// Only the host uses them: plugins never see them.
    #[arg(long = "creds", global = true, value_name = "USER:PASSWORD")]
    creds: Option<String>,

    /// The containers-policy.json that unpack, raw unpack, copy and verify
    /// --signatures apply (default: $HOME/.config/containers/policy.json,
    /// else /etc/containers/policy.json, as skopeo; with neither, none).
    #[arg(long = "policy", global = true, value_name = "FILE")]
    policy: Option<std::path::PathBuf>,

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
    /// Sign an image with a sigstore key, as skopeo
    /// --sign-by-sigstore-private-key does (a sha256-<hex>.sig attachment).
    Sign(sign::Args),
    /// Write a new sigstore key pair: PREFIX.key (encrypted, as cosign
    /// writes it) and PREFIX.pub.
    #[command(name = "generate-key")]
    GenerateKey(generate_key::Args),
    /// Unpack an image into a runtime bundle.
    Unpack(unpack::Args),
    /// Merge all layers of an image, or a range of them, into one.
    ///
    /// The new layer gives the tree the merged layers gave, file by file;
    /// above kept base layers it keeps only the whiteouts the base needs.
    /// The merged layers' history entries become one (`rumoci squash
    /// (layers A:B): ` and their `created_by`s); `empty_layer` entries
    /// stay. Streams: two passes over the layers, no tree on disk.
    Squash(squash::Args),
    /// Write an image's root filesystem as one tar (layers flattened).
    ///
    /// Whiteouts applied, opaque directories honoured, only the last version
    /// of each path; extracting it (bsdtar -x) gives the tree `unpack`
    /// gives. Streams from the layers, nothing on disk.
    Export(export::Args),
    /// Make a single-layer image from a root filesystem tar.
    ///
    /// Like `docker import`: the tar is read through rumoci's reader and
    /// rewritten through its layer generator (gzip unless --compress);
    /// absolute or escaping names, hard links out of the archive,
    /// whiteouts and (unless root) device nodes are refused, leaving the
    /// layout unchanged.
    Import(import::Args),
    /// Add the changes made in a bundle's rootfs to the image as a new layer.
    Repack(repack::Args),
    /// Unmount the rootfs overlay of a bundle unpacked through an overlay layer store.
    Umount(mount::Args),
    /// Mount the rootfs overlay of such a bundle again (after umount).
    Mount(mount::Args),
    /// Create and edit multi-platform image indexes.
    Index {
        #[command(subcommand)]
        cmd: index::Command,
    },
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
    /// Write man pages or completion files into a directory (for
    /// packagers; scripts/install.sh uses it).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        cmd: generate::Command,
    },
}

impl Command {
    /// The command's name, as `[defaults.command.NAME]` in the config file
    /// names it.
    fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::New(_) => "new",
            Command::List(_) => "list",
            Command::Tag(_) => "tag",
            Command::Remove(_) => "remove",
            Command::Stat(_) => "stat",
            Command::Gc(_) => "gc",
            Command::Config(_) => "config",
            Command::Insert(_) => "insert",
            Command::Copy(_) => "copy",
            Command::Referrers { .. } => "referrers",
            Command::Verify(_) => "verify",
            Command::Sign(_) => "sign",
            Command::GenerateKey(_) => "generate-key",
            Command::Unpack(_) => "unpack",
            Command::Squash(_) => "squash",
            Command::Export(_) => "export",
            Command::Import(_) => "import",
            Command::Repack(_) => "repack",
            Command::Umount(_) => "umount",
            Command::Mount(_) => "mount",
            Command::Index { .. } => "index",
            Command::Raw { .. } => "raw",
            Command::Driver { .. } => "driver",
            Command::Completion { .. } => "completion",
            Command::Generate { .. } => "generate",
        }
    }
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

/// A level as `--log` takes it, as a tracing level name.
fn level_name(level: &str) -> Option<&'static str> {
    Some(match level {
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "fatal" => "error",
        "trace" => "trace",
        _ => return None,
    })
}

/// The log filter: `-q`, `--verbose` or `--log` if given, else
/// `RUMOCI_LOG` (a level, or a tracing filter directive such as
/// `rumoci::cas=debug,warn`), else warnings.
fn log_filter(cli: &Cli) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    use tracing_subscriber::EnvFilter;
    let flag = match (&cli.log, cli.verbose, cli.quiet) {
        (None, false, false) => None,
        (Some(l), false, false) => Some(level_name(l).ok_or_else(|| {
            anyhow::anyhow!("--log {l:?}: expected debug, info, warn, error or fatal")
        })?),
        (None, true, false) => Some("info"),
        (None, false, true) => Some("error"),
        _ => anyhow::bail!("--quiet, --verbose and --log are mutually exclusive"),
    };
    if let Some(level) = flag {
        return Ok(EnvFilter::new(format!("rumoci={level}")));
    }
    match std::env::var("RUMOCI_LOG") {
        Ok(v) if v.trim().is_empty() => Ok(EnvFilter::new("rumoci=warn")),
        Ok(v) => match level_name(v.trim()) {
            Some(level) => Ok(EnvFilter::new(format!("rumoci={level}"))),
            None => EnvFilter::try_new(v.trim()).map_err(|e| {
                anyhow::anyhow!(
                    "RUMOCI_LOG {v:?}: expected a level (debug, info, warn, error, fatal) or a filter such as rumoci=debug ({e})"
                )
            }),
        },
        Err(std::env::VarError::NotPresent) => Ok(EnvFilter::new("rumoci=warn")),
        Err(e) => anyhow::bail!("RUMOCI_LOG: {e}"),
    }
}

fn init_logging(cli: &Cli) -> anyhow::Result<()> {
    let filter = log_filter(cli)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
    Ok(())
}

/// A command that failed: the error, and how to name the content-store
/// plugin it went through (for limits hit on what the plugin answered).
struct Failed {
    error: anyhow::Error,
    content_store: Option<String>,
}

impl From<anyhow::Error> for Failed {
    fn from(error: anyhow::Error) -> Failed {
        Failed {
            error,
            content_store: None,
        }
    }
}

fn run(cli: Cli, bin: &str) -> Result<(), Failed> {
    if cli.version {
        return Ok(output::print_out(&version_text(bin))?);
    }
    init_logging(&cli)?;
    progress::install(cli.quiet);
    if let Some(p) = &cli.cpu_profile {
        tracing::warn!(
            "--cpu-profile {}: CPU profiles are not supported, ignored",
            p.display()
        );
    }
    let config = settings::load()?;
    let name = cli.command.as_ref().map(Command::name);
    let specs = config.drivers_for(name, &cli.drivers);
    // `driver list` shows the configuration even when its defaults name
    // a driver that does not parse
    let listing = matches!(
        &cli.command,
        Some(Command::Driver {
            cmd: driver::Command::List { .. }
        })
    ) && cli.drivers.is_empty();
    let session = match specs.and_then(|s| driver::Session::new(cli.creds.as_deref(), &s)) {
        Ok(s) => s.with_policy(cli.policy.clone()),
        Err(e) if !listing => return Err(e.into()),
        Err(_) => driver::Session::default(),
    };
    settings::remember(config);
    let Some(sub) = cli.command else {
        // like umoci: no command prints the help
        return Ok(output::print_out(&command(bin).render_help().to_string())?);
    };
    dispatch(sub, &session).map_err(|error| Failed {
        error,
        content_store: session.cas_label(),
    })
}

/// Run the command `sub` with the drivers of `s`.
fn dispatch(sub: Command, s: &driver::Session) -> anyhow::Result<()> {
    match sub {
        Command::Init(a) => init::run(a, s),
        Command::New(a) => new::run(a, s),
        Command::List(a) => list::run(a, s),
        Command::Tag(a) => tag::run(a, s),
        Command::Remove(a) => remove::run(a, s),
        Command::Stat(a) => stat::run(a, s),
        Command::Gc(a) => gc::run(a, s),
        Command::Config(a) => config::run(a, s),
        Command::Insert(a) => insert::run(a, s),
        Command::Copy(a) => copy::run(a, s),
        Command::Verify(a) => verify::run(a, s),
        Command::Sign(a) => sign::run(a, s),
        Command::GenerateKey(a) => generate_key::run(a),
        Command::Unpack(a) => unpack::run(a, s),
        Command::Squash(a) => squash::run(a, s),
        Command::Export(a) => export::run(a, s),
        Command::Import(a) => import::run(a, s),
        Command::Repack(a) => repack::run(a, s),
        Command::Umount(a) => mount::umount(a),
        Command::Mount(a) => mount::mount(a),
        Command::Index { cmd } => index::run(cmd, s),
        Command::Raw { cmd } => raw::run(cmd, s),
        Command::Referrers { cmd } => referrers::run(cmd, s),
        Command::Driver { cmd } => driver::run(cmd, s),
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "rumoci", &mut std::io::stdout());
            Ok(())
        }
        Command::Generate { cmd } => generate::run(cmd),
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
        Err(e) => return usage_error(&e),
    };
    // verify and raw mtree-validate: 1 is "problems found", any other
    // failure ("could not run") is 2
    let could_not_run = match &cli.command {
        Some(Command::Verify(_))
        | Some(Command::Raw {
            cmd: raw::Command::MtreeValidate(_),
        }) => 2,
        _ => 1,
    };
    match run(cli, &bin) {
        Ok(()) => 0,
        Err(f) => report(&f.error, f.content_store.as_deref(), could_not_run),
    }
}

/// A clap error: `--help`, `--version` and the help shown for a missing
/// subcommand print as clap renders them; usage errors become one line,
/// `rumoci: MESSAGE; usage: …`, with status 2 for the commands that keep
/// status 1 for "problems found" (`verify`, `raw mtree-validate`), else
/// status 1 as umoci's.
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if !e.use_stderr()
        || matches!(
            e.kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        let _ = e.print();
        return if e.use_stderr() { 1 } else { 0 };
    }
    let rendered = e.render().to_string();
    let (line, usage) = one_line_usage_error(&rendered);
    match &usage {
        Some(u) => eprintln!("rumoci: {line}; usage: {u}"),
        None => eprintln!("rumoci: {line}"),
    }
    let path = usage.as_deref().map(command_path).unwrap_or_default();
    if two_status_command(&path) { 2 } else { 1 }
}

/// Whether a command (its path below `rumoci`, e.g. `["raw",
/// "mtree-validate"]`) tells "problems found" (status 1) from "could not
/// run" (status 2).
pub fn two_status_command(path: &[String]) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(p.as_slice(), ["verify"] | ["raw", "mtree-validate"])
}

/// The words of a usage line naming the command: `rumoci raw
/// mtree-validate --manifest …` gives `["raw", "mtree-validate"]`.
fn command_path(usage: &str) -> Vec<String> {
    usage
        .split_whitespace()
        .skip(1)
        .take_while(|w| {
            w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
        })
        .map(str::to_string)
        .collect()
}

/// clap's rendered error (`error: MESSAGE\n  DETAIL\n\ntip: …\n\nUsage: …\n\nFor
/// more information…`) as one line (message, details and tips joined)
/// and the usage line.
fn one_line_usage_error(rendered: &str) -> (String, Option<String>) {
    let mut parts = Vec::new();
    let mut usage = None;
    for para in rendered.split("\n\n") {
        let text = para.split_whitespace().collect::<Vec<_>>().join(" ");
        if let Some(u) = text.strip_prefix("Usage: ") {
            usage = Some(u.to_string());
        } else if text.starts_with("For more information") || text.is_empty() {
            continue;
        } else {
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            parts.push(text.trim_end_matches(':').to_string());
        }
    }
    (parts.join("; "), usage)
}

/// Join an error and its causes into one line: a cause already contained
/// in what is said is left out, and a short context (`open layout /x`)
/// whose object the cause names again (`image layout /x: not found`) is
/// replaced by the cause, so that each path is named once.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut clauses: Vec<String> = Vec::new();
    for cause in e.chain() {
        // the library's error shows its causes too: take its own layer
        let c = match cause.downcast_ref::<rumoci::Error>() {
            Some(le) => match le.what() {
                Some(w) => w.to_string(),
                None => continue,
            },
            None => cause.to_string(),
        };
        if clauses.iter().any(|m| m.contains(&c)) {
            continue;
        }
        if let Some(last) = clauses.last()
            && redundant_context(last, &c)
        {
            clauses.pop();
        }
        clauses.push(c);
    }
    clauses.join(": ").replace('\n', " ")
}

/// A context such as `open layout /x` (at most two words before its
/// object) whose object `cause` names again, as a word of its own.
fn redundant_context(context: &str, cause: &str) -> bool {
    let words: Vec<&str> = context.split_whitespace().collect();
    let Some((object, verb)) = words.split_last() else {
        return false;
    };
    // plain words only: a flag or variable name (`--created "x"`,
    // `SOURCE_DATE_EPOCH "x"`) is kept, the cause does not say it
    verb.len() <= 2
        && verb
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_lowercase()))
        && cause
            .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
            .map(|w| w.trim_end_matches(':'))
            .any(|w| w == *object)
}

/// Print a command's error (one line, `rumoci: ` once) and return the
/// exit status: 1 for [`output::ProblemsFound`], else `could_not_run`.
fn report(e: &anyhow::Error, content_store: Option<&str>, could_not_run: i32) -> i32 {
    let mut msg = error_line(e);
    // a limit hit on what a content-store plugin answered: name it
    let limit = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rumoci::cas::CasError>(),
            Some(rumoci::cas::CasError::Limit(_))
        )
    });
    if limit && let Some(label) = content_store {
        msg.push_str(&format!(" (content store: {label})"));
    }
    eprintln!("rumoci: {msg}");
    if e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    {
        eprintln!("rumoci: maybe --rootless will help?");
    }
    if e.chain().any(|c| c.is::<output::ProblemsFound>()) {
        1
    } else {
        could_not_run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn repeated_paths_are_said_once() {
        let e = anyhow::anyhow!("image layout /x: not found").context("open layout /x");
        assert_eq!(error_line(&e), "image layout /x: not found");
        let e = anyhow::anyhow!("create /b: exists").context("unpack /x:t into /b");
        assert_eq!(error_line(&e), "unpack /x:t into /b: create /b: exists");
        let e = anyhow::anyhow!("\"x\" is not a time").context("--created \"x\"");
        assert_eq!(error_line(&e), "--created \"x\": \"x\" is not a time");
    }

    #[test]
    fn usage_errors_are_one_line() {
        let r = "error: the following required arguments were not provided:\n  <BUNDLE>\n\nUsage: rumoci unpack --image <PATH[:TAG]> <BUNDLE>\n\nFor more information, try '--help'.\n";
        let (line, usage) = one_line_usage_error(r);
        assert_eq!(
            line,
            "the following required arguments were not provided: <BUNDLE>"
        );
        let usage = usage.expect("usage");
        assert_eq!(command_path(&usage), ["unpack"]);
    }
}
