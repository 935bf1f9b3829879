//! `rumoci referrers list|attach --image PATH[:TAG] …`: OCI 1.1 referrers
//! (artifacts whose `subject` is the image) in a layout.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use rumoci::cas::referrers::{self, ArtifactFile};

use super::driver::Session;
use super::util::{ImageArgs, parse_kv};

/// `rumoci referrers …`
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// List the artifacts that refer to the image's manifest: `DIGEST
    /// ARTIFACT-TYPE SIZE` per line, or with `--json` the image index the
    /// distribution API's referrers endpoint answers.
    #[command(visible_alias = "ls")]
    List {
        #[command(flatten)]
        image: ImageArgs,
        /// Print an OCI image index of the referrers.
        #[arg(long)]
        json: bool,
    },
    /// Attach files as an artifact referring to the image's manifest (e.g.
    /// an SBOM); prints the artifact manifest's digest.
    Attach {
        #[command(flatten)]
        image: ImageArgs,
        /// The artifact's type (a media type, e.g. `application/spdx+json`).
        #[arg(long = "artifact-type", value_name = "TYPE")]
        artifact_type: String,
        /// Media type of the files (default: the artifact type).
        #[arg(long = "media-type", value_name = "TYPE")]
        media_type: Option<String>,
        /// An annotation of the artifact manifest (repeatable).
        #[arg(long = "annotation", value_name = "KEY=VALUE")]
        annotations: Vec<String>,
        /// The files (each becomes a layer, titled with its file name).
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

/// The image's manifest descriptor.
fn subject(
    image: &ImageArgs,
    s: &Session,
) -> Result<(rumoci::image::Store, rumoci::oci::Descriptor)> {
    let (store, r) = image.open(s)?;
    let path = store.resolve(&r.tag, image.platform()?.as_ref())?;
    let target = path.target().clone();
    Ok((store, target))
}

/// Run a `referrers` subcommand.
pub fn run(cmd: Command, s: &Session) -> Result<()> {
    match cmd {
        Command::List { image, json } => {
            let (cas, target) = subject(&image, s)?;
            let found = referrers::list(cas.cas(), &target.digest)?;
            if json {
                let index = rumoci::oci::Index {
                    manifests: found,
                    ..Default::default()
                };
                let mut text =
                    serde_json::to_string_pretty(&index).context("serialising the index")?;
                text.push('\n');
                return super::output::print_out(&text);
            }
            let mut text = String::new();
            for d in found {
                text.push_str(&format!("{}\t{}\t{}\n", d.digest, d.artifact_type, d.size));
            }
            super::output::print_out(&text)
        }
        Command::Attach {
            image,
            artifact_type,
            media_type,
            annotations,
            files,
        } => {
            let (cas, target) = subject(&image, s)?;
            let mut ann = BTreeMap::new();
            for a in &annotations {
                let (k, v) = parse_kv("--annotation", a)?;
                ann.insert(k.to_string(), v.to_string());
            }
            ann.entry("org.opencontainers.image.created".to_string())
                .or_insert(rumoci::image::default_created()?);
            let mut opened = Vec::new();
            for f in &files {
                let file = std::fs::File::open(f)
                    .with_context(|| format!("open {}", rumoci::show::name(f)))?;
                let title = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                opened.push((file, title));
            }
            let mt = media_type.unwrap_or_else(|| artifact_type.clone());
            let mut parts: Vec<ArtifactFile<'_>> = opened
                .iter_mut()
                .map(|(file, title)| ArtifactFile {
                    media_type: mt.clone(),
                    annotations: BTreeMap::from([(
                        "org.opencontainers.image.title".to_string(),
                        title.clone(),
                    )]),
                    content: file,
                })
                .collect();
            let desc = referrers::attach(cas.cas(), &target, &artifact_type, &mut parts, ann)
                .with_context(|| format!("attach to {}", target.digest))?;
            super::output::print_out(&format!("{}\n", desc.digest))
        }
    }
}
