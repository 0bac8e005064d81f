//! A Messages request -> its chat completions form.
//!
//! The body is checked the way Anthropic checks it (a 400 naming the field, with the path in
//! `param`, for a missing `model`, a `max_tokens` that is no positive integer, a message that
//! is no `{role: user|assistant, content}`, a block without its required fields), then
//! translated:
//!
//! - `system` (a string or text blocks, joined by a blank line) becomes the first message, a
//!   `system` one.
//! - A user turn becomes its `tool_result` blocks as `tool` messages, in order, then the rest
//!   of the turn as one user message (text, `image_url` and `file` parts). A result with
//!   `is_error: true` has its text prefixed with `Error: ` (the chat form has no error flag,
//!   and a model reading the result should still know the tool failed).
//! - An assistant turn becomes one assistant message: its text blocks joined (Anthropic splits
//!   cited text into adjacent blocks, so they join without a separator) and its `tool_use`
//!   blocks as `tool_calls`.
//! - Thinking blocks, server tools and anything else the chat form has no place for are left
//!   out and listed in [`Translated::untranslated`] (`messages[i].content[j]: a thinking
//!   block`): only an Anthropic upstream could use them, and it receives the original body.
//! - `cache_control`, on a block, a tool or the request, is a caching hint that changes no
//!   answer: it is dropped without a word.
//! - Every top-level field this module does not read (`top_k`, `thinking`, `service_tier`,
//!   fields added later) goes into the chat body under its own name, unchanged; a translating
//!   provider then refuses or drops it per its `unsupported_params`.

use crate::error::ApiError;
use serde_json::{json, Map, Value};

/// A Messages request in the chat form.
#[derive(Debug)]
pub struct Translated {
    /// The chat completions body: `model` as the client sent it, `messages`, the parameters,
    /// `stream` and, when streaming, `stream_options.include_usage`.
    pub chat: Map<String, Value>,
    /// What the chat form cannot carry, each as `path: what`.
    pub untranslated: Vec<String>,
}

/// The file name a PDF is sent under when its document block has no `title`: OpenAI refuses
/// `file_data` without a `filename`.
pub const DEFAULT_PDF_FILENAME: &str = "document.pdf";

/// Translates a Messages request body; a body that is not a valid Messages request is a 400
/// naming the field.
pub fn to_chat(body: &Value) -> Result<Translated, ApiError> {
    let body = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let mut untranslated = Vec::new();
    let mut chat = Map::new();

    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => return Err(invalid("model", "must be a non-empty string")),
        None => return Err(missing("model")),
    };
    chat.insert("model".into(), json!(model));

    let list = match body.get("messages") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err(invalid("messages", "must not be empty")),
        Some(_) => return Err(invalid("messages", "must be an array of messages")),
        None => return Err(missing("messages")),
    };
    let mut messages = Vec::with_capacity(list.len() + 1);
    if let Some(system) = body.get("system").filter(|s| !s.is_null()) {
        if let Some(text) = system_text(system)? {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, message) in list.iter().enumerate() {
        let last = i + 1 == list.len();
        turn(message, i, last, &mut messages, &mut untranslated)?;
    }
    chat.insert("messages".into(), Value::Array(messages));

    match body.get("max_tokens") {
        Some(n) if n.as_u64().is_some_and(|n| n > 0) => {
            chat.insert("max_tokens".into(), n.clone());
        }
        Some(_) => return Err(invalid("max_tokens", "must be a positive integer")),
        None => return Err(missing("max_tokens")),
    }

    let tools = match body.get("tools").filter(|t| !t.is_null()) {
        Some(tools) => function_tools(tools, &mut untranslated)?,
        None => Vec::new(),
    };
    let has_tools = !tools.is_empty();
    if has_tools {
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice").filter(|c| !c.is_null()) {
        let (choice, parallel) = tool_choice(choice)?;
        // OpenAI refuses `tool_choice` and `parallel_tool_calls` without tools; when every
        // tool was a server tool, a choice other than auto or none is what cannot be carried.
        if has_tools {
            chat.insert("tool_choice".into(), choice);
            if let Some(parallel) = parallel {
                chat.insert("parallel_tool_calls".into(), json!(parallel));
            }
        } else if choice != json!("auto") && choice != json!("none") {
            untranslated.push("tool_choice: a choice of tool with no function tools".into());
        }
    }

    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "must be a boolean")),
    };
    chat.insert("stream".into(), json!(stream));
    if stream {
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }

    for (key, value) in body {
        match key.as_str() {
            // Read above.
            "model" | "messages" | "system" | "max_tokens" | "tools" | "tool_choice" | "stream" => {
            }
            "cache_control" => {}
            _ if value.is_null() => {}
            "stop_sequences" => {
                let stop = value
                    .as_array()
                    .filter(|s| s.iter().all(Value::is_string))
                    .ok_or_else(|| invalid("stop_sequences", "must be an array of strings"))?;
                if !stop.is_empty() {
                    chat.insert("stop".into(), value.clone());
                }
            }
            "temperature" | "top_p" => {
                if !value.is_number() {
                    return Err(invalid(key, "must be a number"));
                }
                chat.insert(key.clone(), value.clone());
            }
            "metadata" => {
                let metadata = value
                    .as_object()
                    .ok_or_else(|| invalid("metadata", "must be an object"))?;
                match metadata.get("user_id") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(user)) => {
                        chat.insert("user".into(), json!(user));
                    }
                    Some(_) => return Err(invalid("metadata.user_id", "must be a string")),
                }
            }
            _ => {
                chat.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(Translated { chat, untranslated })
}

