//! A chat completion -> an Anthropic message.
//!
//! The message has the text (one block, when there is any) and then one `tool_use` block per
//! tool call; the first choice is the answer (a Messages request cannot ask for more). The
//! chat form does not say which stop sequence matched, so `stop_sequence` is always null and
//! a stop is an `end_turn`. Usage follows Anthropic's arithmetic, where `input_tokens` leaves
//! out the tokens read from or written to the prompt cache (OpenAI's `prompt_tokens` counts
//! them).

use crate::wire::Usage;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
struct Completion {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    message: ReplyMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ReplyMessage {
    /// A string, or (from some providers) text parts.
    #[serde(default)]
    content: Option<Value>,
    /// What OpenAI's models say when they refuse, instead of `content`.
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Debug, Deserialize)]
struct ToolCall {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Function,
}

#[derive(Debug, Default, Deserialize)]
struct Function {
    #[serde(default)]
    name: String,
    /// A JSON string in OpenAI's API; some providers send the object itself.
    #[serde(default)]
    arguments: Option<Value>,
}

/// The Anthropic message for an OpenAI `chat.completion` body.
pub fn from_chat(completion: &[u8]) -> Result<Value, serde_json::Error> {
    let completion: Completion = serde_json::from_slice(completion)?;
    let choice = completion
        .choices
        .iter()
        .find(|c| c.index == 0)
        .or(completion.choices.first());
    let mut content = Vec::new();
    let mut has_tools = false;
    let mut finish = None;
    if let Some(choice) = choice {
        finish = choice.finish_reason.as_deref();
        let message = &choice.message;
        let mut text = text_of(message.content.as_ref());
        if text.is_empty() {
            text = message.refusal.clone().unwrap_or_default();
        }
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        for (j, call) in message.tool_calls.iter().flatten().enumerate() {
            has_tools = true;
            let id = call.id.clone().unwrap_or_else(tool_use_id);
            content.push(json!({
                "type": "tool_use",
                "id": id,
                "name": call.function.name,
                "input": tool_input(call.function.arguments.as_ref(), j),
            }));
        }
    }
    Ok(json!({
        "id": message_id(&completion.id),
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": stop_reason(finish, has_tools),
        "stop_sequence": null,
        "usage": usage_json(&completion.usage.unwrap_or_default()),
    }))
}

/// A message id for a chat completion id: Anthropic's ids start with `msg_`, so one is put in
/// front unless it is there already (an empty id gets a fresh one).
pub fn message_id(chat_id: &str) -> String {
    if chat_id.starts_with("msg_") {
        chat_id.to_string()
    } else if chat_id.is_empty() {
        format!("msg_{}", uuid::Uuid::new_v4().simple())
    } else {
        format!("msg_{chat_id}")
    }
}

/// An id for a tool call that came without one.
pub fn tool_use_id() -> String {
    format!("toolu_{}", uuid::Uuid::new_v4().simple())
}

/// Anthropic's `stop_reason` for a chat `finish_reason`. A reply with tool calls that says
/// `stop` (some providers do) is a `tool_use`: that is what Anthropic clients loop on.
pub fn stop_reason(finish_reason: Option<&str>, has_tool_calls: bool) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if has_tool_calls => "tool_use",
        // `stop`, none, and anything new
        _ => "end_turn",
    }
}

/// Anthropic's usage object: `input_tokens` without the cached prompt tokens, which are
/// counted in `cache_read_input_tokens` and `cache_creation_input_tokens`.
pub fn usage_json(usage: &Usage) -> Value {
    let read = usage.cached_tokens();
    let written = usage.cache_write_tokens();
    json!({
        "input_tokens": usage.prompt_tokens.saturating_sub(read).saturating_sub(written),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    })
}

