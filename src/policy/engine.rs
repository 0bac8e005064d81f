//! The one Rhai engine: limits, the time budget, and the API scripts see.
//!
//! `Engine::new()` is costly (~200 µs), so it is built once per process and shared (rhai's
//! `sync` feature) by every worker and every reload.

use super::ctx::PolicyCtx;
use super::request::ScriptRequest;
use rhai::{Dynamic, Engine};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Operations one hook call may run.
pub const MAX_OPERATIONS: u64 = 1_000_000;
/// Wall-clock time one hook call may take.
pub const TIME_BUDGET: Duration = Duration::from_millis(50);
/// The clock is read every this many operations. One operation can be costly (a search of a
/// 10,000-element array, a copy of a long string), so the gap must be short for the budget to
/// hold; reading the clock costs ~20 ns, about 1 ns per operation at this interval.
const CLOCK_EVERY_OPS: u64 = 16;
/// The most elements an array (or entries a map) may hold: with `CLOCK_EVERY_OPS`, this bounds
/// how far past its budget a script can run (see README, Safety).
pub const MAX_ARRAY_SIZE: usize = 10_000;
pub const MAX_MAP_SIZE: usize = 10_000;
/// Strings are allowed up to this size at least; larger when the body limit is larger, so any
/// request the gateway admits can be read by a policy.
pub const MIN_STRING_SIZE: usize = 1 << 20;

thread_local! {
    /// When the hook running on this thread must stop; set by `with_deadline`.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with the time budget armed for this thread.
pub fn with_deadline<T>(budget: Duration, f: impl FnOnce() -> T) -> T {
    DEADLINE.with(|d| d.set(Some(Instant::now() + budget)));
    let out = f();
    DEADLINE.with(|d| d.set(None));
    out
}

/// The engine for a gateway that admits request bodies up to `body_limit` bytes.
pub fn build(body_limit: usize) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(body_limit.max(MIN_STRING_SIZE))
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .set_strict_variables(true)
        // Scripts do no I/O and run only what was loaded: no `eval` of built strings, and no
        // `import` of modules (which would read any `.rhai` file on the machine).
        .set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.on_progress(|ops| {
        if ops % CLOCK_EVERY_OPS != 0 {
            return None;
        }
        let expired = DEADLINE.with(|d| d.get().is_some_and(|at| Instant::now() > at));
        expired.then(|| {
            Dynamic::from(format!(
                "time budget of {} ms exceeded",
                TIME_BUDGET.as_millis()
            ))
        })
    });
    // Scripts log through the gateway's log, not stdout.
    engine.on_print(|s| tracing::info!(target: "policy", "{s}"));
    engine.on_debug(|s, src, pos| tracing::debug!(target: "policy", source = src.unwrap_or(""), line = pos.line().unwrap_or(0), "{s}"));
    ScriptRequest::register(&mut engine);
    PolicyCtx::register(&mut engine);
    super::library::ScriptRegex::register(&mut engine);
    super::library::DataFile::register(&mut engine);
    engine
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_library_builds_no_array_longer_than_the_engine_allows() {
        assert_eq!(super::MAX_ARRAY_SIZE, super::super::library::MAX_RESULTS);
    }
}
