//! `rumoci export --image PATH[:TAG] [-o FILE|-]`

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::driver::Session;
use super::util::ImageArgs;

/// Arguments of `export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    /// Write the tar here (`-`: standard output, the default). The file
    /// appears only once complete.
    #[arg(short = 'o', long, value_name = "FILE", default_value = "-")]
    output: PathBuf,
}

/// Write the flattened root filesystem as one tar.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let (store, r) = a.image.open_reading(s)?;
    let platform = a.image.platform()?;
    if a.output.as_os_str() == "-" {
        use std::io::IsTerminal;
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            anyhow::bail!(
                "export: refusing to write a tar archive to a terminal (give -o FILE or redirect standard output)"
            );
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        store.export(&r.tag, platform.as_ref(), &mut out)?;
        out.flush().context("write standard output")?;
        return Ok(());
    }
    // a temporary file beside the output, renamed when complete, removed
    // on failure
    let dir = match a.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = a
        .output
        .file_name()
        .with_context(|| format!("-o {}: not a file name", a.output.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".rumoci-export-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let file =
        std::fs::File::create_new(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let res = (|| -> Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
        store.export(&r.tag, platform.as_ref(), &mut out)?;
        out.flush()
            .with_context(|| format!("write {}", a.output.display()))?;
        drop(out);
        file.sync_all()
            .with_context(|| format!("write {}", a.output.display()))?;
        std::fs::rename(&tmp, &a.output)
            .with_context(|| format!("write {}", a.output.display()))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
