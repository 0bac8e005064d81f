//! Token estimates for what is not known yet: a request's prompt and completion before the
//! call (what budgets reserve), and a stream's completion when the upstream reports no usage.
//!
//! The estimator is deliberately simple and documented (README, "Limits and budgets"): about
//! four bytes of text per token, plus a few tokens per chat message for its role and framing.
//! A reservation only has to be in the right range: the real usage replaces it.

use crate::wire::{RequestBody, Typed};
use serde_json::Value;

/// The completion a request reserves when it sets no `max_tokens` or
/// `max_completion_tokens`.
pub const DEFAULT_COMPLETION_TOKENS: u64 = 1024;
/// Tokens per chat message for its role and framing.
const PER_MESSAGE: u64 = 4;

/// Tokens in `bytes` bytes of text.
pub fn text_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// The prompt's tokens, estimated from its text.
pub fn prompt_tokens(body: &RequestBody) -> u64 {
    match body.typed() {
        Typed::Chat(chat) => chat
            .messages
            .iter()
            .map(|m| text_tokens(m.text_len()) + PER_MESSAGE)
            .sum(),
        Typed::Completions(c) => text_tokens(text_bytes(&c.prompt)),
        Typed::Embeddings(e) => text_tokens(text_bytes(&e.input)),
    }
}

/// The completion's tokens at most: what the request allows, or the default.
pub fn completion_tokens(body: &RequestBody) -> u64 {
    if matches!(body.typed(), Typed::Embeddings(_)) {
        return 0;
    }
    let extra = body.extra();
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| extra.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_COMPLETION_TOKENS)
}

/// Bytes of text in a prompt or an input: a string, or strings in an array (token arrays
/// count a token each, as four bytes).
fn text_bytes(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(text_bytes).sum(),
        Value::Number(_) => 4,
        _ => 0,
    }
}

/// Bytes of `delta.content` text (and `text`, for completions) in one streamed chunk, read
/// without parsing it: what a stream without a usage chunk is charged from.
pub fn streamed_text_bytes(payload: &[u8]) -> usize {
    let mut total = 0;
    for key in [&b"\"content\":\""[..], &b"\"text\":\""[..]] {
        let mut rest = payload;
        while let Some(at) = find(rest, key) {
            rest = &rest[at + key.len()..];
            let mut len = 0;
            let mut escaped = false;
            for &b in rest {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    break;
                }
                len += 1;
            }
            total += len;
            rest = &rest[len.min(rest.len())..];
        }
    }
    total
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(json: serde_json::Value) -> RequestBody {
        RequestBody::from_json(crate::wire::Endpoint::Chat, json).unwrap()
    }

    #[test]
    fn prompts_and_completions_are_estimated_from_the_request() {
        let body = chat(serde_json::json!({
            "model": "m",
            "messages": [{"role": "user", "content": "12345678"}],
            "max_tokens": 50
        }));
        assert_eq!(prompt_tokens(&body), 2 + PER_MESSAGE);
        assert_eq!(completion_tokens(&body), 50);
        let open = chat(serde_json::json!({"model": "m", "messages": []}));
        assert_eq!(completion_tokens(&open), DEFAULT_COMPLETION_TOKENS);
    }

    #[test]
    fn streamed_text_is_measured_without_parsing() {
        let chunk = br#"{"choices":[{"delta":{"content":"he said \"hi\""}}]}"#;
        assert_eq!(streamed_text_bytes(chunk), r#"he said \"hi\""#.len());
        assert_eq!(streamed_text_bytes(br#"{"choices":[{"delta":{}}]}"#), 0);
        assert_eq!(streamed_text_bytes(br#"{"choices":[{"text":"abc"}]}"#), 3);
    }
}
