//! A chat completion -> a Responses API response object.
//!
//! The pieces (the envelope that echoes the request, output items, usage) are public so the
//! stream encoder builds the very same object event by event.

use crate::wire::Usage;
use serde_json::{json, Value};

/// What a response object says besides the reply: its id, when it was made, and the request
/// (its `instructions`, `tools`, `temperature`, ... are echoed back, as OpenAI does).
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created_at: u64,
    pub request: Value,
}

/// A fresh response id: `resp_` and 32 hex digits.
pub fn new_id() -> String {
    format!("resp_{}", uuid::Uuid::new_v4().simple())
}

/// A fresh output item id: `prefix` (`msg`, `fc`), `_` and 32 hex digits.
pub fn new_item_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Where a response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
    /// Stopped early; the reason as `incomplete_details.reason` says it.
    Incomplete(&'static str),
    Failed,
}

impl Status {
    /// How a reply with this chat `finish_reason` ended: cut by the token limit or by a content
    /// filter is incomplete, anything else (`stop`, `tool_calls`, none) completed.
    pub fn from_finish_reason(reason: Option<&str>) -> Status {
        match reason {
            Some("length") => Status::Incomplete("max_output_tokens"),
            Some("content_filter") => Status::Incomplete("content_filter"),
            _ => Status::Completed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete(_) => "incomplete",
            Status::Failed => "failed",
        }
    }

    /// The status of the output items of a response that ended so: an item cut short with it
    /// is `incomplete`.
    pub fn item_status(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::InProgress => "in_progress",
            Status::Incomplete(_) | Status::Failed => "incomplete",
        }
    }
}

/// The response object around `output`: the status, the reply's `model`, `usage` (null when
/// not known), `error` (for a failed response) and what the request asked for, echoed.
pub fn envelope(
    meta: &Meta,
    model: &str,
    status: Status,
    output: Vec<Value>,
    usage: Option<Value>,
    error: Option<Value>,
) -> Value {
    let req = &meta.request;
    let echo = |key: &str, default: Value| match req.get(key) {
        Some(v) if !v.is_null() => v.clone(),
        _ => default,
    };
    let incomplete_details = match status {
        Status::Incomplete(reason) => json!({"reason": reason}),
        _ => Value::Null,
    };
    let mut text = echo("text", json!({"format": {"type": "text"}}));
    if let Some(obj) = text.as_object_mut() {
        obj.entry("format")
            .or_insert_with(|| json!({"type": "text"}));
    }
    let reasoning = json!({
        "effort": req.pointer("/reasoning/effort").cloned().unwrap_or(Value::Null),
        "summary": req.pointer("/reasoning/summary").cloned().unwrap_or(Value::Null),
    });
    let mut response = json!({
        "id": meta.id,
        "object": "response",
        "created_at": meta.created_at,
        "status": status.as_str(),
        "background": false,
        "error": error,
        "incomplete_details": incomplete_details,
        "instructions": echo("instructions", Value::Null),
        "max_output_tokens": echo("max_output_tokens", Value::Null),
        "model": model,
        "output": output,
        "parallel_tool_calls": echo("parallel_tool_calls", Value::Bool(true)),
        "previous_response_id": echo("previous_response_id", Value::Null),
        "reasoning": reasoning,
        "store": echo("store", Value::Bool(true)),
        "temperature": echo("temperature", Value::Null),
        "text": text,
        "tool_choice": echo("tool_choice", json!("auto")),
        "tools": echo("tools", json!([])),
        "top_p": echo("top_p", Value::Null),
        "truncation": echo("truncation", json!("disabled")),
        "usage": usage,
        "user": echo("user", Value::Null),
        "metadata": echo("metadata", json!({})),
    });
    if let Some(key) = req.get("prompt_cache_key").filter(|k| k.is_string()) {
        response["prompt_cache_key"] = key.clone();
    }
    response
}

