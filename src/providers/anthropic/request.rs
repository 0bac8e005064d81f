//! OpenAI chat request -> Anthropic Messages request.
//!
//! Parameters fall in three groups (listed in README "Native adapters"): mapped, dropped
//! because they do not change the answer, and everything else, which is refused with a 400
//! naming it, since sending the request without it would quietly change what the client asked
//! for. A parameter at its neutral value (`n: 1`, `logprobs: false`, a zero penalty) is fine.

use crate::providers::content::{parse_data_url, plain_text};
use crate::providers::translate_error::{Api, TranslateError};
use crate::providers::unsupported::Unmapped;
use crate::providers::ProviderError;
use crate::wire::{ChatMessage, ChatRequest};
use serde_json::{json, Map, Value};

/// Anthropic requires `max_tokens`; this is used when the client sets neither `max_tokens`
/// nor `max_completion_tokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The Messages API body for `req`, sent to `model`; a 400 naming `provider` when the request
/// cannot be expressed.
pub fn messages_request(
    req: &ChatRequest,
    model: &str,
    provider: &str,
    unmapped: &mut Unmapped,
) -> Result<Value, ProviderError> {
    translate(req, model, unmapped).map_err(|e| e.refused_by(provider))
}

fn translate(
    req: &ChatRequest,
    model: &str,
    unmapped: &mut Unmapped,
) -> Result<Value, TranslateError> {
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let mut max_tokens = None;
    let mut tool_choice = None;
    let mut parallel_tool_calls = None;
    for (key, value) in &req.extra {
        if value.is_null() {
            continue; // an explicit null asks for the default, as leaving it out does
        }
        match key.as_str() {
            "max_tokens" | "max_completion_tokens" => {
                let n = value
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| TranslateError::NotPositive { key: key.clone() })?;
                max_tokens = Some(n);
            }
            // Same meaning in both APIs; `top_k` is Anthropic's own and let through.
            "temperature" | "top_p" | "top_k" => {
                out.insert(key.clone(), value.clone());
            }
            "stop" => {
                out.insert("stop_sequences".into(), stop_sequences(value)?);
            }
            "tools" => {
                out.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => tool_choice = Some(value),
            "parallel_tool_calls" => parallel_tool_calls = value.as_bool(),
            "user" => {
                if let Some(user) = value.as_str() {
                    out.insert("metadata".into(), json!({ "user_id": user }));
                }
            }
            // Bookkeeping that does not change the answer: `stream_options` is honoured by
            // the adapter itself, the rest is OpenAI-side storage and billing.
            "stream_options" | "store" | "metadata" | "service_tier" => {}
            _ if is_neutral(key, value) => {}
            _ => unmapped.handle(key, Api::AnthropicMessages)?,
        }
    }
    out.insert(
        "max_tokens".into(),
        json!(max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if let Some(choice) = tool_choice_of(tool_choice, parallel_tool_calls)? {
        out.insert("tool_choice".into(), choice);
    }

    let mut system: Vec<String> = Vec::new();
    let mut messages: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role.as_str() {
            // Anthropic has one top-level system prompt; system messages anywhere join it.
            "system" | "developer" => {
                system.push(plain_text(m.rest.get("content"), i)?);
                continue;
            }
            "user" => ("user", user_blocks(m.rest.get("content"), i)?),
            "assistant" => ("assistant", assistant_blocks(m, i)?),
            // Tool results travel in a user turn.
            "tool" => ("user", vec![tool_result(m, i)?]),
            other => {
                return Err(TranslateError::Role {
                    message: i,
                    role: other.to_string(),
                })
            }
        };
        // Anthropic wants turns to alternate, and parallel tool results in one user turn.
        match messages.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => messages.push((role, blocks)),
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    out.insert(
        "messages".into(),
        Value::Array(
            messages
                .into_iter()
                .map(|(role, content)| json!({ "role": role, "content": content }))
                .collect(),
        ),
    );
    if req.stream == Some(true) {
        out.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(out))
}

/// Values of unsupported parameters that ask for nothing beyond the default.
fn is_neutral(key: &str, value: &Value) -> bool {
    match key {
        "n" => value.as_u64() == Some(1),
        "logprobs" => value == &json!(false),
        "presence_penalty" | "frequency_penalty" => value.as_f64() == Some(0.0),
        "logit_bias" => value.as_object().is_some_and(Map::is_empty),
        "response_format" => value.get("type").and_then(Value::as_str) == Some("text"),
        "modalities" => value == &json!(["text"]),
        _ => false,
    }
}

fn stop_sequences(value: &Value) -> Result<Value, TranslateError> {
    match value {
        Value::String(s) => Ok(json!([s])),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(value.clone()),
        _ => Err(TranslateError::Stop),
    }
}

fn tools(value: &Value) -> Result<Value, TranslateError> {
    let list = value.as_array().ok_or(TranslateError::ToolsNotArray)?;
    list.iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(TranslateError::ToolNotFunction { tool: i });
            }
            let f = &tool["function"];
            let name = f["name"]
                .as_str()
                .ok_or(TranslateError::ToolName { tool: i })?;
            let mut out = json!({
                "name": name,
                // Anthropic requires a schema; OpenAI allows leaving it out for no arguments.
                "input_schema": f.get("parameters").cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                out["description"] = d.clone();
            }
            Ok(out)
        })
        .collect()
}

