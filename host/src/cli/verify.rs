//! `rumoci verify --layout PATH [--json]`

use anyhow::Result;
use rumoci::cas::check::Problem;

use super::driver::Session;
use super::output::{ProblemsFound, print_json, print_out};
use super::util::LayoutReportArgs;

/// Arguments of `verify`.
pub type Args = LayoutReportArgs;

/// One problem of `verify --json`.
#[derive(serde::Serialize)]
struct ProblemJson<'a> {
    kind: &'static str,
    path: &'a str,
    digest: Option<String>,
    message: &'a str,
}

/// The JSON form of problems or warnings.
fn to_json(list: &[Problem]) -> Vec<ProblemJson<'_>> {
    list.iter()
        .map(|p| ProblemJson {
            kind: p.kind.as_str(),
            path: &p.path,
            digest: p.digest.as_ref().map(ToString::to_string),
            message: &p.reason,
        })
        .collect()
}

/// Check every reachable object; print each problem (a line each, or one
/// JSON document); exit status 1 if any (2 if the check could not run).
/// Warnings (a missing `subject` or foreign layer, a document of its
/// descriptor's twin media type) go to the log (stderr), or under
/// `warnings` in the JSON document, and leave the status 0.
pub fn run(a: Args, s: &Session) -> Result<()> {
    let report = s.open_layout(a.layout.path()?)?.verify_report();
    let problems = &report.problems;
    if a.json.json {
        print_json(&serde_json::json!({
            "layout": a.layout.layout,
            "problems": to_json(problems),
            "warnings": to_json(&report.warnings),
            "summary": {
                "ok": problems.is_empty(),
                "problems": problems.len(),
                "warnings": report.warnings.len(),
            },
        }))?;
    } else {
        for w in &report.warnings {
            tracing::warn!("verify: {w}");
        }
        let text: String = problems.iter().map(|p| format!("{p}\n")).collect();
        print_out(&text)?;
    }
    if !problems.is_empty() {
        let n = problems.len();
        return Err(ProblemsFound(format!(
            "verify {}: {n} problem{} found",
            a.layout.layout,
            if n == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(())
}
