//! `rumoci copy [--from-driver SPEC] [--to-driver SPEC] SRC[:TAG] DST[:TAG]`

use super::driver::Session;
use anyhow::{Context, Result};
use rumoci::cas::copy::{BlobOutcome, CopyOptions};
use rumoci::cas::refs::{ImageRef, PlatformSpec};

/// Arguments of `copy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The source's content-store driver (`dir` or `PATH.wasm[,…]`, as
    /// `--driver`); default: the global `--driver` choice, else `dir`.
    #[arg(long = "from-driver", value_name = "SPEC")]
    from_driver: Option<String>,
    /// The destination's content-store driver; default as `--from-driver`.
    #[arg(long = "to-driver", value_name = "SPEC")]
    to_driver: Option<String>,
    /// Copy only the manifest for this platform (`OS/ARCH[/VARIANT]`); the
    /// destination tag then names it. Default: everything the tag reaches.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Copy the referrers too (the default; kept for scripts that ask).
    #[arg(long, hide = true, conflicts_with = "no_referrers")]
    referrers: bool,
    /// Leave the referrers out. By default every referrer of a copied
    /// manifest goes along (SBOMs, signatures, attestations, and their own
    /// referrers), found as OCI 1.1 `subject`s, by the referrers tag schema
    /// (`sha256-<hex>`) or by cosign's tags (`sha256-<hex>.sig`, `.att`,
    /// `.sbom`), and written in the form the destination keeps.
    #[arg(long = "no-referrers")]
    no_referrers: bool,
    #[command(flatten)]
    json: super::output::JsonArgs,
    /// The source `PATH[:TAG]` (a repository name with a `url=` driver).
    #[arg(value_name = "SRC[:TAG]")]
    src: String,
    /// The destination `PATH[:TAG]` (default tag: the source's); created if
    /// missing.
    #[arg(value_name = "DST[:TAG]")]
    dst: String,
}

/// Copy the image.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let src = ImageRef::parse(&a.src)?;
    // DST's tag defaults to SRC's (not to `latest`)
    let dst = if a.dst.contains(':') {
        ImageRef::parse(&a.dst)?
    } else {
        ImageRef::parse(&format!("{}:{}", a.dst, src.tag))?
    };
    let opts = CopyOptions {
        platform: a.platform.as_deref().map(PlatformSpec::parse).transpose()?,
        referrers: !a.no_referrers,
    };
    let from = s.open_side(a.from_driver.as_deref(), &src.layout, false)?;
    // the source's index is only read (the destination is another store
    // object, opened and written on its own); its referrers are found by
    // tags of their own, so only without them does one tag suffice
    if a.no_referrers
        && let Some(refs) =
            super::policy::tag_only(s, a.from_driver.as_deref(), &src.layout, &src.tag)?
    {
        from.want_refs(&refs);
    }
    // before the destination is opened (and maybe created): a refused
    // image writes nothing
    super::policy::check(s, a.from_driver.as_deref(), &from, &src.layout, &src.tag)?;
    let to = s.open_side(a.to_driver.as_deref(), &dst.layout, true)?;
    let stats =
        rumoci::image::copy(
            &from,
            &src.tag,
            &to,
            &dst.tag,
            &opts,
            &mut |d, outcome| match outcome {
                BlobOutcome::Copied => tracing::info!("copied {} ({} bytes)", d.digest, d.size),
                BlobOutcome::Skipped => tracing::info!("skipped {}: already there", d.digest),
            },
        )?;
    if a.json.json {
        let root = stats.root.as_ref();
        let doc = serde_json::json!({
            "tag": dst.tag,
            "digest": root.map(|d| d.digest.to_string()),
            "mediaType": root.map(|d| d.media_type.clone()),
            "copied": stats.copied,
            "bytes": stats.bytes,
            "skipped": stats.skipped,
            "referrers": stats.referrers,
        });
        let text = serde_json::to_string_pretty(&doc).context("serialising the summary")?;
        super::output::print_out(&format!("{text}\n"))?;
    }
    tracing::info!(
        "{} blobs copied ({} bytes), {} already there{}",
        stats.copied,
        stats.bytes,
        stats.skipped,
        if !a.no_referrers {
            format!(", {} referrers", stats.referrers)
        } else {
            String::new()
        }
    );
    Ok(())
}
