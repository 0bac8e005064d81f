//! `kind: mock`: a built-in provider that needs no network.
//!
//! Replies are deterministic: chat echoes the last user message (or a fixed `reply`), text
//! completions echo the prompt, embeddings are derived from a hash of the input (as floats, or
//! base64 when the request asks for `encoding_format: base64`, as OpenAI does). Tokens are
//! counted as whitespace-separated words, so usage is real and predictable. Streams send one
//! word per chunk, each made as the client reads it. Latency and failures can be injected from
//! the provider file.
//!
//! What one request can make it build is bounded: replies echo at most [`MAX_REPLY_BYTES`], and
//! embeddings hold at most [`MAX_EMBEDDING_VALUES`] numbers.

use super::embeddings::{self, EncodingFormat};
use super::{EventStream, Provider, ProviderError, Reply, UpstreamCall};
use crate::config::{MockOptions, ProviderConfig};
use crate::error_codes::Code;
use crate::wire::{Typed, Usage};
use actix_web::http::StatusCode;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::ser::{Serialize, Serializer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The reply when there is nothing to echo.
const GREETING: &str = "Hello from the Switchboard mock provider.";
const DEFAULT_EMBEDDING_DIMENSIONS: usize = 8;

/// The most text a reply carries (1 MiB): a longer echo (or `mock.reply`) is cut at a
/// character boundary and ends with `finish_reason: "length"`, as a model does at its token
/// limit. One chunk per word, so a stream has at most about 512 Ki chunks.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// The most numbers one embeddings reply holds, inputs × dimensions (2^20, e.g. 128 inputs of
/// 8192 dimensions or 2048 of 512): about 10 MB of JSON. More is a 400.
pub const MAX_EMBEDDING_VALUES: usize = 1 << 20;

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
                code: Some(Code::MockFailure.as_str().into()),
                retry_after: None,
                param: None,
                headers: Vec::new(),
            });
        }
        let id = format!("mock-{}", call.request_id);
        let model = call.upstream_model;
        let created = crate::clock::now_secs();
        match call.body.typed() {
            Typed::Chat(req) => {
                let prompt_tokens = req.messages.iter().map(|m| count_words(&m.text())).sum();
                let (reply, finish) = capped(self.options.reply.clone().unwrap_or_else(|| {
                    req.messages
                        .iter()
                        .rev()
                        .find(|m| m.role == "user")
                        .map(|m| m.text())
                        .filter(|t| !t.trim().is_empty())
                        .unwrap_or_else(|| GREETING.to_string())
                }));
                let usage = usage(prompt_tokens, &reply);
                if call.body.is_stream() {
                    let chunks = Chunks::new(Shape::Chat, id, created, model, reply, finish);
                    let usage = call.body.wants_stream_usage().then_some(usage);
                    Ok(Reply::Stream(self.stream(chunks, usage), Vec::new()))
                } else {
                    Ok(json_reply(
                        json!({
                            "id": id, "object": "chat.completion", "created": created, "model": model,
                            "choices": [{
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "logprobs": null,
                                "finish_reason": finish,
                            }],
                            "usage": usage,
                        }),
                        usage,
                    ))
                }
            }
            Typed::Completions(req) => {
                let prompt = text_of(&req.prompt);
                let prompt_tokens = count_words(&prompt);
                let (reply, finish) = capped(self.options.reply.clone().unwrap_or(prompt));
                let usage = usage(prompt_tokens, &reply);
                if call.body.is_stream() {
                    let chunks = Chunks::new(Shape::Completion, id, created, model, reply, finish);
                    let usage = call.body.wants_stream_usage().then_some(usage);
                    Ok(Reply::Stream(self.stream(chunks, usage), Vec::new()))
                } else {
                    Ok(json_reply(
                        json!({
                            "id": id, "object": "text_completion", "created": created, "model": model,
                            "choices": [{"index": 0, "text": reply, "logprobs": null, "finish_reason": finish}],
                            "usage": usage,
                        }),
                        usage,
                    ))
                }
            }
            Typed::Embeddings(req) => {
                let format = EncodingFormat::of(req, &self.name)?;
                let inputs = embeddings::inputs(&req.input);
                let asked = req.extra.get("dimensions").and_then(Value::as_u64);
                let dims = asked.map_or(DEFAULT_EMBEDDING_DIMENSIONS, |d| {
                    usize::try_from(d).unwrap_or(usize::MAX).max(1)
                });
                if inputs.len().saturating_mul(dims) > MAX_EMBEDDING_VALUES {
                    return Err(self.too_many_values(inputs.len(), dims, asked.is_some()));
                }
                let prompt_tokens: u64 = inputs.iter().map(|i| count_words(&text_of(i))).sum();
                let usage = Usage::new(prompt_tokens, 0);
                let list = EmbeddingList {
                    object: "list",
                    data: Vectors {
                        inputs,
                        dims,
                        format,
                    },
                    model,
                    usage: json!({"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}),
                };
                Ok(json_reply(list, usage))
            }
        }
    }

    fn too_many_values(&self, inputs: usize, dims: usize, asked: bool) -> ProviderError {
        ProviderError::Status {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "{inputs} inputs of {dims} dimensions are {} values; the mock provider `{}` \
                 answers at most {MAX_EMBEDDING_VALUES} per request (inputs × dimensions)",
                inputs.saturating_mul(dims),
                self.name
            ),
            kind: Some("invalid_request_error".into()),
            param: Some(if asked { "dimensions" } else { "input" }.into()),
            code: Some(Code::TooManyEmbeddingValues.as_str().into()),
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// The stream of `chunks`, each payload made and serialised only when the client reads
    /// it, so memory does not grow with the number of chunks. `usage`: the final usage chunk.
    fn stream(&self, chunks: Chunks, usage: Option<Usage>) -> EventStream {
        let delay = Duration::from_millis(self.options.chunk_delay_ms);
        let usage_chunk = usage.map(|usage| chunks.usage_chunk(usage));
        futures_util::stream::iter(chunks.chain(usage_chunk).enumerate())
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

/// An embeddings reply, written vector by vector (see [`Vectors`]).
#[derive(serde::Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vectors<'a>,
    model: &'a str,
    usage: Value,
}

/// The `data` of an embeddings reply: each input's vector is made as it is written, so only
/// the reply's bytes and one vector are in memory at a time.
struct Vectors<'a> {
    inputs: &'a [Value],
    dims: usize,
    format: EncodingFormat,
}

impl Serialize for Vectors<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.inputs.iter().enumerate().map(|(i, input)| {
            let vector = self.format.encode(&embed(&text_of(input), self.dims));
            json!({"object": "embedding", "index": i, "embedding": vector})
        }))
    }
}

