//! `rumoci ls --layout PATH`

use anyhow::Result;
use rumoci::cas::refs;

use super::util::{LayoutArgs, open_layout, print_out};

/// Arguments of `list`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    layout: LayoutArgs,
}

/// Print the tags in `index.json` order, one per line.
pub fn run(a: Args) -> Result<()> {
    let cas = open_layout(a.layout.path()?)?;
    let mut text = String::new();
    for tag in refs::list_tags(cas.as_ref())? {
        text.push_str(&tag);
        text.push('\n');
    }
    print_out(&text)
}
