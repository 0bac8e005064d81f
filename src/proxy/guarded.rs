//! Applying a policy's output guard (`ctx.guard_output`) to a reply before the client sees it:
//! a JSON reply checked whole, a stream through [`GuardedEncoder`], which sits in front of the
//! client's encoder and sees the chunks in the chat form, whatever API the client speaks.
//!
//! In a stream each choice's text goes out only once the guard's hold-back has passed it
//! (`policy::guard::StreamCheck`); the rest of a chunk (role, tool calls, finish reason, usage)
//! goes out as it came. The held text is released with the chunk that finishes the choice. A
//! block ends the stream with the client API's error event (`content_blocked`) and no closing
//! event; nothing after it is written.

use crate::error::ApiError;
use crate::error_codes::Code;
use crate::inbound::StreamEncoder;
use crate::policy::guard::{OutputGuard, StreamCheck, Verdict, BLOCKED_MESSAGE};
use actix_web::http::StatusCode;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use std::sync::Arc;

/// A reply a block check matched (named).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{BLOCKED_MESSAGE} ({0})")]
pub struct Blocked(pub String);

/// The error a blocked reply gets (named by the check that matched, never by the text).
pub fn blocked_error(by: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request_error",
        format!("{BLOCKED_MESSAGE} ({by})"),
    )
    .with_code(Code::ContentBlocked)
}

/// A JSON reply (chat completion or completion) with the guard applied: its text redacted, or
/// `Err` naming the check that blocked it. A body that is not a reply goes through unchanged.
pub fn guard_json(guard: &OutputGuard, body: Bytes) -> Result<Bytes, Blocked> {
    let Ok(mut reply) = serde_json::from_slice::<Value>(&body) else {
        return Ok(body);
    };
    let Some(choices) = reply.get_mut("choices").and_then(Value::as_array_mut) else {
        return Ok(body);
    };
    let mut changed = false;
    for choice in choices {
        let slot = match choice.get_mut("message") {
            Some(message) => message.get_mut("content"),
            None => choice.get_mut("text"),
        };
        let Some(Value::String(text)) = slot else {
            continue;
        };
        match guard.check(text) {
            Verdict::Blocked(by) => return Err(Blocked(by)),
            Verdict::Pass(checked) => {
                if checked != *text {
                    *text = checked;
                    changed = true;
                }
            }
        }
    }
    if changed {
        Ok(Bytes::from(reply.to_string()))
    } else {
        Ok(body)
    }
}

/// Choice indexes checked apart; any higher shares the last one's check.
const MAX_CHOICES: u64 = 128;

/// Whether the stream's chunks are chat chunks (`delta.content`) or completions (`text`).
#[derive(Clone, Copy, PartialEq)]
enum Form {
    Chat,
    Completion,
}

pub struct GuardedEncoder {
    inner: Box<dyn StreamEncoder>,
    guard: Arc<OutputGuard>,
    /// One check per choice index (almost always one).
    checks: Vec<(u64, StreamCheck)>,
    /// The last chunk's envelope (`id`, `model`, ...), for text released at the end.
    envelope: Option<Value>,
    form: Form,
    blocked: bool,
}

impl GuardedEncoder {
    pub fn new(inner: Box<dyn StreamEncoder>, guard: Arc<OutputGuard>) -> Self {
        GuardedEncoder {
            inner,
            guard,
            checks: Vec::new(),
            envelope: None,
            form: Form::Chat,
            blocked: false,
        }
    }

    fn check(&mut self, index: u64) -> &mut StreamCheck {
        // A reply has a few choices; an upstream that numbers thousands shares the last check
        // rather than making the gateway keep one per index.
        let index = index.min(MAX_CHOICES);
        let at = match self.checks.iter().position(|(i, _)| *i == index) {
            Some(at) => at,
            None => {
                self.checks
                    .push((index, StreamCheck::new(self.guard.clone())));
                self.checks.len() - 1
            }
        };
        &mut self.checks[at].1
    }

    fn block(&mut self, by: &str, out: &mut BytesMut) {
        tracing::info!(
            check = by,
            "a streamed reply was blocked by an output guard"
        );
        self.blocked = true;
        self.inner.error(&blocked_error(by), out);
    }
}