/// A 400 naming `param`: `"{param}: {what}"`.
fn invalid(param: impl Into<String>, what: &str) -> ApiError {
    let param = param.into();
    ApiError::bad_request(format!("{param}: {what}")).with_param(param)
}

fn missing(param: &str) -> ApiError {
    invalid(param, "field required")
}

/// `system` as one string (text blocks joined by a blank line); `None` when it is empty.
fn system_text(system: &Value) -> Result<Option<String>, ApiError> {
    let text = match system {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .enumerate()
            .map(|(k, block)| {
                let path = format!("system[{k}]");
                match block_type(block, &path)? {
                    "text" => text_of(block, &path).map(str::to_string),
                    _ => Err(invalid(format!("{path}.type"), "must be `text`")),
                }
            })
            .collect::<Result<Vec<_>, _>>()?
            .join("\n\n"),
        _ => {
            return Err(invalid(
                "system",
                "must be a string or an array of text blocks",
            ))
        }
    };
    Ok((!text.is_empty()).then_some(text))
}

/// A block's `type`, which must be a string.
fn block_type<'a>(block: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    if !block.is_object() {
        return Err(invalid(path, "must be an object"));
    }
    block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.type"), "must be a string"))
}

/// A text block's `text`, which must be a string.
fn text_of<'a>(block: &'a Value, path: &str) -> Result<&'a str, ApiError> {
    block
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.text"), "must be a string"))
}

/// A required string field of a block.
fn string_field<'a>(block: &'a Value, path: &str, field: &str) -> Result<&'a str, ApiError> {
    block
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{path}.{field}"), "must be a string"))
}

/// Message `i` as chat messages, appended to `out`.
fn turn(
    message: &Value,
    i: usize,
    last: bool,
    out: &mut Vec<Value>,
    untranslated: &mut Vec<String>,
) -> Result<(), ApiError> {
    let path = format!("messages[{i}]");
    if !message.is_object() {
        return Err(invalid(path, "must be an object"));
    }
    let role = match message.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "assistant")) => role,
        _ => {
            return Err(invalid(
                format!("{path}.role"),
                "must be `user` or `assistant`",
            ))
        }
    };
    let content = message.get("content");
    let empty = match content {
        Some(Value::String(text)) => text.is_empty(),
        Some(Value::Array(blocks)) => blocks.is_empty(),
        _ => false,
    };
    if empty {
        // As Anthropic: only the final assistant message (a prefill) may be empty, and an
        // empty prefill says nothing, so it is left out.
        if role == "assistant" && last {
            return Ok(());
        }
        return Err(invalid(
            format!("{path}.content"),
            "must not be empty (only the final assistant message may be)",
        ));
    }
    let blocks = match content {
        Some(Value::String(text)) => {
            out.push(json!({"role": role, "content": text}));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(invalid(
                format!("{path}.content"),
                "must be a string or an array of content blocks",
            ))
        }
    };
    if role == "user" {
        user_turn(blocks, &path, out, untranslated)
    } else {
        assistant_turn(blocks, &path, out, untranslated)
    }
}

