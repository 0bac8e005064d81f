//! OpenAI's streamed replies and whole replies, turned into each other: a stream of
//! `chat.completion.chunk` payloads assembled into one `chat.completion` (for a cached stream
//! answering a plain client, and the request log), and a reply exploded into chunks (for a
//! cached reply answering a streaming client).

use bytes::Bytes;
use serde_json::{json, Value};

/// A stream's payloads as one JSON reply (for the request log).
pub fn assemble_payloads(payloads: &[Bytes]) -> String {
    let chunks: Vec<String> = payloads
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assemble(&chunks).to_string()
}

/// A `chat.completion` built from its stream: content and tool calls joined per choice.
pub fn assemble(chunks: &[String]) -> Value {
    let mut id = Value::Null;
    let mut created = Value::Null;
    let mut model = Value::Null;
    let mut usage = Value::Null;
    // index → (content, tool calls by index, finish reason)
    let mut choices: std::collections::BTreeMap<u64, (String, Vec<Value>, Value)> =
        Default::default();
    for chunk in chunks {
        let Ok(v) = serde_json::from_str::<Value>(chunk) else {
            continue;
        };
        if id.is_null() {
            id = v["id"].clone();
            created = v["created"].clone();
            model = v["model"].clone();
        }
        if v["usage"].is_object() {
            usage = v["usage"].clone();
        }
        for choice in v["choices"].as_array().into_iter().flatten() {
            let index = choice["index"].as_u64().unwrap_or(0);
            let entry = choices
                .entry(index)
                .or_insert_with(|| (String::new(), Vec::new(), Value::Null));
            if let Some(text) = choice["delta"]["content"].as_str() {
                entry.0.push_str(text);
            }
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = call["index"].as_u64().unwrap_or(0) as usize;
                while entry.1.len() <= i {
                    entry.1.push(json!({"id": null, "type": "function", "function": {"name": "", "arguments": ""}}));
                }
                let slot = &mut entry.1[i];
                if call["id"].is_string() {
                    slot["id"] = call["id"].clone();
                }
                if let Some(name) = call["function"]["name"].as_str() {
                    let joined =
                        format!("{}{name}", slot["function"]["name"].as_str().unwrap_or(""));
                    slot["function"]["name"] = Value::String(joined);
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    let joined = format!(
                        "{}{args}",
                        slot["function"]["arguments"].as_str().unwrap_or("")
                    );
                    slot["function"]["arguments"] = Value::String(joined);
                }
            }
            if !choice["finish_reason"].is_null() {
                entry.2 = choice["finish_reason"].clone();
            }
        }
    }
    let choices: Vec<Value> = choices
        .into_iter()
        .map(|(index, (content, tool_calls, finish))| {
            let mut message = json!({"role": "assistant", "content": content});
            if !tool_calls.is_empty() {
                message["tool_calls"] = Value::Array(tool_calls);
            }
            json!({"index": index, "message": message, "logprobs": null, "finish_reason": finish})
        })
        .collect();
    json!({"id": id, "object": "chat.completion", "created": created, "model": model, "choices": choices, "usage": usage})
}

/// Stream chunks for a `chat.completion`: a role chunk, the content, the tool calls, the finish
/// and a usage chunk.
pub fn explode(reply: &Value) -> Vec<String> {
    let base = |choices: Value| json!({"id": reply["id"], "object": "chat.completion.chunk", "created": reply["created"], "model": reply["model"], "choices": choices});
    let mut out = Vec::new();
    for choice in reply["choices"].as_array().into_iter().flatten() {
        let index = &choice["index"];
        let message = &choice["message"];
        out.push(base(json!([{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}])));
        if let Some(content) = message["content"].as_str().filter(|c| !c.is_empty()) {
            out.push(base(
                json!([{"index": index, "delta": {"content": content}, "finish_reason": null}]),
            ));
        }
        if let Some(calls) = message["tool_calls"].as_array() {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, c)| json!({"index": i, "id": c["id"], "type": "function", "function": c["function"]}))
                .collect();
            out.push(base(
                json!([{"index": index, "delta": {"tool_calls": calls}, "finish_reason": null}]),
            ));
        }
        out.push(base(
            json!([{"index": index, "delta": {}, "finish_reason": choice["finish_reason"]}]),
        ));
    }
    if reply["usage"].is_object() {
        let mut usage = base(json!([]));
        usage["usage"] = reply["usage"].clone();
        out.push(usage);
    }
    out.into_iter().map(|v| v.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_assembles_and_explodes_back_to_the_same_answer() {
        let chunks: Vec<String> = vec![
            r#"{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"t1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            r#"{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]}}]}"#,
            r#"{"id":"c1","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c1","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let reply = assemble(&chunks);
        assert_eq!(reply["choices"][0]["message"]["content"], "Hello");
        assert_eq!(
            reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(reply["usage"]["total_tokens"], 3);
        let again = assemble(&explode(&reply));
        assert_eq!(again, reply);
    }
}
