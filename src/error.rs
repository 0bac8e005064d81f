//! The one error body every client sees: `{"error":{"message","type","param","code"}}`.
//!
//! Each layer has its own typed error (config, store, provider); they all end up here as an
//! [`ApiError`], which carries the HTTP status and the OpenAI-shaped fields. Internal causes are
//! logged where they happen and never copied into the message a client sees.

pub use crate::error_codes::Code;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;
use utoipa::ToSchema;

/// An error as a client sees it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Seconds a client should wait before trying again (sent as `retry-after`).
    pub retry_after: Option<u64>,
    /// Extra response headers: the gateway's own (`x-switchboard-attempts`) and those relayed
    /// from an upstream's error reply (rate-limit headers). `retry_after` wins over a relayed
    /// `retry-after`.
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
}

/// The error body every endpoint answers with on failure (the OpenAI shape).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {
    "message": "Missing API key. Send it as `Authorization: Bearer <key>`.",
    "type": "authentication_error",
    "param": null,
    "code": "invalid_api_key"
}}))]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, for a person to read.
    pub message: String,
    /// The class of error: `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `rate_limit_error`, `api_error`, or an upstream's own type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// A stable machine-readable code, e.g. `invalid_api_key`, `model_not_found`.
    pub code: Option<String>,
}

/// The longest message an error body carries, in bytes; a longer one is cut (see
/// [`truncated`]). Messages may echo client input or an upstream's reply, so without a cap a
/// 1 MiB model name would come back in a 1 MiB error.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// The longest model name an error message repeats, in bytes.
const MAX_ECHOED_MODEL_BYTES: usize = 256;

/// `text` cut to at most `max_bytes` bytes at a character boundary, with `…` added when
/// anything was cut (so the result may be up to 3 bytes longer than `max_bytes`).
pub fn truncated(text: &str, max_bytes: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max_bytes {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &text[..end]))
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            message = truncated(&message, MAX_MESSAGE_BYTES).into_owned();
        }
        ApiError {
            status,
            message,
            kind,
            param: None,
            code: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// Adds a response header, replacing an earlier one of the same name.
    pub fn with_header(mut self, name: header::HeaderName, value: header::HeaderValue) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// Adds headers relayed from an upstream's reply (see [`ApiError::with_header`]).
    pub fn with_headers(
        mut self,
        headers: impl IntoIterator<Item = (header::HeaderName, header::HeaderValue)>,
    ) -> Self {
        for (name, value) in headers {
            self = self.with_header(name, value);
        }
        self
    }

    /// One of the gateway's own codes (`error_codes.rs`); an upstream's code is kept as given.
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = Some(code.as_str().to_string());
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("request body is larger than the limit of {limit} bytes"),
        )
        .with_code(Code::PayloadTooLarge)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code(Code::InvalidApiKey)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
            .with_code(Code::InsufficientPermissions)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", message).with_code(Code::NotFound)
    }

    /// The model name is repeated only up to `MAX_ECHOED_MODEL_BYTES` (256).
    pub fn model_not_found(model: &str) -> Self {
        let model = truncated(model, MAX_ECHOED_MODEL_BYTES);
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist or is not served by this gateway"),
        )
        .with_param("model")
        .with_code(Code::ModelNotFound)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api_error", message)
            .with_code(Code::InternalError)
    }

    /// The store could not write (a full disk, an I/O error) or is recovering from it.
    pub fn storage_unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "The gateway's data store cannot write right now (a full disk or an I/O error; \
             see /health/ready). The change may not have been saved: check, and retry once \
             /health/ready answers 200.",
        )
        .with_code(Code::StorageUnavailable);
        e.retry_after = Some(crate::store::sled::database::PROBE_EVERY.as_secs().max(1) * 2);
        e
    }

    /// The shared store (Redis) did not answer within its timeout or cannot be reached.
    pub fn store_unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "The gateway's shared store (Redis) is not answering, so this request's limits \
             could not be checked (or the change could not be made). Retry shortly; \
             /health/ready says when it is back.",
        )
        .with_code(Code::StoreUnavailable);
        e.retry_after = Some(1);
        e
    }

    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "api_error", message)
            .with_code(Code::UpstreamUnreachable)
    }

    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "api_error", message)
            .with_code(Code::UpstreamTimeout)
    }

    /// The JSON body alone, for in-band stream errors. The message is capped here too, since
    /// `message` is public and may have grown after [`ApiError::new`].
    pub fn body_json(&self) -> String {
        let body = ErrorResponse {
            error: ErrorDetail {
                message: truncated(&self.message, MAX_MESSAGE_BYTES).into_owned(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.clone(),
            },
        };
        // Serialising a struct of strings cannot fail; fall back to a fixed body regardless.
        serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}"#
                .to_string()
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        self.response_with_body(self.body_json())
    }
}

impl ApiError {
    /// The error's response (status, headers, `retry-after`) with `body` instead of OpenAI's
    /// error body: how a client of another API (Anthropic's) gets its own error shape.
    pub fn response_with_body(&self, body: String) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        for (name, value) in &self.headers {
            builder.insert_header((name.clone(), value.clone()));
        }
        builder.insert_header((header::CONTENT_TYPE, "application/json"));
        if let Some(secs) = self.retry_after {
            builder.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        builder.body(body)
    }
}

/// Maps actix's own extractor and routing failures to the same body shape.
pub fn not_found_handler() -> ApiError {
    ApiError::not_found("no such endpoint; see /docs for the API")
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_constructors_agree_with_the_code_table() {
        for e in [
            ApiError::payload_too_large(1),
            ApiError::unauthorized("x"),
            ApiError::forbidden("x"),
            ApiError::not_found("x"),
            ApiError::model_not_found("m"),
            ApiError::internal("x"),
            ApiError::storage_unavailable(),
            ApiError::store_unavailable(),
            ApiError::bad_gateway("x"),
            ApiError::gateway_timeout("x"),
        ] {
            let code = e.code.clone().unwrap_or_default();
            let entry = Code::ALL
                .iter()
                .find(|c| c.as_str() == code)
                .unwrap_or_else(|| panic!("{code} is not in the table"));
            assert_eq!(entry.status(), Some(e.status), "{code}");
            assert_eq!(entry.kind(), e.kind, "{code}");
        }
    }

    use super::*;

    #[test]
    fn truncation_keeps_whole_characters_and_marks_the_cut() {
        assert_eq!(truncated("short", 10), "short");
        assert_eq!(truncated("abcdef", 3), "abc…");
        // `é` is two bytes: a cut inside it backs off to the character before.
        assert_eq!(truncated("aéb", 2), "a…");
    }

    #[test]
    fn messages_are_capped_in_the_body() {
        let huge = "x".repeat(1 << 20);
        let err = ApiError::bad_request(format!("bad: {huge}"));
        assert!(err.message.len() <= MAX_MESSAGE_BYTES + 3);
        assert!(err.message.ends_with('…'));

        // Grown after construction: the body is still capped.
        let mut err = ApiError::bad_request("x");
        err.message = "é".repeat(1 << 19);
        let body: serde_json::Value = serde_json::from_str(&err.body_json()).unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.len() <= MAX_MESSAGE_BYTES + 3, "{}", message.len());
        assert!(message.ends_with('…'));
    }

    #[test]
    fn model_not_found_repeats_only_the_start_of_a_long_name() {
        let name = "m".repeat(1 << 20);
        let err = ApiError::model_not_found(&name);
        assert!(err.message.len() < 400, "{}", err.message.len());
        assert!(err.message.contains(&format!("`{}…`", "m".repeat(256))));
    }
}