fn tool_choice_of(
    choice: Option<&Value>,
    parallel_tool_calls: Option<bool>,
) -> Result<Option<Value>, TranslateError> {
    let mut out = match choice {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => {
                return Err(TranslateError::ToolChoiceValue {
                    value: other.to_string(),
                })
            }
        }),
        Some(obj) => {
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or(TranslateError::ToolChoiceShape)?;
            Some(json!({"type": "tool", "name": name}))
        }
    };
    if parallel_tool_calls == Some(false) {
        let choice = out.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    Ok(out)
}

fn text_block(text: &str) -> Value {
    json!({"type": "text", "text": text})
}

fn user_blocks(content: Option<&Value>, i: usize) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        Some(Value::Array(parts)) => parts,
        other => return Ok(vec![text_block(&plain_text(other, i)?)]),
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, part)| match part.get("type").and_then(Value::as_str) {
            Some("text") => Ok(text_block(part["text"].as_str().unwrap_or_default())),
            Some("image_url") => {
                // `image_url` is an object with `url` in OpenAI's API; some clients send the
                // bare string.
                let url = part["image_url"]
                    .get("url")
                    .unwrap_or(&part["image_url"])
                    .as_str()
                    .ok_or(TranslateError::ImageUrlMissing {
                        message: i,
                        part: j,
                    })?;
                image_block(url).ok_or(TranslateError::ImageNotDataOrHttp {
                    message: i,
                    part: j,
                })
            }
            other => Err(TranslateError::PartType {
                message: i,
                part: j,
                kind: other.unwrap_or("(none)").to_string(),
            }),
        })
        .collect()
}

