//! `chat.completion.chunk`s -> the Responses API's typed event stream.
//!
//! The first chunk opens the response (`response.created`, `response.in_progress`). Text and
//! each tool call are output items, one open at a time as OpenAI sends them: an item opens
//! with its first delta and closes when the next one opens or the reply finishes (its `.done`
//! events carry the whole text or arguments). The usage chunk comes after the finish chunk,
//! so `response.completed` (or `response.incomplete`) is sent only at the clean end, with the
//! whole response object as `reply.rs` would make it. Every event has a `sequence_number`.

use super::reply::{self, Meta, Status};
use crate::error::ApiError;
use crate::inbound::{named_event, StreamEncoder};
use bytes::BytesMut;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Called once with the final response object when the stream completes.
pub type OnComplete = Box<dyn FnOnce(Value) + Send>;

pub struct ResponsesEncoder {
    meta: Meta,
    on_complete: Option<OnComplete>,
    /// The next event's `sequence_number`.
    seq: u64,
    started: bool,
    /// Completed or failed: nothing more is written.
    ended: bool,
    model: String,
    /// The output items so far, in output order.
    items: Vec<Item>,
    /// The item that takes deltas (an index into `items`); the others are done.
    open: Option<usize>,
    /// Chat `tool_calls[].index` -> its item.
    calls: Vec<(u64, usize)>,
    /// From the finish chunk.
    status: Option<Status>,
    /// From the usage chunk, in the Responses API's terms.
    usage: Option<Value>,
}

#[derive(Debug)]
enum Item {
    Message {
        id: String,
        parts: Vec<Part>,
        status: &'static str,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        status: &'static str,
    },
}

#[derive(Debug)]
struct Part {
    refusal: bool,
    text: String,
}

impl Part {
    fn to_value(&self) -> Value {
        if self.refusal {
            reply::refusal(&self.text)
        } else {
            reply::output_text(&self.text)
        }
    }

    /// An empty part of the same kind: what `content_part.added` announces.
    fn empty(&self) -> Value {
        Part {
            refusal: self.refusal,
            text: String::new(),
        }
        .to_value()
    }
}

impl Item {
    fn to_value(&self) -> Value {
        match self {
            Item::Message { id, parts, status } => {
                reply::message_item(id, status, parts.iter().map(Part::to_value).collect())
            }
            Item::Call {
                id,
                call_id,
                name,
                arguments,
                status,
            } => reply::function_call_item(id, call_id, name, arguments, status),
        }
    }
}

/// The parts of a chunk this encoder reads.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<CallDelta>>,
}

#[derive(Deserialize)]
struct CallDelta {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

impl ResponsesEncoder {
    pub fn new(meta: Meta, on_complete: Option<OnComplete>) -> Self {
        let model = reply::model_of(&meta, None);
        ResponsesEncoder {
            meta,
            on_complete,
            seq: 0,
            started: false,
            ended: false,
            model,
            items: Vec::new(),
            open: None,
            calls: Vec::new(),
            status: None,
            usage: None,
        }
    }

    /// Writes one event: `type` and `sequence_number` first, then `fields`.
    fn emit(&mut self, kind: &str, fields: Value, out: &mut BytesMut) {
        let mut event = Map::new();
        event.insert("type".into(), Value::String(kind.to_string()));
        event.insert("sequence_number".into(), Value::from(self.seq));
        if let Value::Object(fields) = fields {
            event.extend(fields);
        }
        self.seq += 1;
        named_event(kind, Value::Object(event).to_string().as_bytes(), out);
    }

    fn start(&mut self, out: &mut BytesMut) {
        self.started = true;
        let response = reply::envelope(
            &self.meta,
            &self.model,
            Status::InProgress,
            Vec::new(),
            None,
            None,
        );
        self.emit(
            "response.created",
            json!({"response": response.clone()}),
            out,
        );
        self.emit("response.in_progress", json!({"response": response}), out);
    }

