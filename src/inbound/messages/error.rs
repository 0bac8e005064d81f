//! Errors in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
//!
//! Anthropic's SDKs pick their exception class from the HTTP status, but code that reads the
//! body (and every error inside a stream, where the status was already 200) goes by
//! `error.type`, so the type is derived from the status the gateway chose, the way Anthropic
//! pairs them.

use crate::error::ApiError;
use actix_web::http::StatusCode;
use serde_json::json;

/// The error body an Anthropic client expects.
pub fn body(error: &ApiError) -> String {
    json!({
        "type": "error",
        "error": {"type": error_type(error.status), "message": error.message},
    })
    .to_string()
}

/// Anthropic's `error.type` for an HTTP status. 504 is Anthropic's `timeout_error`; any other
/// 4xx is an `invalid_request_error`, any other status an `api_error`.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        402..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn types_follow_the_status() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (409, "invalid_request_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(error_type(status), kind, "{status}");
        }
    }

    #[test]
    fn body_has_anthropics_shape_and_the_message() {
        let error = ApiError::bad_request("messages: must not be empty").with_param("messages");
        let body: Value = serde_json::from_str(&body(&error)).unwrap();
        assert_eq!(
            body,
            json!({"type": "error", "error": {
                "type": "invalid_request_error",
                "message": "messages: must not be empty",
            }})
        );
        let body: Value =
            serde_json::from_str(&super::body(&ApiError::gateway_timeout("slow"))).unwrap();
        assert_eq!(body["error"]["type"], "timeout_error");
    }
}