/// `tool_result` blocks as `tool` messages, then the rest as one user message (left out when
/// nothing is left).
fn user_turn(
    blocks: &[Value],
    path: &str,
    out: &mut Vec<Value>,
    untranslated: &mut Vec<String>,
) -> Result<(), ApiError> {
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}.content[{j}]");
        match block_type(block, &path)? {
            "tool_result" => out.push(tool_message(block, &path, untranslated)?),
            "tool_use" => {
                return Err(invalid(
                    format!("{path}.type"),
                    "`tool_use` blocks belong in assistant turns",
                ))
            }
            kind => {
                if let Some(part) = user_part(block, kind, &path, untranslated)? {
                    parts.push(part);
                }
            }
        }
    }
    if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// A user block (other than a tool result) as a chat content part; `None` for one the chat
/// form has no part for (then listed as untranslated).
fn user_part(
    block: &Value,
    kind: &str,
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<Option<Value>, ApiError> {
    match kind {
        "text" => Ok(Some(json!({"type": "text", "text": text_of(block, path)?}))),
        "image" => image_part(block, path, untranslated),
        "document" => document_part(block, path, untranslated),
        other => {
            untranslated.push(format!("{path}: {}", a_block(other)));
            Ok(None)
        }
    }
}

/// `a thinking block`, `an image block`.
fn a_block(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind} block")
}

/// A block's `source` object and its `type`.
fn source_of<'a>(block: &'a Value, path: &str) -> Result<(&'a Value, &'a str), ApiError> {
    let source = block
        .get("source")
        .filter(|s| s.is_object())
        .ok_or_else(|| invalid(format!("{path}.source"), "must be an object"))?;
    let kind = string_field(source, &format!("{path}.source"), "type")?;
    Ok((source, kind))
}

/// A base64 source as a `data:` URL.
fn data_url(source: &Value, path: &str) -> Result<String, ApiError> {
    let path = format!("{path}.source");
    let media_type = string_field(source, &path, "media_type")?;
    let data = string_field(source, &path, "data")?;
    Ok(format!("data:{media_type};base64,{data}"))
}

/// An image as an `image_url` part: base64 data as a `data:` URL, a URL as it is. Other
/// sources (a Files API `file_id`) have no chat form.
fn image_part(
    block: &Value,
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<Option<Value>, ApiError> {
    let (source, kind) = source_of(block, path)?;
    let url = match kind {
        "base64" => data_url(source, path)?,
        "url" => string_field(source, &format!("{path}.source"), "url")?.to_string(),
        other => {
            untranslated.push(format!("{path}: an image from a `{other}` source"));
            return Ok(None);
        }
    };
    Ok(Some(
        json!({"type": "image_url", "image_url": {"url": url}}),
    ))
}

/// A document: a base64 PDF as a `file` part (named by its `title`), plain text as a text
/// part, a content source as its text. URL and file sources have no chat form, nor do
/// `context` and enabled `citations`.
fn document_part(
    block: &Value,
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<Option<Value>, ApiError> {
    let (source, kind) = source_of(block, path)?;
    if block.get("context").is_some_and(|c| !c.is_null()) {
        untranslated.push(format!("{path}.context: a document's context"));
    }
    if block["citations"]["enabled"] == json!(true) {
        untranslated.push(format!("{path}.citations: citations"));
    }
    let part = match kind {
        "base64" => {
            let filename = block
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_PDF_FILENAME);
            json!({"type": "file", "file": {
                "file_data": data_url(source, path)?,
                "filename": filename,
            }})
        }
        "text" => {
            let text = string_field(source, &format!("{path}.source"), "data")?;
            json!({"type": "text", "text": text})
        }
        "content" => {
            let text = source_content_text(source, path, untranslated)?;
            json!({"type": "text", "text": text})
        }
        other => {
            untranslated.push(format!("{path}: a document from a `{other}` source"));
            return Ok(None);
        }
    };
    Ok(Some(part))
}

/// The text of a `content` document source: a string, or its text blocks joined.
fn source_content_text(
    source: &Value,
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<String, ApiError> {
    let path = format!("{path}.source.content");
    match source.get("content") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (k, block) in blocks.iter().enumerate() {
                let path = format!("{path}[{k}]");
                match block_type(block, &path)? {
                    "text" => texts.push(text_of(block, &path)?),
                    other => untranslated.push(format!("{path}: {}", a_block(other))),
                }
            }
            Ok(texts.join("\n\n"))
        }
        _ => Err(invalid(
            path,
            "must be a string or an array of content blocks",
        )),
    }
}

