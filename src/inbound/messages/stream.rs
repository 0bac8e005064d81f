//! `chat.completion.chunk`s -> Anthropic's event stream.
//!
//! The sequence is Anthropic's: `message_start` (the message with no content yet) and a
//! `ping` on the first chunk; then per content block `content_block_start`, its deltas
//! (`text_delta`, or `input_json_delta` for a tool call's arguments) and `content_block_stop`;
//! and at the clean end one `message_delta` (stop reason and usage) and `message_stop`.
//!
//! Text opens a text block; each OpenAI tool call (a new `index` or `id`) opens a `tool_use`
//! block, and whatever else comes next closes the block before it, so blocks never overlap
//! and their indexes are their positions in the message, which is how Anthropic's SDKs
//! accumulate them. The finish chunk only closes the open block and notes the stop reason:
//! the usage chunk comes after it (`stream_options.include_usage`), and Anthropic has both in
//! the one `message_delta`, which is therefore written by [`StreamEncoder::done`]. The encoder
//! holds the open block's identity and the totals, never the text. Only choice 0 is read (a
//! Messages request has one answer); reasoning deltas have no block here (Anthropic's thinking
//! blocks carry signatures no other provider makes).

use super::reply::{message_id, stop_reason, tool_use_id, usage_json};
use crate::error::ApiError;
use crate::inbound::{named_event, StreamEncoder};
use crate::wire::Usage;
use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Value};

/// Writes Anthropic's events for a stream of chat chunks (see the module doc).
pub struct MessagesEncoder {
    id: String,
    model: String,
    /// `message_start` was written.
    started: bool,
    /// `message_stop` or an error was written: nothing more may follow.
    ended: bool,
    /// Blocks started so far; the open block, if any, is the last of them.
    blocks: u64,
    open: Open,
    /// Tool calls seen so far (`tool_use` blocks started).
    tools: u64,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

/// The block being written.
#[derive(Debug, PartialEq)]
enum Open {
    None,
    Text,
    /// A tool call: its OpenAI `index` and its id.
    Tool {
        call: u64,
        id: String,
    },
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<CallDelta>>,
}

#[derive(Debug, Deserialize)]
struct CallDelta {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Debug, Default, Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

impl MessagesEncoder {
    /// `id` names the message (`msg_` is put in front unless it is there) and `model` the
    /// model, as the caller wants the client to see them.
    pub fn new(id: String, model: String) -> Self {
        MessagesEncoder {
            id: message_id(&id),
            model,
            started: false,
            ended: false,
            blocks: 0,
            open: Open::None,
            tools: 0,
            finish_reason: None,
            usage: None,
        }
    }

    /// `message_start` and a `ping`, once. The usage is the real one when the usage chunk
    /// came first (some providers send it on every chunk), else zeros until `message_delta`.
    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = match &self.usage {
            Some(usage) => usage_json(usage),
            None => json!({
                "input_tokens": 0,
                "output_tokens": 1,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            }),
        };
        event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage,
            }}),
            out,
        );
        event("ping", &json!({"type": "ping"}), out);
    }

    /// The open block's index (valid while a block is open).
    fn index(&self) -> u64 {
        self.blocks.saturating_sub(1)
    }

    fn open_block(&mut self, open: Open, content_block: Value, out: &mut BytesMut) {
        self.close(out);
        self.blocks += 1;
        self.open = open;
        event(
            "content_block_start",
            &json!({
                "type": "content_block_start",
                "index": self.index(),
                "content_block": content_block,
            }),
            out,
        );
    }

    fn close(&mut self, out: &mut BytesMut) {
        if self.open == Open::None {
            return;
        }
        self.open = Open::None;
        event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": self.index()}),
            out,
        );
    }

    fn delta(&self, delta: Value, out: &mut BytesMut) {
        event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": self.index(), "delta": delta}),
            out,
        );
    }

    fn text(&mut self, text: &str, out: &mut BytesMut) {
        if self.open != Open::Text {
            self.open_block(Open::Text, json!({"type": "text", "text": ""}), out);
        }
        // The event most chunks become: written straight from borrowed text.
        #[derive(serde::Serialize)]
        struct TextDelta<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            index: u64,
            delta: Inner<'a>,
        }
        #[derive(serde::Serialize)]
        struct Inner<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            text: &'a str,
        }
        crate::inbound::serialized_event(
            "content_block_delta",
            &TextDelta {
                kind: "content_block_delta",
                index: self.index(),
                delta: Inner {
                    kind: "text_delta",
                    text,
                },
            },
            out,
        );
    }

    /// A fragment of a tool call: a new call (an index or id other than the open block's)
    /// starts a `tool_use` block; its arguments are `input_json_delta`s.
    fn tool_call(&mut self, call: CallDelta, out: &mut BytesMut) {
        let continues = match &self.open {
            Open::Tool { call: index, id } => {
                call.index.is_none_or(|i| i == *index) && call.id.as_ref().is_none_or(|i| i == id)
            }
            _ => false,
        };
        let function = call.function.unwrap_or_default();
        if !continues {
            let id = call.id.unwrap_or_else(tool_use_id);
            let index = call.index.unwrap_or(self.tools);
            self.tools += 1;
            self.open_block(
                Open::Tool {
                    call: index,
                    id: id.clone(),
                },
                json!({
                    "type": "tool_use",
                    "id": id,
                    "name": function.name.unwrap_or_default(),
                    "input": {},
                }),
                out,
            );
        }
        if let Some(arguments) = function.arguments.filter(|a| !a.is_empty()) {
            self.delta(
                json!({"type": "input_json_delta", "partial_json": arguments}),
                out,
            );
        }
    }
}

