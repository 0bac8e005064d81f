//! OpenAI wire types: the request bodies the gateway reads, and usage.
//!
//! Only the fields the gateway acts on are typed; everything else is kept in `extra`
//! (`#[serde(flatten)]`) and sent upstream unchanged, so new OpenAI parameters pass through
//! without a release. `model` is never serialised with the rest: it is always rewritten to the
//! upstream id by [`RequestBody::to_upstream_json`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `skip_serializing_if` rather than `skip_serializing` for `model`: both keep it out of the
/// serialised body, but utoipa drops `skip_serializing` fields from the schema entirely, and
/// `model` is the one field every request must carry.
fn always<T>(_: &T) -> bool {
    true
}

/// Which endpoint a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub enum Endpoint {
    #[default]
    #[serde(rename = "chat/completions")]
    Chat,
    #[serde(rename = "completions")]
    Completions,
    #[serde(rename = "embeddings")]
    Embeddings,
}

impl Endpoint {
    /// The path below the provider's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat/completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// A chat completion request. `model` and `messages` are required; every other OpenAI field
/// (`temperature`, `tools`, `stream_options`, ...) is passed upstream unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"model": "mock/echo", "messages": [{"role": "user", "content": "Hello"}], "temperature": 0.2}))]
pub struct ChatRequest {
    /// A model id as `GET /v1/models` lists it (`provider/model`), or a bare model name.
    #[serde(skip_serializing_if = "always")]
    #[schema(required = true)]
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// `true` answers as `text/event-stream` (server-sent events ending in `data: [DONE]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One chat message. Only `role` is typed: content may be a string, an array of parts or null,
/// and tool calls, names and new fields all ride in `rest`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"role": "user", "content": "Hello"}))]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ChatMessage {
    /// The message's text: a string content, or the text parts of an array content joined.
    pub fn text(&self) -> String {
        match self.rest.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        }
    }
}

/// A legacy text completion request; other OpenAI fields pass through unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"model": "mock/echo", "prompt": "Say hello", "max_tokens": 16}))]
pub struct CompletionRequest {
    /// A model id as `GET /v1/models` lists it (`provider/model`), or a bare model name.
    #[serde(skip_serializing_if = "always")]
    #[schema(required = true)]
    pub model: String,
    /// A string, an array of strings, or token arrays.
    pub prompt: Value,
    /// `true` answers as `text/event-stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An embeddings request; other OpenAI fields (`dimensions`, `encoding_format`, ...) pass
/// through unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"model": "mock/text-embedding-mock", "input": "Hello"}))]
pub struct EmbeddingRequest {
    /// A model id as `GET /v1/models` lists it (`provider/model`), or a bare model name.
    #[serde(skip_serializing_if = "always")]
    #[schema(required = true)]
    pub model: String,
    /// A string, an array of strings, or token arrays.
    pub input: Value,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The typed view of a request, one variant per endpoint. Read it through
/// [`RequestBody::typed`]; changes go through `RequestBody`'s methods.
#[derive(Debug, Clone)]
pub enum Typed {
    Chat(ChatRequest),
    Completions(CompletionRequest),
    Embeddings(EmbeddingRequest),
}

/// A parsed request for any of the proxied endpoints. The typed view is read through
/// [`RequestBody::typed`] and changed only through the methods here.
#[derive(Debug, Clone)]
pub struct RequestBody {
    typed: Typed,
}

impl From<Typed> for RequestBody {
    fn from(typed: Typed) -> Self {
        RequestBody { typed }
    }
}

impl From<ChatRequest> for RequestBody {
    fn from(r: ChatRequest) -> Self {
        Typed::Chat(r).into()
    }
}

impl From<CompletionRequest> for RequestBody {
    fn from(r: CompletionRequest) -> Self {
        Typed::Completions(r).into()
    }
}

impl From<EmbeddingRequest> for RequestBody {
    fn from(r: EmbeddingRequest) -> Self {
        Typed::Embeddings(r).into()
    }
}

impl RequestBody {
    /// The typed fields, for reading.
    pub fn typed(&self) -> &Typed {
        &self.typed
    }

    pub fn endpoint(&self) -> Endpoint {
        match &self.typed {
            Typed::Chat(_) => Endpoint::Chat,
            Typed::Completions(_) => Endpoint::Completions,
            Typed::Embeddings(_) => Endpoint::Embeddings,
        }
    }

    pub fn model(&self) -> &str {
        match &self.typed {
            Typed::Chat(r) => &r.model,
            Typed::Completions(r) => &r.model,
            Typed::Embeddings(r) => &r.model,
        }
    }

    pub fn set_model(&mut self, model: String) {
        match &mut self.typed {
            Typed::Chat(r) => r.model = model,
            Typed::Completions(r) => r.model = model,
            Typed::Embeddings(r) => r.model = model,
        }
    }

    pub fn is_stream(&self) -> bool {
        match &self.typed {
            Typed::Chat(r) => r.stream == Some(true),
            Typed::Completions(r) => r.stream == Some(true),
            Typed::Embeddings(_) => false,
        }
    }

    /// The chat messages, for a chat request.
    pub fn messages(&self) -> Option<&[ChatMessage]> {
        match &self.typed {
            Typed::Chat(r) => Some(&r.messages),
            _ => None,
        }
    }

