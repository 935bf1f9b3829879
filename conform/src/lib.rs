//! `rumoci driver test`: a conformance runner for driver plugins.
//!
//! It loads a plugin the way rumoci does and checks what the contract
//! (`sdk/wit/driver.wit` and `docs/plugins.md`) asks of it, one check at a
//! time, each reported as it finishes with the rule it tests:
//!
//! * `cas`: a content store, called directly through its exports
//!   (init/check answers, writes, commits, aborts, reads at offsets and
//!   through streams, deduplication, paging, the `index.json`
//!   compare-and-swap, clean-up after a killed writer, gc);
//! * `layer`: a layer store (prepare, commit, cached answers, parent
//!   chains, views, usage, paging, refusal to remove a parent, leftovers of
//!   a killed unpack);
//! * `e2e`: the rumoci binary itself run against the plugin and against
//!   the built-in driver on the same image, with results compared byte for
//!   byte (and index updates from several processes at once).
//!
//! A check that cannot run because an earlier one failed is skipped, and
//! so is one for an optional operation the plugin answers `unsupported`.

mod cas;
mod e2e;
mod layer;

use std::path::{Path, PathBuf};

use rumoci_wasm::driver::DriverSpec;

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// A scratch directory (created if missing) for the stores the checks
    /// create. Left in place for inspection; the caller removes it.
    pub work: PathBuf,
    /// The rumoci executable, for the checks that run several processes and
    /// the end-to-end comparison with the built-in driver (`None`: those
    /// are skipped).
    pub exe: Option<PathBuf>,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin did what the contract asks.
    Pass,
    /// It did not: what happened.
    Fail(String),
    /// Not run: why.
    Skip(String),
}

/// One check and its result.
#[derive(Debug, Clone)]
pub struct Check {
    /// The part of the contract: `meta`, `cas`, `layer-store`, `end-to-end`.
    pub group: &'static str,
    /// What was checked.
    pub name: String,
    /// What the contract says.
    pub rule: &'static str,
    /// How it went.
    pub outcome: Outcome,
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Checks passed.
    pub passed: usize,
    /// Checks failed.
    pub failed: usize,
    /// Checks skipped.
    pub skipped: usize,
}

/// Runs checks, reports each, and skips the rest of a group after a failed
/// gate.
pub(crate) struct Runner<'a> {
    sink: &'a mut dyn FnMut(&Check),
    summary: Summary,
    group: &'static str,
    /// The failed gate that makes the rest of the group skip.
    broken: Option<String>,
}

/// What a check returns: `Err` fails it with the message, `Ok(Some(why))`
/// skips it.
pub(crate) type Res = Result<Option<String>, String>;

impl<'a> Runner<'a> {
    fn new(sink: &'a mut dyn FnMut(&Check)) -> Runner<'a> {
        Runner {
            sink,
            summary: Summary::default(),
            group: "meta",
            broken: None,
        }
    }

    /// Start a group of checks.
    pub(crate) fn group(&mut self, group: &'static str) {
        self.group = group;
        self.broken = None;
    }

    fn emit(&mut self, name: &str, rule: &'static str, outcome: Outcome) {
        match &outcome {
            Outcome::Pass => self.summary.passed += 1,
            Outcome::Fail(_) => self.summary.failed += 1,
            Outcome::Skip(_) => self.summary.skipped += 1,
        }
        (self.sink)(&Check {
            group: self.group,
            name: name.to_string(),
            rule,
            outcome,
        });
    }

    /// Run one check; returns whether it passed (a skip is not a pass).
    pub(crate) fn check(
        &mut self,
        name: &str,
        rule: &'static str,
        f: impl FnOnce() -> Res,
    ) -> bool {
        if let Some(gate) = &self.broken {
            let why = format!("needs {gate:?} to pass");
            self.emit(name, rule, Outcome::Skip(why));
            return false;
        }
        let outcome = match f() {
            Ok(None) => Outcome::Pass,
            Ok(Some(why)) => Outcome::Skip(why),
            Err(e) => Outcome::Fail(one_line(&e)),
        };
        let passed = outcome == Outcome::Pass;
        self.emit(name, rule, outcome);
        passed
    }

    /// A check the rest of the group depends on: if it does not pass, the
    /// remaining checks of the group are skipped.
    pub(crate) fn gate(&mut self, name: &str, rule: &'static str, f: impl FnOnce() -> Res) -> bool {
        let ok = self.check(name, rule, f);
        if !ok && self.broken.is_none() {
            self.broken = Some(name.to_string());
        }
        ok
    }

    /// Whether a gate of the current group failed.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Skip every remaining check of the group, each reported, because of
    /// `what` (so a run reports the same checks whatever fails).
    pub(crate) fn skip_rest(&mut self, what: &str) {
        self.broken = Some(what.to_string());
    }
}

/// A message on one line, at most 600 characters.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 600 {
        let mut cut = 600;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Fail a check with `msg` unless `cond`.
pub(crate) fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

/// One page of a listing: the names on it and the next cursor.
pub(crate) type Page = (Vec<String>, Option<String>);

/// Every name a paged listing (`list-blobs`, `list-snapshots`) yields with
/// `limit`, checking the paging contract on the way: at most `limit` per
/// page, a cursor that advances, an end within `max_pages`.
pub(crate) fn page_through(
    limit: u32,
    max_pages: usize,
    mut page: impl FnMut(Option<&str>, u32) -> Result<Page, String>,
) -> Result<Vec<String>, String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..max_pages {
        let (names, next) = page(cursor.as_deref(), limit)?;
        ensure(names.len() <= limit as usize, || {
            format!("limit {limit}: a page of {} items", names.len())
        })?;
        seen.extend(names);
        match next {
            None => return Ok(seen),
            Some(n) => {
                ensure(Some(&n) != cursor.as_ref(), || {
                    format!("limit {limit}: the cursor does not advance")
                })?;
                cursor = Some(n);
            }
        }
    }
    Err(format!("limit {limit}: paging does not end"))
}

