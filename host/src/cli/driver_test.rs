//! `rumoci driver test PLUGIN.wasm[,opts]`: the conformance runner.

use std::path::PathBuf;

use super::driver::Session;
use anyhow::{Context, Result};
use rumoci::driver::DriverSource;
use rumoci_conform::{self as conform, Outcome};

/// Arguments of `driver test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The plugin and its settings, as for `--driver`:
    /// `PATH.wasm[,url=…][,timeout=…][,memory=…][,opt.KEY=VALUE…]`. With
    /// `dir=`, a plugin without `cas.init` is tested on that existing store
    /// (test blobs are written into it).
    #[arg(value_name = "PLUGIN.wasm[,OPTS]")]
    spec: String,
    /// Scratch directory for the stores the checks create (default: a new
    /// temporary directory, removed when every check passed).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Also print the rule each passing check tests.
    #[arg(long = "rules")]
    rules: bool,
}

/// Run the checks, print one line per check, fail if any failed.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let spec = s.parse_spec(&a.spec)?;
    let DriverSource::Wasm(wasm) = &spec.source else {
        anyhow::bail!("driver test {}: only plugins (.wasm) are tested", a.spec);
    };
    let (work, temporary) = match &a.work {
        Some(w) => (w.clone(), false),
        None => {
            let base = std::env::temp_dir();
            let w = base.join(format!(
                "rumoci-driver-test-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            (w, true)
        }
    };
    let opts = conform::Options {
        work: work.clone(),
        exe: std::env::current_exe().ok(),
    };
    let summary = conform::run(wasm, &spec, &opts, &mut |c| {
        let line = match &c.outcome {
            Outcome::Pass if a.rules => {
                format!("ok    {}: {}\n      rule: {}\n", c.group, c.name, c.rule)
            }
            Outcome::Pass => format!("ok    {}: {}\n", c.group, c.name),
            Outcome::Fail(why) => format!(
                "FAIL  {}: {}\n      {why}\n      rule: {}\n",
                c.group, c.name, c.rule
            ),
            Outcome::Skip(why) => format!("skip  {}: {} ({why})\n", c.group, c.name),
        };
        // each line as soon as its check ends
        let _ = super::output::print_out(&line);
    });
    super::output::print_out(&format!(
        "{} passed, {} failed, {} skipped\n",
        summary.passed, summary.failed, summary.skipped
    ))?;
    if summary.failed > 0 {
        anyhow::bail!(
            "driver test {}: {} of {} checks failed (stores kept in {})",
            rumoci::show::name(wasm),
            summary.failed,
            summary.passed + summary.failed + summary.skipped,
            work.display()
        );
    }
    if temporary {
        rumoci::fs::root::remove_tree(&work)
            .with_context(|| format!("removing {}", work.display()))?;
    }
    Ok(())
}