/// The `model` a response names: the reply's, else the one the client asked for.
pub fn model_of(meta: &Meta, reply_model: Option<&str>) -> String {
    reply_model
        .or_else(|| meta.request.get("model").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string()
}

/// An `output_text` content part.
pub fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A `refusal` content part.
pub fn refusal(text: &str) -> Value {
    json!({"type": "refusal", "refusal": text})
}

/// An assistant `message` output item.
pub fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

/// A `function_call` output item.
pub fn function_call_item(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

/// A chat `usage` object in the Responses API's terms; `None` when it is not one.
pub fn usage(chat_usage: &Value) -> Option<Value> {
    if !chat_usage.is_object() {
        return None;
    }
    let usage: Usage = serde_json::from_value(chat_usage.clone()).ok()?;
    let reasoning = chat_usage
        .pointer("/completion_tokens_details/reasoning_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens(),
            "cache_write_tokens": usage.cache_write_tokens(),
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": usage.total_tokens,
    }))
}

/// The response object for an OpenAI `chat.completion` body.
pub fn from_chat(meta: &Meta, completion: &[u8]) -> Result<Value, serde_json::Error> {
    let completion: Value = serde_json::from_slice(completion)?;
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let status = Status::from_finish_reason(choice["finish_reason"].as_str());
    let item_status = status.item_status();

    let mut output = Vec::new();
    let mut content = Vec::new();
    let text = text_of(&message["content"]);
    if !text.is_empty() {
        content.push(output_text(&text));
    }
    if let Some(refused) = message["refusal"].as_str().filter(|r| !r.is_empty()) {
        content.push(refusal(refused));
    }
    if !content.is_empty() {
        output.push(message_item(&new_item_id("msg"), item_status, content));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        let call_id = match call["id"].as_str().filter(|id| !id.is_empty()) {
            Some(id) => id.to_string(),
            None => new_item_id("call"),
        };
        output.push(function_call_item(
            &new_item_id("fc"),
            &call_id,
            call["function"]["name"].as_str().unwrap_or_default(),
            call["function"]["arguments"].as_str().unwrap_or_default(),
            item_status,
        ));
    }
    let model = model_of(meta, completion["model"].as_str());
    Ok(envelope(
        meta,
        &model,
        status,
        output,
        usage(&completion["usage"]),
        None,
    ))
}

/// A chat message's content as text: a string, or the text parts of an array joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<String>(),
        _ => String::new(),
    }
}