/// Whether a version string is `MAJOR.MINOR.PATCH[-PRE][+BUILD]`.
fn is_semver(v: &str) -> bool {
    let core = v.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Run every check that applies to the plugin `wasm` (loaded with `spec`),
/// reporting each to `sink` as it finishes.
pub fn run(
    wasm: &Path,
    spec: &DriverSpec,
    opts: &Options,
    sink: &mut dyn FnMut(&Check),
) -> Summary {
    let mut r = Runner::new(sink);
    let mut caps: Vec<String> = Vec::new();
    r.gate(
        "meta.info answers a name, a semver version and known capabilities",
        "info: name and version non-empty; version MAJOR.MINOR.PATCH; capabilities from the documented list, at least \"cas\" or \"layer-store\"",
        || {
            if let Err(e) = std::fs::create_dir_all(&opts.work) {
                return Err(format!("scratch directory {}: {e}", opts.work.display()));
            }
            let info = rumoci_wasm::driver::plugin_info(wasm, spec).map_err(|e| e.to_string())?;
            ensure(is_semver(&info.version), || {
                format!("version {:?} is not MAJOR.MINOR.PATCH", info.version)
            })?;
            let unknown: Vec<&String> = info
                .capabilities
                .iter()
                .filter(|c| !rumoci_wasm::driver::CAPABILITIES.iter().any(|(k, _)| k == c))
                .collect();
            ensure(unknown.is_empty(), || {
                format!("unknown capabilities {unknown:?} (a misspelt one is ignored by rumoci)")
            })?;
            caps = info.capabilities.clone();
            ensure(
                caps.iter().any(|c| c == "cas" || c == "layer-store"),
                || format!("declares neither \"cas\" nor \"layer-store\": {caps:?}"),
            )?;
            Ok(None)
        },
    );
    if r.is_broken() {
        return r.summary;
    }
    let has = |c: &str| caps.iter().any(|x| x == c);
    if has("cas") {
        r.group("cas");
        cas::run(&mut r, wasm, spec, opts, &caps);
        let broken = r.is_broken();
        r.group("end-to-end");
        if broken {
            r.skip_rest("the content-store checks");
        } else if !has("cas.init") {
            r.skip_rest("cas.init (rumoci init creates the stores compared)");
        }
        e2e::cas(&mut r, spec, opts);
    }
    if has("layer-store") {
        r.group("layer-store");
        layer::run(&mut r, wasm, spec, opts);
        let broken = r.is_broken();
        r.group("end-to-end");
        if broken {
            r.skip_rest("the layer-store checks");
        }
        e2e::layers(&mut r, spec, opts);
    }
    r.summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_versions() {
        assert!(is_semver("0.1.0"));
        assert!(is_semver("1.22.333-rc.1+build.5"));
        assert!(!is_semver("1.2"));
        assert!(!is_semver("v1.2.3"));
        assert!(!is_semver("1.2.x"));
    }

    #[test]
    fn gates_skip_the_rest_of_a_group() {
        let mut seen = Vec::new();
        let mut sink = |c: &Check| seen.push((c.name.clone(), c.outcome.clone()));
        let mut r = Runner::new(&mut sink);
        r.group("cas");
        assert!(r.gate("a", "", || Ok(None)));
        assert!(!r.gate("b", "", || Err("broken\nthing".into())));
        assert!(!r.check("c", "", || Ok(None)));
        r.group("layer-store");
        assert!(!r.check("d", "", || Ok(Some("optional".into()))));
        let s = r.summary;
        assert_eq!((s.passed, s.failed, s.skipped), (1, 1, 2));
        assert_eq!(seen[1].1, Outcome::Fail("broken thing".into()));
        assert!(matches!(&seen[2].1, Outcome::Skip(w) if w.contains("\"b\"")));
    }
}