#[derive(Clone, Copy)]
enum Shape {
    /// `chat.completion.chunk`s: a role chunk first, text in `delta.content`.
    Chat,
    /// `text_completion`s: text in `text`.
    Completion,
}

/// The payloads of a mock stream, one at a time: the role chunk (chat), one chunk per word
/// (each but the first with the space before it, so they concatenate back to the reply with
/// its spacing normalised) and the finish chunk.
struct Chunks {
    shape: Shape,
    id: String,
    created: u64,
    model: String,
    reply: String,
    finish: &'static str,
    /// Where the next word is looked for in `reply`.
    at: usize,
    step: Step,
}

#[derive(Clone, Copy, PartialEq)]
enum Step {
    Role,
    Words,
    Finish,
    Done,
}

impl Chunks {
    fn new(
        shape: Shape,
        id: String,
        created: u64,
        model: &str,
        reply: String,
        finish: &'static str,
    ) -> Self {
        Chunks {
            shape,
            id,
            created,
            model: model.to_string(),
            reply,
            finish,
            at: 0,
            step: match shape {
                Shape::Chat => Step::Role,
                Shape::Completion => Step::Words,
            },
        }
    }

    fn chunk(&self, text: Option<&str>, finish: Option<&str>) -> Value {
        let (id, created, model) = (&self.id, self.created, &self.model);
        match self.shape {
            Shape::Chat => {
                let delta = match (self.step, text) {
                    (Step::Role, _) => json!({"role": "assistant", "content": ""}),
                    (_, Some(text)) => json!({"content": text}),
                    (_, None) => json!({}),
                };
                json!({
                    "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
                })
            }
            Shape::Completion => json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}],
            }),
        }
    }

    fn usage_chunk(&self, usage: Usage) -> Value {
        let object = match self.shape {
            Shape::Chat => "chat.completion.chunk",
            Shape::Completion => "text_completion",
        };
        json!({
            "id": self.id, "object": object, "created": self.created,
            "model": self.model, "choices": [], "usage": usage,
        })
    }
}

