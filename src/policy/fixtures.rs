//! `switchboard policy test`: fixture files of requests and the decisions expected for them.
//!
//! Fixtures live in `<policies>/tests/*.yaml`, each a list of cases:
//!
//! ```yaml
//! - name: smart goes to the big model, falling back to the mock
//!   request: { model: smart, messages: [{ role: user, content: hi }] }
//!   key: { id: key_a, role: user, tags: { team: search } }   # optional
//!   headers: { x-team: search }                              # optional
//!   expect:                       # only the fields given are compared
//!     route: [openai/gpt-4o, mock/echo]
//!     cache_ttl: 600              # or null for "no caching"
//! ```

use super::coverage::ScriptCoverage;
use super::simulate::{simulate_with, Simulation};
use super::{LoadError, PolicySet};
use crate::store::memory::assignments::MemoryAssignments;
use crate::store::memory::counters::MemoryCounters;
use crate::store::{AssignmentStore, CounterStore, KeyRecord, Role};
use crate::wire::{Endpoint, RequestBody};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub endpoint: Endpoint,
    pub request: Value,
    #[serde(default)]
    pub key: FixtureKey,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The client address `req.client_ip` reports.
    #[serde(default)]
    pub client_ip: Option<std::net::IpAddr>,
    /// The batch `req.batch_id` reports (default: none, a live request).
    #[serde(default)]
    pub batch_id: Option<String>,
    /// Providers as `ctx.provider(name)` / `ctx.providers()` see them (health, models, prices).
    #[serde(default)]
    pub providers: Vec<super::facts::ProviderFacts>,
    /// A reply's text to run through the output guard the policies declared; `expect.output`
    /// is what the client would get (`{text: ...}` or `{blocked: check}`).
    #[serde(default)]
    pub reply: Option<String>,
    pub expect: BTreeMap<String, Value>,
}

/// A key described inline; every field has a default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixtureKey {
    #[serde(default = "default_key_id")]
    pub id: String,
    #[serde(default = "default_key_name")]
    pub name: String,
    #[serde(default = "default_role")]
    pub role: Role,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_key_id() -> String {
    "key_fixture".into()
}
fn default_key_name() -> String {
    "fixture".into()
}
fn default_role() -> Role {
    Role::User
}

impl Default for FixtureKey {
    fn default() -> Self {
        FixtureKey {
            id: default_key_id(),
            name: default_key_name(),
            role: default_role(),
            tags: BTreeMap::new(),
        }
    }
}

impl FixtureKey {
    pub fn record(&self) -> KeyRecord {
        KeyRecord {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            masked: String::new(),
            created_at: 0,
            models: vec![],
            tags: self.tags.clone(),
            revoked_at: None,
            expires_at: None,
            metadata: Default::default(),
            limits: Default::default(),
            team: None,
        }
    }
}

/// What `expect` may name, and how each is read off a simulation.
const FIELDS: &[&str] = &[
    "route",
    "cache_ttl",
    "variants",
    "rejection",
    "headers",
    "tags",
    "limits",
    "token_limits",
    "request",
    "error",
    "balance",
    "timeouts",
    "output_guard",
    "output",
    "mirror",
];

/// One case's result: `None` when it passed, or the mismatches.
pub fn check(case: &Case, sim: &Simulation) -> Vec<String> {
    let mut actual = match serde_json::to_value(sim) {
        Ok(v) => v,
        Err(e) => return vec![format!("cannot read the simulation: {e}")],
    };
    let mut problems = Vec::new();
    if let Some(reply) = &case.reply {
        match guarded_output(sim, reply) {
            Ok(output) => actual["output"] = output,
            Err(p) => problems.push(p.to_string()),
        }
    }
    for (field, expected) in &case.expect {
        if !FIELDS.contains(&field.as_str()) {
            problems.push(format!(
                "unknown expectation `{field}` (use one of {})",
                FIELDS.join(", ")
            ));
            continue;
        }
        let got = &actual[field.as_str()];
        if !matches(expected, got) {
            problems.push(format!("{field}: expected {expected}, got {got}"));
        }
    }
    problems
}

