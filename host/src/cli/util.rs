//! Helpers shared by the commands: argument normalisation, opening layouts
//! and images, times.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use rumoci::cas::Cas;
use rumoci::cas::refs::{ImageRef, PlatformSpec};

/// `--image PATH[:TAG]` (and `--platform`), shared by image commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageArgs {
    /// The image: a layout path and a tag (default "latest").
    #[arg(long, value_name = "PATH[:TAG]")]
    pub image: String,
    /// Pick this platform when the tag names a multi-platform index
    /// (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
}

/// `--layout PATH`, shared by layout commands.
#[derive(clap::Args, Debug, Clone)]
pub struct LayoutArgs {
    /// The OCI layout directory.
    #[arg(long, value_name = "PATH")]
    pub layout: String,
}

impl LayoutArgs {
    /// Validate like umoci: non-empty, no `:`.
    pub fn path(&self) -> Result<&Path> {
        if self.layout.is_empty() {
            anyhow::bail!("--layout: path is empty");
        }
        if self.layout.contains(':') {
            anyhow::bail!("--layout {:?}: path must not contain ':'", self.layout);
        }
        Ok(Path::new(&self.layout))
    }
}

impl ImageArgs {
    /// Parse `--image`.
    pub fn reference(&self) -> Result<ImageRef> {
        Ok(ImageRef::parse(&self.image)?)
    }

    /// Parse `--platform`, if given.
    pub fn platform(&self) -> Result<Option<PlatformSpec>> {
        self.platform
            .as_deref()
            .map(PlatformSpec::parse)
            .transpose()
            .map_err(Into::into)
    }

    /// Open the layout the image lives in.
    pub fn open(&self) -> Result<(Box<dyn Cas>, ImageRef)> {
        let r = self.reference()?;
        let cas = open_layout(&r.layout)?;
        Ok((cas, r))
    }
}

/// Open an existing layout with the driver chosen by `--driver` (default:
/// the built-in directory driver).
pub fn open_layout(path: &Path) -> Result<Box<dyn Cas>> {
    super::driver::open_layout(path)
}

/// Go's `strconv.ParseBool`, which urfave/cli uses for `--flag=VALUE` on a
/// boolean flag.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Rewrite umoci habits into what clap expects:
/// * single-dash long flags (`-image x`) become `--image x`;
/// * a boolean flag with a value (`--json=true`, `--no-history=false`,
///   any value Go's `strconv.ParseBool` takes) becomes the bare flag, or
///   is dropped when false;
/// * the command `h` (urfave/cli's alias of `help`) becomes `help`.
pub fn normalise_args(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    use std::collections::BTreeSet;
    #[derive(Default)]
    struct Flags {
        longs: BTreeSet<String>,
        bools: BTreeSet<String>,
        valued: BTreeSet<String>,
    }
    fn gather(cmd: &clap::Command, out: &mut Flags) {
        for a in cmd.get_arguments() {
            if let Some(l) = a.get_long() {
                let names = std::iter::once(l).chain(a.get_all_aliases().unwrap_or_default());
                for n in names {
                    out.longs.insert(n.to_string());
                    if matches!(a.get_action(), clap::ArgAction::SetTrue) {
                        out.bools.insert(n.to_string());
                    } else {
                        out.valued.insert(n.to_string());
                    }
                }
            }
        }
        for s in cmd.get_subcommands() {
            gather(s, out);
        }
    }
    let root = super::Cli::command();
    let mut flags = Flags::default();
    gather(&root, &mut flags);
    flags.longs.insert("help".into());
    flags.longs.insert("version".into());
    // global flags that take a value (before the command name)
    let global_valued: BTreeSet<String> = root
        .get_arguments()
        .filter(|a| !matches!(a.get_action(), clap::ArgAction::SetTrue))
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    let mut after_dashdash = false;
    // where the command name may still come: after argv[0] and the global
    // flags
    let mut expect_command = true;
    let mut skip_value = false;
    for (i, a) in args.enumerate() {
        let Some(s) = a.to_str().filter(|_| !after_dashdash && i > 0) else {
            out.push(a);
            continue;
        };
        if s == "--" {
            after_dashdash = true;
            out.push(a);
            continue;
        }
        let mut arg = s.to_string();
        if arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") {
            let name = arg[1..].split('=').next().unwrap_or("");
            if flags.longs.contains(name) {
                arg.insert(0, '-');
            }
        }
        if let Some(rest) = arg.strip_prefix("--")
            && let Some((name, value)) = rest.split_once('=')
            && flags.bools.contains(name)
            && !flags.valued.contains(name)
            && let Some(b) = go_bool(value)
        {
            if b {
                out.push(OsString::from(format!("--{name}")));
            }
            continue;
        }
        if expect_command {
            if skip_value {
                skip_value = false;
            } else if let Some(rest) = arg.strip_prefix("--") {
                skip_value = !rest.contains('=') && global_valued.contains(rest);
            } else if !arg.starts_with('-') {
                expect_command = false;
                if arg == "h" {
                    arg = "help".into();
                }
            }
        }
        out.push(OsString::from(arg));
    }
    out
}