    /// Replaces the chat messages; `false` (and nothing changed) when this is not a chat
    /// request.
    #[must_use]
    pub fn set_messages(&mut self, messages: Vec<ChatMessage>) -> bool {
        let Typed::Chat(chat) = &mut self.typed else {
            return false;
        };
        chat.messages = messages;
        true
    }

    /// The fields the gateway does not type (`temperature`, `tools`, ...), for reading.
    pub fn extra(&self) -> &Map<String, Value> {
        match &self.typed {
            Typed::Chat(r) => &r.extra,
            Typed::Completions(r) => &r.extra,
            Typed::Embeddings(r) => &r.extra,
        }
    }

    fn extra_mut(&mut self) -> &mut Map<String, Value> {
        match &mut self.typed {
            Typed::Chat(r) => &mut r.extra,
            Typed::Completions(r) => &mut r.extra,
            Typed::Embeddings(r) => &mut r.extra,
        }
    }

    /// Sets untyped field `name`.
    pub fn set_param(&mut self, name: &str, value: Value) {
        self.extra_mut().insert(name.to_owned(), value);
    }

    /// Removes untyped field `name`, returning its value; the other fields keep their order.
    pub fn remove_param(&mut self, name: &str) -> Option<Value> {
        self.extra_mut().shift_remove(name)
    }

    /// Replaces all untyped fields.
    pub fn replace_params(&mut self, params: Map<String, Value>) {
        *self.extra_mut() = params;
    }

    /// Did the client ask for a usage chunk at the end of its stream?
    pub fn wants_stream_usage(&self) -> bool {
        self.extra()
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Sets `stream_options.include_usage = true`, keeping any other stream options.
    pub fn request_stream_usage(&mut self) {
        let extra = self.extra_mut();
        let options = extra
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(map) = options {
            map.insert("include_usage".into(), Value::Bool(true));
        }
    }

    /// The whole request as JSON, `model` included.
    pub fn to_json_value(&self) -> Value {
        let model = self.model().to_string();
        self.to_upstream_json(&model)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    }

    /// Parses a request for `endpoint` from JSON.
    pub fn from_json(endpoint: Endpoint, value: Value) -> Result<RequestBody, serde_json::Error> {
        Ok(match endpoint {
            Endpoint::Chat => Typed::Chat(serde_json::from_value(value)?),
            Endpoint::Completions => Typed::Completions(serde_json::from_value(value)?),
            Endpoint::Embeddings => Typed::Embeddings(serde_json::from_value(value)?),
        }
        .into())
    }

    /// The JSON body for upstream, with `model` set to `upstream_model` and every other field as
    /// the client sent it.
    pub fn to_upstream_json(&self, upstream_model: &str) -> Result<Vec<u8>, serde_json::Error> {
        let rest = match &self.typed {
            Typed::Chat(r) => serde_json::to_vec(r)?,
            Typed::Completions(r) => serde_json::to_vec(r)?,
            Typed::Embeddings(r) => serde_json::to_vec(r)?,
        };
        // `rest` is a JSON object without `model` (skipped above); splice `model` in first.
        let mut out = Vec::with_capacity(rest.len() + upstream_model.len() + 16);
        out.extend_from_slice(b"{\"model\":");
        serde_json::to_writer(&mut out, upstream_model)?;
        if rest.len() > 2 {
            out.push(b',');
            out.extend_from_slice(&rest[1..]);
        } else {
            out.push(b'}');
        }
        Ok(out)
    }
}

/// Token counts as OpenAI reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// Reads `usage` out of a response body or stream chunk without parsing the rest into values.
pub fn usage_of(json: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    serde_json::from_slice::<WithUsage>(json).ok()?.usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_round_trip_and_model_is_rewritten() {
        let text = r#"{"model":"alias","messages":[{"role":"user","content":"hi","name":"x"}],"temperature":0.7,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"future_param":{"a":[1,2,3]}}"#;
        let req: ChatRequest = serde_json::from_str(text).unwrap();
        let body = RequestBody::from(req);
        let out: Value =
            serde_json::from_slice(&body.to_upstream_json("real-id").unwrap()).unwrap();
        let mut expected: Value = serde_json::from_str(text).unwrap();
        expected["model"] = Value::String("real-id".into());
        assert_eq!(out, expected);
    }

    #[test]
    fn stream_usage_is_requested_without_losing_other_options() {
        let req: ChatRequest = serde_json::from_str(
            r#"{"model":"m","messages":[],"stream":true,"stream_options":{"other":1}}"#,
        )
        .unwrap();
        let mut body = RequestBody::from(req);
        assert!(!body.wants_stream_usage());
        body.request_stream_usage();
        assert!(body.wants_stream_usage());
        assert_eq!(body.extra()["stream_options"]["other"], 1);
    }

    #[test]
    fn usage_is_read_from_a_chunk() {
        let u = usage_of(br#"{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#);
        assert_eq!(u.map(|u| u.total_tokens), Some(7));
        assert_eq!(
            usage_of(br#"{"choices":[{"delta":{}}],"usage":null}"#),
            None
        );
    }
}