/// A sample reply through the declared guard, whole and as a stream of one character a chunk
/// (which must agree: the hold-back may not change the outcome for matches it covers).
fn guarded_output(sim: &Simulation, reply: &str) -> Result<Value, OutputMismatch> {
    use super::guard::{StreamCheck, Verdict};
    let Some(guard) = &sim.guard else {
        return Ok(serde_json::json!({ "text": reply }));
    };
    let as_value = |v: Verdict| match v {
        Verdict::Pass(text) => serde_json::json!({ "text": text }),
        Verdict::Blocked(by) => serde_json::json!({ "blocked": by }),
    };
    let whole = as_value(guard.0.check(reply));
    let mut stream = StreamCheck::new(guard.0.clone());
    let mut text = String::new();
    let mut streamed = None;
    for c in reply.chars() {
        match stream.push(c.encode_utf8(&mut [0; 4])) {
            Verdict::Pass(t) => text.push_str(&t),
            blocked => {
                streamed = Some(as_value(blocked));
                break;
            }
        }
    }
    let streamed = streamed.unwrap_or_else(|| match stream.finish() {
        Verdict::Pass(t) => serde_json::json!({ "text": format!("{text}{t}") }),
        blocked => as_value(blocked),
    });
    if streamed != whole {
        return Err(OutputMismatch { whole, streamed });
    }
    Ok(whole)
}

/// A sample reply the guard treats differently whole and streamed.
#[derive(Debug, thiserror::Error)]
#[error("output: the reply whole gives {whole} but streamed gives {streamed} (a match longer than the hold-back?)")]
struct OutputMismatch {
    whole: Value,
    streamed: Value,
}

/// Expected maps match when every key they name matches (extra keys are fine), except that
/// `{}` means "empty"; everything else must be equal. So `request: {temperature: 0.2}` checks
/// one rewritten field, and `rejection: {status: 429}` need not repeat the message.
fn matches(expected: &Value, got: &Value) -> bool {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) if e.is_empty() => g.is_empty(),
        (Value::Object(e), Value::Object(g)) => e
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| matches(v, gv))),
        (Value::Array(e), Value::Array(g)) => {
            e.len() == g.len() && e.iter().zip(g).all(|(a, b)| matches(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => expected == got,
    }
}

/// Why fixtures could not be run at all (a failing case is part of the [`Report`] instead).
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The policies themselves do not load; one line per error.
    #[error("{}", lines(.0))]
    Policies(Vec<LoadError>),
    #[error("cannot read {}: {error}", .dir.display())]
    ReadDir { dir: PathBuf, error: std::io::Error },
    #[error("{file}: {error}")]
    ReadFile { file: String, error: std::io::Error },
    #[error("{file}: {error}")]
    Parse {
        file: String,
        error: serde_yaml::Error,
    },
}

