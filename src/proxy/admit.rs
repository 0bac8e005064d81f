//! Stage 2, admit: the policies' request limits are charged and their token budgets checked.
//! It runs before the model is looked up, so every request a key makes uses its slot, a 404
//! or a 403 as much as a 200.

use crate::error::ApiError;
use crate::error_codes::Code;
use crate::policy::Decision;
use crate::state::AppState;
use crate::store::{AdmitError, OverLimit};
use actix_web::http::StatusCode;

pub async fn admit(state: &AppState, decision: &Decision) -> Result<(), ApiError> {
    let counters = &state.store.counters;
    if !decision.limits.is_empty() {
        counters
            .acquire(&decision.limits)
            .await
            .map_err(|e| refused(state, e, "request limit"))?;
    }
    if !decision.token_limits.is_empty() {
        counters
            .check_budgets(&decision.token_limits)
            .await
            .map_err(|e| refused(state, e, "token budget"))?;
    }
    Ok(())
}

/// A limit used up is a 429; a store that cannot say is a 503, and nothing is admitted on a
/// guess.
fn refused(state: &AppState, e: AdmitError, what: &str) -> ApiError {
    match e {
        AdmitError::Over(o) => {
            state.metrics.quota_rejection();
            over_limit(o, what)
        }
        AdmitError::Store(e) => {
            tracing::error!(error = %e, "could not check a {what}");
            ApiError::storage_unavailable()
        }
    }
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
