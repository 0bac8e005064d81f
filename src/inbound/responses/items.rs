//! Responses input items -> chat messages, and a request's `input` as the items a stored
//! response keeps.
//!
//! Items map to messages one by one, except function calls: chat carries a model turn's calls
//! in the `tool_calls` of one assistant message, so consecutive `function_call` items (and the
//! assistant message right before them, which the model wrote in the same turn) become one.

use super::error::RequestError;
use serde_json::{json, Map, Value};

/// Appends the chat messages for `items` to `messages`. Paths in errors and in `untranslated`
/// are `{base}[i]...`; parts the chat form cannot carry are left out and listed there.
pub fn to_messages(
    items: &[Value],
    base: &str,
    messages: &mut Vec<Value>,
    untranslated: &mut Vec<String>,
) -> Result<(), RequestError> {
    for (i, item) in items.iter().enumerate() {
        let path = format!("{base}[{i}]");
        let Some(obj) = item.as_object() else {
            return Err(RequestError::Type {
                param: path,
                expected: "an object",
            });
        };
        match item_type(obj, &path)? {
            "message" => messages.push(message(obj, &path, untranslated)?),
            "function_call" => push_call(obj, &path, messages)?,
            "function_call_output" => messages.push(call_output(obj, &path, untranslated)?),
            // The model's reasoning from an earlier turn: chat has no way to send it back, and
            // models answer without it.
            "reasoning" => {}
            other => {
                return Err(RequestError::ItemType {
                    param: path,
                    kind: other.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// An item's type; an item without one is a message (OpenAI's "easy input message").
fn item_type<'a>(obj: &'a Map<String, Value>, path: &str) -> Result<&'a str, RequestError> {
    match obj.get("type") {
        None | Some(Value::Null) => Ok("message"),
        Some(Value::String(kind)) => Ok(kind),
        Some(_) => Err(RequestError::Type {
            param: format!("{path}.type"),
            expected: "a string",
        }),
    }
}

/// The chat role for a message item's role: `developer` is OpenAI's newer name for `system`,
/// which every chat provider knows (and OpenAI itself reads as `developer`).
fn role(obj: &Map<String, Value>, path: &str) -> Result<&'static str, RequestError> {
    match obj.get("role") {
        None | Some(Value::Null) => Err(RequestError::Missing {
            param: format!("{path}.role"),
        }),
        Some(Value::String(role)) => match role.as_str() {
            "user" => Ok("user"),
            "assistant" => Ok("assistant"),
            "system" | "developer" => Ok("system"),
            other => Err(RequestError::Role {
                param: format!("{path}.role"),
                role: other.to_string(),
            }),
        },
        Some(_) => Err(RequestError::Type {
            param: format!("{path}.role"),
            expected: "a string",
        }),
    }
}

fn message(
    obj: &Map<String, Value>,
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<Value, RequestError> {
    let role = role(obj, path)?;
    let content = match obj.get("content") {
        None | Some(Value::Null) => {
            return Err(RequestError::Missing {
                param: format!("{path}.content"),
            })
        }
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(Value::Array(parts)) => content(parts, &format!("{path}.content"), untranslated)?,
        Some(_) => {
            return Err(RequestError::Type {
                param: format!("{path}.content"),
                expected: "a string or an array of content parts",
            })
        }
    };
    Ok(json!({"role": role, "content": content}))
}

/// Content parts -> chat content. A lone text part becomes a plain string: every chat
/// provider takes that, while some refuse arrays for system or assistant messages.
fn content(
    parts: &[Value],
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<Value, RequestError> {
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let path = format!("{path}[{j}]");
        if let Some(part) = part_to_chat(part, &path, untranslated)? {
            out.push(part);
        }
    }
    if let [only] = out.as_slice() {
        if only["type"] == "text" {
            return Ok(only["text"].clone());
        }
    }
    if out.is_empty() {
        return Ok(Value::String(String::new()));
    }
    Ok(Value::Array(out))
}

/// One content part in the chat form; `None` when chat cannot carry it (listed in
/// `untranslated`).
fn part_to_chat(
    part: &Value,
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<Option<Value>, RequestError> {
    let Some(obj) = part.as_object() else {
        return Err(RequestError::Type {
            param: path.to_string(),
            expected: "an object",
        });
    };
    let kind = match obj.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        None | Some(Value::Null) => {
            return Err(RequestError::Missing {
                param: format!("{path}.type"),
            })
        }
        Some(_) => {
            return Err(RequestError::Type {
                param: format!("{path}.type"),
                expected: "a string",
            })
        }
    };
    match kind {
        "input_text" | "output_text" => {
            let text = string_field(obj, "text", path)?;
            Ok(Some(json!({"type": "text", "text": text})))
        }
        "refusal" => {
            let refusal = string_field(obj, "refusal", path)?;
            Ok(Some(json!({"type": "refusal", "refusal": refusal})))
        }
        "input_image" => match obj.get("image_url") {
            Some(Value::String(url)) => {
                let mut image = json!({"url": url});
                if let Some(detail) = obj.get("detail").filter(|d| !d.is_null()) {
                    image["detail"] = detail.clone();
                }
                Ok(Some(json!({"type": "image_url", "image_url": image})))
            }
            Some(other) if !other.is_null() => Err(RequestError::Type {
                param: format!("{path}.image_url"),
                expected: "a string",
            }),
            _ if obj.get("file_id").is_some_and(|f| !f.is_null()) => {
                untranslated.push(format!("{path}: an image by file_id (the Files API)"));
                Ok(None)
            }
            _ => Err(RequestError::Missing {
                param: format!("{path}.image_url"),
            }),
        },
        "input_file" => {
            untranslated.push(format!("{path}: an input_file"));
            Ok(None)
        }
        other => Err(RequestError::PartType {
            param: path.to_string(),
            kind: other.to_string(),
        }),
    }
}

fn string_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, RequestError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(RequestError::Missing {
            param: format!("{path}.{key}"),
        }),
        Some(_) => Err(RequestError::Type {
            param: format!("{path}.{key}"),
            expected: "a string",
        }),
    }
}

/// A `function_call` item joins the assistant message right before it (the same model turn),
/// or starts one.
fn push_call(
    obj: &Map<String, Value>,
    path: &str,
    messages: &mut Vec<Value>,
) -> Result<(), RequestError> {
    let call = json!({
        "id": string_field(obj, "call_id", path)?,
        "type": "function",
        "function": {
            "name": string_field(obj, "name", path)?,
            "arguments": string_field(obj, "arguments", path)?,
        },
    });
    if let Some(last) = messages.last_mut().and_then(Value::as_object_mut) {
        if last.get("role").and_then(Value::as_str) == Some("assistant") {
            match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                Some(calls) => calls.push(call),
                None => {
                    last.insert("tool_calls".into(), Value::Array(vec![call]));
                }
            }
            return Ok(());
        }
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
    Ok(())
}

/// A `function_call_output` item -> a `tool` message. An array output (text, images, files)
/// keeps its text; the rest cannot go in a chat tool message.
fn call_output(
    obj: &Map<String, Value>,
    path: &str,
    untranslated: &mut Vec<String>,
) -> Result<Value, RequestError> {
    let call_id = string_field(obj, "call_id", path)?;
    let content = match obj.get("output") {
        Some(Value::String(text)) => Value::String(text.clone()),
        Some(Value::Array(parts)) => {
            let path = format!("{path}.output");
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let path = format!("{path}[{j}]");
                match part_to_chat(part, &path, untranslated)? {
                    Some(part) if part["type"] == "text" => texts.push(part),
                    Some(_) => untranslated.push(format!("{path}: a non-text tool output")),
                    None => {}
                }
            }
            match texts.as_slice() {
                [] => Value::String(String::new()),
                [only] => only["text"].clone(),
                _ => Value::Array(texts),
            }
        }
        None | Some(Value::Null) => {
            return Err(RequestError::Missing {
                param: format!("{path}.output"),
            })
        }
        Some(_) => {
            return Err(RequestError::Type {
                param: format!("{path}.output"),
                expected: "a string or an array of content parts",
            })
        }
    };
    Ok(json!({"role": "tool", "tool_call_id": call_id, "content": content}))
}

/// A request's `input` as the items a stored response keeps: a string is one user message;
/// messages get their `type` and string content becomes one text part, the shape OpenAI
/// lists input items in. Other items are kept as sent.
pub fn normalised(input: &Value) -> Vec<Value> {
    match input {
        Value::String(text) => vec![json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        })],
        Value::Array(items) => items.iter().map(normalised_item).collect(),
        _ => Vec::new(),
    }
}

