//! Stage 5, dispatch: the router tries the targets (balancing, breakers, retries, fallback)
//! until one answers; every upstream call is counted against the provider it went to.

use super::failure::Failure;
use super::request_id::RequestId;
use crate::error::ApiError;
use crate::policy::Decision;
use crate::router::attempts::{self, AttemptOutcome, AttemptRecord, Served, Then};
use crate::router::Target;
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::logs::AttemptLog;
use crate::wire::RequestBody;

#[allow(clippy::too_many_arguments)]
pub async fn dispatch(
    state: &AppState,
    snapshot: &Snapshot,
    request_id: &RequestId,
    targets: &[Target],
    body: &mut RequestBody,
    decision: &Decision,
    ask_stream_usage: bool,
    may_use: &(dyn Fn(&Target) -> bool + Sync),
    trace: &crate::telemetry::RequestTrace,
) -> Result<Served, Failure> {
    let outcome = attempts::run(
        &state.health,
        snapshot,
        targets,
        attempts::Call {
            request_id: request_id.as_str(),
            body,
            ask_stream_usage,
            plan: &decision.route,
            may_use,
            trace,
        },
    )
    .await;
    match outcome {
        Ok(served) => {
            count_attempts(state, &served.attempts);
            Ok(served)
        }
        Err(failed) => {
            let calls = attempts::calls(&failed.attempts);
            count_attempts(state, &failed.attempts);
            Err(Failure {
                error: Box::new(with_attempts(failed.error, calls)),
                attempts: AttemptLog::of(&failed.attempts),
                calls,
                detail: None,
            })
        }
    }
}

/// Counts every upstream call that did not serve the reply against the provider it went to.
/// The one that served is counted with its usage when the request is settled.
fn count_attempts(state: &AppState, records: &[AttemptRecord]) {
    for r in records
        .iter()
        .filter(|r| r.called() && r.then != Then::Served)
    {
        let model = r
            .target
            .strip_prefix(&*r.provider)
            .and_then(|m| m.strip_prefix('/'))
            .unwrap_or(&r.target);
        let ok = matches!(r.outcome, AttemptOutcome::Ok { status } if status < 400);
        state.metrics.upstream(
            &r.provider,
            model,
            ok,
            false,
            0,
            0,
            0.0,
            r.latency_ms as f64 / 1000.0,
        );
    }
}

fn with_attempts(mut e: ApiError, attempts: u32) -> ApiError {
    if attempts > 1 {
        e.message = format!("{} (after {attempts} attempts)", e.message);
    }
    e
}
