//! `rumoci verify --layout PATH`

use anyhow::Result;
use rumoci::cas::check::verify_layout;

use super::util::{LayoutArgs, open_layout, print_out};

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    layout: LayoutArgs,
}

/// Check every reachable object; print each problem; fail if any.
pub fn run(a: Args) -> Result<()> {
    let cas = open_layout(a.layout.path()?)?;
    let problems = verify_layout(cas.as_ref(), &mut rumoci::unpack::check_layer);
    let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
    print_out(&text)?;
    if !problems.is_empty() {
        anyhow::bail!(
            "verify {}: {} problems found",
            a.layout.layout,
            problems.len()
        );
    }
    Ok(())
}
