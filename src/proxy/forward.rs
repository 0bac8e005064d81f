//! The life of a proxied request after parsing: resolve, call the provider, answer.

use super::relay::Relay;
use super::request_id::RequestId;
use crate::error::ApiError;
use crate::providers::{Reply, UpstreamCall};
use crate::state::AppState;
use crate::store::KeyRecord;
use crate::wire::RequestBody;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;

pub const PROVIDER_HEADER: &str = "x-switchboard-provider";
pub const MODEL_HEADER: &str = "x-switchboard-model";

pub async fn forward(
    state: &AppState,
    caller: &KeyRecord,
    request_id: &RequestId,
    mut body: RequestBody,
) -> Result<HttpResponse, ApiError> {
    let snapshot = state.snapshot();
    let target = snapshot
        .models
        .resolve(body.model())
        .ok_or_else(|| ApiError::model_not_found(body.model()))?;
    if !caller.allows_model(&target.id, &target.model.name) {
        return Err(ApiError::forbidden(format!(
            "This key may not use the model `{}`.",
            body.model()
        ))
        .with_param("model")
        .with_code("model_not_allowed"));
    }
    let provider = snapshot.provider(&target.provider).ok_or_else(|| {
        tracing::error!(provider = %target.provider, "model index names a provider that is not built");
        ApiError::internal("the provider for this model is not available")
    })?;

    let stream = body.is_stream();
    let client_wants_usage = body.wants_stream_usage();
    // Ask for the usage chunk even when the client did not, so streams can be accounted.
    if stream && !client_wants_usage && provider.asks_stream_usage() {
        body.request_stream_usage();
    }

    let reply = provider
        .call(UpstreamCall {
            request_id: request_id.as_str(),
            body: &body,
            upstream_model: &target.model.upstream,
        })
        .await?;

    let mut response = match &reply {
        Reply::Json { status, .. } => HttpResponse::build(*status),
        Reply::Stream(_) => HttpResponse::build(StatusCode::OK),
    };
    response
        .insert_header((PROVIDER_HEADER, &*target.provider))
        .insert_header((MODEL_HEADER, target.model.name.as_str()));
    Ok(match reply {
        Reply::Json { body, .. } => response
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(body),
        Reply::Stream(events) => {
            let request_id = request_id.clone();
            let on_finish = Box::new(move |outcome: super::relay::StreamOutcome| {
                tracing::debug!(request_id = %request_id.as_str(), ?outcome, "stream finished");
            });
            response
                .insert_header((CONTENT_TYPE, "text/event-stream"))
                .insert_header((CACHE_CONTROL, "no-cache"))
                .insert_header(("x-accel-buffering", "no"))
                .streaming(Relay::new(events, !client_wants_usage, Some(on_finish)))
        }
    })
}
