//! Anthropic's event stream -> OpenAI `chat.completion.chunk` payloads, one event at a time.
//!
//! `message_start` gives the id and the prompt tokens and becomes the role chunk; text and
//! tool-input deltas become content and `tool_calls` deltas; `message_delta` carries the stop
//! reason (the finish chunk) and the output tokens; `message_stop` is the clean end (after the
//! usage chunk, when asked for). An `error` event ends the stream with that error.

use super::response::{error_parts, finish_reason, status_of_error, AnthropicUsage, ErrorDetail};
use crate::providers::chunk::ChunkWriter;
use crate::providers::sse::SseEvent;
use crate::providers::stream::{Out, Step, Translate};
use crate::providers::ProviderError;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: Start,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: Delta,
    },
    MessageDelta {
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<AnthropicUsage>,
    },
    MessageStop {},
    Error {
        error: ErrorDetail,
    },
    /// `ping`, `content_block_stop`, and event types added later: nothing to send.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Start {
    id: String,
    model: String,
    #[serde(default)]
    usage: AnthropicUsage,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)] // the names are Anthropic's
enum Delta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    /// Thinking and signature deltas have no OpenAI counterpart.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

pub struct StreamTranslator {
    provider: String,
    writer: ChunkWriter,
    wants_usage: bool,
    /// The counts so far: `message_start`'s, updated by each `message_delta`.
    usage: AnthropicUsage,
    /// Anthropic block index -> OpenAI tool call index, for the tool_use blocks seen so far.
    tool_blocks: Vec<(u64, u64)>,
    finished: bool,
}

impl StreamTranslator {
    /// `fallback_id` and `model` name the chunks until `message_start` gives the real ones.
    pub fn new(provider: String, fallback_id: String, model: String, wants_usage: bool) -> Self {
        StreamTranslator {
            provider,
            writer: ChunkWriter::new(fallback_id, model),
            wants_usage,
            usage: AnthropicUsage::default(),
            tool_blocks: Vec::new(),
            finished: false,
        }
    }

    fn tool_index(&self, block: u64) -> Option<u64> {
        self.tool_blocks
            .iter()
            .find(|(b, _)| *b == block)
            .map(|(_, i)| *i)
    }
}

