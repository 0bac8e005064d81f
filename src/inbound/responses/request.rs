//! A Responses request -> its chat completions form.
//!
//! The messages come from `instructions`, the stored conversation and `input` (`items.rs`);
//! the parameters that have a chat equivalent are renamed into it. What only the gateway acts
//! on (`previous_response_id`, `store`, `metadata`, ...) stays out of the chat form, and what
//! neither can do is listed in `untranslated` (or refused, when ignoring it would change the
//! answer's meaning, like a tool the gateway cannot run).

use super::error::RequestError;
use super::items;
use crate::error::ApiError;
use serde_json::{json, Map, Value};

/// A Responses request in the chat form.
#[derive(Debug)]
pub struct Translated {
    /// The chat completions body: `model` as the client sent it, `messages` (the instructions
    /// as a first system message, then the history's, then this input), the parameters,
    /// `stream` and, when streaming, `stream_options.include_usage`.
    pub chat: Map<String, Value>,
    /// This request's `input` as a list of items (a string input becomes one user message
    /// item): what a stored response keeps so a later request can continue from it.
    pub input_items: Vec<Value>,
    /// What the chat form cannot carry, each as `path: what`.
    pub untranslated: Vec<String>,
}

/// Translates a Responses request body. `history` is the conversation of its
/// `previous_response_id` (its items in order, the earlier outputs included), empty without one.
pub fn to_chat(body: &Value, history: &[Value]) -> Result<Translated, ApiError> {
    translate(body, history).map_err(ApiError::from)
}

/// Top-level fields the gateway acts on itself, or that only shape the reply: never part of
/// the chat form, and not "untranslated" either.
const GATEWAY_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "previous_response_id",
    "store",
    "include",
    "truncation",
    "metadata",
    "stream",
    // Only `include_obfuscation`, padding for the Responses API's own events.
    "stream_options",
];

fn translate(body: &Value, history: &[Value]) -> Result<Translated, RequestError> {
    let Some(body) = body.as_object() else {
        return Err(RequestError::NotObject);
    };
    let model = match body.get("model") {
        Some(Value::String(model)) => model.clone(),
        None | Some(Value::Null) => {
            return Err(RequestError::Missing {
                param: "model".into(),
            })
        }
        Some(_) => {
            return Err(RequestError::Type {
                param: "model".into(),
                expected: "a string",
            })
        }
    };
    let input = body.get("input").unwrap_or(&Value::Null);
    let input_items = match input {
        Value::String(_) | Value::Array(_) => items::normalised(input),
        Value::Null => {
            return Err(RequestError::Missing {
                param: "input".into(),
            })
        }
        _ => {
            return Err(RequestError::Type {
                param: "input".into(),
                expected: "a string or an array of items",
            })
        }
    };

    let mut untranslated = Vec::new();
    let mut messages = Vec::with_capacity(history.len() + input_items.len() + 1);
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => messages.push(json!({"role": "system", "content": text})),
        Some(_) => {
            return Err(RequestError::Type {
                param: "instructions".into(),
                expected: "a string",
            })
        }
    }
    items::to_messages(history, "conversation", &mut messages, &mut untranslated).map_err(
        |source| RequestError::History {
            source: Box::new(source),
        },
    )?;
    items::to_messages(&input_items, "input", &mut messages, &mut untranslated)?;

    let mut chat = Map::new();
    chat.insert("model".into(), Value::String(model));
    chat.insert("messages".into(), Value::Array(messages));
    for (key, value) in body {
        if value.is_null() || GATEWAY_FIELDS.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "background" => {
                if value.as_bool() == Some(true) {
                    return Err(RequestError::Background);
                }
            }
            "max_output_tokens" => {
                if !value.is_u64() {
                    return Err(RequestError::Type {
                        param: key.clone(),
                        expected: "a non-negative integer",
                    });
                }
                chat.insert("max_tokens".into(), value.clone());
            }
            "temperature" | "top_p" | "user" | "parallel_tool_calls" | "prompt_cache_key" => {
                chat.insert(key.clone(), value.clone());
            }
            "tools" => {
                chat.insert("tools".into(), tools(value)?);
            }
            "tool_choice" => {
                chat.insert("tool_choice".into(), tool_choice(value)?);
            }
            "text" => text(value, &mut chat, &mut untranslated)?,
            "reasoning" => reasoning(value, &mut chat, &mut untranslated)?,
            other => untranslated.push(format!("{other}: no chat completions equivalent")),
        }
    }
    match body.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            chat.insert("stream".into(), Value::Bool(true));
            chat.insert("stream_options".into(), json!({"include_usage": true}));
        }
        Some(_) => {
            return Err(RequestError::Type {
                param: "stream".into(),
                expected: "a boolean",
            })
        }
    }
    Ok(Translated {
        chat,
        input_items,
        untranslated,
    })
}

