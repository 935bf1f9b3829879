//! What the commands print: JSON or text on stdout (a closed pipe is not
//! an error), and the error that says a command found problems.

use anyhow::{Context, Result};

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
