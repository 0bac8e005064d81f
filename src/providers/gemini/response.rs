//! Gemini `GenerateContentResponse` and errors -> OpenAI's shapes. The stream sends the same
//! response type piece by piece, so the types here serve `stream.rs` too.

use crate::providers::chunk::{now, usage};
use crate::providers::upstream::{ErrorParts, UnreadableReply};
use crate::wire::Usage;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateResponse {
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    pub prompt_feedback: Option<PromptFeedback>,
    pub usage_metadata: Option<UsageMetadata>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub content: Option<Content>,
    pub finish_reason: Option<String>,
    /// Omitted for the first candidate (a zero in proto3 JSON).
    pub index: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Content {
    #[serde(default)]
    pub parts: Vec<Part>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub text: Option<String>,
    pub function_call: Option<FunctionCall>,
    /// Thought summaries are not part of the answer.
    #[serde(default)]
    pub thought: bool,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub args: Value,
    pub id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    pub block_reason: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    #[serde(default)]
    pub prompt_token_count: u64,
    #[serde(default)]
    pub candidates_token_count: u64,
    /// Thinking tokens are billed as output; OpenAI counts reasoning in completion tokens.
    #[serde(default)]
    pub thoughts_token_count: u64,
    /// The part of the prompt served from a context cache (explicit or implicit); Gemini
    /// already counts it in `promptTokenCount`, as OpenAI does in `prompt_tokens`.
    #[serde(default)]
    pub cached_content_token_count: u64,
}

impl UsageMetadata {
    pub fn usage(&self) -> Usage {
        usage(
            self.prompt_token_count,
            self.candidates_token_count + self.thoughts_token_count,
        )
        .with_cache(self.cached_content_token_count, 0)
    }
}

impl GenerateResponse {
    /// Set when the prompt itself was blocked and no candidate came back.
    pub fn blocked(&self) -> bool {
        self.candidates.is_empty()
            && self
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
    }
}

pub fn finish_reason(reason: &str, called_functions: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called_functions => "tool_calls",
        _ => "stop",
    }
}

/// Gemini has no call ids (or optional ones); OpenAI clients need one per call to answer it.
pub fn call_id(call: &FunctionCall, reply_id: &str, candidate: u64, n: usize) -> String {
    call.id
        .clone()
        .unwrap_or_else(|| format!("call_{reply_id}_{candidate}_{n}"))
}

pub fn tool_call(call: &FunctionCall, id: String, index: Option<usize>) -> Value {
    let mut v = json!({
        "id": id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.args.to_string()},
    });
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
}

/// An OpenAI `chat.completion` from a whole Gemini response.
pub fn chat_completion(
    body: &[u8],
    fallback_id: &str,
    model: &str,
) -> Result<(Value, Usage), UnreadableReply> {
    let reply: GenerateResponse =
        serde_json::from_slice(body).map_err(|error| UnreadableReply {
            expected: "a Gemini response",
            error,
        })?;
    let id = reply
        .response_id
        .clone()
        .unwrap_or_else(|| fallback_id.to_string());
    let mut choices: Vec<Value> = reply
        .candidates
        .iter()
        .enumerate()
        .map(|(pos, c)| {
            let index = c.index.unwrap_or(pos as u64);
            let mut text = String::new();
            let mut calls = Vec::new();
            for part in c.content.iter().flat_map(|c| &c.parts) {
                if part.thought {
                    continue;
                }
                if let Some(t) = &part.text {
                    text.push_str(t);
                }
                if let Some(f) = &part.function_call {
                    calls.push(tool_call(f, call_id(f, &id, index, calls.len()), None));
                }
            }
            let mut message = json!({
                "role": "assistant",
                "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
            });
            let reason = finish_reason(c.finish_reason.as_deref().unwrap_or("STOP"), !calls.is_empty());
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            json!({"index": index, "message": message, "logprobs": null, "finish_reason": reason})
        })
        .collect();
    if reply.blocked() {
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": null},
            "logprobs": null,
            "finish_reason": "content_filter",
        }));
    }
    let usage = reply.usage_metadata.unwrap_or_default().usage();
    let body = json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": reply.model_version.as_deref().unwrap_or(model),
        "choices": choices,
        "usage": usage,
    });
    Ok((body, usage))
}

