//! `rumoci index create|add|remove|annotate`: multi-platform image indexes.

use anyhow::Result;
use rumoci::cas::refs::{ImageRef, PlatformSpec};

use super::driver::Session;
use super::util::parse_kv;

/// `rumoci index …`
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Create an image index over single-platform images of the layout.
    ///
    /// Each SRC is a tag of the same layout naming one image manifest; its
    /// entry carries the platform of that image's config. Two sources for
    /// the same platform are refused. The tag is replaced if it exists.
    Create {
        /// The index to create: a layout path and a tag (default "latest").
        #[arg(long, value_name = "PATH[:TAG]")]
        image: String,
        /// Tags of single-platform images in the same layout.
        #[arg(required = true, value_name = "SRC")]
        sources: Vec<String>,
    },
    /// Add single-platform images of the layout to an image index.
    Add {
        /// The index: a layout path and a tag (default "latest").
        #[arg(long, value_name = "PATH[:TAG]")]
        image: String,
        /// Swap the entry of a platform already in the index (else refused).
        #[arg(long)]
        replace: bool,
        /// Tags of single-platform images in the same layout.
        #[arg(required = true, value_name = "SRC")]
        sources: Vec<String>,
    },
    /// Remove the images of a platform from an image index.
    Remove {
        /// The index: a layout path and a tag (default "latest").
        #[arg(long, value_name = "PATH[:TAG]")]
        image: String,
        /// The platform to remove (an omitted variant matches any).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: String,
    },
    /// Set or remove annotations of an image index, or of its entries for a platform.
    Annotate {
        /// The index: a layout path and a tag (default "latest").
        #[arg(long, value_name = "PATH[:TAG]")]
        image: String,
        /// Annotate the entries for this platform instead of the index.
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// Set an annotation (`KEY=VALUE`; repeatable).
        #[arg(
            long = "annotation",
            allow_hyphen_values = true,
            value_name = "KEY=VALUE"
        )]
        annotations: Vec<String>,
        /// Remove an annotation (repeatable; done before the additions).
        #[arg(long = "remove-annotation", value_name = "KEY")]
        remove: Vec<String>,
    },
}

/// Run an `index` subcommand.
pub fn run(cmd: Command, s: &Session) -> Result<()> {
    match cmd {
        Command::Create { image, sources } => {
            let r = ImageRef::parse(&image)?;
            let store = s.open_layout(&r.layout)?;
            let lock = store.lock()?;
            let d = store.index_create(&lock, &r.tag, &sources)?;
            tracing::info!("created index {} as {}", d.digest, r.tag);
        }
        Command::Add {
            image,
            replace,
            sources,
        } => {
            let r = ImageRef::parse(&image)?;
            let store = s.open_layout(&r.layout)?;
            let lock = store.lock()?;
            store.index_add(&lock, &r.tag, &sources, replace)?;
        }
        Command::Remove { image, platform } => {
            let r = ImageRef::parse(&image)?;
            let p = PlatformSpec::parse(&platform)?;
            let store = s.open_layout(&r.layout)?;
            let lock = store.lock()?;
            let (_, n) = store.index_remove(&lock, &r.tag, &p)?;
            tracing::info!("removed {n} entries");
        }
        Command::Annotate {
            image,
            platform,
            annotations,
            remove,
        } => {
            let r = ImageRef::parse(&image)?;
            let p = platform.as_deref().map(PlatformSpec::parse).transpose()?;
            let set = annotations
                .iter()
                .map(|a| parse_kv("--annotation", a).map(|(k, v)| (k.to_string(), v.to_string())))
                .collect::<Result<Vec<_>>>()?;
            if set.is_empty() && remove.is_empty() {
                anyhow::bail!(
                    "index annotate: nothing to do (give --annotation or --remove-annotation)"
                );
            }
            let store = s.open_layout(&r.layout)?;
            let lock = store.lock()?;
            store.index_annotate(&lock, &r.tag, p.as_ref(), &set, &remove)?;
        }
    }
    Ok(())
}
