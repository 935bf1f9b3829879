//! `rumoci verify --layout PATH [--json]`

use anyhow::Result;

use super::util::{JsonArgs, LayoutArgs, ProblemsFound, open_layout, print_json, print_out};

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    layout: LayoutArgs,
    #[command(flatten)]
    json: JsonArgs,
}

/// One problem of `verify --json`.
#[derive(serde::Serialize)]
struct ProblemJson<'a> {
    kind: &'static str,
    path: &'a str,
    digest: Option<String>,
    message: &'a str,
}

/// Check every reachable object; print each problem (a line each, or one
/// JSON document); exit status 1 if any (2 if the check could not run).
pub fn run(a: Args) -> Result<()> {
    let problems = open_layout(a.layout.path()?)?.verify();
    if a.json.json {
        let list: Vec<ProblemJson<'_>> = problems
            .iter()
            .map(|p| ProblemJson {
                kind: p.kind.as_str(),
                path: &p.path,
                digest: p.digest.as_ref().map(ToString::to_string),
                message: &p.reason,
            })
            .collect();
        print_json(&serde_json::json!({
            "layout": a.layout.layout,
            "problems": list,
            "summary": { "ok": problems.is_empty(), "problems": problems.len() },
        }))?;
    } else {
        let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
        print_out(&text)?;
    }
    if !problems.is_empty() {
        return Err(ProblemsFound(format!(
            "verify {}: {} problems found",
            a.layout.layout,
            problems.len()
        ))
        .into());
    }
    Ok(())
}
