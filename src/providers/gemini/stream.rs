//! Gemini's SSE stream (`streamGenerateContent?alt=sse`) -> OpenAI chunks, event by event.
//!
//! Each event is a partial `GenerateContentResponse`. Gemini has no end-of-stream event: the
//! stream is complete when every candidate has sent a finish reason (or the prompt was
//! blocked) and the body ends. A body that ends before that was cut off.

use super::response::{call_id, finish_reason, tool_call, GenerateResponse, UsageMetadata};
use crate::providers::chunk::ChunkWriter;
use crate::providers::sse::SseEvent;
use crate::providers::stream::{Out, Step, Translate};
use crate::providers::ProviderError;
use serde_json::{json, Value};

/// What has been sent for one candidate (one OpenAI choice).
#[derive(Default)]
struct Choice {
    index: u64,
    tool_calls: usize,
    finished: bool,
}

pub struct StreamTranslator {
    provider: String,
    writer: ChunkWriter,
    wants_usage: bool,
    started: bool,
    choices: Vec<Choice>,
    blocked: bool,
    usage: UsageMetadata,
}

impl StreamTranslator {
    pub fn new(provider: String, fallback_id: String, model: String, wants_usage: bool) -> Self {
        StreamTranslator {
            provider,
            writer: ChunkWriter::new(fallback_id, model),
            wants_usage,
            started: false,
            choices: Vec::new(),
            blocked: false,
            usage: UsageMetadata::default(),
        }
    }