impl Translate for StreamTranslator {
    fn event(&mut self, event: SseEvent, out: &mut Out) -> Step {
        let event: Event = match serde_json::from_slice(&event.data) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %e, "unreadable stream event");
                out.push_back(Err(ProviderError::Protocol(format!(
                    "provider `{}` sent a stream event that is not valid",
                    self.provider
                ))));
                return Step::Done;
            }
        };
        let w = &self.writer;
        match event {
            Event::MessageStart { message } => {
                self.writer.id = message.id;
                self.writer.model = message.model;
                self.usage = message.usage;
                out.push_back(Ok(self.writer.delta(
                    0,
                    json!({"role": "assistant", "content": ""}),
                    None,
                )));
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                StartBlock::Text { text } if !text.is_empty() => {
                    out.push_back(Ok(w.delta(0, json!({ "content": text }), None)));
                }
                StartBlock::ToolUse { id, name } => {
                    let tool = self.tool_blocks.len() as u64;
                    out.push_back(Ok(w.delta(
                        0,
                        json!({"tool_calls": [{
                            "index": tool, "id": id, "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }]}),
                        None,
                    )));
                    self.tool_blocks.push((index, tool));
                }
                _ => {}
            },
            Event::ContentBlockDelta { index, delta } => match delta {
                Delta::TextDelta { text } => {
                    out.push_back(Ok(w.delta(0, json!({ "content": text }), None)));
                }
                Delta::InputJsonDelta { partial_json } => {
                    if let Some(tool) = self.tool_index(index) {
                        out.push_back(Ok(w.delta(
                            0,
                            json!({"tool_calls": [{
                                "index": tool, "function": {"arguments": partial_json},
                            }]}),
                            None,
                        )));
                    }
                }
                Delta::Other => {}
            },
            Event::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.update(&u);
                }
                if !self.finished {
                    self.finished = true;
                    let reason = finish_reason(delta.stop_reason.as_deref());
                    out.push_back(Ok(w.delta(0, json!({}), Some(reason))));
                }
            }
            Event::MessageStop {} => {
                if !self.finished {
                    self.finished = true;
                    out.push_back(Ok(w.delta(0, json!({}), Some("stop"))));
                }
                if self.wants_usage {
                    out.push_back(Ok(self.writer.usage(self.usage.usage())));
                }
                return Step::Done;
            }
            Event::Error { error } => {
                let status = status_of_error(&error.kind);
                let parts = error_parts(error);
                out.push_back(Err(ProviderError::Status {
                    status,
                    message: parts.message,
                    kind: parts.kind,
                    code: parts.code,
                    retry_after: None,
                    param: None,
                    headers: Vec::new(),
                }));
                return Step::Done;
            }
            Event::Other => {}
        }
        Step::Continue
    }

    fn end_of_body(&mut self, out: &mut Out) {
        out.push_back(Err(ProviderError::Protocol(format!(
            "provider `{}` ended its stream before message_stop",
            self.provider
        ))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::Value;

    fn run(events: &[&str], wants_usage: bool) -> Vec<Result<Value, ProviderError>> {
        let mut t =
            StreamTranslator::new("claude".into(), "fallback".into(), "m".into(), wants_usage);
        let mut out = Out::new();
        let mut done = false;
        for e in events {
            let ev = SseEvent {
                event: None,
                data: Bytes::from(e.to_string()),
            };
            if t.event(ev, &mut out) == Step::Done {
                done = true;
                break;
            }
        }
        if !done {
            t.end_of_body(&mut out);
        }
        out.into_iter()
            .map(|r| r.map(|b| serde_json::from_slice(&b).unwrap()))
            .collect()
    }

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_9","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"usage":{"input_tokens":12,"output_tokens":1}}}"#;

    #[test]
    fn text_stream_with_usage() {
        let out = run(
            &[
                START,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                r#"{"type":"ping"}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
                r#"{"type":"content_block_stop","index":0}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":6}}"#,
                r#"{"type":"message_stop"}"#,
            ],
            true,
        );
        let out: Vec<Value> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(out.len(), 4, "{out:?}");
        assert!(out
            .iter()
            .all(|c| c["id"] == "msg_9" && c["model"] == "claude-x"));
        assert_eq!(out[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(out[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(out[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(out[3]["choices"], json!([]));
        assert_eq!(
            out[3]["usage"],
            json!({"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18})
        );
    }

    #[test]
    fn the_usage_chunk_carries_prompt_cache_reads_and_writes() {
        const CACHED_START: &str = r#"{"type":"message_start","message":{"id":"msg_c","type":"message","role":"assistant","content":[],"model":"claude-x","stop_reason":null,"usage":{"input_tokens":5,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":1}}}"#;
        let events = [
            CACHED_START,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let out = run(&events, true);
        let last = out.last().unwrap().as_ref().unwrap();
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 1205, "completion_tokens": 7, "total_tokens": 1212,
                   "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 200}})
        );
        // Newer API versions repeat the prompt's counts in message_delta (running totals).
        let events = [
            START,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":12,"cache_read_input_tokens":30,"cache_creation_input_tokens":0,"output_tokens":2}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let out = run(&events, true);
        let last = out.last().unwrap().as_ref().unwrap();
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 42, "completion_tokens": 2, "total_tokens": 44,
                   "prompt_tokens_details": {"cached_tokens": 30}})
        );
    }

    #[test]
    fn tool_use_stream() {
        let out = run(
            &[
                START,
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}}"#,
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"w","input":{}}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}"#,
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Oslo\"}"}}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
                r#"{"type":"message_stop"}"#,
            ],
            false,
        );
        let out: Vec<Value> = out.into_iter().map(Result::unwrap).collect();
        let calls: Vec<&Value> = out
            .iter()
            .map(|c| &c["choices"][0]["delta"]["tool_calls"][0])
            .filter(|c| !c.is_null())
            .collect();
        assert_eq!(
            calls[0],
            &json!({"index": 0, "id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": ""}})
        );
        assert_eq!(
            calls[1],
            &json!({"index": 0, "function": {"arguments": "{\"city\":"}})
        );
        assert_eq!(calls[2]["function"]["arguments"], "\"Oslo\"}");
        assert_eq!(
            out.last().unwrap()["choices"][0]["finish_reason"],
            "tool_calls"
        );
    }

    #[test]
    fn error_event_and_cut_stream_end_with_errors() {
        let out = run(
            &[
                START,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ],
            false,
        );
        match out.last().unwrap() {
            Err(ProviderError::Status {
                status,
                message,
                kind,
                ..
            }) => {
                assert_eq!(
                    (status.as_u16(), message.as_str(), kind.as_deref()),
                    (503, "Overloaded", Some("overloaded_error"))
                );
            }
            other => panic!("{other:?}"),
        }
        let out = run(&[START], false);
        assert!(
            matches!(out.last().unwrap(), Err(ProviderError::Protocol(m)) if m.contains("message_stop"))
        );
    }
}