    /// A text (or refusal) delta: into the open message, in a new part when it changes kind,
    /// or in a new message.
    fn text_delta(&mut self, refusal: bool, delta: &str, out: &mut BytesMut) {
        let index = match self.open {
            Some(i) if matches!(self.items[i], Item::Message { .. }) => {
                let last_kind = match &self.items[i] {
                    Item::Message { parts, .. } => parts.last().map(|p| p.refusal),
                    Item::Call { .. } => None,
                };
                if last_kind != Some(refusal) {
                    self.close_part(i, out);
                    self.open_part(i, refusal, out);
                }
                i
            }
            _ => {
                self.close_open("completed", out);
                let i = self.items.len();
                self.items.push(Item::Message {
                    id: reply::new_item_id("msg"),
                    parts: Vec::new(),
                    status: "in_progress",
                });
                self.open = Some(i);
                let item = self.items[i].to_value();
                self.emit(
                    "response.output_item.added",
                    json!({"output_index": i, "item": item}),
                    out,
                );
                self.open_part(i, refusal, out);
                i
            }
        };
        let Item::Message { id, parts, .. } = &mut self.items[index] else {
            return;
        };
        let content_index = parts.len().saturating_sub(1);
        if let Some(part) = parts.last_mut() {
            part.text.push_str(delta);
        }
        // The event most chunks become: written straight from borrowed text.
        #[derive(serde::Serialize)]
        struct TextDelta<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            sequence_number: u64,
            item_id: &'a str,
            output_index: usize,
            content_index: usize,
            delta: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            logprobs: Option<[u8; 0]>,
        }
        let (kind, logprobs) = if refusal {
            ("response.refusal.delta", None)
        } else {
            ("response.output_text.delta", Some([]))
        };
        let event = TextDelta {
            kind,
            sequence_number: self.seq,
            item_id: id,
            output_index: index,
            content_index,
            delta,
            logprobs,
        };
        crate::inbound::serialized_event(kind, &event, out);
        self.seq += 1;
    }

    fn open_part(&mut self, index: usize, refusal: bool, out: &mut BytesMut) {
        let Item::Message { id, parts, .. } = &mut self.items[index] else {
            return;
        };
        parts.push(Part {
            refusal,
            text: String::new(),
        });
        let content_index = parts.len() - 1;
        let fields = json!({
            "item_id": id,
            "output_index": index,
            "content_index": content_index,
            "part": parts[content_index].empty(),
        });
        self.emit("response.content_part.added", fields, out);
    }

    /// The `.done` events of a message's last part.
    fn close_part(&mut self, index: usize, out: &mut BytesMut) {
        let Item::Message { id, parts, .. } = &self.items[index] else {
            return;
        };
        let Some(part) = parts.last() else {
            return;
        };
        let content_index = parts.len() - 1;
        let (kind, done) = if part.refusal {
            (
                "response.refusal.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "refusal": part.text}),
            )
        } else {
            (
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "text": part.text, "logprobs": []}),
            )
        };
        let part_done = json!({"item_id": id, "output_index": index,
                               "content_index": content_index, "part": part.to_value()});
        self.emit(kind, done, out);
        self.emit("response.content_part.done", part_done, out);
    }

    /// One `tool_calls[]` delta: the first for its index opens a function call item.
    fn call_delta(&mut self, call: CallDelta, out: &mut BytesMut) {
        let (name, arguments) = match call.function {
            Some(f) => (f.name, f.arguments.unwrap_or_default()),
            None => (None, String::new()),
        };
        let known = self
            .calls
            .iter()
            .find(|(chat_index, _)| *chat_index == call.index)
            .map(|(_, i)| *i);
        let index = match known {
            Some(i) => i,
            None => {
                self.close_open("completed", out);
                let i = self.items.len();
                let call_id = match call.id.filter(|id| !id.is_empty()) {
                    Some(id) => id,
                    None => reply::new_item_id("call"),
                };
                self.items.push(Item::Call {
                    id: reply::new_item_id("fc"),
                    call_id,
                    name: name.clone().unwrap_or_default(),
                    arguments: String::new(),
                    status: "in_progress",
                });
                self.calls.push((call.index, i));
                self.open = Some(i);
                let item = self.items[i].to_value();
                self.emit(
                    "response.output_item.added",
                    json!({"output_index": i, "item": item}),
                    out,
                );
                i
            }
        };
        let Item::Call {
            id,
            name: item_name,
            arguments: item_arguments,
            ..
        } = &mut self.items[index]
        else {
            return;
        };
        // Some servers repeat the name on every delta: the first one given is the name.
        if item_name.is_empty() {
            if let Some(name) = name {
                *item_name = name;
            }
        }
        if arguments.is_empty() {
            return;
        }
        item_arguments.push_str(&arguments);
        // A delta for a call already closed (a server that interleaves calls) still counts
        // in the final response; its events are past.
        if self.open == Some(index) {
            let fields = json!({"item_id": id, "output_index": index, "delta": arguments});
            self.emit("response.function_call_arguments.delta", fields, out);
        }
    }

    /// Closes the open item, if any, with `status`: its `.done` events.
    fn close_open(&mut self, status: &'static str, out: &mut BytesMut) {
        let Some(index) = self.open.take() else {
            return;
        };
        if matches!(self.items[index], Item::Message { .. }) {
            self.close_part(index, out);
        }
        match &mut self.items[index] {
            Item::Message { status: s, .. } | Item::Call { status: s, .. } => *s = status,
        }
        if let Item::Call {
            id,
            name,
            arguments,
            ..
        } = &self.items[index]
        {
            let fields = json!({"item_id": id, "output_index": index, "name": name,
                                "arguments": arguments});
            self.emit("response.function_call_arguments.done", fields, out);
        }
        let item = self.items[index].to_value();
        self.emit(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
            out,
        );
    }

    fn output(&self) -> Vec<Value> {
        self.items.iter().map(Item::to_value).collect()
    }
}