/// The output items of a response object: what a later turn continues from (after this turn's
/// input items).
pub fn output_items(response: &Value) -> Vec<Value> {
    response["output"].as_array().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(request: Value) -> Meta {
        Meta {
            id: "resp_1".into(),
            created_at: 1700,
            request,
        }
    }

    #[test]
    fn a_text_reply_with_cached_tokens() {
        let completion = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14,
                      "prompt_tokens_details": {"cached_tokens": 6},
                      "completion_tokens_details": {"reasoning_tokens": 2}},
        });
        let r = from_chat(
            &meta(json!({"model": "alias", "input": "hi", "instructions": "be kind", "temperature": 0.5})),
            completion.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r["id"], "resp_1");
        assert_eq!(r["object"], "response");
        assert_eq!(r["created_at"], 1700);
        assert_eq!(r["status"], "completed");
        assert_eq!(r["error"], Value::Null);
        assert_eq!(r["incomplete_details"], Value::Null);
        assert_eq!(r["model"], "gpt-x");
        let output = r["output"].as_array().unwrap();
        assert_eq!(output.len(), 1);
        assert_eq!(output[0]["type"], "message");
        assert!(output[0]["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(output[0]["status"], "completed");
        assert_eq!(output[0]["role"], "assistant");
        assert_eq!(output[0]["content"][0]["type"], "output_text");
        assert_eq!(output[0]["content"][0]["text"], "Hi there");
        assert_eq!(output[0]["content"][0]["annotations"], json!([]));
        assert_eq!(
            r["usage"],
            json!({
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 6, "cache_write_tokens": 0},
                "output_tokens": 4,
                "output_tokens_details": {"reasoning_tokens": 2},
                "total_tokens": 14,
            })
        );
        // Echoed from the request, with OpenAI's defaults for what it left out.
        assert_eq!(r["instructions"], "be kind");
        assert_eq!(r["temperature"], 0.5);
        assert_eq!(r["top_p"], Value::Null);
        assert_eq!(r["max_output_tokens"], Value::Null);
        assert_eq!(r["metadata"], json!({}));
        assert_eq!(r["parallel_tool_calls"], true);
        assert_eq!(r["previous_response_id"], Value::Null);
        assert_eq!(r["store"], true);
        assert_eq!(r["tool_choice"], "auto");
        assert_eq!(r["tools"], json!([]));
        assert_eq!(r["text"], json!({"format": {"type": "text"}}));
        assert_eq!(r["truncation"], "disabled");
        assert_eq!(r["user"], Value::Null);
        assert_eq!(r["reasoning"], json!({"effort": null, "summary": null}));
        assert_eq!(output_items(&r), output.clone());
    }

    #[test]
    fn tool_calls_and_a_cut_reply() {
        let completion = json!({
            "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "length", "message": {
                "role": "assistant", "content": "Let me look",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{"}},
                ],
            }}],
        });
        let request = json!({
            "model": "m", "input": "x", "max_output_tokens": 9, "store": false,
            "metadata": {"k": "v"}, "previous_response_id": "resp_0",
            "tools": [{"type": "function", "name": "f"}], "tool_choice": "required",
            "reasoning": {"effort": "high"},
        });
        let r = from_chat(&meta(request), completion.to_string().as_bytes()).unwrap();
        assert_eq!(r["status"], "incomplete");
        assert_eq!(
            r["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(r["usage"], Value::Null);
        let output = r["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        assert_eq!(output[0]["status"], "incomplete");
        for (item, (call_id, name, args)) in output[1..]
            .iter()
            .zip([("call_a", "f", "{\"x\":1}"), ("call_b", "g", "{")])
        {
            assert_eq!(item["type"], "function_call");
            assert!(item["id"].as_str().unwrap().starts_with("fc_"));
            assert_eq!(item["call_id"], call_id);
            assert_eq!(item["name"], name);
            assert_eq!(item["arguments"], args);
        }
        assert_ne!(output[1]["id"], output[2]["id"]);
        assert_eq!(r["max_output_tokens"], 9);
        assert_eq!(r["store"], false);
        assert_eq!(r["metadata"], json!({"k": "v"}));
        assert_eq!(r["previous_response_id"], "resp_0");
        assert_eq!(r["tools"], json!([{"type": "function", "name": "f"}]));
        assert_eq!(r["tool_choice"], "required");
        assert_eq!(r["reasoning"], json!({"effort": "high", "summary": null}));
    }

    #[test]
    fn a_filtered_reply_is_incomplete_and_a_refusal_is_a_part() {
        let completion = json!({
            "model": "gpt-x",
            "choices": [{"index": 0, "finish_reason": "content_filter",
                         "message": {"role": "assistant", "content": null, "refusal": "no"}}],
        });
        let r = from_chat(
            &meta(json!({"model": "m"})),
            completion.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"], json!({"reason": "content_filter"}));
        assert_eq!(
            r["output"][0]["content"],
            json!([{"type": "refusal", "refusal": "no"}])
        );
    }

    #[test]
    fn an_empty_reply_has_no_output_and_a_broken_body_is_an_error() {
        let completion = json!({"choices": [{"index": 0, "finish_reason": "stop",
                                             "message": {"role": "assistant", "content": ""}}]});
        let r = from_chat(
            &meta(json!({"model": "asked"})),
            completion.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r["output"], json!([]));
        assert_eq!(r["model"], "asked");
        assert!(from_chat(&meta(json!({})), b"not json").is_err());
    }
}
