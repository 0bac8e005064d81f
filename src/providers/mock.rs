//! `kind: mock`: a built-in provider that needs no network.
//!
//! Replies are deterministic: chat echoes the last user message (or a fixed `reply`), text
//! completions echo the prompt, embeddings are derived from a hash of the input. Tokens are
//! counted as whitespace-separated words, so usage is real and predictable. Streams send one
//! word per chunk. Latency and failures can be injected from the provider file.

use super::{EventStream, Provider, ProviderError, Reply, UpstreamCall};
use crate::config::{MockOptions, ProviderConfig};
use crate::wire::{Typed, Usage};
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The reply when there is nothing to echo.
const GREETING: &str = "Hello from the Switchboard mock provider.";
const DEFAULT_EMBEDDING_DIMENSIONS: usize = 8;

pub struct MockProvider {
    name: String,
    options: MockOptions,
}

impl MockProvider {
    pub fn new(config: &ProviderConfig) -> Self {
        MockProvider {
            name: config.name.clone(),
            options: config.mock.clone(),
        }
    }

    async fn answer(&self, call: UpstreamCall<'_>) -> Result<Reply, ProviderError> {
        if self.options.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.options.latency_ms)).await;
        }
        if self.options.fail_rate > 0.0 && rand::random::<f64>() < self.options.fail_rate {
            return Err(ProviderError::Status {
                status: StatusCode::from_u16(self.options.fail_status)
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                message: format!("mock provider `{}` failed on purpose", self.name),
                kind: Some("server_error".into()),
                code: Some("mock_failure".into()),
                retry_after: None,
            });
        }
        let id = format!("mock-{}", call.request_id);
        let model = call.upstream_model;
        let created = crate::clock::now_secs();
        match call.body.typed() {
            Typed::Chat(req) => {
                let prompt: String = req
                    .messages
                    .iter()
                    .map(|m| m.text())
                    .collect::<Vec<_>>()
                    .join(" ");
                let reply = self.options.reply.clone().unwrap_or_else(|| {
                    req.messages
                        .iter()
                        .rev()
                        .find(|m| m.role == "user")
                        .map(|m| m.text())
                        .filter(|t| !t.trim().is_empty())
                        .unwrap_or_else(|| GREETING.to_string())
                });
                let usage = usage(&prompt, &reply);
                if call.body.is_stream() {
                    let wants_usage = call.body.wants_stream_usage();
                    let head = json!({"role": "assistant", "content": ""});
                    let mut payloads = vec![chat_chunk(&id, created, model, head, None)];
                    for word in words_with_spaces(&reply) {
                        payloads.push(chat_chunk(
                            &id,
                            created,
                            model,
                            json!({"content": word}),
                            None,
                        ));
                    }
                    payloads.push(chat_chunk(&id, created, model, json!({}), Some("stop")));
                    if wants_usage {
                        payloads.push(json!({
                            "id": id, "object": "chat.completion.chunk", "created": created,
                            "model": model, "choices": [], "usage": usage,
                        }));
                    }
                    Ok(Reply::Stream(self.stream(payloads)))
                } else {
                    Ok(json_reply(
                        json!({
                            "id": id, "object": "chat.completion", "created": created, "model": model,
                            "choices": [{
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "logprobs": null,
                                "finish_reason": "stop",
                            }],
                            "usage": usage,
                        }),
                        usage,
                    ))
                }
            }
            Typed::Completions(req) => {
                let prompt = text_of(&req.prompt);
                let reply = self.options.reply.clone().unwrap_or_else(|| prompt.clone());
                let usage = usage(&prompt, &reply);
                if call.body.is_stream() {
                    let mut payloads: Vec<Value> = words_with_spaces(&reply)
                        .into_iter()
                        .map(|w| completion_chunk(&id, created, model, &w, None))
                        .collect();
                    payloads.push(completion_chunk(&id, created, model, "", Some("stop")));
                    if call.body.wants_stream_usage() {
                        payloads.push(json!({
                            "id": id, "object": "text_completion", "created": created,
                            "model": model, "choices": [], "usage": usage,
                        }));
                    }
                    Ok(Reply::Stream(self.stream(payloads)))
                } else {
                    Ok(json_reply(
                        json!({
                            "id": id, "object": "text_completion", "created": created, "model": model,
                            "choices": [{"index": 0, "text": reply, "logprobs": null, "finish_reason": "stop"}],
                            "usage": usage,
                        }),
                        usage,
                    ))
                }
            }
            Typed::Embeddings(req) => {
                let inputs: Vec<String> = match &req.input {
                    Value::Array(items) => items.iter().map(text_of).collect(),
                    other => vec![text_of(other)],
                };
                let dims = req
                    .extra
                    .get("dimensions")
                    .and_then(Value::as_u64)
                    .map(|d| d.clamp(1, 4096) as usize)
                    .unwrap_or(DEFAULT_EMBEDDING_DIMENSIONS);
                let prompt_tokens: u64 = inputs.iter().map(|i| count_words(i)).sum();
                let usage = Usage {
                    prompt_tokens,
                    completion_tokens: 0,
                    total_tokens: prompt_tokens,
                };
                let data: Vec<Value> = inputs
                    .iter()
                    .enumerate()
                    .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": embed(text, dims)}))
                    .collect();
                Ok(json_reply(
                    json!({
                        "object": "list", "data": data, "model": model,
                        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
                    }),
                    usage,
                ))
            }
        }
    }

    fn stream(&self, payloads: Vec<Value>) -> EventStream {
        let delay = Duration::from_millis(self.options.chunk_delay_ms);
        futures_util::stream::iter(payloads.into_iter().enumerate())
            .then(move |(i, payload)| async move {
                if i > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                serde_json::to_vec(&payload)
                    .map(Bytes::from)
                    .map_err(|e| ProviderError::Protocol(e.to_string()))
            })
            .boxed()
    }
}

