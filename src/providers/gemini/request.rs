//! OpenAI chat request -> Gemini `generateContent` request.
//!
//! Same policy as the Anthropic adapter: parameters are mapped, dropped when they do not
//! change the answer, or refused with a 400 naming them (README "Native adapters").

use crate::providers::content::{parse_data_url, plain_text};
use crate::providers::translate_error::{Api, TranslateError};
use crate::providers::unsupported::Unmapped;
use crate::providers::ProviderError;
use crate::wire::{ChatMessage, ChatRequest};
use serde_json::{json, Map, Value};

/// The `generateContent` body for `req`; a 400 naming `provider` when the request cannot be
/// expressed.
pub fn generate_request(
    req: &ChatRequest,
    provider: &str,
    unmapped: &mut Unmapped,
) -> Result<Value, ProviderError> {
    translate(req, unmapped).map_err(|e| e.refused_by(provider))
}

fn translate(req: &ChatRequest, unmapped: &mut Unmapped) -> Result<Value, TranslateError> {
    let mut config = Map::new();
    let mut out = Map::new();
    for (key, value) in &req.extra {
        if value.is_null() {
            continue;
        }
        let (field, mapped) = match key.as_str() {
            "max_tokens" | "max_completion_tokens" => ("maxOutputTokens", value.clone()),
            "temperature" => ("temperature", value.clone()),
            "top_p" => ("topP", value.clone()),
            "top_k" => ("topK", value.clone()),
            "n" => ("candidateCount", value.clone()),
            "presence_penalty" => ("presencePenalty", value.clone()),
            "frequency_penalty" => ("frequencyPenalty", value.clone()),
            "seed" => ("seed", value.clone()),
            "stop" => (
                "stopSequences",
                match value {
                    Value::String(s) => json!([s]),
                    Value::Array(a) if a.iter().all(Value::is_string) => value.clone(),
                    _ => return Err(TranslateError::Stop),
                },
            ),
            "response_format" => {
                response_format(value, &mut config)?;
                continue;
            }
            "tools" => {
                out.insert("tools".into(), tools(value)?);
                continue;
            }
            "tool_choice" => {
                out.insert("toolConfig".into(), tool_config(value)?);
                continue;
            }
            // Bookkeeping that does not change the answer.
            "stream_options" | "store" | "metadata" | "service_tier" | "user" => continue,
            _ if is_neutral(key, value) => continue,
            _ => {
                unmapped.handle(key, Api::Gemini)?;
                continue;
            }
        };
        config.insert(field.into(), mapped);
    }

    let mut system: Vec<String> = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, parts) = match m.role.as_str() {
            "system" | "developer" => {
                system.push(plain_text(m.rest.get("content"), i)?);
                continue;
            }
            "user" => ("user", user_parts(m.rest.get("content"), i)?),
            "assistant" => ("model", model_parts(m, i)?),
            "tool" => ("user", vec![function_response(m, i, &req.messages)?]),
            other => {
                return Err(TranslateError::Role {
                    message: i,
                    role: other.to_string(),
                })
            }
        };
        // Parallel function responses belong in one turn, answering the one model turn.
        match contents.last_mut() {
            Some((last, p)) if *last == role => p.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    if !system.is_empty() {
        out.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    out.insert(
        "contents".into(),
        Value::Array(
            contents
                .into_iter()
                .map(|(role, parts)| json!({"role": role, "parts": parts}))
                .collect(),
        ),
    );
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(out))
}

fn is_neutral(key: &str, value: &Value) -> bool {
    match key {
        // No log probabilities through this adapter, and Gemini may always call functions
        // in parallel: only the values that ask for nothing pass.
        "logprobs" => value == &json!(false),
        "parallel_tool_calls" => value == &json!(true),
        "logit_bias" => value.as_object().is_some_and(Map::is_empty),
        "modalities" => value == &json!(["text"]),
        _ => false,
    }
}

fn response_format(value: &Value, config: &mut Map<String, Value>) -> Result<(), TranslateError> {
    match value.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            let schema = value
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .ok_or(TranslateError::JsonSchemaMissing)?;
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseJsonSchema".into(), schema.clone());
        }
        _ => return Err(TranslateError::ResponseFormat),
    }
    Ok(())
}

fn tools(value: &Value) -> Result<Value, TranslateError> {
    let list = value.as_array().ok_or(TranslateError::ToolsNotArray)?;
    let declarations = list
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(TranslateError::ToolNotFunction { tool: i });
            }
            let f = &tool["function"];
            let name = f["name"]
                .as_str()
                .ok_or(TranslateError::ToolName { tool: i })?;
            let mut out = json!({ "name": name });
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                out["description"] = d.clone();
            }
            if let Some(p) = f.get("parameters").filter(|p| !p.is_null()) {
                out["parameters"] = p.clone();
            }
            Ok(out)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!([{ "functionDeclarations": declarations }]))
}

fn tool_config(value: &Value) -> Result<Value, TranslateError> {
    let config = match value {
        Value::String(s) => match s.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            other => {
                return Err(TranslateError::ToolChoiceValue {
                    value: other.to_string(),
                })
            }
        },
        obj => {
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or(TranslateError::ToolChoiceShape)?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
    };
    Ok(json!({ "functionCallingConfig": config }))
}

