//! `rumoci verify --layout PATH [--json] [--signatures]`

use anyhow::Result;
use rumoci::cas::check::Problem;

use super::driver::Session;
use super::output::{ProblemsFound, print_json, print_out};
use super::util::LayoutReportArgs;

/// Arguments of `verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    report: LayoutReportArgs,
    /// Also check every tag's signatures against the policy (`--policy`,
    /// else skopeo's policy files): a tag the policy refuses is a problem.
    #[arg(long)]
    signatures: bool,
}

/// One tag's policy verdict.
#[derive(serde::Serialize)]
struct SignatureJson {
    tag: String,
    accepted: bool,
    message: String,
}

/// The policy's verdict on every tag (cosign attachment tags left out).
fn check_signatures(
    layout: &std::path::Path,
    store: &rumoci::image::Store,
    s: &Session,
) -> Result<Vec<SignatureJson>> {
    let Some(policy) = super::policy::load(s)? else {
        anyhow::bail!(
            "verify --signatures: no policy (give --policy FILE, or create $HOME/.config/containers/policy.json or /etc/containers/policy.json)"
        );
    };
    let mut tags: Vec<String> = store.tags()?.into_iter().map(|(t, _)| t).collect();
    tags.dedup();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for tag in tags {
        if rumoci::sign::attach::is_attachment_tag(&tag) || !seen.insert(tag.clone()) {
            continue;
        }
        let verdict = super::policy::check_with(&policy, s, None, store, layout, &tag);
        out.push(match verdict {
            Ok(a) => SignatureJson {
                accepted: true,
                message: format!("accepted ({}: {})", a.scope, a.rules.join(", ")),
                tag,
            },
            Err(e) => SignatureJson {
                accepted: false,
                message: format!("{e:#}"),
                tag,
            },
        });
    }
    Ok(out)
}

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
    let (layout, json) = (&a.report.layout, &a.report.json);
    let path = layout.path()?;
    let store = s.open_layout(path)?;
    let report = store.verify_report();
    let signatures = if a.signatures {
        Some(check_signatures(path, &store, s)?)
    } else {
        None
    };
    let problems = &report.problems;
    let refused = signatures.iter().flatten().filter(|v| !v.accepted).count();
    if json.json {
        let mut doc = serde_json::json!({
            "layout": layout.layout,
            "problems": to_json(problems),
            "warnings": to_json(&report.warnings),
            "summary": {
                "ok": problems.is_empty() && refused == 0,
                "problems": problems.len() + refused,
                "warnings": report.warnings.len(),
            },
        });
        if let Some(sigs) = &signatures {
            doc["signatures"] = serde_json::to_value(sigs)?;
        }
        print_json(&doc)?;
    } else {
        for w in &report.warnings {
            tracing::warn!("verify: {w}");
        }
        let mut text: String = problems.iter().map(|p| format!("{p}\n")).collect();
        for v in signatures.iter().flatten() {
            if v.accepted {
                tracing::info!("verify: {}: {}", v.tag, v.message);
            } else {
                text.push_str(&format!("signatures: {}\n", v.message));
            }
        }
        print_out(&text)?;
    }
    if !problems.is_empty() || refused > 0 {
        let n = problems.len() + refused;
        return Err(ProblemsFound(format!(
            "verify {}: {n} problem{} found",
            layout.layout,
            if n == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(())
}