impl Provider for MockProvider {
    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(self.answer(call))
    }
}

fn json_reply(body: Value, usage: Usage) -> Reply {
    Reply::Json {
        status: StatusCode::OK,
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        usage: Some(usage),
    }
}

fn chat_chunk(id: &str, created: u64, model: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

fn completion_chunk(
    id: &str,
    created: u64,
    model: &str,
    text: &str,
    finish: Option<&str>,
) -> Value {
    json!({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}],
    })
}

fn usage(prompt: &str, reply: &str) -> Usage {
    let prompt_tokens = count_words(prompt);
    let completion_tokens = count_words(reply);
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    }
}

fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits into words, each but the first keeping the space before it, so the chunks
/// concatenate back to the reply with its spacing normalised.
fn words_with_spaces(text: &str) -> Vec<String> {
    text.split_whitespace()
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_string()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A unit-length vector derived from the text's hash: the same text, the same vector.
fn embed(text: &str, dims: usize) -> Vec<f64> {
    let mut values = Vec::with_capacity(dims);
    let mut block = Sha256::digest(text.as_bytes());
    while values.len() < dims {
        for pair in block.chunks(2) {
            if values.len() == dims {
                break;
            }
            let n = u16::from_le_bytes([pair[0], pair[1]]) as f64;
            values.push(n / 32767.5 - 1.0);
        }
        block = Sha256::digest(block);
    }
    let norm = values
        .iter()
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    values
        .iter()
        .map(|v| ((v / norm) * 1e6).round() / 1e6)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_and_unit_length() {
        let a = embed("hello", 16);
        assert_eq!(a, embed("hello", 16));
        assert_ne!(a, embed("world", 16));
        let norm: f64 = a.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3);
    }

    #[test]
    fn words_rejoin_to_the_reply() {
        assert_eq!(words_with_spaces("a  b c").concat(), "a b c");
    }
}