/// The text of a chat message's content: a string, or its text parts joined.
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// A tool call's arguments as the `input` object. Arguments that are no JSON object (a model
/// can emit anything) become `{}`; the log names the call, never the arguments, which may
/// hold whatever the conversation held.
fn tool_input(arguments: Option<&Value>, call: usize) -> Value {
    let parsed = match arguments {
        None | Some(Value::Null) => return json!({}),
        Some(Value::String(s)) if s.trim().is_empty() => return json!({}),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s),
        Some(other) => Ok(other.clone()),
    };
    match parsed {
        Ok(input) if input.is_object() => input,
        Ok(_) => {
            tracing::warn!(
                call,
                "tool call arguments are not a JSON object; sent as {{}}"
            );
            json!({})
        }
        Err(error) => {
            tracing::warn!(
                call,
                line = error.line(),
                column = error.column(),
                "tool call arguments are not JSON; sent as {{}}"
            );
            json!({})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(completion: Value) -> Value {
        from_chat(completion.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn text_reply_with_usage() {
        let out = reply(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
        }));
        assert_eq!(
            out,
            json!({
                "id": "msg_chatcmpl-1",
                "type": "message",
                "role": "assistant",
                "model": "gpt-x",
                "content": [{"type": "text", "text": "Hello"}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 3,
                          "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
            })
        );
    }

    #[test]
    fn tool_calls_become_tool_use_blocks_after_the_text() {
        let out = reply(json!({
            "id": "msg_abc", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Checking.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}}
                ]}, "finish_reason": "tool_calls"}]
        }));
        assert_eq!(
            out["id"], "msg_abc",
            "an id that is already a message id stays"
        );
        assert_eq!(
            out["content"],
            json!([
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "call_2", "name": "time", "input": {}}
            ])
        );
        assert_eq!(out["stop_reason"], "tool_use");
        assert_eq!(out["usage"]["input_tokens"], 0, "no usage is zeros");
    }

    #[test]
    fn only_tool_calls_and_unparsable_arguments() {
        let out = reply(json!({
            "id": "c", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":"}},
                    {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "[1]"}},
                    {"type": "function", "function": {"name": "h", "arguments": {"x": 1}}}
                ]}, "finish_reason": "stop"}]
        }));
        let content = out["content"].as_array().unwrap();
        assert_eq!(content.len(), 3, "no text block: {content:?}");
        assert_eq!(content[0]["input"], json!({}));
        assert_eq!(content[1]["input"], json!({}));
        assert_eq!(content[2]["input"], json!({"x": 1}));
        assert!(content[2]["id"].as_str().unwrap().starts_with("toolu_"));
        assert_eq!(
            out["stop_reason"], "tool_use",
            "tool calls with `stop` are a tool_use"
        );
    }

    #[test]
    fn stop_reasons() {
        for (finish, expected) in [
            (json!("stop"), "end_turn"),
            (json!("length"), "max_tokens"),
            (json!("tool_calls"), "tool_use"),
            (json!("content_filter"), "refusal"),
            (json!(null), "end_turn"),
            (json!("something_new"), "end_turn"),
        ] {
            let out = reply(json!({"id": "c", "model": "m", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}
            ]}));
            assert_eq!(out["stop_reason"], expected, "{finish}");
        }
    }

    #[test]
    fn cached_tokens_are_taken_out_of_input_tokens() {
        let out = reply(json!({
            "id": "c", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 7, "total_tokens": 107,
                      "prompt_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 30}}
        }));
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 10, "output_tokens": 7,
                   "cache_read_input_tokens": 60, "cache_creation_input_tokens": 30})
        );
        // Counts that do not add up saturate at zero rather than wrap.
        let usage = Usage::new(5, 1).with_cache(4, 3);
        assert_eq!(usage_json(&usage)["input_tokens"], 0);
    }

    #[test]
    fn refusal_text_parts_and_no_choices() {
        let out = reply(json!({"id": "c", "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": null, "refusal": "I can't."},
             "finish_reason": "content_filter"}
        ]}));
        assert_eq!(
            out["content"],
            json!([{"type": "text", "text": "I can't."}])
        );
        assert_eq!(out["stop_reason"], "refusal");

        let out = reply(json!({"id": "c", "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": [
                {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, "finish_reason": "stop"}
        ]}));
        assert_eq!(out["content"], json!([{"type": "text", "text": "ab"}]));

        let out = reply(json!({"id": "", "model": "m", "choices": []}));
        assert_eq!(out["content"], json!([]));
        assert!(out["id"].as_str().unwrap().len() > "msg_".len());
    }

    #[test]
    fn a_body_that_is_no_completion_is_an_error() {
        assert!(from_chat(b"<html>").is_err());
        assert!(from_chat(br#"{"choices": "no"}"#).is_err());
    }
}
