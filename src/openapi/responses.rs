//! Error responses shared by many operations, so each handler's annotation lists its own
//! successes and only the errors particular to it.

use crate::error::ErrorResponse;
use utoipa::IntoResponses;

/// Every `/v1` endpoint needs a live key.
#[derive(IntoResponses)]
pub enum KeyRequired {
    /// No key, a malformed `Authorization` header, an unknown, revoked or expired key.
    #[response(
        status = 401,
        description = "Missing, invalid, revoked or expired API key"
    )]
    Unauthorized(ErrorResponse),
}

/// Every `/admin` endpoint (and `/metrics`) needs an admin key.
#[derive(IntoResponses)]
pub enum AdminRequired {
    #[response(
        status = 401,
        description = "Missing, invalid, revoked or expired API key"
    )]
    Unauthorized(ErrorResponse),
    #[response(status = 403, description = "The key is a user key, not an admin key")]
    Forbidden(ErrorResponse),
}

/// What can go wrong once a proxied request is authorised: the request, the policies, the
/// limits and the upstream.
#[derive(IntoResponses)]
pub enum ProxyErrors {
    #[response(
        status = 400,
        description = "The body is empty, not JSON, or lacks a required field (`param` names it); \
            `model` is longer than 256 bytes (`code`: `model_too_long`); \
            or the upstream rejected the request"
    )]
    BadRequest(ErrorResponse),
    #[response(
        status = 403,
        description = "The key may not use this model, or a policy rejected the request"
    )]
    Forbidden(ErrorResponse),
    #[response(
        status = 404,
        description = "No provider serves the model (`code`: `model_not_found`)"
    )]
    NotFound(ErrorResponse),
    #[response(
        status = 413,
        description = "The body is larger than the gateway's limit (`--body-limit`)"
    )]
    TooLarge(ErrorResponse),
    #[response(
        status = 422,
        description = "The upstream could not process the request (relayed)"
    )]
    Unprocessable(ErrorResponse),
    #[response(
        status = 429,
        description = "A policy limit or the upstream's rate limit; `retry-after` says when to retry",
        headers(("retry-after" = u64, description = "Seconds to wait"))
    )]
    RateLimited(ErrorResponse),
    #[response(
        status = 500,
        description = "A policy script failed, or the upstream reported an internal error"
    )]
    Internal(ErrorResponse),
    #[response(
        status = 502,
        description = "Every target failed: the upstream was unreachable or answered outside the protocol"
    )]
    BadGateway(ErrorResponse),
    #[response(
        status = 503,
        description = "The upstream is overloaded or unavailable (relayed)"
    )]
    Unavailable(ErrorResponse),
    #[response(status = 504, description = "The upstream did not answer in time")]
    Timeout(ErrorResponse),
}

/// A malformed path, query or body.
#[derive(IntoResponses)]
pub enum BadRequest {
    #[response(
        status = 400,
        description = "Invalid path, query or body; `param` names the field when there is one"
    )]
    BadRequest(ErrorResponse),
}

/// A read or write of the embedded store failed (details go to the gateway log).
#[derive(IntoResponses)]
pub enum StoreFailed {
    #[response(status = 500, description = "The store failed; see the gateway log")]
    Internal(ErrorResponse),
    #[response(
        status = 503,
        description = "The store cannot write (a full disk, an I/O error) or is recovering from it (`code: storage_unavailable`, with `retry-after`); a change asked for may not have been saved",
        headers(("retry-after" = u64, description = "Seconds to wait before trying again"))
    )]
    Unavailable(ErrorResponse),
}

/// The named resource does not exist.
#[derive(IntoResponses)]
pub enum NotFound {
    #[response(status = 404, description = "No such resource")]
    NotFound(ErrorResponse),
}

/// Endpoints that read a request body.
#[derive(IntoResponses)]
pub enum TooLarge {
    #[response(
        status = 413,
        description = "The body is larger than the gateway's limit"
    )]
    TooLarge(ErrorResponse),
}
