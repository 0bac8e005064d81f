//! Which lines of each script a fixture run executed (`switchboard policy test`).
//!
//! Rhai has no coverage of its own; its debugger interface (feature `debugging`) is told of
//! every statement and expression evaluated, with its position. The gateway's engine never
//! registers a debugger: with none registered, rhai's check is one `Option::is_some` per node
//! evaluated, next to the operation counting it already does per node. Only the copy of a
//! policy set that fixtures run on gets an engine of its own with the recording debugger.
//! (The feature also gives scripts rhai's `back_trace()`, which answers an empty array on an
//! engine without a debugger.)

use super::{engine, PolicySet};
use rhai::debugger::DebuggerCommand;
use rhai::{ASTNode, Expr};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use utoipa::ToSchema;

/// The lines executed, by script name (the AST's source).
type Seen = Arc<Mutex<BTreeMap<String, BTreeSet<usize>>>>;

/// A copy of a policy set whose hooks record the lines they run.
pub struct Recording {
    pub policies: PolicySet,
    seen: Seen,
}

/// One script's coverage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScriptCoverage {
    pub script: String,
    /// Lines with code in a function (hooks and helpers); top-level code never runs per
    /// request, so it is not counted.
    pub lines: usize,
    pub executed: usize,
    /// The lines with code that no fixture ran.
    pub not_run: Vec<usize>,
}

impl ScriptCoverage {
    /// `default.rhai: 14/20 lines executed; not run: 7, 9-12`.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{}: {}/{} lines executed",
            self.script, self.executed, self.lines
        );
        if !self.not_run.is_empty() {
            text.push_str("; not run: ");
            text.push_str(&ranges(&self.not_run));
        }
        text
    }
}

/// `[7, 9, 10, 11, 12]` -> `7, 9-12`.
fn ranges(lines: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = lines[i];
        let mut end = start;
        while i + 1 < lines.len() && lines[i + 1] == end + 1 {
            i += 1;
            end = lines[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

impl PolicySet {
    /// This set on an engine of its own (limits as for `body_limit`) that records every line
    /// its hooks evaluate. For fixtures only: never for requests.
    pub fn recording(&self, body_limit: usize) -> Recording {
        let seen: Seen = Arc::default();
        let mut engine = engine::build(body_limit);
        let record = seen.clone();
        // rhai marks the debugger API "volatile" (deprecated in name only); Cargo.lock pins the
        // version, and the test below notices a change in what it reports.
        #[allow(deprecated)]
        engine.register_debugger(
            |_, debugger| debugger,
            move |_, _, node, source, pos| {
                if let (Some(script), Some(line)) = (source, pos.line()) {
                    if !transient(&node) {
                        let mut seen = record.lock().unwrap_or_else(|p| p.into_inner());
                        seen.entry(script.to_string()).or_default().insert(line);
                    }
                }
                // Step into everything, so every node is reported.
                Ok(DebuggerCommand::StepInto)
            },
        );
        let mut policies = self.detached();
        policies.engine = Arc::new(engine);
        for script in &mut policies.scripts {
            // The debugger tells scripts apart by their AST's source.
            script.ast.set_source(script.name.to_string());
        }
        Recording { policies, seen }
    }
}

/// Nodes that only wrap others (the debugger is not told of them).
fn transient(node: &ASTNode) -> bool {
    matches!(node, ASTNode::Expr(Expr::Stmt(..)))
}

impl Recording {
    /// Each script's lines with code, and which of them ran so far.
    pub fn coverage(&self) -> Vec<ScriptCoverage> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        self.policies
            .scripts
            .iter()
            .map(|script| {
                let mut lines = BTreeSet::new();
                script
                    .ast
                    .clone_functions_only()
                    .walk(&mut |path: &[ASTNode]| {
                        if let Some(node) = path.last() {
                            if let Some(line) = node.position().line().filter(|_| !transient(node))
                            {
                                lines.insert(line);
                            }
                        }
                        true
                    });
                let ran = seen.get(&*script.name);
                let not_run: Vec<usize> = lines
                    .iter()
                    .copied()
                    .filter(|l| !ran.is_some_and(|r| r.contains(l)))
                    .collect();
                ScriptCoverage {
                    script: script.name.to_string(),
                    lines: lines.len(),
                    executed: lines.len() - not_run.len(),
                    not_run,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_collapsed() {
        assert_eq!(ranges(&[7, 9, 10, 11, 12, 20]), "7, 9-12, 20");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn lines_run_by_a_hook_are_recorded_per_script() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.rhai"),
            "// routes\nfn on_request(req, ctx) {\n    if req.model == \"x\" {\n        ctx.tag(\"x\", \"1\");\n    } else {\n        ctx.tag(\"y\", \"1\");\n    }\n}\n",
        )
        .unwrap();
        let set = PolicySet::load_dir(Arc::new(engine::build(1 << 20)), dir.path(), false).unwrap();
        let recording = set.recording(1 << 20);
        let env = super::super::PolicyEnv {
            counters: Arc::new(crate::store::memory::counters::MemoryCounters::default()),
            assignments: Arc::new(crate::store::memory::assignments::MemoryAssignments::default()),
            simulate: true,
            providers: None,
            client_ip: None,
            batch_id: None,
        };
        let body = crate::wire::RequestBody::from(crate::wire::Typed::Chat(
            serde_json::from_value(serde_json::json!({"model": "x", "messages": []})).unwrap(),
        ));
        let key = Arc::new(crate::policy::fixtures::FixtureKey::default().record());
        let (_, decision) = recording
            .policies
            .on_request(body, key, vec![], env)
            .unwrap();
        assert_eq!(decision.tags["x"], "1", "the recording set still decides");
        let coverage = recording.coverage();
        assert_eq!(coverage.len(), 1);
        assert_eq!(coverage[0].not_run, [6], "{coverage:?}");
        assert_eq!(
            coverage[0].summary(),
            format!(
                "a.rhai: {}/{} lines executed; not run: 6",
                coverage[0].lines - 1,
                coverage[0].lines
            )
        );
        assert_eq!(coverage[0].lines, 3, "lines 3, 4 and 6: {coverage:?}");
    }
}