/// `event: <name>` with the JSON `payload`.
fn event(name: &str, payload: &Value, out: &mut BytesMut) {
    named_event(name, payload.to_string().as_bytes(), out);
}

impl StreamEncoder for MessagesEncoder {
    fn chunk(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.ended {
            return;
        }
        let chunk: Chunk = match serde_json::from_slice(payload) {
            Ok(chunk) => chunk,
            Err(error) => {
                // The relay checked the upstream's JSON already; a chunk of another shape has
                // nothing this stream can show.
                tracing::warn!(
                    line = error.line(),
                    column = error.column(),
                    "a stream chunk that is no chat.completion.chunk; skipped"
                );
                return;
            }
        };
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        self.start(out);
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            let text = match delta.content {
                Some(Value::String(text)) => text,
                _ => delta.refusal.unwrap_or_default(),
            };
            if !text.is_empty() {
                self.text(&text, out);
            }
            for call in delta.tool_calls.into_iter().flatten() {
                self.tool_call(call, out);
            }
            if let Some(reason) = choice.finish_reason {
                self.close(out);
                self.finish_reason = Some(reason);
            }
        }
    }

    fn done(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.start(out);
        self.close(out);
        self.ended = true;
        let reason = stop_reason(self.finish_reason.as_deref(), self.tools > 0);
        event(
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": usage_json(&self.usage.unwrap_or_default()),
            }),
            out,
        );
        event("message_stop", &json!({"type": "message_stop"}), out);
    }

    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.ended = true;
        named_event("error", super::error::body(error).as_bytes(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events written, as (name, payload), checking the framing of each.
    fn events(out: &BytesMut) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"), "{text:?}");
        text.trim_end_matches("\n\n")
            .split("\n\n")
            .map(|frame| {
                let (name, data) = frame.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                if name != "error" {
                    assert_eq!(data["type"], name, "the payload names its event");
                }
                (name.to_string(), data)
            })
            .collect()
    }

    fn chunk(choices: Value) -> Vec<u8> {
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1,
               "model": "gpt-x", "choices": choices})
        .to_string()
        .into_bytes()
    }

    fn delta(delta: Value) -> Vec<u8> {
        chunk(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]))
    }

    fn finish(reason: &str) -> Vec<u8> {
        chunk(json!([{"index": 0, "delta": {}, "finish_reason": reason}]))
    }

    fn usage(usage: Value) -> Vec<u8> {
        json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1,
               "model": "gpt-x", "choices": [], "usage": usage})
        .to_string()
        .into_bytes()
    }

    fn call(index: u64, id: Option<&str>, name: Option<&str>, arguments: &str) -> Vec<u8> {
        let mut call = json!({"index": index, "function": {"arguments": arguments}});
        if let Some(id) = id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        if let Some(name) = name {
            call["function"]["name"] = json!(name);
        }
        delta(json!({"tool_calls": [call]}))
    }

    fn run(chunks: &[Vec<u8>]) -> Vec<(String, Value)> {
        let mut encoder = MessagesEncoder::new("chatcmpl-9".into(), "claude-like".into());
        let mut out = BytesMut::new();
        for c in chunks {
            encoder.chunk(c, &mut out);
        }
        encoder.done(&mut out);
        events(&out)
    }

    #[test]
    fn text_then_two_tool_calls_then_finish_then_usage() {
        let events = run(&[
            delta(json!({"role": "assistant", "content": ""})),
            delta(json!({"content": "Let me "})),
            delta(json!({"content": "check."})),
            call(0, Some("call_a"), Some("weather"), ""),
            call(0, None, None, "{\"city\":"),
            call(0, None, None, "\"Oslo\"}"),
            call(1, Some("call_b"), Some("time"), "{\"tz\":\"CET\"}"),
            finish("tool_calls"),
            usage(
                json!({"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70,
                         "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 5}}),
            ),
        ]);
        let expected = vec![
            (
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": "msg_chatcmpl-9", "type": "message", "role": "assistant",
                    "model": "claude-like", "content": [], "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 1,
                              "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
                }}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": "Let me "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                       "delta": {"type": "text_delta", "text": "check."}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block":
                       {"type": "tool_use", "id": "call_a", "name": "weather", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                       "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                       "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 2, "content_block":
                       {"type": "tool_use", "id": "call_b", "name": "time", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2,
                       "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":\"CET\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 2}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                       "usage": {"input_tokens": 15, "output_tokens": 20,
                                 "cache_read_input_tokens": 30,
                                 "cache_creation_input_tokens": 5}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ];
        let got: Vec<(&str, &Value)> = events.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let want: Vec<(&str, &Value)> = expected.iter().map(|(n, v)| (*n, v)).collect();
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for (k, (got, want)) in got.iter().zip(&want).enumerate() {
            assert_eq!(got, want, "event {k}");
        }
    }

    #[test]
    fn usage_first_fills_message_start() {
        let events = run(&[
            usage(json!({"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12})),
            delta(json!({"content": "Hi"})),
            finish("length"),
        ]);
        assert_eq!(events[0].0, "message_start");
        assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 12);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[5].1["delta"]["stop_reason"], "max_tokens");
        assert_eq!(events[5].1["usage"]["input_tokens"], 12);
    }

    #[test]
    fn an_empty_stream_is_still_a_whole_message() {
        let events = run(&[]);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["message_start", "ping", "message_delta", "message_stop"]
        );
        assert_eq!(events[2].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(events[2].1["usage"]["output_tokens"], 0);
    }

    #[test]
    fn text_after_a_tool_call_opens_a_new_block_and_ids_are_made_when_missing() {
        let events = run(&[
            call(0, None, Some("f"), "{}"),
            delta(json!({"content": "done"})),
            finish("stop"),
        ]);
        let starts: Vec<&Value> = events
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[0]["index"], 0);
        assert!(starts[0]["content_block"]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_"));
        assert_eq!(starts[1]["index"], 1);
        assert_eq!(starts[1]["content_block"]["type"], "text");
        let stop = events.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(
            stop.1["delta"]["stop_reason"], "tool_use",
            "tool calls with `stop` are a tool_use"
        );
    }

    #[test]
    fn other_choices_and_unreadable_chunks_write_nothing_after_the_start() {
        let mut encoder = MessagesEncoder::new("msg_1".into(), "m".into());
        let mut out = BytesMut::new();
        encoder.chunk(b"not json", &mut out);
        assert!(out.is_empty());
        encoder.chunk(
            &chunk(json!([{"index": 1, "delta": {"content": "other"}, "finish_reason": null}])),
            &mut out,
        );
        let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["message_start", "ping"]);
        assert_eq!(events(&out)[0].1["message"]["id"], "msg_1");
    }

    #[test]
    fn an_error_is_the_last_event() {
        let mut encoder = MessagesEncoder::new("c".into(), "m".into());
        let mut out = BytesMut::new();
        encoder.chunk(&delta(json!({"content": "partial"})), &mut out);
        encoder.error(&ApiError::bad_gateway("the upstream broke off"), &mut out);
        encoder.chunk(&delta(json!({"content": "more"})), &mut out);
        encoder.done(&mut out);
        let events = events(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
        assert_eq!(
            events[4].1,
            json!({"type": "error", "error": {"type": "api_error", "message": "the upstream broke off"}})
        );
    }
}