/// Function tools in the chat form; any other tool (web search, file search, MCP, ...) runs
/// inside OpenAI's Responses API, which the gateway does not have, so it is refused rather
/// than silently missing.
fn tools(value: &Value) -> Result<Value, RequestError> {
    let Some(list) = value.as_array() else {
        return Err(RequestError::Type {
            param: "tools".into(),
            expected: "an array",
        });
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let param = format!("tools[{i}]");
        let Some(obj) = tool.as_object() else {
            return Err(RequestError::Type {
                param,
                expected: "an object",
            });
        };
        match obj.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(kind) => {
                return Err(RequestError::ToolType {
                    param,
                    kind: kind.to_string(),
                })
            }
            None => {
                return Err(RequestError::Missing {
                    param: format!("{param}.type"),
                })
            }
        }
        let Some(name) = obj.get("name").and_then(Value::as_str) else {
            return Err(RequestError::Missing {
                param: format!("{param}.name"),
            });
        };
        let mut function = Map::new();
        function.insert("name".into(), Value::String(name.to_string()));
        for key in ["description", "parameters", "strict"] {
            if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
                function.insert(key.into(), v.clone());
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok(Value::Array(out))
}

fn tool_choice(value: &Value) -> Result<Value, RequestError> {
    let unsupported = || RequestError::Value {
        param: "tool_choice".into(),
        value: crate::error::truncated(&value.to_string(), 64).into_owned(),
    };
    match value {
        Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => Ok(value.clone()),
        Value::Object(obj) if obj.get("type").is_some_and(|t| t == "function") => {
            match obj.get("name").and_then(Value::as_str) {
                Some(name) => Ok(json!({"type": "function", "function": {"name": name}})),
                None => Err(RequestError::Missing {
                    param: "tool_choice.name".into(),
                }),
            }
        }
        _ => Err(unsupported()),
    }
}

/// `text.format` -> `response_format`, `text.verbosity` -> `verbosity`.
fn text(
    value: &Value,
    chat: &mut Map<String, Value>,
    untranslated: &mut Vec<String>,
) -> Result<(), RequestError> {
    let Some(obj) = value.as_object() else {
        return Err(RequestError::Type {
            param: "text".into(),
            expected: "an object",
        });
    };
    for (key, v) in obj {
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "format" => {
                if let Some(format) = response_format(v)? {
                    chat.insert("response_format".into(), format);
                }
            }
            "verbosity" => {
                chat.insert("verbosity".into(), v.clone());
            }
            other => untranslated.push(format!("text.{other}: no chat completions equivalent")),
        }
    }
    Ok(())
}

fn response_format(format: &Value) -> Result<Option<Value>, RequestError> {
    let kind = format.get("type").and_then(Value::as_str);
    match kind {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let Some(name) = format.get("name").and_then(Value::as_str) else {
                return Err(RequestError::Missing {
                    param: "text.format.name".into(),
                });
            };
            let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
                return Err(RequestError::Missing {
                    param: "text.format.schema".into(),
                });
            };
            let mut json_schema = json!({"name": name, "schema": schema});
            for key in ["description", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    json_schema[key] = v.clone();
                }
            }
            Ok(Some(
                json!({"type": "json_schema", "json_schema": json_schema}),
            ))
        }
        Some(other) => Err(RequestError::Value {
            param: "text.format.type".into(),
            value: format!("`{}`", crate::error::truncated(other, 64)),
        }),
        None => Err(RequestError::Missing {
            param: "text.format.type".into(),
        }),
    }
}