impl StreamEncoder for GuardedEncoder {
    fn chunk(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.blocked {
            return;
        }
        let Ok(mut chunk) = serde_json::from_slice::<Value>(payload) else {
            self.inner.chunk(payload, out);
            return;
        };
        let mut changed = false;
        let mut blocked_by = None;
        if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
            for choice in choices.iter_mut() {
                let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                let form = if choice.get("delta").is_some() {
                    Form::Chat
                } else {
                    Form::Completion
                };
                self.form = form;
                let text = match form {
                    Form::Chat => choice
                        .get("delta")
                        .and_then(|d| d.get("content"))
                        .and_then(Value::as_str),
                    Form::Completion => choice.get("text").and_then(Value::as_str),
                }
                .map(str::to_string);
                if text.is_none() && !finishing {
                    continue;
                }
                let check = self.check(index);
                let pushed = check.push(text.as_deref().unwrap_or(""));
                let mut released = match pushed {
                    Verdict::Pass(t) => t,
                    Verdict::Blocked(by) => {
                        blocked_by = Some(by);
                        break;
                    }
                };
                if finishing {
                    match check.finish() {
                        Verdict::Pass(rest) => released.push_str(&rest),
                        Verdict::Blocked(by) => {
                            blocked_by = Some(by);
                            break;
                        }
                    }
                }
                set_text(choice, form, released);
                changed = true;
            }
        }
        if let Some(by) = blocked_by {
            self.block(&by, out);
            return;
        }
        if self.envelope.is_none() {
            // `id`, `model`, `created`...: the same in every chunk, kept once.
            if let Some(obj) = chunk.as_object() {
                let mut envelope = obj.clone();
                envelope.remove("choices");
                envelope.remove("usage");
                self.envelope = Some(Value::Object(envelope));
            }
        }
        if !changed {
            self.inner.chunk(payload, out);
        } else if says_something(&chunk) {
            self.inner.chunk(chunk.to_string().as_bytes(), out);
        }
        // A chunk whose only text is held back says nothing yet: it is not sent.
    }

    fn done(&mut self, out: &mut BytesMut) {
        if self.blocked {
            return;
        }
        // A stream that ended without finishing a choice: its held text, checked whole.
        let mut rest = Vec::new();
        for (index, check) in &mut self.checks {
            match check.finish() {
                Verdict::Pass(t) if !t.is_empty() => rest.push((*index, t)),
                Verdict::Pass(_) => {}
                Verdict::Blocked(by) => {
                    self.block(&by, out);
                    return;
                }
            }
        }
        for (index, text) in rest {
            let mut chunk = self
                .envelope
                .clone()
                .unwrap_or_else(|| serde_json::json!({}));
            let mut choice = serde_json::json!({"index": index, "finish_reason": null});
            if self.form == Form::Chat {
                choice["delta"] = serde_json::json!({});
            }
            set_text(&mut choice, self.form, text);
            chunk["choices"] = Value::Array(vec![choice]);
            self.inner.chunk(chunk.to_string().as_bytes(), out);
        }
        self.inner.done(out);
    }

    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        if !self.blocked {
            self.inner.error(error, out);
        }
    }

    fn ended(&self) -> bool {
        self.blocked
    }
}

/// Whether a chunk still carries anything once its held text is taken out: text, a role,
/// tool calls, a finish reason, usage, or fields the gateway does not know.
fn says_something(chunk: &Value) -> bool {
    if chunk.get("usage").is_some_and(|u| !u.is_null()) {
        return true;
    }
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
        return true;
    };
    choices.is_empty()
        || choices.iter().any(|c| {
            let finishing = c.get("finish_reason").is_some_and(|f| !f.is_null());
            let delta_says = c
                .get("delta")
                .and_then(Value::as_object)
                .is_some_and(|d| !d.is_empty());
            let text_says = c
                .get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty());
            finishing || delta_says || text_says || c.get("logprobs").is_some_and(|l| !l.is_null())
        })
}

/// Puts the released text in a choice (or takes the text out, when none is released yet, so
/// encoders see no empty text).
fn set_text(choice: &mut Value, form: Form, text: String) {
    let target = match form {
        Form::Chat => choice.get_mut("delta").and_then(Value::as_object_mut),
        Form::Completion => choice.as_object_mut(),
    };
    let Some(target) = target else {
        return;
    };
    let key = if form == Form::Chat {
        "content"
    } else {
        "text"
    };
    if text.is_empty() {
        if form == Form::Chat {
            target.remove(key);
        } else {
            target.insert(key.to_string(), Value::String(String::new()));
        }
    } else {
        target.insert(key.to_string(), Value::String(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::OpenAiEncoder;

    #[test]
    fn an_upstream_numbering_many_choices_gets_a_bounded_number_of_checks() {
        let guard = Arc::new(OutputGuard {
            hold: 8,
            replacement: "[redacted]".into(),
            ..OutputGuard::default()
        });
        let mut encoder = GuardedEncoder::new(Box::new(OpenAiEncoder), guard);
        let mut out = BytesMut::new();
        for index in 0..5_000u64 {
            let chunk = serde_json::json!({"choices": [{"index": index, "delta": {"content": "word "}, "finish_reason": null}]});
            encoder.chunk(chunk.to_string().as_bytes(), &mut out);
        }
        assert_eq!(encoder.checks.len(), MAX_CHOICES as usize + 1);
    }
}
