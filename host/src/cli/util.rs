//! Helpers shared by the commands: argument normalisation, opening layouts
//! and images, times.

use std::ffi::OsString;
use std::path::Path;

use super::driver::Session;
use anyhow::Result;
use clap::CommandFactory;
use rumoci::cas::refs::{ImageRef, PlatformSpec};
use rumoci::image::{HistoryEntry, Store};
use rumoci::layer::idmap::IdMapping;

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
    pub fn open(&self, s: &Session) -> Result<(Store, ImageRef)> {
        let r = self.reference()?;
        let store = s.open_layout(&r.layout)?;
        Ok((store, r))
    }

    /// Open the layout the image lives in, for a command that reads this
    /// image alone and writes no index there (`unpack`, `stat`, …): a
    /// registry resolves the one tag instead of listing every tag
    /// (`policy::tag_only`). Every index write through it fails.
    pub fn open_reading(&self, s: &Session) -> Result<(Store, ImageRef)> {
        let r = self.reference()?;
        let refs = super::policy::tag_only(s, None, &r.layout, &r.tag)?;
        let store = s.open_layout_reading(&r.layout, refs.as_deref())?;
        Ok((store, r))
    }
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

/// The `--no-history` / `--history.*` flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HistoryArgs {
    // The ids differ from the fields' names: `config` has its own
    // `--author` and `--created`.
    /// Do not add a history entry.
    #[arg(long = "no-history", conflicts_with_all = ["h_author", "h_comment", "h_created", "h_created_by"])]
    pub no_history: bool,
    /// Author of the history entry.
    #[arg(long = "history.author", id = "h_author", value_name = "AUTHOR")]
    pub author: Option<String>,
    /// Comment of the history entry.
    #[arg(long = "history.comment", id = "h_comment", value_name = "COMMENT")]
    pub comment: Option<String>,
    /// Creation time of the history entry (RFC 3339).
    #[arg(long = "history.created", id = "h_created", value_name = "TIME")]
    pub created: Option<String>,
    /// The command recorded as having made the entry.
    #[arg(
        long = "history.created_by",
        id = "h_created_by",
        value_name = "COMMAND"
    )]
    pub created_by: Option<String>,
}

impl HistoryArgs {
    /// The entry, or `None` with `--no-history`: `created` is
    /// `--history.created`, else `SOURCE_DATE_EPOCH`, else now (when the
    /// entry is made); `author`, when not given, is the command's default.
    pub fn entry(&self, created_by: &str) -> Result<Option<HistoryEntry>> {
        if self.no_history {
            return Ok(None);
        }
        Ok(Some(HistoryEntry {
            created: self
                .created
                .as_deref()
                .map(|t| rumoci::image::parse_time("--history.created", t))
                .transpose()?,
            created_by: self
                .created_by
                .clone()
                .unwrap_or_else(|| created_by.to_string()),
            author: self.author.clone(),
            comment: self.comment.clone().unwrap_or_default(),
        }))
    }
}

/// `--image`, `--tag` and the history flags: a command that adds to an
/// image and tags the result.
#[derive(clap::Args, Debug, Clone)]
pub struct EditArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub tag: TagArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
}

impl EditArgs {
    /// Open the image's layout; also the destination tag (`--tag`, else
    /// the source tag), validated.
    pub fn open(&self, s: &Session) -> Result<(Store, ImageRef, String)> {
        let (store, r) = self.image.open(s)?;
        let dest = self.tag.destination(&r.tag)?.to_string();
        Ok((store, r, dest))
    }
}

/// `--image`, the id maps and `--keep-dirlinks`: a command that extracts
/// an image's layers.
#[derive(clap::Args, Debug, Clone)]
pub struct ExtractArgs {
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub map: MapArgs,
    /// Keep existing symlinks to directories instead of replacing them.
    #[arg(long = "keep-dirlinks")]
    pub keep_dirlinks: bool,
}

impl ExtractArgs {
    /// The extractor options (as [`MapArgs::options`]), then the image's
    /// layout opened.
    pub fn open(
        &self,
        s: &Session,
    ) -> Result<(rumoci::layer::extract::ExtractOptions, Store, ImageRef)> {
        let opts = self.map.options(self.keep_dirlinks)?;
        // every command extracting an image reads it alone
        let (store, r) = self.image.open_reading(s)?;
        Ok((opts, store, r))
    }
}

/// `--layout PATH` and `--json`: a command that reports on a layout.
#[derive(clap::Args, Debug)]
pub struct LayoutReportArgs {
    #[command(flatten)]
    pub layout: LayoutArgs,
    #[command(flatten)]
    pub json: super::output::JsonArgs,
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
    /// The compression (`None`: auto, decided on the image's last layer).
    pub fn parse(&self) -> Result<Option<rumoci::mutate::Compression>> {
        Ok(rumoci::mutate::Compression::parse(&self.compress)?)
    }
}

/// Split `KEY=VALUE`; the key must be non-empty.
pub fn parse_kv<'a>(flag: &str, s: &'a str) -> Result<(&'a str, &'a str)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => anyhow::bail!("{flag} {s:?}: expected KEY=VALUE"),
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
    /// The parsed id maps.
    pub fn maps(&self) -> Result<(Vec<IdMapping>, Vec<IdMapping>)> {
        let parse = |v: &[String]| {
            v.iter()
                .map(|m| IdMapping::parse(m).map_err(anyhow::Error::from))
                .collect::<Result<Vec<_>>>()
        };
        Ok((parse(&self.uid_map)?, parse(&self.gid_map)?))
    }

    /// Parse into extractor options (rootless with no maps maps 0 to the
    /// invoking user, as umoci does).
    pub fn options(&self, keep_dirlinks: bool) -> Result<rumoci::layer::extract::ExtractOptions> {
        let (uid_map, gid_map) = self.maps()?;
        Ok(rumoci::image::extract_options(
            uid_map,
            gid_map,
            self.rootless,
            keep_dirlinks,
        ))
    }
}