fn user_parts(content: Option<&Value>, i: usize) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        Some(Value::Array(parts)) => parts,
        other => return Ok(vec![json!({ "text": plain_text(other, i)? })]),
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, part)| match part.get("type").and_then(Value::as_str) {
            Some("text") => Ok(json!({ "text": part["text"].as_str().unwrap_or_default() })),
            Some("image_url") => {
                let url = part["image_url"]
                    .get("url")
                    .unwrap_or(&part["image_url"])
                    .as_str()
                    .unwrap_or_default();
                // Gemini fetches no arbitrary URLs; images travel inline.
                let (mime, data) = parse_data_url(url).ok_or(TranslateError::ImageNotData {
                    message: i,
                    part: j,
                })?;
                Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
            }
            other => Err(TranslateError::PartType {
                message: i,
                part: j,
                kind: other.unwrap_or("(none)").to_string(),
            }),
        })
        .collect()
}

fn model_parts(m: &ChatMessage, i: usize) -> Result<Vec<Value>, TranslateError> {
    let text = plain_text(m.rest.get("content"), i)?;
    let mut parts = Vec::new();
    if !text.is_empty() {
        parts.push(json!({ "text": text }));
    }
    for (j, call) in tool_calls(m).iter().enumerate() {
        let f = &call["function"];
        let name = f["name"].as_str().ok_or(TranslateError::ToolCallName {
            message: i,
            call: j,
        })?;
        let arguments = f["arguments"].as_str().unwrap_or("");
        let args: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|_| TranslateError::ToolCallArgumentsJson {
                message: i,
                call: j,
            })?
        };
        parts.push(json!({"functionCall": {"name": name, "args": args}}));
    }
    Ok(parts)
}

fn tool_calls(m: &ChatMessage) -> &[Value] {
    m.rest
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Gemini matches a function response to its call by function name, which an OpenAI tool
/// message does not carry: it is found through `tool_call_id` in the earlier assistant turns.
fn function_response(
    m: &ChatMessage,
    i: usize,
    all: &[ChatMessage],
) -> Result<Value, TranslateError> {
    let id = m
        .rest
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or(TranslateError::ToolResultId { message: i })?;
    let name = all[..i]
        .iter()
        .filter(|prev| prev.role == "assistant")
        .flat_map(tool_calls)
        .find(|call| call["id"].as_str() == Some(id))
        .and_then(|call| call["function"]["name"].as_str())
        .ok_or_else(|| TranslateError::ToolResultUnmatched {
            message: i,
            id: id.to_string(),
        })?;
    let text = plain_text(m.rest.get("content"), i)?;
    // `response` must be an object: a JSON object result is sent as is, anything else wrapped.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "content": text }),
    };
    Ok(json!({"functionResponse": {"name": name, "response": response}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<Value, ProviderError> {
        let req: ChatRequest = serde_json::from_value(body).unwrap();
        generate_request(&req, "gem", &mut Unmapped::new(Default::default()))
    }

    #[test]
    fn system_roles_and_generation_config() {
        let out = translate(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]}
            ],
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": ["X"], "n": 2, "user": "u"
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({
                "systemInstruction": {"parts": [{"text": "be brief"}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [{"text": "hello"}]},
                    {"role": "user", "parts": [{"text": "look"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/"}}]}
                ],
                "generationConfig": {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 50, "stopSequences": ["X"], "candidateCount": 2}
            })
        );
    }

    #[test]
    fn functions_round_trip() {
        let out = translate(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\":-3}"}
            ],
            "tools": [{"type": "function", "function": {"name": "w", "description": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"
        }))
        .unwrap();
        assert_eq!(
            out["tools"],
            json!([{"functionDeclarations": [{"name": "w", "description": "weather", "parameters": {"type": "object"}}]}])
        );
        assert_eq!(
            out["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY"}})
        );
        assert_eq!(
            out["contents"][1],
            json!({"role": "model", "parts": [{"functionCall": {"name": "w", "args": {"city": "Oslo"}}}]})
        );
        assert_eq!(
            out["contents"][2],
            json!({"role": "user", "parts": [{"functionResponse": {"name": "w", "response": {"temp": -3}}}]})
        );
    }

    #[test]
    fn unsupported_parameters_are_named() {
        for (key, value) in [
            ("logprobs", json!(true)),
            ("parallel_tool_calls", json!(false)),
            ("top_logprobs", json!(2)),
            ("x_future", json!(1)),
        ] {
            let mut body = json!({"model": "m", "messages": []});
            body[key] = value;
            match translate(body) {
                Err(ProviderError::Status {
                    status, message, ..
                }) => {
                    assert_eq!(status, 400);
                    assert!(
                        message.contains(&format!("`{key}`")) && message.contains("`gem`"),
                        "{message}"
                    );
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        assert!(translate(
            json!({"model": "m", "messages": [], "logprobs": false, "parallel_tool_calls": true})
        )
        .is_ok());
    }

    #[test]
    fn unknown_tool_call_id_is_refused() {
        assert!(translate(json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]})).is_err());
    }
}
