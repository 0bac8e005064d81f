//! A mock Gemini API: recorded bodies and streams from tests/fixtures/gemini, chosen by the
//! model and method in the path (`/v1beta/models/{model}:{method}`):
//! - `text`, `tools`: generateContent / streamGenerateContent;
//! - `blocked`: the prompt is blocked for safety;
//! - `stream-error`: a stream that breaks off with an error object;
//! - `invalid`: 400 INVALID_ARGUMENT;
//! - `embed`: batchEmbedContents.

use crate::recorder::{json_body, sse_in_pieces, Received, Recorder};
use actix_web::HttpResponse;

const GENERATE_TEXT: &str = include_str!("../fixtures/gemini/generate_text.json");
const GENERATE_FUNCTION_CALL: &str = include_str!("../fixtures/gemini/generate_function_call.json");
const GENERATE_BLOCKED: &str = include_str!("../fixtures/gemini/generate_blocked.json");
const STREAM_TEXT: &str = include_str!("../fixtures/gemini/stream_text.sse");
const STREAM_FUNCTION_CALL: &str = include_str!("../fixtures/gemini/stream_function_call.sse");
const STREAM_ERROR: &str = include_str!("../fixtures/gemini/stream_error.sse");
const ERROR_INVALID: &str = include_str!("../fixtures/gemini/error_invalid_argument.json");
const BATCH_EMBED: &str = include_str!("../fixtures/gemini/batch_embed.json");

fn answer(req: &Received) -> HttpResponse {
    let call = req.path.rsplit('/').next().unwrap_or("");
    let (model, method) = call.split_once(':').unwrap_or((call, ""));
    match (model, method) {
        ("text", "generateContent") => json_body(200, GENERATE_TEXT),
        ("text", "streamGenerateContent") => sse_in_pieces(STREAM_TEXT),
        ("tools", "generateContent") => json_body(200, GENERATE_FUNCTION_CALL),
        ("tools", "streamGenerateContent") => sse_in_pieces(STREAM_FUNCTION_CALL),
        ("blocked", "generateContent") => json_body(200, GENERATE_BLOCKED),
        ("stream-error", "streamGenerateContent") => sse_in_pieces(STREAM_ERROR),
        ("invalid", _) => json_body(400, ERROR_INVALID),
        ("embed", "batchEmbedContents") => json_body(200, BATCH_EMBED),
        ("text", "countTokens") => json_body(200, r#"{"totalTokens":23}"#),
        _ => json_body(
            404,
            r#"{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}"#,
        ),
    }
}

pub async fn start() -> Recorder {
    Recorder::start(answer).await
}

pub fn provider_yaml(upstream: &Recorder) -> String {
    let mut yaml = format!(
        "kind: gemini\nbase_url: {}/v1beta\napi_key: gm-secret-key\ntimeouts:\n  total_secs: 5\nmodels:\n",
        upstream.origin
    );
    for m in [
        "text",
        "tools",
        "blocked",
        "stream-error",
        "invalid",
        "embed",
    ] {
        yaml.push_str(&format!("  - {m}\n"));
    }
    yaml
}
