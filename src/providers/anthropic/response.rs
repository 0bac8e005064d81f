//! Anthropic Messages responses and errors -> OpenAI's shapes.

use crate::providers::chunk::now;
use crate::providers::upstream::{ErrorParts, UnreadableReply};
use crate::wire::Usage;
use actix_web::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
pub struct Message {
    pub id: String,
    pub model: String,
    #[serde(default)]
    pub content: Vec<Block>,
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub usage: AnthropicUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking and other block types have no OpenAI counterpart and are left out.
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct AnthropicUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
}

impl AnthropicUsage {
    /// Anthropic counts cached prompt tokens apart; OpenAI's `prompt_tokens` includes them.
    pub fn prompt_tokens(&self) -> u64 {
        self.input_tokens
            + self.cache_creation_input_tokens.unwrap_or(0)
            + self.cache_read_input_tokens.unwrap_or(0)
    }

    /// The usage in OpenAI's terms: every prompt token in `prompt_tokens`, the cache's share
    /// in its details (read and written are priced apart).
    pub fn usage(&self) -> Usage {
        Usage::new(self.prompt_tokens(), self.output_tokens).with_cache(
            self.cache_read_input_tokens.unwrap_or(0),
            self.cache_creation_input_tokens.unwrap_or(0),
        )
    }

    /// Folds in a later report of the same message (`message_delta`'s counts are running
    /// totals): the output always, the prompt's counts only where the later report has them,
    /// since older API versions send only `output_tokens` there.
    pub fn update(&mut self, later: &AnthropicUsage) {
        self.output_tokens = later.output_tokens;
        if later.input_tokens > 0 {
            self.input_tokens = later.input_tokens;
        }
        if later.cache_creation_input_tokens.is_some() {
            self.cache_creation_input_tokens = later.cache_creation_input_tokens;
        }
        if later.cache_read_input_tokens.is_some() {
            self.cache_read_input_tokens = later.cache_read_input_tokens;
        }
    }
}

pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and anything new
        _ => "stop",
    }
}

/// An OpenAI `chat.completion` body from an Anthropic message body.
pub fn chat_completion(body: &[u8]) -> Result<(Value, Usage), UnreadableReply> {
    let message: Message = serde_json::from_slice(body).map_err(|error| UnreadableReply {
        expected: "an Anthropic message",
        error,
    })?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block {
            Block::Text { text: t } => text.push_str(t),
            Block::ToolUse { id, name, input } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            Block::Other => {}
        }
    }
    let mut reply = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !tool_calls.is_empty() {
        reply["tool_calls"] = Value::Array(tool_calls);
    }
    let usage = message.usage.usage();
    let body = json!({
        "id": message.id,
        "object": "chat.completion",
        "created": now(),
        "model": message.model,
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": null,
            "finish_reason": finish_reason(message.stop_reason.as_deref()),
        }],
        "usage": usage,
    });
    Ok((body, usage))
}

#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"}}`.
pub fn parse_error(body: &[u8]) -> Option<ErrorParts> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: ErrorDetail,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    Some(error_parts(parsed.error))
}

pub fn error_parts(detail: ErrorDetail) -> ErrorParts {
    ErrorParts {
        message: if detail.message.is_empty() {
            format!("upstream error {}", detail.kind)
        } else {
            detail.message
        },
        // Anthropic's error types are the names OpenAI clients know (`rate_limit_error` ...).
        kind: Some(detail.kind),
        code: None,
        param: None,
    }
}

/// The status an error type stands for, for errors that arrive inside a stream, where the
/// HTTP status was already 200.
pub fn status_of_error(kind: &str) -> StatusCode {
    match kind {
        "invalid_request_error" => StatusCode::BAD_REQUEST,
        "authentication_error" => StatusCode::UNAUTHORIZED,
        "permission_error" => StatusCode::FORBIDDEN,
        "not_found_error" => StatusCode::NOT_FOUND,
        "request_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "rate_limit_error" => StatusCode::TOO_MANY_REQUESTS,
        "overloaded_error" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tool_use_and_usage() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"Let me check."},
                       {"type":"tool_use","id":"toolu_1","name":"w","input":{"city":"Oslo"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":2}}"#;
        let (v, u) = chat_completion(body).unwrap();
        assert_eq!(v["id"], "msg_1");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Let me check.");
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"],
            json!([{"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}}])
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (12, 5, 17)
        );
        assert_eq!(v["usage"]["total_tokens"], 17);
        assert_eq!((u.cached_tokens(), u.cache_write_tokens()), (2, 0));
        assert_eq!(
            v["usage"]["prompt_tokens_details"],
            json!({"cached_tokens": 2})
        );
    }

    #[test]
    fn cache_reads_and_writes_are_in_the_prompt_and_its_details() {
        let body = br#"{"id":"msg_2","model":"claude-x","content":[{"type":"text","text":"ok"}],
            "stop_reason":"end_turn",
            "usage":{"input_tokens":3,"output_tokens":4,"cache_creation_input_tokens":100,"cache_read_input_tokens":900}}"#;
        let (v, u) = chat_completion(body).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (1003, 4, 1007)
        );
        assert_eq!((u.cached_tokens(), u.cache_write_tokens()), (900, 100));
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 1003, "completion_tokens": 4, "total_tokens": 1007,
                   "prompt_tokens_details": {"cached_tokens": 900, "cache_write_tokens": 100}})
        );
        // `null` cache counts (as some gateways in front of Anthropic send) are no caching.
        let body = br#"{"id":"msg_3","model":"claude-x","content":[],"stop_reason":"end_turn",
            "usage":{"input_tokens":3,"output_tokens":1,"cache_creation_input_tokens":null,"cache_read_input_tokens":null}}"#;
        let (v, u) = chat_completion(body).unwrap();
        assert_eq!(u, Usage::new(3, 1));
        assert!(v["usage"].get("prompt_tokens_details").is_none(), "{v}");
    }

    #[test]
    fn a_body_that_is_no_message_says_so_for_the_log() {
        let err = chat_completion(b"<html>").unwrap_err();
        assert!(
            err.to_string().starts_with("not an Anthropic message: "),
            "{err}"
        );
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(finish_reason(Some("end_turn")), "stop");
        assert_eq!(finish_reason(Some("stop_sequence")), "stop");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
    }

    #[test]
    fn errors() {
        let parts = parse_error(
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}"#,
        )
        .unwrap();
        assert_eq!(
            (parts.message.as_str(), parts.kind.as_deref()),
            ("slow", Some("rate_limit_error"))
        );
        assert!(parse_error(b"<html>").is_none());
        assert_eq!(status_of_error("overloaded_error"), 503);
    }
}
