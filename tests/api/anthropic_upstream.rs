//! A mock Anthropic Messages API: recorded bodies and streams from tests/fixtures/anthropic,
//! chosen by the `model` the gateway sends:
//! - `text`, `tools`: a message (or its stream when `stream: true`);
//! - `stream-error`: a stream that breaks off with an `error` event;
//! - `rate-limited`: 429 with retry-after 9; `overloaded`: 529.

use crate::recorder::{json_body, sse_in_pieces, Received, Recorder};
use actix_web::HttpResponse;

pub const MESSAGE_TEXT: &str = include_str!("../fixtures/anthropic/message_text.json");
const MESSAGE_TOOL_USE: &str = include_str!("../fixtures/anthropic/message_tool_use.json");
const STREAM_TEXT: &str = include_str!("../fixtures/anthropic/stream_text.sse");
const STREAM_TOOL_USE: &str = include_str!("../fixtures/anthropic/stream_tool_use.sse");
const STREAM_ERROR: &str = include_str!("../fixtures/anthropic/stream_error.sse");
const ERROR_RATE_LIMIT: &str = include_str!("../fixtures/anthropic/error_rate_limit.json");
const ERROR_OVERLOADED: &str = include_str!("../fixtures/anthropic/error_overloaded.json");

fn answer(req: &Received) -> HttpResponse {
    if req.path.ends_with("/messages/count_tokens") {
        return json_body(200, r#"{"input_tokens":17}"#);
    }
    let stream = req.body["stream"] == true;
    match (req.body["model"].as_str().unwrap_or(""), stream) {
        ("text", false) => json_body(200, MESSAGE_TEXT),
        ("text", true) => sse_in_pieces(STREAM_TEXT),
        ("tools", false) => json_body(200, MESSAGE_TOOL_USE),
        ("tools", true) => sse_in_pieces(STREAM_TOOL_USE),
        ("stream-error", _) => sse_in_pieces(STREAM_ERROR),
        ("rate-limited", _) => HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "9"))
            .content_type("application/json")
            .body(ERROR_RATE_LIMIT),
        ("overloaded", _) => json_body(529, ERROR_OVERLOADED),
        _ => json_body(
            404,
            r#"{"type":"error","error":{"type":"not_found_error","message":"model: unknown"}}"#,
        ),
    }
}

pub async fn start() -> Recorder {
    Recorder::start(answer).await
}

/// A provider file for the mock, serving every case above under its own name.
pub fn provider_yaml(upstream: &Recorder) -> String {
    let mut yaml = format!(
        "kind: anthropic\nbase_url: {}/v1\napi_key: sk-ant-secret\ntimeouts:\n  total_secs: 5\nmodels:\n",
        upstream.origin
    );
    for m in [
        "text",
        "tools",
        "stream-error",
        "rate-limited",
        "overloaded",
    ] {
        yaml.push_str(&format!("  - {m}\n"));
    }
    yaml
}