/// `SOURCE_DATE_EPOCH`, if set (a non-integer value is an error).
pub fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => {
            let secs = v
                .trim()
                .parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH {v:?} is not an integer"))?;
            Ok(Some(secs))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("SOURCE_DATE_EPOCH: {e}")),
    }
}

/// Format a time as Go's RFC3339Nano does (trailing zeros of the fraction
/// trimmed, `Z` for UTC).
pub fn rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The default `created` time: SOURCE_DATE_EPOCH if set, else now.
pub fn default_created() -> Result<String> {
    let t = match source_date_epoch()? {
        Some(secs) => chrono::DateTime::from_timestamp(secs, 0)
            .with_context(|| format!("SOURCE_DATE_EPOCH {secs} is out of range"))?,
        None => chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()),
    };
    Ok(rfc3339_nano(t))
}

/// The `--no-history` / `--history.*` flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HistoryArgs {
    /// Do not add a history entry.
    #[arg(long = "no-history", conflicts_with_all = ["history_author", "history_comment", "history_created", "history_created_by"])]
    pub no_history: bool,
    /// Author of the history entry.
    #[arg(long = "history.author", id = "history_author", value_name = "AUTHOR")]
    pub author: Option<String>,
    /// Comment of the history entry.
    #[arg(
        long = "history.comment",
        id = "history_comment",
        value_name = "COMMENT"
    )]
    pub comment: Option<String>,
    /// Creation time of the history entry (RFC 3339).
    #[arg(long = "history.created", id = "history_created", value_name = "TIME")]
    pub created: Option<String>,
    /// The command recorded as having made the entry.
    #[arg(
        long = "history.created_by",
        id = "history_created_by",
        value_name = "COMMAND"
    )]
    pub created_by: Option<String>,
}

impl HistoryArgs {
    /// Build the entry, or `None` with `--no-history`. `created`:
    /// `--history.created`, else `SOURCE_DATE_EPOCH`, else now.
    pub fn entry(
        &self,
        default_created_by: &str,
        default_author: &str,
        empty_layer: bool,
    ) -> Result<Option<rumoci::oci::History>> {
        if self.no_history {
            return Ok(None);
        }
        let created = match &self.created {
            Some(t) => parse_time("--history.created", t)?,
            None => default_created()?,
        };
        Ok(Some(rumoci::oci::History {
            created: Some(created),
            created_by: self
                .created_by
                .clone()
                .unwrap_or_else(|| default_created_by.to_string()),
            author: self
                .author
                .clone()
                .unwrap_or_else(|| default_author.to_string()),
            comment: self.comment.clone().unwrap_or_default(),
            empty_layer,
            extra: Default::default(),
        }))
    }
}

/// Validate an RFC 3339 time given on the command line and normalise it as
/// Go's RFC3339Nano formatting would: the offset and the significant digits
/// of the fraction are kept as written (`+00:00` becomes `Z`).
pub fn parse_time(flag: &str, s: &str) -> Result<String> {
    rumoci::oci::gotime::normalize_rfc3339(s).with_context(|| format!("{flag} {s:?}"))
}

/// `--tag NEW`: where the result goes (default: the source tag).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TagArgs {
    /// Tag the result as this instead of overwriting the source tag.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
}

impl TagArgs {
    /// The destination tag, validated.
    pub fn destination<'a>(&'a self, source: &'a str) -> Result<&'a str> {
        let t = self.tag.as_deref().unwrap_or(source);
        rumoci::cas::refs::check_tag(t)?;
        Ok(t)
    }
}

/// `--compress auto|none|gzip|zstd`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompressArgs {
    /// Layer compression: auto (follow the last layer, default gzip), none,
    /// gzip or zstd.
    #[arg(long, value_name = "ALGO", default_value = "auto")]
    pub compress: String,
}

impl CompressArgs {
    /// Decide the compression for a new layer on top of `layers`.
    pub fn pick(&self, layers: &[rumoci::oci::Descriptor]) -> Result<rumoci::mutate::Compression> {
        let c = rumoci::mutate::Compression::parse(&self.compress)?;
        Ok(c.unwrap_or_else(|| rumoci::mutate::Compression::auto(layers)))
    }
}