/// A `tool_result` block as a `tool` message. Its content is text in the chat form: text
/// blocks are joined by a blank line; images and documents in a result are untranslated.
fn tool_message(
    block: &Value,
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let id = string_field(block, path, "tool_use_id")?;
    let text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (k, inner) in blocks.iter().enumerate() {
                let path = format!("{path}.content[{k}]");
                match block_type(inner, &path)? {
                    "text" => texts.push(text_of(inner, &path)?),
                    other => {
                        untranslated.push(format!("{path}: {} in a tool result", a_block(other)))
                    }
                }
            }
            texts.join("\n\n")
        }
        Some(_) => {
            return Err(invalid(
                format!("{path}.content"),
                "must be a string or an array of content blocks",
            ))
        }
    };
    let text = match block.get("is_error") {
        Some(Value::Bool(true)) if text.is_empty() => "Error".to_string(),
        Some(Value::Bool(true)) => format!("Error: {text}"),
        None | Some(Value::Null | Value::Bool(false)) => text,
        Some(_) => return Err(invalid(format!("{path}.is_error"), "must be a boolean")),
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

/// An assistant turn as one assistant message: the text, then the tool calls.
fn assistant_turn(
    blocks: &[Value],
    path: &str,
    out: &mut Vec<Value>,
    untranslated: &mut Vec<String>,
) -> Result<(), ApiError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let path = format!("{path}.content[{j}]");
        match block_type(block, &path)? {
            "text" => text.push_str(text_of(block, &path)?),
            "tool_use" => {
                let id = string_field(block, &path, "id")?;
                let name = string_field(block, &path, "name")?;
                let input = block
                    .get("input")
                    .filter(|i| i.is_object())
                    .ok_or_else(|| invalid(format!("{path}.input"), "must be an object"))?;
                calls.push(json!({
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": input.to_string()},
                }));
            }
            "tool_result" => {
                return Err(invalid(
                    format!("{path}.type"),
                    "`tool_result` blocks belong in user turns",
                ))
            }
            other => untranslated.push(format!("{path}: {}", a_block(other))),
        }
    }
    if text.is_empty() && calls.is_empty() {
        // Only untranslated blocks: there is nothing to say in the chat form.
        return Ok(());
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { json!(text) },
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    out.push(message);
    Ok(())
}

