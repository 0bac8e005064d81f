//! Stage 1, decide: the request's bounds, then the policies' `on_request` hooks, which may
//! rewrite the body and decide routes, cache, limits, variants, headers and tags, or reject.

use super::failure::Failure;
use super::request_id::RequestId;
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::policy::{Decision, PolicyEnv, Rejection, ScriptFailure};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::KeyRecord;
use crate::wire::RequestBody;
use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use std::sync::Arc;

/// Runs the policies on `body` and writes what they counted and assigned; a rejection is a
/// failure here, so later stages never see one.
pub async fn decide(
    state: &AppState,
    snapshot: &Snapshot,
    caller: &Arc<KeyRecord>,
    request_id: &RequestId,
    headers: &HeaderMap,
    body: RequestBody,
    env: PolicyEnv,
) -> Result<(RequestBody, Decision), Failure> {
    super::bounds::check(&body)?;
    let (body, mut decision) = snapshot
        .policies
        .on_request(
            body,
            caller.clone(),
            policy_headers(snapshot, headers),
            env.clone(),
        )
        .map_err(|f| {
            state.metrics.policy_error();
            policy_error(f, request_id)
        })?;
    // A rejected request's exposures and counts stand: the scripts ran. Written without
    // waiting: in process this finishes at once; to a shared store it is a round trip the
    // upstream call need not wait for (the writes update this instance's view first).
    let writes = std::mem::take(&mut decision.writes);
    super::eager::run_now_or_spawn(async move { env.commit(writes).await });
    if let Some(r) = &decision.rejection {
        return Err(rejected(r).into());
    }
    Ok((body, decision))
}

/// Request headers as policies see them: lower-case, without credentials.
pub fn script_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "authorization" | "proxy-authorization" | "cookie" | "x-api-key"
            )
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect()
}

/// The headers for `req.headers`, built only when some script can read them.
fn policy_headers(snapshot: &Snapshot, headers: &HeaderMap) -> Vec<(String, String)> {
    if snapshot.policies.reads_request_headers() {
        script_headers(headers)
    } else {
        Vec::new()
    }
}

/// A failed script: the client learns only that a policy failed and the request id to quote;
/// the script's name, line and message go to the log and the request log entry, since they
/// describe the operator's configuration, not the client's request.
fn policy_error(failure: ScriptFailure, request_id: &RequestId) -> Failure {
    let request_id = request_id.log_id();
    tracing::error!(request_id, %failure, "policy failed the request");
    Failure {
        error: Box::new(
            ApiError::internal(format!(
                "A policy of this gateway failed on the request; the operator can find the cause \
             in the request log under request id {request_id}."
            ))
            .with_code(Code::PolicyError),
        ),
        attempts: None,
        calls: 0,
        detail: Some(format!("policy error: {failure}")),
    }
}

fn rejected(r: &Rejection) -> ApiError {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    let kind = match r.status {
        429 => "rate_limit_error",
        401 => "authentication_error",
        403 => "permission_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    ApiError::new(status, kind, r.message.clone()).with_code(Code::PolicyRejected)
}
