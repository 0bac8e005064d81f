//! Reading a request body within the size limit and parsing it with a useful error, and what
//! every `/v1` handler shares before the pipeline (a translated request's chat body, the
//! refusal that made no upstream call).

use crate::error::ApiError;
use crate::error_codes::Code;
use crate::wire::{ChatRequest, Format, RequestBody, Typed};
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpRequest};
use bytes::Bytes;
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Reads the whole (small, JSON) request body, refusing more than `limit` bytes with a 413.
pub async fn read_limited(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::payload_too_large(limit));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses JSON into `T`, naming the field and position of the first problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request(
            "The request body is empty; send a JSON object.",
        ));
    }
    // The plain parse is the fast path; only a body that fails is parsed again, with path
    // tracking (which costs on every field), to say where the problem is.
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => Err(explain::<T>(bytes)),
    }
}

/// The error for a body that does not parse as `T`: the field path and what is wrong there.
fn explain<T: DeserializeOwned>(bytes: &[u8]) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    if let Err(e) = serde_path_to_error::deserialize::<_, T>(&mut de) {
        let path = e.path().to_string();
        let inner = e.into_inner();
        return if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("The request body is not valid JSON: {inner}"))
                .with_code(Code::InvalidJson)
        } else if path == "." {
            ApiError::bad_request(format!("Invalid request body: {inner}"))
        } else {
            ApiError::bad_request(format!("Invalid request body at `{path}`: {inner}"))
                .with_param(path)
        };
    }
    // The value parsed, so what failed the plain parse is what follows it.
    let message = match de.end() {
        Err(e) => format!("The request body has trailing data after the JSON: {e}"),
        Ok(()) => "The request body could not be parsed as JSON.".to_string(),
    };
    ApiError::bad_request(message).with_code(Code::InvalidJson)
}

/// A translated request's chat body, parsed as the pipeline parses a chat client's, keeping
/// its bytes.
pub fn chat_body(
    chat: serde_json::Map<String, Value>,
    format: Format,
) -> Result<RequestBody, ApiError> {
    let bytes = Bytes::from(Value::Object(chat).to_string());
    let typed: ChatRequest = serde_json::from_slice(&bytes).map_err(|e| {
        tracing::warn!(error = %e, format = format.as_str(), "a translated request did not parse");
        ApiError::bad_request(format!("the request could not be translated: {e}"))
    })?;
    Ok(RequestBody::with_original(Typed::Chat(typed), bytes))
}

/// A request refused before the pipeline made no upstream call, and says so.
pub fn no_calls(e: ApiError) -> ApiError {
    e.with_header(
        HeaderName::from_static(super::respond::ATTEMPTS_HEADER),
        HeaderValue::from_static("0"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ChatRequest;

    #[test]
    fn errors_name_the_problem() {
        let e = parse_json::<ChatRequest>(b"{\"model\": 1, \"messages\": []}").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e =
            parse_json::<ChatRequest>(b"{\"model\": \"m\", \"messages\": [{\"content\": \"x\"}]}")
                .unwrap_err();
        assert!(
            e.message.contains("messages[0]") && e.message.contains("role"),
            "{}",
            e.message
        );
        let e = parse_json::<ChatRequest>(b"{\"model\": ").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("invalid_json"));
        let e = parse_json::<ChatRequest>(b"{\"model\":\"m\"}").unwrap_err();
        assert!(e.message.contains("messages"), "{}", e.message);
        let e = parse_json::<ChatRequest>(b"{\"model\":\"m\",\"messages\":[]} {}").unwrap_err();
        assert_eq!(e.code.as_deref(), Some("invalid_json"));
        assert!(e.message.contains("trailing"), "{}", e.message);
        assert!(parse_json::<ChatRequest>(b"{\"model\":\"m\",\"messages\":[]}").is_ok());
        assert!(parse_json::<ChatRequest>(b"  ")
            .unwrap_err()
            .message
            .contains("empty"));
    }
}