/// Custom tools as function tools; server tools (a `type` other than `custom`) are listed as
/// untranslated.
fn function_tools(tools: &Value, untranslated: &mut Vec<String>) -> Result<Vec<Value>, ApiError> {
    let list = tools
        .as_array()
        .ok_or_else(|| invalid("tools", "must be an array of tools"))?;
    let mut out = Vec::with_capacity(list.len());
    for (k, tool) in list.iter().enumerate() {
        let path = format!("tools[{k}]");
        let tool = tool
            .as_object()
            .ok_or_else(|| invalid(path.clone(), "must be an object"))?;
        match tool.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(kind)) if kind == "custom" => {}
            Some(Value::String(kind)) => {
                untranslated.push(format!("{path}: a server tool (`{kind}`)"));
                continue;
            }
            Some(_) => return Err(invalid(format!("{path}.type"), "must be a string")),
        }
        let name = match tool.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name,
            _ => {
                return Err(invalid(
                    format!("{path}.name"),
                    "must be a non-empty string",
                ))
            }
        };
        let schema = tool
            .get("input_schema")
            .filter(|s| s.is_object())
            .ok_or_else(|| invalid(format!("{path}.input_schema"), "must be an object"))?;
        let mut function = json!({"name": name, "parameters": schema});
        for (field, value) in tool {
            match field.as_str() {
                "type" | "name" | "input_schema" | "cache_control" => {}
                _ if value.is_null() => {}
                "description" => {
                    if !value.is_string() {
                        return Err(invalid(format!("{path}.description"), "must be a string"));
                    }
                    function["description"] = value.clone();
                }
                "strict" => function["strict"] = value.clone(),
                other => untranslated.push(format!("{path}.{other}: a tool's `{other}`")),
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(out)
}

/// Anthropic's `tool_choice` as OpenAI's, and `parallel_tool_calls: false` when it disables
/// parallel tool use.
fn tool_choice(choice: &Value) -> Result<(Value, Option<bool>), ApiError> {
    if !choice.is_object() {
        return Err(invalid("tool_choice", "must be an object"));
    }
    let openai = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = string_field(choice, "tool_choice", "name")?;
            json!({"type": "function", "function": {"name": name}})
        }
        _ => {
            return Err(invalid(
                "tool_choice.type",
                "must be `auto`, `any`, `tool` or `none`",
            ))
        }
    };
    let parallel = match choice.get("disable_parallel_tool_use") {
        Some(Value::Bool(true)) => Some(false),
        None | Some(Value::Null | Value::Bool(false)) => None,
        Some(_) => {
            return Err(invalid(
                "tool_choice.disable_parallel_tool_use",
                "must be a boolean",
            ))
        }
    };
    Ok((openai, parallel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Translated {
        to_chat(&body).unwrap()
    }

    /// A request with `extra` fields over the minimal valid one.
    fn with(extra: Value) -> Value {
        let mut body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hi"}],
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    }

    /// The 400's `param`, after checking the status and that the message starts with it.
    fn refused(body: Value) -> String {
        let error = to_chat(&body).unwrap_err();
        assert_eq!(error.status, 400);
        assert_eq!(error.kind, "invalid_request_error");
        let param = error.param.clone().unwrap_or_default();
        assert!(error.message.starts_with(&param), "{}", error.message);
        param
    }

    #[test]
    fn minimal_request() {
        let out = chat(with(json!({})));
        assert_eq!(
            Value::Object(out.chat),
            json!({
                "model": "claude-sonnet-4-5",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 100,
                "stream": false,
            })
        );
        assert!(out.untranslated.is_empty());
    }

    #[test]
    fn validation_names_the_field() {
        let error = to_chat(&json!([1])).unwrap_err();
        assert_eq!(error.status, 400);
        let mut no_model = with(json!({}));
        no_model.as_object_mut().unwrap().remove("model");
        assert_eq!(refused(no_model), "model");
        assert_eq!(refused(with(json!({"model": 7}))), "model");
        let mut no_max = with(json!({}));
        no_max.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(refused(no_max), "max_tokens");
        for bad in [json!(0), json!(-1), json!(1.5), json!("10"), json!(null)] {
            assert_eq!(refused(with(json!({"max_tokens": bad}))), "max_tokens");
        }
        let mut no_messages = with(json!({}));
        no_messages.as_object_mut().unwrap().remove("messages");
        assert_eq!(refused(no_messages), "messages");
        assert_eq!(refused(with(json!({"messages": []}))), "messages");
        assert_eq!(refused(with(json!({"messages": "hi"}))), "messages");
        for (messages, param) in [
            (json!(["hi"]), "messages[0]"),
            (
                json!([{"role": "system", "content": "x"}]),
                "messages[0].role",
            ),
            (json!([{"content": "x"}]), "messages[0].role"),
            (
                json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": 5}]),
                "messages[1].content",
            ),
            (
                json!([{"role": "user", "content": "a"}, {"role": "assistant"}]),
                "messages[1].content",
            ),
            (
                json!([{"role": "user", "content": ""}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": []}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "assistant", "content": ""}, {"role": "user", "content": "a"}]),
                "messages[0].content",
            ),
            (
                json!([{"role": "user", "content": [{"text": "a"}]}]),
                "messages[0].content[0].type",
            ),
            (
                json!([{"role": "user", "content": ["a"]}]),
                "messages[0].content[0]",
            ),
            (
                json!([{"role": "user", "content": [{"type": "text"}]}]),
                "messages[0].content[0].text",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}]}]),
                "messages[0].content[0].source.media_type",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image"}]}]),
                "messages[0].content[0].source",
            ),
            (
                json!([{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]),
                "messages[0].content[0].type",
            ),
            (
                json!([{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]),
                "messages[0].content[0].type",
            ),
            (
                json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]),
                "messages[0].content[0].input",
            ),
            (
                json!([{"role": "user", "content": [{"type": "tool_result"}]}]),
                "messages[0].content[0].tool_use_id",
            ),
        ] {
            assert_eq!(refused(with(json!({"messages": messages}))), param);
        }
        assert_eq!(refused(with(json!({"system": 1}))), "system");
        assert_eq!(
            refused(with(json!({"system": [{"type": "image"}]}))),
            "system[0].type"
        );
        assert_eq!(refused(with(json!({"stream": "yes"}))), "stream");
        assert_eq!(
            refused(with(json!({"stop_sequences": "END"}))),
            "stop_sequences"
        );
        assert_eq!(refused(with(json!({"temperature": "hot"}))), "temperature");
        assert_eq!(
            refused(with(json!({"metadata": {"user_id": 1}}))),
            "metadata.user_id"
        );
        assert_eq!(
            refused(with(json!({"tools": [{"name": "f"}]}))),
            "tools[0].input_schema"
        );
        assert_eq!(
            refused(with(json!({"tools": [{"input_schema": {}}]}))),
            "tools[0].name"
        );
        assert_eq!(
            refused(with(json!({"tool_choice": {"type": "maybe"}}))),
            "tool_choice.type"
        );
        assert_eq!(
            refused(with(json!({"tool_choice": {"type": "tool"}}))),
            "tool_choice.name"
        );
    }

    #[test]
    fn an_empty_final_assistant_message_is_left_out() {
        let out = chat(with(json!({"messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": ""}
        ]})));
        assert_eq!(
            out.chat["messages"],
            json!([{"role": "user", "content": "Hi"}])
        );
    }

    #[test]
    fn system_as_string_or_text_blocks() {
        let out = chat(with(json!({"system": "Be brief."})));
        assert_eq!(
            out.chat["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        let out = chat(with(json!({"system": [
            {"type": "text", "text": "Be brief."},
            {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}
        ]})));
        assert_eq!(
            out.chat["messages"],
            json!([
                {"role": "system", "content": "Be brief.\n\nBe kind."},
                {"role": "user", "content": "Hi"}
            ])
        );
        let out = chat(with(json!({"system": ""})));
        assert_eq!(out.chat["messages"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn text_and_images() {
        let out = chat(with(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
        ]}]})));
        assert_eq!(
            out.chat["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
            ]}])
        );
        assert_eq!(
            out.untranslated,
            ["messages[0].content[3]: an image from a `file` source"]
        );
    }

    #[test]
    fn documents() {
        let out = chat(with(json!({"messages": [{"role": "user", "content": [
            {"type": "document", "title": "report.pdf",
             "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi1"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
            {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}},
            {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
            {"type": "document", "context": "from the archive", "citations": {"enabled": true},
             "source": {"type": "text", "media_type": "text/plain", "data": "cited"}}
        ]}]})));
        assert_eq!(
            out.chat["messages"][0]["content"],
            json!([
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0", "filename": "report.pdf"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi1", "filename": DEFAULT_PDF_FILENAME}},
                {"type": "text", "text": "plain words"},
                {"type": "text", "text": "a\n\nb"},
                {"type": "text", "text": "cited"}
            ])
        );
        assert_eq!(
            out.untranslated,
            [
                "messages[0].content[4]: a document from a `url` source",
                "messages[0].content[5].context: a document's context",
                "messages[0].content[5].citations: citations",
            ]
        );
    }

    #[test]
    fn tool_use_and_tool_results_in_order() {
        let out = chat(with(json!({"messages": [
            {"role": "user", "content": "Weather in Oslo and Rome?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "two calls", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"},
                 "cache_control": {"type": "ephemeral"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"},
                {"type": "text", "text": "And be quick."},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                 "content": [{"type": "text", "text": "timed out"}, {"type": "text", "text": "retry later"}]}
            ]}
        ]})));
        assert_eq!(
            out.chat["messages"],
            json!([
                {"role": "user", "content": "Weather in Oslo and Rome?"},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function",
                     "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "toolu_2", "type": "function",
                     "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
                {"role": "tool", "tool_call_id": "toolu_2",
                 "content": "Error: timed out\n\nretry later"},
                {"role": "user", "content": [{"type": "text", "text": "And be quick."}]}
            ])
        );
        assert_eq!(
            out.untranslated,
            ["messages[1].content[0]: a thinking block"]
        );
    }

    #[test]
    fn assistant_with_only_tool_use_and_results_without_text() {
        let out = chat(with(json!({"messages": [
            {"role": "user", "content": "time?"},
            {"role": "assistant", "content": [
                {"type": "redacted_thinking", "data": "xyz"},
                {"type": "tool_use", "id": "t", "name": "now", "input": {}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t"},
                {"type": "tool_result", "tool_use_id": "u", "is_error": true},
                {"type": "tool_result", "tool_use_id": "v", "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}
            ]}
        ]})));
        assert_eq!(
            out.chat["messages"],
            json!([
                {"role": "user", "content": "time?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "now", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "t", "content": ""},
                {"role": "tool", "tool_call_id": "u", "content": "Error"},
                {"role": "tool", "tool_call_id": "v", "content": ""}
            ])
        );
        assert_eq!(
            out.untranslated,
            [
                "messages[1].content[0]: a redacted_thinking block",
                "messages[2].content[2].content[0]: an image block in a tool result",
            ]
        );
    }

    #[test]
    fn other_blocks_are_untranslated() {
        let out = chat(with(json!({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "find it"},
                {"type": "search_result", "source": "s", "title": "t", "content": []}
            ]},
            {"role": "assistant", "content": [
                {"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}},
                {"type": "text", "text": "Found."}
            ]}
        ]})));
        assert_eq!(
            out.untranslated,
            [
                "messages[0].content[1]: a search_result block",
                "messages[1].content[0]: a server_tool_use block",
            ]
        );
        assert_eq!(
            out.chat["messages"][1],
            json!({"role": "assistant", "content": "Found."})
        );
    }

    #[test]
    fn parameters() {
        let out = chat(with(json!({
            "stop_sequences": ["END", "STOP"],
            "temperature": 0.3,
            "top_p": 0.9,
            "metadata": {"user_id": "user-42"},
            "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "service_tier": "auto",
            "some_future_field": {"x": 1},
            "cache_control": {"type": "ephemeral"},
        })));
        let chat = Value::Object(out.chat);
        assert_eq!(chat["stop"], json!(["END", "STOP"]));
        assert_eq!(chat["temperature"], 0.3);
        assert_eq!(chat["top_p"], 0.9);
        assert_eq!(chat["user"], "user-42");
        assert_eq!(chat["top_k"], 5);
        assert_eq!(
            chat["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(chat["service_tier"], "auto");
        assert_eq!(chat["some_future_field"], json!({"x": 1}));
        for gone in [
            "stop_sequences",
            "metadata",
            "cache_control",
            "stream_options",
        ] {
            assert!(chat.get(gone).is_none(), "{gone}");
        }
        assert!(out.untranslated.is_empty());
    }

    #[test]
    fn streaming_asks_for_usage() {
        let out = chat(with(json!({"stream": true})));
        assert_eq!(out.chat["stream"], true);
        assert_eq!(out.chat["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn tools_and_server_tools() {
        let out = chat(with(json!({
            "tools": [
                {"name": "weather", "description": "Weather for a city",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                 "cache_control": {"type": "ephemeral"}},
                {"type": "custom", "name": "now", "input_schema": {"type": "object"}, "strict": true},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        })));
        assert_eq!(
            out.chat["tools"],
            json!([
                {"type": "function", "function": {"name": "weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "description": "Weather for a city"}},
                {"type": "function", "function": {"name": "now",
                    "parameters": {"type": "object"}, "strict": true}}
            ])
        );
        assert_eq!(out.chat["tool_choice"], "required");
        assert_eq!(out.chat["parallel_tool_calls"], false);
        assert_eq!(
            out.untranslated,
            ["tools[2]: a server tool (`web_search_20250305`)"]
        );
    }

    #[test]
    fn tool_choices() {
        let tools = json!([{"name": "f", "input_schema": {"type": "object"}}]);
        for (choice, expected) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
        ] {
            let out = chat(with(json!({"tools": tools, "tool_choice": choice})));
            assert_eq!(out.chat["tool_choice"], expected, "{choice}");
            assert!(out.chat.get("parallel_tool_calls").is_none());
        }
        let out = chat(with(json!({"tools": tools,
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": false}})));
        assert!(out.chat.get("parallel_tool_calls").is_none());

        // With no tool the chat form can carry, a choice of one cannot be carried either.
        let out = chat(with(json!({
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "tool", "name": "web_search"}
        })));
        assert!(out.chat.get("tools").is_none());
        assert!(out.chat.get("tool_choice").is_none());
        assert_eq!(
            out.untranslated,
            [
                "tools[0]: a server tool (`web_search_20250305`)",
                "tool_choice: a choice of tool with no function tools",
            ]
        );
        let out = chat(with(json!({"tool_choice": {"type": "auto"}})));
        assert!(out.chat.get("tool_choice").is_none());
        assert!(out.untranslated.is_empty());
    }
}