/// Split `KEY=VALUE`; the key must be non-empty.
pub fn parse_kv<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => anyhow::bail!("{flag} {s:?}: expected KEY=VALUE"),
    }
}

/// The command ran and found problems (`verify`, `raw mtree-validate`):
/// exit status 1, where a failure to run at all is 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProblemsFound(pub String);

/// Print `value` as pretty JSON and a newline on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("serialising JSON")?;
    text.push('\n');
    print_out(&text)
}

/// `--json`, shared by the commands that can print JSON.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JsonArgs {
    /// Print JSON (the fields are listed in docs/cli.md) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Write `text` to stdout; a closed pipe (`rumoci ls | head`) is not an error.
pub fn print_out(text: &str) -> Result<()> {
    print_bytes(text.as_bytes())
}

/// Write `bytes` to stdout; a closed pipe is not an error.
pub fn print_bytes(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("write to stdout"),
    }
}

/// `--uid-map`, `--gid-map`, `--rootless`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MapArgs {
    /// Map container uids to host uids: CONTAINER:HOST[:SIZE] (repeatable).
    #[arg(long = "uid-map", value_name = "C:H[:S]")]
    pub uid_map: Vec<String>,
    /// Map container gids to host gids: CONTAINER:HOST[:SIZE] (repeatable).
    #[arg(long = "gid-map", value_name = "C:H[:S]")]
    pub gid_map: Vec<String>,
    /// Unpack without privileges: no chown (owners kept in the
    /// user.rootlesscontainers xattr), devices become empty files.
    #[arg(long)]
    pub rootless: bool,
}

impl MapArgs {
    /// Parse into extractor options (rootless with no maps maps 0 to the
    /// invoking user, as umoci does).
    pub fn options(&self, keep_dirlinks: bool) -> Result<rumoci::layer::extract::ExtractOptions> {
        use rumoci::layer::idmap::IdMapping;
        let parse = |v: &[String]| {
            v.iter()
                .map(|m| IdMapping::parse(m).map_err(anyhow::Error::from))
                .collect::<Result<Vec<_>>>()
        };
        let mut uid_map = parse(&self.uid_map)?;
        let mut gid_map = parse(&self.gid_map)?;
        if self.rootless {
            if uid_map.is_empty() {
                uid_map.push(IdMapping {
                    container_id: 0,
                    host_id: rustix::process::geteuid().as_raw(),
                    size: 1,
                });
            }
            if gid_map.is_empty() {
                gid_map.push(IdMapping {
                    container_id: 0,
                    host_id: rustix::process::getegid().as_raw(),
                    size: 1,
                });
            }
        }
        Ok(rumoci::layer::extract::ExtractOptions {
            uid_map,
            gid_map,
            rootless: self.rootless,
            keep_dirlinks,
            whiteout: Default::default(),
        })
    }
}

/// Read-modify-write of an image without lost updates: resolve the source
/// tag, let `f` change the image, commit, and point `dest` at the result —
/// when `dest` is the source tag, only if it still points where it did;
/// otherwise another writer got there first and the change is redone on top
/// of theirs. (The Go umoci overwrites, losing the other update.)
pub fn mutate_tag(
    lock: &rumoci::cas::WriteLock<'_>,
    image: &ImageArgs,
    dest: &str,
    f: &mut dyn FnMut(&mut rumoci::mutate::Mutator) -> Result<()>,
) -> Result<rumoci::cas::refs::DescriptorPath> {
    use anyhow::Context as _;
    use rumoci::cas::refs;
    let cas = lock.cas();
    let r = image.reference()?;
    let platform = image.platform()?;
    for attempt in 0..64 {
        let path = refs::resolve(cas, &r.tag, platform.as_ref())
            .with_context(|| format!("resolve {}:{}", rumoci::show::name(&r.layout), r.tag))?;
        let old_root = path.root().clone();
        let mut m = rumoci::mutate::Mutator::new(lock, path)?;
        f(&mut m)?;
        let new_path = m.commit()?;
        let done = if dest == r.tag {
            refs::set_tag_if(lock, dest, Some(&old_root), new_path.root())?
        } else {
            refs::set_tag(lock, dest, new_path.root())?;
            true
        };
        if done {
            return Ok(new_path);
        }
        tracing::debug!(
            "{}:{} changed while this command ran (attempt {attempt}); redoing the change on top",
            rumoci::show::name(&r.layout),
            r.tag
        );
    }
    anyhow::bail!(
        "{}:{}: gave up after too many concurrent updates",
        rumoci::show::name(&r.layout),
        r.tag
    )
}