fn lines(errors: &[LoadError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

pub struct Report {
    pub passed: usize,
    pub failed: usize,
    pub lines: Vec<String>,
    /// Each case's outcome, in file and case order.
    pub cases: Vec<CaseResult>,
    /// The lines of each script the cases executed (with [`run_covered`]).
    pub coverage: Vec<ScriptCoverage>,
}

/// One fixture case's outcome.
#[derive(Debug, Clone, serde::Serialize, ToSchema)]
pub struct CaseResult {
    /// The fixture file, e.g. `aliases.yaml`.
    pub file: String,
    /// The case's `name`.
    pub name: String,
    pub passed: bool,
    /// What differed from `expect` (empty when it passed).
    pub problems: Vec<String>,
}

/// Loads the policies in `dir` and runs every fixture in `dir/tests`.
pub fn run_dir(dir: &Path) -> Result<Report, FixtureError> {
    let engine = Arc::new(super::engine::build(
        crate::settings::Settings::DEFAULT_BODY_LIMIT,
    ));
    let policies = PolicySet::load_dir(engine, dir, false).map_err(FixtureError::Policies)?;
    run_covered(
        &policies,
        &dir.join("tests"),
        crate::settings::Settings::DEFAULT_BODY_LIMIT,
    )
}

/// [`run`], recording which lines of each script the cases executed (on an engine of its own
/// whose limits follow `body_limit`).
pub fn run_covered(
    policies: &PolicySet,
    tests_dir: &Path,
    body_limit: usize,
) -> Result<Report, FixtureError> {
    let recording = policies.recording(body_limit);
    let mut report = run(&recording.policies, tests_dir)?;
    report.coverage = recording.coverage();
    Ok(report)
}

/// Runs every fixture file in `tests_dir` against `policies` (loaded from disk, or a copy with
/// a draft swapped in by the editor).
pub fn run(policies: &PolicySet, tests_dir: &Path) -> Result<Report, FixtureError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(tests_dir)
        .map_err(|error| FixtureError::ReadDir {
            dir: tests_dir.to_path_buf(),
            error,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    // Counters and assignments start empty, in memory: a fixture run touches no disk.
    let counters: Arc<dyn CounterStore> = Arc::new(MemoryCounters::default());
    let assignments: Arc<dyn AssignmentStore> = Arc::new(MemoryAssignments::default());

    let mut report = Report {
        passed: 0,
        failed: 0,
        lines: Vec::new(),
        cases: Vec::new(),
        coverage: Vec::new(),
    };
    for file in files {
        let label = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&file).map_err(|error| FixtureError::ReadFile {
            file: label.clone(),
            error,
        })?;
        let cases: Vec<Case> =
            serde_yaml::from_str(&text).map_err(|error| FixtureError::Parse {
                file: label.clone(),
                error,
            })?;
        for case in cases {
            let problems = run_case(policies, &case, &counters, &assignments);
            report.record(CaseResult {
                file: label.clone(),
                name: case.name,
                passed: problems.is_empty(),
                problems,
            });
        }
    }
    Ok(report)
}

/// One case against `policies`: what differed from its `expect`.
fn run_case(
    policies: &PolicySet,
    case: &Case,
    counters: &Arc<dyn CounterStore>,
    assignments: &Arc<dyn AssignmentStore>,
) -> Vec<String> {
    let body = match RequestBody::from_json(case.endpoint, case.request.clone()) {
        Ok(body) => body,
        Err(e) => return vec![format!("request: {e}")],
    };
    let headers = case
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let client = super::simulate::SimulatedClient {
        providers: Some(Arc::new(super::facts::FixedProviders(
            case.providers.clone(),
        ))),
        client_ip: case.client_ip,
        batch_id: case.batch_id.clone(),
    };
    // Fixtures run on the memory store, whose calls finish at once.
    match futures_util::FutureExt::now_or_never(simulate_with(
        policies,
        body,
        Arc::new(case.key.record()),
        headers,
        counters.clone(),
        assignments.clone(),
        client,
    )) {
        Some(sim) => check(case, &sim),
        None => vec!["the store did not answer".into()],
    }
}

impl Report {
    fn record(&mut self, case: CaseResult) {
        if case.passed {
            self.passed += 1;
            self.lines
                .push(format!("ok    {}: {}", case.file, case.name));
        } else {
            self.failed += 1;
            self.lines
                .push(format!("FAIL  {}: {}", case.file, case.name));
            for p in &case.problems {
                self.lines.push(format!("      {p}"));
            }
        }
        self.cases.push(case);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(dir: &Path) -> String {
        match run_dir(dir) {
            Err(e) => e.to_string(),
            Ok(report) => panic!("ran: {:?}", report.lines),
        }
    }

    #[test]
    fn what_stops_a_run_names_its_folder_or_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.rhai"), "fn on_request(req, ctx) {}").unwrap();
        let err = error_of(dir.path());
        let tests_dir = dir.path().join("tests");
        assert!(
            err.starts_with(&format!("cannot read {}: ", tests_dir.display())),
            "{err}"
        );

        std::fs::create_dir(&tests_dir).unwrap();
        std::fs::write(tests_dir.join("bad.yaml"), "- name: [").unwrap();
        let err = error_of(dir.path());
        assert!(err.starts_with("bad.yaml: "), "{err}");

        for name in ["a.rhai", "b.rhai"] {
            std::fs::write(
                dir.path().join(name),
                "fn on_request(req, ctx) {\n  let = 1;\n}",
            )
            .unwrap();
        }
        let err = error_of(dir.path());
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "one line per script: {err}");
        assert!(lines[0].starts_with(&dir.path().join("a.rhai").display().to_string()));
        assert!(lines[1].starts_with(&dir.path().join("b.rhai").display().to_string()));
    }
}