impl Iterator for Chunks {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        match self.step {
            Step::Role => {
                let chunk = self.chunk(None, None);
                self.step = Step::Words;
                Some(chunk)
            }
            Step::Words => match next_word(&self.reply, self.at) {
                Some((start, end)) => {
                    let word = &self.reply[start..end];
                    let text = if self.at == 0 {
                        word.to_string()
                    } else {
                        format!(" {word}")
                    };
                    self.at = end;
                    Some(self.chunk(Some(&text), None))
                }
                None => {
                    self.step = Step::Finish;
                    self.next()
                }
            },
            Step::Finish => {
                self.step = Step::Done;
                Some(self.chunk(None, Some(self.finish)))
            }
            Step::Done => None,
        }
    }
}

/// The byte range of the first word of `text` at or after `from`.
fn next_word(text: &str, from: usize) -> Option<(usize, usize)> {
    let rest = &text[from..];
    let start = from + rest.find(|c: char| !c.is_whitespace())?;
    let end = text[start..]
        .find(char::is_whitespace)
        .map_or(text.len(), |n| start + n);
    Some((start, end))
}

/// `text` cut to [`MAX_REPLY_BYTES`] at a character boundary, with the finish reason to give.
fn capped(mut text: String) -> (String, &'static str) {
    if text.len() <= MAX_REPLY_BYTES {
        return (text, "stop");
    }
    let mut end = MAX_REPLY_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, "length")
}

impl Provider for MockProvider {
    fn call<'a>(&'a self, call: UpstreamCall<'a>) -> BoxFuture<'a, Result<Reply, ProviderError>> {
        Box::pin(self.answer(call))
    }
}

fn json_reply(body: impl Serialize, usage: Usage) -> Reply {
    Reply::Json {
        status: StatusCode::OK,
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        usage: Some(usage),
        headers: Vec::new(),
    }
}

fn usage(prompt_tokens: u64, reply: &str) -> Usage {
    let completion_tokens = count_words(reply);
    Usage::new(prompt_tokens, completion_tokens)
}

fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
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

    fn texts(shape: Shape, reply: &str) -> Vec<Value> {
        Chunks::new(shape, "id".into(), 1, "m", reply.into(), "stop").collect()
    }

    #[test]
    fn words_rejoin_to_the_reply() {
        let chunks = texts(Shape::Completion, "  a  b\tc ");
        let words: Vec<&str> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(words, ["a", " b", " c", ""]);
        assert_eq!(
            chunks.last().unwrap()["choices"][0]["finish_reason"],
            "stop"
        );
    }

    #[test]
    fn a_chat_stream_is_role_words_finish() {
        let chunks = texts(Shape::Chat, "hi there");
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": ""}),
                &json!({"content": "hi"}),
                &json!({"content": " there"}),
                &json!({}),
            ]
        );
        assert_eq!(texts(Shape::Chat, "").len(), 2, "role and finish");
    }

    #[test]
    fn replies_are_cut_at_a_character_boundary() {
        assert_eq!(capped("short".into()), ("short".into(), "stop"));
        let long = format!("a{}", "é".repeat(MAX_REPLY_BYTES));
        let (cut, finish) = capped(long);
        assert_eq!(finish, "length");
        assert_eq!(cut.len(), MAX_REPLY_BYTES - 1);
    }
}
