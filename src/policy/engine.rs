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

pub fn build() -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(32)
        .set_max_expr_depths(64, 32)
        .set_max_string_size(1 << 20)
        .set_max_array_size(100_000)
        .set_max_map_size(10_000)
        .set_strict_variables(true);
    engine.on_progress(|ops| {
        // Reading the clock every op would dominate; every 1024 ops is plenty.
        if ops % 1024 != 0 {
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
    engine
}