impl StreamEncoder for ResponsesEncoder {
    fn chunk(&mut self, payload: &[u8], out: &mut BytesMut) {
        if self.ended {
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Chunk>(payload) else {
            tracing::debug!("responses stream: a chunk that is not a chat.completion.chunk");
            return;
        };
        if !self.started {
            if let Some(model) = chunk.model.as_deref().filter(|m| !m.is_empty()) {
                self.model = model.to_string();
            }
            self.start(out);
        }
        if let Some(usage) = chunk.usage.as_ref().and_then(reply::usage) {
            self.usage = Some(usage);
        }
        // The Responses API has one answer per request: `n` > 1 is not asked for, so only the
        // first choice is read.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.text_delta(false, &text, out);
            }
            if let Some(text) = delta.refusal.filter(|t| !t.is_empty()) {
                self.text_delta(true, &text, out);
            }
            for call in delta.tool_calls.into_iter().flatten() {
                self.call_delta(call, out);
            }
            if let Some(reason) = choice.finish_reason {
                let status = Status::from_finish_reason(Some(&reason));
                self.status = Some(status);
                self.close_open(status.item_status(), out);
            }
        }
    }

    fn done(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if !self.started {
            self.start(out);
        }
        let status = self.status.unwrap_or(Status::Completed);
        self.close_open(status.item_status(), out);
        let response = reply::envelope(
            &self.meta,
            &self.model,
            status,
            self.output(),
            self.usage.take(),
            None,
        );
        let kind = match status {
            Status::Incomplete(_) => "response.incomplete",
            _ => "response.completed",
        };
        self.emit(kind, json!({"response": response.clone()}), out);
        self.ended = true;
        if let Some(on_complete) = self.on_complete.take() {
            on_complete(response);
        }
    }

    fn error(&mut self, error: &ApiError, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if !self.started {
            self.start(out);
        }
        // The item cut off has no `.done` events: it is incomplete in the failed response.
        if let Some(index) = self.open.take() {
            match &mut self.items[index] {
                Item::Message { status, .. } | Item::Call { status, .. } => *status = "incomplete",
            }
        }
        // The gateway's own code (`budget_exceeded`, `upstream_timeout`) says more than
        // OpenAI's short list would; the SDKs read it as a plain string.
        let code = error.code.as_deref().unwrap_or("server_error");
        let response = reply::envelope(
            &self.meta,
            &self.model,
            Status::Failed,
            self.output(),
            self.usage.take(),
            Some(
                json!({"code": code, "message": error.message, "param": error.param,
                        "type": error.kind}),
            ),
        );
        self.emit("response.failed", json!({"response": response}), out);
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The events written, as (SSE event name, data).
    fn events(out: &BytesMut) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).unwrap();
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let (name, data) = e.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_string();
                let data: Value =
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.as_str(), "the name is the data's type");
                (name, data)
            })
            .collect()
    }

    fn chunk(delta: Value, finish: Option<&str>) -> Vec<u8> {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
        .into_bytes()
    }

    fn usage_chunk() -> Vec<u8> {
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
               "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12,
                                        "prompt_tokens_details": {"cached_tokens": 3}}})
        .to_string()
        .into_bytes()
    }

    fn encoder() -> (ResponsesEncoder, Arc<Mutex<Vec<Value>>>) {
        let completed = Arc::new(Mutex::new(Vec::new()));
        let sink = completed.clone();
        let meta = Meta {
            id: "resp_s".into(),
            created_at: 1700,
            request: json!({"model": "alias", "input": "hi", "stream": true}),
        };
        let on_complete: OnComplete = Box::new(move |r| sink.lock().unwrap().push(r));
        (ResponsesEncoder::new(meta, Some(on_complete)), completed)
    }

    #[test]
    fn text_then_two_tool_calls_event_by_event() {
        let (mut enc, completed) = encoder();
        let mut out = BytesMut::new();
        let call = |i: u64, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut c = json!({"index": i, "function": {"arguments": args}});
            if let Some(id) = id {
                c["id"] = json!(id);
                c["type"] = json!("function");
            }
            if let Some(name) = name {
                c["function"]["name"] = json!(name);
            }
            chunk(json!({"tool_calls": [c]}), None)
        };
        for payload in [
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hel"}), None),
            chunk(json!({"content": "lo"}), None),
            call(0, Some("call_a"), Some("f"), ""),
            call(0, None, None, "{\"x\":"),
            call(0, None, None, "1}"),
            call(1, Some("call_b"), Some("g"), "{}"),
            chunk(json!({}), Some("tool_calls")),
            usage_chunk(),
        ] {
            enc.chunk(&payload, &mut out);
        }
        // Nothing completes before the clean end: the usage chunk came after the finish.
        assert!(completed.lock().unwrap().is_empty());
        enc.done(&mut out);
        // After the end, nothing more is written.
        let len = out.len();
        enc.chunk(&chunk(json!({"content": "late"}), None), &mut out);
        enc.done(&mut out);
        assert_eq!(out.len(), len);

        let events = events(&out);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (n, (_, e)) in events.iter().enumerate() {
            assert_eq!(e["sequence_number"], n as u64);
        }
        let e = |i: usize| &events[i].1;

        for i in [0, 1] {
            let r = &e(i)["response"];
            assert_eq!(r["id"], "resp_s");
            assert_eq!(r["status"], "in_progress");
            assert_eq!(r["output"], json!([]));
            assert_eq!(r["model"], "gpt-x");
        }
        let msg_id = e(2)["item"]["id"].as_str().unwrap().to_string();
        assert!(msg_id.starts_with("msg_"));
        assert_eq!(e(2)["output_index"], 0);
        assert_eq!(
            e(2)["item"],
            json!({"type": "message", "id": msg_id, "status": "in_progress", "role": "assistant", "content": []})
        );
        assert_eq!(e(3)["part"]["type"], "output_text");
        assert_eq!(e(3)["part"]["text"], "");
        assert_eq!(e(3)["item_id"], msg_id.as_str());
        assert_eq!(e(3)["content_index"], 0);
        assert_eq!(
            e(4),
            &json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": msg_id,
                    "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": []})
        );
        assert_eq!(e(5)["delta"], "lo");
        assert_eq!(e(6)["text"], "Hello");
        assert_eq!(e(7)["part"]["text"], "Hello");
        assert_eq!(e(8)["item"]["status"], "completed");
        assert_eq!(e(8)["item"]["content"][0]["text"], "Hello");

        let fc_a = e(9)["item"]["id"].as_str().unwrap().to_string();
        assert!(fc_a.starts_with("fc_"));
        assert_eq!(e(9)["output_index"], 1);
        assert_eq!(
            e(9)["item"],
            json!({"type": "function_call", "id": fc_a, "call_id": "call_a", "name": "f",
                   "arguments": "", "status": "in_progress"})
        );
        assert_eq!(e(10)["delta"], "{\"x\":");
        assert_eq!(e(10)["item_id"], fc_a.as_str());
        assert_eq!(e(10)["output_index"], 1);
        assert_eq!(e(11)["delta"], "1}");
        assert_eq!(e(12)["arguments"], "{\"x\":1}");
        assert_eq!(e(13)["item"]["arguments"], "{\"x\":1}");
        assert_eq!(e(13)["item"]["status"], "completed");

        assert_eq!(e(14)["output_index"], 2);
        assert_eq!(e(14)["item"]["call_id"], "call_b");
        assert_eq!(e(15)["delta"], "{}");
        assert_eq!(e(16)["arguments"], "{}");
        assert_eq!(e(17)["item"]["name"], "g");

        let r = &e(18)["response"];
        assert_eq!(r["status"], "completed");
        assert_eq!(r["incomplete_details"], Value::Null);
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 7, "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
                   "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 12})
        );
        let output = r["output"].as_array().unwrap();
        assert_eq!(output.len(), 3);
        assert_eq!(output[0], e(8)["item"]);
        assert_eq!(output[1], e(13)["item"]);
        assert_eq!(output[2], e(17)["item"]);

        let completed = completed.lock().unwrap();
        assert_eq!(completed.len(), 1);
        assert_eq!(&completed[0], r);
    }

    #[test]
    fn a_reply_cut_by_length_ends_incomplete() {
        let (mut enc, completed) = encoder();
        let mut out = BytesMut::new();
        enc.chunk(&chunk(json!({"content": "abc"}), None), &mut out);
        enc.chunk(&chunk(json!({}), Some("length")), &mut out);
        enc.done(&mut out);
        let events = events(&out);
        let (name, last) = events.last().unwrap();
        assert_eq!(name, "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        assert_eq!(
            last["response"]["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert_eq!(last["response"]["usage"], Value::Null);
        assert_eq!(completed.lock().unwrap().len(), 1);
    }

    #[test]
    fn an_error_fails_the_response_and_nothing_follows() {
        let (mut enc, completed) = encoder();
        let mut out = BytesMut::new();
        enc.chunk(&chunk(json!({"content": "par"}), None), &mut out);
        let err = ApiError::bad_gateway("upstream broke");
        enc.error(&err, &mut out);
        let len = out.len();
        enc.done(&mut out);
        enc.chunk(&chunk(json!({"content": "more"}), None), &mut out);
        assert_eq!(out.len(), len);

        let events = events(&out);
        let (name, last) = events.last().unwrap();
        assert_eq!(name, "response.failed");
        assert_eq!(last["sequence_number"], events.len() as u64 - 1);
        let r = &last["response"];
        assert_eq!(r["status"], "failed");
        assert_eq!(r["error"]["code"], "upstream_unreachable");
        assert_eq!(r["error"]["message"], "upstream broke");
        assert_eq!(r["error"]["type"], "api_error");
        assert_eq!(r["output"][0]["content"][0]["text"], "par");
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert!(!events.iter().any(|(n, _)| n == "response.completed"));
        assert!(completed.lock().unwrap().is_empty());
    }

    #[test]
    fn an_error_before_any_chunk_still_opens_the_response() {
        let (mut enc, _) = encoder();
        let mut out = BytesMut::new();
        let mut err = ApiError::bad_request("x");
        err.code = None;
        enc.error(&err, &mut out);
        let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.failed"
            ]
        );
        let events = events(&out);
        assert_eq!(events[2].1["response"]["error"]["code"], "server_error");
        assert_eq!(events[0].1["response"]["model"], "alias");
    }

    #[test]
    fn a_refusal_is_its_own_part() {
        let (mut enc, completed) = encoder();
        let mut out = BytesMut::new();
        enc.chunk(&chunk(json!({"content": "I"}), None), &mut out);
        enc.chunk(&chunk(json!({"refusal": "cannot"}), None), &mut out);
        enc.chunk(&chunk(json!({}), Some("stop")), &mut out);
        enc.done(&mut out);
        let names: Vec<String> = events(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names[2..],
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.content_part.added",
                "response.refusal.delta",
                "response.refusal.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let completed = completed.lock().unwrap();
        assert_eq!(
            completed[0]["output"][0]["content"][1],
            json!({"type": "refusal", "refusal": "cannot"})
        );
    }
}
