//! Stage 2, admit: the policies' request limits are charged and their token budgets checked.
//! It runs before the model is looked up, so every request a key makes uses its slot, a 404
//! or a 403 as much as a 200.

use crate::error::ApiError;
use crate::error_codes::Code;
use crate::policy::Decision;
use crate::state::AppState;
use crate::store::OverLimit;
use actix_web::http::StatusCode;

pub fn admit(state: &AppState, decision: &Decision) -> Result<(), ApiError> {
    state
        .store
        .counters
        .acquire(&decision.limits)
        .map_err(|o| {
            state.metrics.quota_rejection();
            over_limit(o, "request limit")
        })?;
    state
        .store
        .counters
        .check_budgets(&decision.token_limits)
        .map_err(|o| {
            state.metrics.quota_rejection();
            over_limit(o, "token budget")
        })
}

fn over_limit(o: OverLimit, what: &str) -> ApiError {
    let mut err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        format!(
            "{what} `{}` of {} is used up; try again in {} s",
            o.name, o.max, o.retry_after_secs
        ),
    )
    .with_code(Code::RateLimitExceeded);
    err.retry_after = Some(o.retry_after_secs);
    err
}