fn normalised_item(item: &Value) -> Value {
    let Some(obj) = item.as_object() else {
        return item.clone();
    };
    let is_message = match obj.get("type") {
        None | Some(Value::Null) => obj.contains_key("role"),
        Some(kind) => kind == "message",
    };
    if !is_message {
        return item.clone();
    }
    let mut out = Map::with_capacity(obj.len() + 1);
    out.insert("type".into(), Value::String("message".into()));
    for (key, value) in obj {
        match (key.as_str(), value) {
            ("type", _) => {}
            ("content", Value::String(text)) => {
                let kind = if obj.get("role").is_some_and(|r| r == "assistant") {
                    "output_text"
                } else {
                    "input_text"
                };
                out.insert(key.clone(), json!([{"type": kind, "text": text}]));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(items: Value) -> Result<(Vec<Value>, Vec<String>), RequestError> {
        let mut messages = Vec::new();
        let mut untranslated = Vec::new();
        let items = items.as_array().cloned().unwrap_or_default();
        to_messages(&items, "input", &mut messages, &mut untranslated)?;
        Ok((messages, untranslated))
    }

    #[test]
    fn messages_of_every_role_and_shape() {
        let (messages, untranslated) = convert(json!([
            {"role": "developer", "content": "be brief"},
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "s"}]},
            {"role": "user", "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
            ]},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "seen", "annotations": []}]},
        ]))
        .unwrap();
        assert_eq!(
            messages,
            vec![
                json!({"role": "system", "content": "be brief"}),
                json!({"role": "system", "content": "s"}),
                json!({"role": "user", "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
                ]}),
                json!({"role": "assistant", "content": "seen"}),
            ]
        );
        assert!(untranslated.is_empty());
    }

    #[test]
    fn images_by_file_id_and_files_are_listed_not_sent() {
        let (messages, untranslated) = convert(json!([
            {"role": "user", "content": [
                {"type": "input_text", "text": "a"},
                {"type": "input_image", "file_id": "file-1"},
                {"type": "input_file", "file_id": "file-2"},
            ]},
        ]))
        .unwrap();
        assert_eq!(messages, vec![json!({"role": "user", "content": "a"})]);
        assert_eq!(untranslated.len(), 2);
        assert!(untranslated[0].starts_with("input[0].content[1]:"));
        assert!(untranslated[1].starts_with("input[0].content[2]:"));
    }

    #[test]
    fn calls_join_the_assistant_turn_and_outputs_become_tool_messages() {
        let (messages, _) = convert(json!([
            {"role": "user", "content": "weather?"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "checking"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"A\"}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "c2",
             "output": [{"type": "input_text", "text": "rain"}]},
            {"type": "function_call", "call_id": "c3", "name": "v", "arguments": "{}"},
        ]))
        .unwrap();
        assert_eq!(
            messages,
            vec![
                json!({"role": "user", "content": "weather?"}),
                json!({"role": "assistant", "content": "checking", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"A\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                ]}),
                json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"}),
                json!({"role": "tool", "tool_call_id": "c2", "content": "rain"}),
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c3", "type": "function", "function": {"name": "v", "arguments": "{}"}},
                ]}),
            ]
        );
    }

    #[test]
    fn malformed_items_name_their_field() {
        let cases = [
            (json!([{"type": "web_search_call", "id": "w"}]), "input[0]"),
            (json!(["text"]), "input[0]"),
            (json!([{"content": "no role"}]), "input[0].role"),
            (json!([{"role": "tool", "content": "x"}]), "input[0].role"),
            (json!([{"role": "user"}]), "input[0].content"),
            (json!([{"role": "user", "content": 5}]), "input[0].content"),
            (
                json!([{"role": "user", "content": "ok"}, {"role": "user", "content": [{"type": "input_audio"}]}]),
                "input[1].content[0]",
            ),
            (
                json!([{"role": "user", "content": [{"type": "input_image"}]}]),
                "input[0].content[0].image_url",
            ),
            (
                json!([{"type": "function_call", "name": "f", "arguments": "{}"}]),
                "input[0].call_id",
            ),
            (
                json!([{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]),
                "input[0].arguments",
            ),
            (
                json!([{"type": "function_call_output", "call_id": "c"}]),
                "input[0].output",
            ),
        ];
        for (items, param) in cases {
            let err = convert(items.clone()).unwrap_err();
            assert_eq!(err.param(), Some(param), "{items}: {err}");
        }
    }

    #[test]
    fn input_is_normalised_to_items() {
        assert_eq!(
            normalised(&json!("hi")),
            vec![
                json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]})
            ]
        );
        let items = json!([
            {"role": "assistant", "content": "earlier"},
            {"role": "user", "content": [{"type": "input_text", "text": "now"}]},
            {"type": "function_call_output", "call_id": "c", "output": "x"},
        ]);
        assert_eq!(
            normalised(&items),
            vec![
                json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "earlier"}]}),
                json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "now"}]}),
                json!({"type": "function_call_output", "call_id": "c", "output": "x"}),
            ]
        );
    }
}