/// `data:` URLs become base64 sources, http(s) URLs URL sources; nothing else is an image
/// Anthropic can take.
pub fn image_block(url: &str) -> Option<Value> {
    if let Some((media_type, data)) = parse_data_url(url) {
        return Some(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Some(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    None
}

fn assistant_blocks(m: &ChatMessage, i: usize) -> Result<Vec<Value>, TranslateError> {
    let text = plain_text(m.rest.get("content"), i)?;
    let mut blocks = Vec::new();
    // Anthropic refuses empty text blocks; an assistant turn with only tool calls has none.
    if !text.is_empty() {
        blocks.push(text_block(&text));
    }
    if let Some(calls) = m.rest.get("tool_calls").and_then(Value::as_array) {
        for (j, call) in calls.iter().enumerate() {
            let f = &call["function"];
            let id = call["id"].as_str().ok_or(TranslateError::ToolCallId {
                message: i,
                call: j,
            })?;
            let name = f["name"].as_str().ok_or(TranslateError::ToolCallName {
                message: i,
                call: j,
            })?;
            let arguments = f["arguments"].as_str().unwrap_or("");
            let input: Value = if arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(arguments).map_err(|_| {
                    TranslateError::ToolCallArgumentsJson {
                        message: i,
                        call: j,
                    }
                })?
            };
            if !input.is_object() {
                return Err(TranslateError::ToolCallArgumentsObject {
                    message: i,
                    call: j,
                });
            }
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }
    Ok(blocks)
}

fn tool_result(m: &ChatMessage, i: usize) -> Result<Value, TranslateError> {
    let id = m
        .rest
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or(TranslateError::ToolResultId { message: i })?;
    Ok(json!({
        "type": "tool_result",
        "tool_use_id": id,
        "content": plain_text(m.rest.get("content"), i)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, ProviderError> {
        let req: ChatRequest = serde_json::from_value(body).unwrap();
        messages_request(
            &req,
            "claude-x",
            "claude",
            &mut Unmapped::new(Default::default()),
        )
    }

    fn message_of(err: ProviderError) -> String {
        match err {
            ProviderError::Status {
                status, message, ..
            } => {
                assert_eq!(status, 400);
                message
            }
            other => panic!("{other:?}"),
        }
    }

    fn param_of(err: ProviderError) -> Option<String> {
        match err {
            ProviderError::Status { param, .. } => param,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn system_turns_and_defaults() {
        let out = translate(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "again"}]}
            ],
            "temperature": 0.5, "stop": "END", "user": "u-1", "n": 1, "logprobs": false
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({
                "model": "claude-x",
                "temperature": 0.5,
                "stop_sequences": ["END"],
                "metadata": {"user_id": "u-1"},
                "max_tokens": DEFAULT_MAX_TOKENS,
                "system": "be brief",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
                    {"role": "user", "content": [{"type": "text", "text": "again"}]}
                ]
            })
        );
    }

    #[test]
    fn max_completion_tokens_and_stream() {
        let out = translate(
            json!({"model": "m", "messages": [], "max_completion_tokens": 7, "stream": true}),
        )
        .unwrap();
        assert_eq!(out["max_tokens"], 7);
        assert_eq!(out["stream"], true);
    }

    #[test]
    fn tools_calls_and_results() {
        let out = translate(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "t2", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "t1", "content": "cold"},
                {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "warm"}]}
            ],
            "tools": [{"type": "function", "function": {"name": "w", "description": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "w"}},
            "parallel_tool_calls": false
        }))
        .unwrap();
        assert_eq!(
            out["tools"],
            json!([{"name": "w", "description": "weather", "input_schema": {"type": "object"}}])
        );
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": "w", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            out["messages"][1]["content"],
            json!([
                {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "t2", "name": "w", "input": {"city": "Rome"}}
            ])
        );
        assert_eq!(
            out["messages"].as_array().unwrap().len(),
            3,
            "both results in one turn"
        );
        assert_eq!(
            out["messages"][2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "cold"},
                {"type": "tool_result", "tool_use_id": "t2", "content": "warm"}
            ]})
        );
    }

    #[test]
    fn tool_choice_strings() {
        for (openai, anthropic) in [("auto", "auto"), ("none", "none"), ("required", "any")] {
            let out =
                translate(json!({"model": "m", "messages": [], "tool_choice": openai})).unwrap();
            assert_eq!(out["tool_choice"]["type"], anthropic);
        }
    }

    #[test]
    fn images_from_data_and_http_urls() {
        let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}
        ]}]}))
        .unwrap();
        assert_eq!(
            out["messages"][0]["content"],
            json!([
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
            ])
        );
        let err = translate(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}),
        )
        .unwrap_err();
        assert_eq!(
            param_of(err.clone()).as_deref(),
            Some("messages[0].content[0]")
        );
        assert_eq!(
            message_of(err),
            "messages[0].content[0]: images must be base64 `data:` URLs or http(s) URLs (provider `claude`)"
        );
    }

    #[test]
    fn unsupported_parameters_are_named() {
        for (key, value) in [
            ("logprobs", json!(true)),
            ("n", json!(2)),
            ("presence_penalty", json!(0.5)),
            ("response_format", json!({"type": "json_object"})),
            ("some_future_param", json!(1)),
        ] {
            let mut body = json!({"model": "m", "messages": []});
            body[key] = value;
            let err = translate(body).unwrap_err();
            assert_eq!(param_of(err.clone()).as_deref(), Some(key));
            let message = message_of(err);
            assert!(message.contains(&format!("`{key}`")), "{message}");
            assert!(message.contains("`claude`"), "{message}");
        }
    }

    #[test]
    fn bad_tool_arguments_are_refused() {
        let err = translate(json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]}))
        .unwrap_err();
        assert_eq!(
            param_of(err.clone()).as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
        assert!(message_of(err).contains("messages[0].tool_calls[0]"));
    }
}