/// `reasoning.effort` -> `reasoning_effort`; summaries have no chat equivalent.
fn reasoning(
    value: &Value,
    chat: &mut Map<String, Value>,
    untranslated: &mut Vec<String>,
) -> Result<(), RequestError> {
    let Some(obj) = value.as_object() else {
        return Err(RequestError::Type {
            param: "reasoning".into(),
            expected: "an object",
        });
    };
    for (key, v) in obj {
        if v.is_null() {
            continue;
        }
        match key.as_str() {
            "effort" => {
                chat.insert("reasoning_effort".into(), v.clone());
            }
            other => {
                untranslated.push(format!("reasoning.{other}: no chat completions equivalent"))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: Value) -> Translated {
        to_chat(&body, &[]).unwrap()
    }

    fn param_of(body: Value) -> Option<String> {
        to_chat(&body, &[]).unwrap_err().param
    }

    #[test]
    fn a_string_input_is_one_user_message() {
        let t = ok(json!({"model": "m", "input": "hello"}));
        assert_eq!(
            Value::Object(t.chat),
            json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]})
        );
        assert_eq!(
            t.input_items,
            vec![
                json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]})
            ]
        );
        assert!(t.untranslated.is_empty());
    }

    #[test]
    fn instructions_come_first_then_history_then_input() {
        let history = [
            json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "one"}]}),
            json!({"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": "two", "annotations": []}]}),
            json!({"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}", "status": "completed"}),
        ];
        let body = json!({
            "model": "m",
            "instructions": "be kind",
            "input": [
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
                {"role": "user", "content": "three"},
            ],
        });
        let t = to_chat(&body, &history).unwrap();
        assert_eq!(
            t.chat["messages"],
            json!([
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
                {"role": "user", "content": "three"},
            ])
        );
        // The stored input is this request's own, without the instructions or the history.
        assert_eq!(t.input_items.len(), 2);
        assert_eq!(t.input_items[1]["content"][0]["text"], "three");
    }

    #[test]
    fn a_bad_stored_item_names_previous_response_id() {
        let err = to_chat(
            &json!({"model": "m", "input": "x"}),
            &[json!({"type": "computer_call"})],
        )
        .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("previous_response_id"));
    }

    #[test]
    fn parameters_are_renamed_into_the_chat_form() {
        let t = ok(json!({
            "model": "m",
            "input": "x",
            "instructions": null,
            "max_output_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "user": "u1",
            "parallel_tool_calls": false,
            "metadata": {"k": "v"},
            "previous_response_id": "resp_1",
            "store": false,
            "include": ["reasoning.encrypted_content"],
            "truncation": "auto",
            "background": false,
            "prompt_cache_key": "pk",
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"},
            "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "f"},
            "service_tier": "flex",
            "stream": true,
        }));
        assert_eq!(
            Value::Object(t.chat),
            json!({
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 50,
                "temperature": 0.2,
                "top_p": 0.9,
                "user": "u1",
                "parallel_tool_calls": false,
                "prompt_cache_key": "pk",
                "reasoning_effort": "low",
                "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}},
                "verbosity": "low",
                "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": true}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
                "stream": true,
                "stream_options": {"include_usage": true},
            })
        );
        assert_eq!(
            t.untranslated,
            vec![
                "reasoning.summary: no chat completions equivalent".to_string(),
                "service_tier: no chat completions equivalent".to_string(),
            ]
        );
    }

    #[test]
    fn text_formats() {
        let format = |f: Value| ok(json!({"model": "m", "input": "x", "text": {"format": f}})).chat;
        assert_eq!(
            format(json!({"type": "json_object"}))["response_format"],
            json!({"type": "json_object"})
        );
        assert!(!format(json!({"type": "text"})).contains_key("response_format"));
        assert_eq!(
            param_of(
                json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}})
            ),
            Some("text.format.schema".into())
        );
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "text": {"format": {"type": "grammar"}}})),
            Some("text.format.type".into())
        );
    }

    #[test]
    fn tool_choices() {
        let choice = |c: Value| ok(json!({"model": "m", "input": "x", "tool_choice": c})).chat;
        for c in ["auto", "none", "required"] {
            assert_eq!(choice(json!(c))["tool_choice"], json!(c));
        }
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}})),
            Some("tool_choice".into())
        );
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "tool_choice": "sometimes"})),
            Some("tool_choice".into())
        );
    }

    #[test]
    fn a_tool_the_gateway_cannot_run_is_refused() {
        let err = to_chat(
            &json!({"model": "m", "input": "x", "tools": [
                {"type": "function", "name": "f"},
                {"type": "web_search"},
            ]}),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(err.param.as_deref(), Some("tools[1]"));
        assert!(err.message.contains("web_search"), "{}", err.message);
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "tools": [{"type": "function"}]})),
            Some("tools[0].name".into())
        );
    }

    #[test]
    fn the_body_is_validated() {
        assert_eq!(param_of(json!([1])), None);
        assert_eq!(param_of(json!({"input": "x"})), Some("model".into()));
        assert_eq!(
            param_of(json!({"model": 1, "input": "x"})),
            Some("model".into())
        );
        assert_eq!(param_of(json!({"model": "m"})), Some("input".into()));
        assert_eq!(
            param_of(json!({"model": "m", "input": {"role": "user"}})),
            Some("input".into())
        );
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "instructions": ["a"]})),
            Some("instructions".into())
        );
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "background": true})),
            Some("background".into())
        );
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "max_output_tokens": -1})),
            Some("max_output_tokens".into())
        );
        assert_eq!(
            param_of(json!({"model": "m", "input": "x", "stream": "yes"})),
            Some("stream".into())
        );
        assert_eq!(
            param_of(
                json!({"model": "m", "input": [{"role": "user", "content": "a"}, {"type": "item_reference", "id": "x"}]})
            ),
            Some("input[1]".into())
        );
    }

    #[test]
    fn images_and_files_in_the_input() {
        let t = ok(json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"},
        ]}]}));
        assert_eq!(
            t.chat["messages"][0]["content"],
            json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}])
        );
        assert_eq!(
            t.untranslated,
            vec!["input[0].content[1]: an input_file".to_string()]
        );
    }
}