    fn choice(&mut self, index: u64, out: &mut Out) -> &mut Choice {
        let pos = match self.choices.iter().position(|c| c.index == index) {
            Some(pos) => pos,
            None => {
                out.push_back(Ok(self.writer.delta(
                    index,
                    json!({"role": "assistant", "content": ""}),
                    None,
                )));
                self.choices.push(Choice {
                    index,
                    ..Choice::default()
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[pos]
    }

    fn complete(&self) -> bool {
        self.blocked || (!self.choices.is_empty() && self.choices.iter().all(|c| c.finished))
    }
}

impl Translate for StreamTranslator {
    fn event(&mut self, event: SseEvent, out: &mut Out) -> Step {
        let value: Value = match serde_json::from_slice(&event.data) {
            Ok(v) => v,
            Err(_) => {
                out.push_back(Err(ProviderError::Protocol(format!(
                    "provider `{}` sent a stream event that is not JSON",
                    self.provider
                ))));
                return Step::Done;
            }
        };
        if value.get("error").is_some() {
            let parts = super::response::parse_error(&event.data);
            let status = value["error"]["code"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .and_then(|c| actix_web::http::StatusCode::from_u16(c).ok())
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            out.push_back(Err(ProviderError::Status {
                status,
                message: parts
                    .as_ref()
                    .map(|p| p.message.clone())
                    .unwrap_or_else(|| "upstream error".into()),
                kind: parts.as_ref().and_then(|p| p.kind.clone()),
                code: parts.and_then(|p| p.code),
                retry_after: None,
                param: None,
                headers: Vec::new(),
            }));
            return Step::Done;
        }
        let reply: GenerateResponse = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(provider = %self.provider, error = %e, "unreadable stream event");
                out.push_back(Err(ProviderError::Protocol(format!(
                    "provider `{}` sent a stream event that is not a response",
                    self.provider
                ))));
                return Step::Done;
            }
        };
        if !self.started {
            self.started = true;
            if let Some(id) = &reply.response_id {
                self.writer.id = id.clone();
            }
            if let Some(model) = &reply.model_version {
                self.writer.model = model.clone();
            }
        }
        if let Some(u) = reply.usage_metadata {
            self.usage = u; // running totals; the last one counts
        }
        if reply.blocked() && !self.blocked {
            self.blocked = true;
            self.choice(0, out);
            out.push_back(Ok(self.writer.delta(0, json!({}), Some("content_filter"))));
        }
        for (pos, candidate) in reply.candidates.iter().enumerate() {
            let index = candidate.index.unwrap_or(pos as u64);
            let id = self.writer.id.clone();
            self.choice(index, out);
            for part in candidate.content.iter().flat_map(|c| &c.parts) {
                if part.thought {
                    continue;
                }
                if let Some(text) = part.text.as_ref().filter(|t| !t.is_empty()) {
                    out.push_back(Ok(self.writer.delta(
                        index,
                        json!({ "content": text }),
                        None,
                    )));
                }
                if let Some(f) = &part.function_call {
                    // Gemini sends each call whole, so one delta carries id, name and arguments.
                    let choice = self.choice(index, out);
                    let n = choice.tool_calls;
                    choice.tool_calls += 1;
                    let call = tool_call(f, call_id(f, &id, index, n), Some(n));
                    out.push_back(Ok(self.writer.delta(
                        index,
                        json!({ "tool_calls": [call] }),
                        None,
                    )));
                }
            }
            if let Some(reason) = &candidate.finish_reason {
                let choice = self.choice(index, out);
                if !choice.finished {
                    choice.finished = true;
                    let reason = finish_reason(reason, choice.tool_calls > 0);
                    out.push_back(Ok(self.writer.delta(index, json!({}), Some(reason))));
                }
            }
        }
        Step::Continue
    }

    fn end_of_body(&mut self, out: &mut Out) {
        if !self.complete() {
            out.push_back(Err(ProviderError::Protocol(format!(
                "provider `{}` ended its stream before a finish reason",
                self.provider
            ))));
            return;
        }
        if self.wants_usage {
            out.push_back(Ok(self.writer.usage(self.usage.usage())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn run(events: &[&str], wants_usage: bool) -> Vec<Result<Value, ProviderError>> {
        let mut t = StreamTranslator::new("gem".into(), "fallback".into(), "m".into(), wants_usage);
        let mut out = Out::new();
        for e in events {
            let ev = SseEvent {
                event: None,
                data: Bytes::from(e.to_string()),
            };
            if t.event(ev, &mut out) == Step::Done {
                return out
                    .into_iter()
                    .map(|r| r.map(|b| serde_json::from_slice(&b).unwrap()))
                    .collect();
            }
        }
        t.end_of_body(&mut out);
        out.into_iter()
            .map(|r| r.map(|b| serde_json::from_slice(&b).unwrap()))
            .collect()
    }

    #[test]
    fn text_then_finish_then_usage() {
        let out = run(
            &[
                r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1},"responseId":"r7","modelVersion":"gemini-x"}"#,
                r#"{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6},"responseId":"r7"}"#,
            ],
            true,
        );
        let out: Vec<Value> = out.into_iter().map(Result::unwrap).collect();
        assert!(out.iter().all(|c| c["id"] == "r7"));
        assert_eq!(out[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(out[1]["choices"][0]["delta"]["content"], "Hel");
        assert_eq!(out[2]["choices"][0]["delta"]["content"], "lo");
        assert_eq!(out[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            out[4]["usage"],
            json!({"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6})
        );
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn the_usage_chunk_has_the_last_cached_content_count() {
        let out = run(
            &[
                r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":1030,"cachedContentTokenCount":1024,"candidatesTokenCount":1}}"#,
                r#"{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1030,"cachedContentTokenCount":1024,"candidatesTokenCount":2}}"#,
            ],
            true,
        );
        assert_eq!(
            out.last().unwrap().as_ref().unwrap()["usage"],
            json!({"prompt_tokens": 1030, "completion_tokens": 2, "total_tokens": 1032,
                   "prompt_tokens_details": {"cached_tokens": 1024}})
        );
    }

    #[test]
    fn function_call_and_safety() {
        let out = run(
            &[
                r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"w","args":{"city":"Oslo"}}}],"role":"model"},"finishReason":"STOP"}]}"#,
            ],
            false,
        );
        let out: Vec<Value> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            out[1]["choices"][0]["delta"]["tool_calls"][0],
            json!({"index": 0, "id": "call_fallback_0_0", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}})
        );
        assert_eq!(out[2]["choices"][0]["finish_reason"], "tool_calls");
        let out = run(&[r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#], false);
        assert_eq!(
            out.last().unwrap().as_ref().unwrap()["choices"][0]["finish_reason"],
            "content_filter"
        );
    }

    #[test]
    fn cut_streams_and_error_events_end_with_errors() {
        let out = run(
            &[r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}]}"#],
            false,
        );
        assert!(
            matches!(out.last().unwrap(), Err(ProviderError::Protocol(m)) if m.contains("finish reason"))
        );
        let out = run(
            &[r#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#],
            false,
        );
        assert!(
            matches!(out.last().unwrap(), Err(ProviderError::Status { status, .. }) if status.as_u16() == 503)
        );
    }
}