/// Gemini's error body: `{"error":{"code","message","status"}}` (an array of those from
/// some endpoints).
pub fn parse_error(body: &[u8]) -> Option<ErrorParts> {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        message: String,
        status: Option<String>,
    }
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok().or_else(|| {
        serde_json::from_slice::<Vec<ErrorBody>>(body)
            .ok()
            .and_then(|v| v.into_iter().next())
    })?;
    let kind = parsed.error.status.as_deref().map(|s| {
        match s {
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => "invalid_request_error",
            "UNAUTHENTICATED" => "authentication_error",
            "PERMISSION_DENIED" => "permission_error",
            "NOT_FOUND" => "not_found_error",
            "RESOURCE_EXHAUSTED" => "rate_limit_error",
            _ => "api_error",
        }
        .to_string()
    });
    Some(ErrorParts {
        message: if parsed.error.message.is_empty() {
            "upstream error".into()
        } else {
            parsed.error.message
        },
        kind,
        code: parsed.error.status,
        param: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_function_calls_and_usage() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"thinking","thought":true},{"text":"Checking."},{"functionCall":{"name":"w","args":{"city":"Oslo"}}}]},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":4,"thoughtsTokenCount":2,"totalTokenCount":14},"modelVersion":"gemini-x","responseId":"r1"}"#;
        let (v, u) = chat_completion(body, "fb", "m").unwrap();
        assert_eq!(v["id"], "r1");
        assert_eq!(v["model"], "gemini-x");
        let c = &v["choices"][0];
        assert_eq!(c["message"]["content"], "Checking.");
        assert_eq!(c["message"]["tool_calls"][0]["id"], "call_r1_0_0");
        assert_eq!(
            c["message"]["tool_calls"][0]["function"],
            json!({"name": "w", "arguments": "{\"city\":\"Oslo\"}"})
        );
        assert_eq!(c["finish_reason"], "tool_calls");
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (8, 6, 14)
        );
        assert_eq!(u.prompt_tokens_details, None);
        assert!(v["usage"].get("prompt_tokens_details").is_none(), "{v}");
    }

    #[test]
    fn cached_content_tokens_are_the_cached_part_of_the_prompt() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":2050,"cachedContentTokenCount":2048,"candidatesTokenCount":3,"totalTokenCount":2053}}"#;
        let (v, u) = chat_completion(body, "fb", "m").unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (2050, 3, 2053)
        );
        assert_eq!((u.cached_tokens(), u.cache_write_tokens()), (2048, 0));
        assert_eq!(
            v["usage"]["prompt_tokens_details"],
            json!({"cached_tokens": 2048})
        );
    }

    #[test]
    fn safety_and_blocked_prompts_are_content_filter() {
        let (v, _) = chat_completion(
            br#"{"candidates":[{"finishReason":"SAFETY","index":0}]}"#,
            "fb",
            "m",
        )
        .unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        let (v, _) = chat_completion(br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":3}}"#, "fb", "m").unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(v["id"], "fb");
        assert_eq!(finish_reason("MAX_TOKENS", false), "length");
    }

    #[test]
    fn errors() {
        let p = parse_error(
            br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#,
        )
        .unwrap();
        assert_eq!(
            (p.message.as_str(), p.kind.as_deref(), p.code.as_deref()),
            (
                "quota",
                Some("rate_limit_error"),
                Some("RESOURCE_EXHAUSTED")
            )
        );
        assert!(parse_error(
            br#"[{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}]"#
        )
        .is_some());
    }
}
