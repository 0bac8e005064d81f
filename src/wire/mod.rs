//! OpenAI wire types: the request bodies the gateway reads, and usage.
//!
//! Only the fields the gateway acts on are typed; everything else is kept in `extra`
//! (`#[serde(flatten)]`) and sent upstream unchanged, so new OpenAI parameters pass through
//! without a release. A body parsed from the client's bytes keeps them, and every top-level
//! field the gateway did not change goes upstream as those bytes (see [`RequestBody`]).
//! `model` is never serialised with the rest: it is always rewritten to the upstream id by
//! [`RequestBody::to_upstream_json`].

use bytes::Bytes;
pub mod chunks;
pub mod estimate;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;
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

/// The API a client spoke. The pipeline works on the OpenAI form of every request (a Messages
/// or Responses request is translated into a chat request on the way in); this says which API
/// the request came in as, and so how its reply and errors go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /v1/messages` (Anthropic Messages)
    Messages,
    /// `POST /v1/responses` (OpenAI Responses)
    Responses,
}

impl Format {
    /// The name scripts (`req.format`), logs and usage use.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::ChatCompletions => "chat_completions",
            Format::Completions => "completions",
            Format::Embeddings => "embeddings",
            Format::Messages => "messages",
            Format::Responses => "responses",
        }
    }
}

/// A request that came in as another API than the internal one: the format, and what the
/// client sent in it, for a provider that speaks that API natively (an Anthropic provider
/// passes a Messages request through byte for byte, the model id aside).
#[derive(Debug, Clone)]
pub struct Inbound {
    pub format: Format,
    /// The client's body as sent, when a provider may pass it through.
    pub native: Option<Bytes>,
    /// Client headers to pass to a native provider (`anthropic-version`, `anthropic-beta`),
    /// lower-case names.
    pub headers: Vec<(String, String)>,
    /// Parts of the client's request that the OpenAI form cannot carry (a path such as
    /// `messages[2].content[0]` and what it is). A native provider does not care; any other
    /// provider refuses the request naming the first, or drops them, as its
    /// `unsupported_params` setting says.
    pub untranslated: Vec<String>,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"role": "user", "content": "Hello"}))]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, ...
    pub role: String,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ChatMessage {
    /// The length in bytes of [`ChatMessage::text`], without building it.
    pub fn text_len(&self) -> usize {
        match self.rest.get("content") {
            Some(Value::String(s)) => s.len(),
            Some(Value::Array(parts)) => {
                let texts = parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str));
                let (count, bytes) = texts.fold((0usize, 0usize), |(n, b), t| (n + 1, b + t.len()));
                bytes + count.saturating_sub(1)
            }
            _ => 0,
        }
    }

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
/// [`RequestBody::typed`]; changes go through `RequestBody`'s methods, which keep track of what
/// changed.
#[derive(Debug, Clone)]
pub enum Typed {
    Chat(ChatRequest),
    Completions(CompletionRequest),
    Embeddings(EmbeddingRequest),
}

/// A parsed request for any of the proxied endpoints.
///
/// A body parsed from the client's bytes ([`RequestBody::with_original`]) keeps those bytes and
/// where each top-level field lies in them, so [`RequestBody::to_upstream_json`] can send every
/// field the gateway did not change exactly as the client wrote it: numbers beyond 64 bits,
/// `1.50`, `1e3` and `\u00e9` survive, which a round trip through `serde_json::Value` would
/// not. Every change therefore goes through a method here that notes the changed field.
#[derive(Debug, Clone)]
pub struct RequestBody {
    typed: Typed,
    /// The client's bytes and their top-level fields; `None` for a request built from values.
    original: Option<Arc<Original>>,
    /// Top-level fields set to a different value, added or removed since parsing, in the order
    /// they first changed. Only kept when there is an original (without one, everything is
    /// encoded from the values anyway). `model` is not tracked: it is always rewritten.
    changed: Vec<String>,
    /// Set when the client spoke another API than this body's own (see [`Inbound`]).
    inbound: Option<Arc<Inbound>>,
}

impl From<Typed> for RequestBody {
    fn from(typed: Typed) -> Self {
        RequestBody {
            typed,
            original: None,
            changed: Vec::new(),
            inbound: None,
        }
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
    /// `typed`, parsed from `bytes`, keeping the bytes so that fields the gateway leaves alone
    /// go upstream as sent. `bytes` must be what `typed` was parsed from. When the top level
    /// cannot be split into fields (it repeats a key, see `scan_fields`), the request is
    /// encoded from its values, as one built with `From` is.
    pub fn with_original(typed: Typed, bytes: Bytes) -> RequestBody {
        let original = scan_fields(&bytes).map(|fields| Arc::new(Original { bytes, fields }));
        RequestBody {
            typed,
            original,
            changed: Vec::new(),
            inbound: None,
        }
    }

    /// Marks this body as the translation of a request in another API.
    pub fn with_inbound(mut self, inbound: Inbound) -> RequestBody {
        self.inbound = Some(Arc::new(inbound));
        self
    }

    /// Which API the client spoke.
    pub fn format(&self) -> Format {
        match (&self.inbound, &self.typed) {
            (Some(inbound), _) => inbound.format,
            (None, Typed::Chat(_)) => Format::ChatCompletions,
            (None, Typed::Completions(_)) => Format::Completions,
            (None, Typed::Embeddings(_)) => Format::Embeddings,
        }
    }

    /// Forgets the client's own bytes, so no provider passes them through: the request goes
    /// in its chat form and the reply comes back in it (what an output guard reads).
    pub fn forget_native(&mut self) {
        if let Some(inbound) = self.inbound.as_mut().filter(|i| i.native.is_some()) {
            Arc::make_mut(inbound).native = None;
        }
    }

    /// What the client sent, when it spoke another API than this body's own.
    pub fn inbound(&self) -> Option<&Inbound> {
        self.inbound.as_deref()
    }

    /// The top-level fields changed since parsing (by policies, bounds, the gateway), `model`
    /// aside.
    pub fn changed_fields(&self) -> &[String] {
        &self.changed
    }

    /// The typed fields, for reading.
    pub fn typed(&self) -> &Typed {
        &self.typed
    }

    /// The size of the bytes this body was parsed from, when they were kept.
    pub fn original_len(&self) -> Option<usize> {
        self.original.as_ref().map(|o| o.bytes.len())
    }

    /// Were the client's bytes kept (and split into fields) for passthrough?
    pub fn keeps_original(&self) -> bool {
        self.original.is_some()
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

    /// Sets the requested model. Not tracked as a change: `model` is always rewritten to the
    /// upstream id on the way out.
    pub fn set_model(&mut self, model: String) {
        match &mut self.typed {
            Typed::Chat(r) => r.model = model,
            Typed::Completions(r) => r.model = model,
            Typed::Embeddings(r) => r.model = model,
        }
    }

    /// Asks for a stream or a whole reply (embeddings have no stream: unchanged).
    pub fn set_stream(&mut self, stream: bool) {
        let value = stream.then_some(true);
        let changed = match &mut self.typed {
            Typed::Chat(r) if r.stream != value => {
                r.stream = value;
                true
            }
            Typed::Completions(r) if r.stream != value => {
                r.stream = value;
                true
            }
            _ => false,
        };
        if changed {
            self.mark_changed("stream");
            if !stream && self.extra_mut().remove("stream_options").is_some() {
                self.mark_changed("stream_options");
            }
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
    /// request. Messages equal to the current ones leave the request as it was.
    #[must_use]
    pub fn set_messages(&mut self, messages: Vec<ChatMessage>) -> bool {
        let Typed::Chat(chat) = &mut self.typed else {
            return false;
        };
        if chat.messages != messages {
            chat.messages = messages;
            self.mark_changed("messages");
        }
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

    /// Private: a change made through this must be noted with `mark_changed`.
    fn extra_mut(&mut self) -> &mut Map<String, Value> {
        match &mut self.typed {
            Typed::Chat(r) => &mut r.extra,
            Typed::Completions(r) => &mut r.extra,
            Typed::Embeddings(r) => &mut r.extra,
        }
    }

    /// Notes that top-level field `name` was changed, added or removed.
    fn mark_changed(&mut self, name: &str) {
        if self.original.is_some() && !self.changed.iter().any(|c| c == name) {
            self.changed.push(name.to_owned());
        }
    }

    /// Sets untyped field `name`. Setting the value it already has changes nothing.
    pub fn set_param(&mut self, name: &str, value: Value) {
        let extra = self.extra_mut();
        match extra.get_mut(name) {
            Some(old) if *old == value => return,
            Some(old) => *old = value,
            None => {
                extra.insert(name.to_owned(), value);
            }
        }
        self.mark_changed(name);
    }

    /// Removes untyped field `name`, returning its value; the other fields keep their order.
    pub fn remove_param(&mut self, name: &str) -> Option<Value> {
        let old = self.extra_mut().shift_remove(name)?;
        self.mark_changed(name);
        Some(old)
    }

    /// Replaces all untyped fields. Only the fields whose value differs, and those added or
    /// removed, count as changed: the rest still go upstream as the client sent them.
    pub fn replace_params(&mut self, params: Map<String, Value>) {
        if self.original.is_some() {
            let old = self.extra();
            let changed: Vec<String> = params
                .iter()
                .filter(|(k, v)| old.get(k.as_str()) != Some(v))
                .map(|(k, _)| k.clone())
                .chain(
                    old.keys()
                        .filter(|k| !params.contains_key(k.as_str()))
                        .cloned(),
                )
                .collect();
            for name in changed {
                self.mark_changed(&name);
            }
        }
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
        if self.wants_stream_usage() {
            return;
        }
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
        self.mark_changed("stream_options");
    }

    /// The whole request as JSON, `model` included.
    pub fn to_json_value(&self) -> Value {
        let model = self.model().to_string();
        self.to_upstream_json(&model)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    }

    /// Parses a request for `endpoint` from JSON. The result has no original bytes: it is
    /// encoded from its values.
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
    ///
    /// With the original bytes kept: `model` first, then the client's fields in their order,
    /// each one the gateway did not change copied byte for byte (its key too), each changed one
    /// encoded from its value (or left out when removed), then the fields the gateway added.
    /// Without them, everything is encoded from the values.
    pub fn to_upstream_json(&self, upstream_model: &str) -> Result<Vec<u8>, serde_json::Error> {
        match &self.original {
            Some(original) => self.splice(original, upstream_model),
            None => self.encode(upstream_model),
        }
    }

    fn encode(&self, upstream_model: &str) -> Result<Vec<u8>, serde_json::Error> {
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

    fn splice(
        &self,
        original: &Original,
        upstream_model: &str,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let bytes = &original.bytes[..];
        let mut out = Vec::with_capacity(bytes.len() + upstream_model.len() + 16);
        out.extend_from_slice(b"{\"model\":");
        serde_json::to_writer(&mut out, upstream_model)?;
        for field in &original.fields {
            let key = field.key(bytes);
            if key == "model" {
                continue;
            }
            if self.changed.iter().any(|c| *c == key) {
                self.write_current(&key, &mut out)?;
            } else {
                out.push(b',');
                out.extend_from_slice(field.raw_key(bytes));
                out.push(b':');
                out.extend_from_slice(field.raw_value(bytes));
            }
        }
        for name in &self.changed {
            if !original
                .fields
                .iter()
                .any(|f| f.key(bytes) == name.as_str())
            {
                self.write_current(name, &mut out)?;
            }
        }
        out.push(b'}');
        Ok(out)
    }

    /// Writes `,"name":value` from the current value of top-level field `name`, or nothing
    /// when the request has no such field (any more).
    fn write_current(&self, name: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        fn write(out: &mut Vec<u8>, name: &str, value: &impl Serialize) -> serde_json::Result<()> {
            out.push(b',');
            serde_json::to_writer(&mut *out, name)?;
            out.push(b':');
            serde_json::to_writer(&mut *out, value)
        }
        match (&self.typed, name) {
            (Typed::Chat(r), "messages") => write(out, name, &r.messages),
            (Typed::Chat(ChatRequest { stream, .. }), "stream")
            | (Typed::Completions(CompletionRequest { stream, .. }), "stream") => match stream {
                Some(stream) => write(out, name, stream),
                None => Ok(()),
            },
            (Typed::Completions(r), "prompt") => write(out, name, &r.prompt),
            (Typed::Embeddings(r), "input") => write(out, name, &r.input),
            _ => match self.extra().get(name) {
                Some(value) => write(out, name, value),
                None => Ok(()),
            },
        }
    }
}

/// `bytes` (a JSON object) with its top-level `model` set to `model` and every other field
/// copied byte for byte; `None` when the top level cannot be split into fields.
pub fn with_model(bytes: &[u8], model: &str) -> Option<Vec<u8>> {
    let fields = scan_fields(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() + model.len() + 16);
    out.extend_from_slice(b"{\"model\":");
    serde_json::to_writer(&mut out, model).ok()?;
    for field in &fields {
        if field.key(bytes) == "model" {
            continue;
        }
        out.push(b',');
        out.extend_from_slice(field.raw_key(bytes));
        out.push(b':');
        out.extend_from_slice(field.raw_value(bytes));
    }
    out.push(b'}');
    Some(out)
}

/// The client's bytes and the top-level fields in them.
#[derive(Debug)]
struct Original {
    bytes: Bytes,
    fields: Vec<FieldSpan>,
}

/// Where one top-level field lies in the original bytes: its key (quotes included) and its
/// value, as byte offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FieldSpan {
    key: (u32, u32),
    value: (u32, u32),
    /// The key contains a `\` escape, so its text is not its name.
    escaped: bool,
}

impl FieldSpan {
    fn raw_key<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.key.0 as usize..self.key.1 as usize]
    }

    fn raw_value<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.value.0 as usize..self.value.1 as usize]
    }

    /// The key's name, escapes decoded.
    fn key<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        let raw = self.raw_key(bytes);
        if self.escaped {
            // A JSON string (the body parsed), so this decodes.
            Cow::Owned(serde_json::from_slice(raw).unwrap_or_default())
        } else {
            // Valid UTF-8 (the body parsed), between the quotes.
            Cow::Borrowed(std::str::from_utf8(&raw[1..raw.len() - 1]).unwrap_or_default())
        }
    }
}

/// The top-level fields of the JSON object in `bytes`, in order, or `None` when `bytes` is not
/// one JSON object, is 4 GiB or more, or repeats a key.
///
/// `bytes` must already have parsed as JSON (the typed parse did, on the same bytes), so the
/// scan only follows the structure: where each key and value begins and ends, skipping over
/// strings and nested brackets, without checking numbers, literals or escapes again. That
/// costs about half as much as a `serde_json` pass that borrows each field as a `RawValue`
/// (which validates everything a second time). Anything unexpected gives `None`, and the
/// request is then encoded from its values.
///
/// Repeated keys get no spans because the gateway's view keeps only the last value of a key
/// while an upstream parser may keep the first, or refuse the body: copying the fields as
/// sent could then forward a value other than the one policies saw and routed on, or carry
/// a stale copy next to one a policy changed. Re-encoding sends each key once, with the
/// value the gateway used.
fn scan_fields(bytes: &[u8]) -> Option<Vec<FieldSpan>> {
    u32::try_from(bytes.len()).ok()?;
    let mut i = skip_whitespace(bytes, 0);
    if bytes.get(i) != Some(&b'{') {
        return None;
    }
    let mut fields = Vec::with_capacity(8);
    i = skip_whitespace(bytes, i + 1);
    if bytes.get(i) != Some(&b'}') {
        loop {
            if bytes.get(i) != Some(&b'"') {
                return None;
            }
            let (key_end, escaped) = string_end(bytes, i)?;
            let key = (i as u32, key_end as u32);
            i = skip_whitespace(bytes, key_end);
            if bytes.get(i) != Some(&b':') {
                return None;
            }
            i = skip_whitespace(bytes, i + 1);
            let value_end = value_end(bytes, i)?;
            fields.push(FieldSpan {
                key,
                value: (i as u32, value_end as u32),
                escaped,
            });
            i = skip_whitespace(bytes, value_end);
            match bytes.get(i)? {
                b',' => i = skip_whitespace(bytes, i + 1),
                b'}' => break,
                _ => return None,
            }
        }
    }
    if skip_whitespace(bytes, i + 1) != bytes.len() {
        return None;
    }
    (!repeats_a_key(bytes, &fields)).then_some(fields)
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(i) {
        i += 1;
    }
    i
}

/// For the string whose opening quote is at `i`: the index after its closing quote, and
/// whether it contains an escape.
fn string_end(bytes: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    i += 1;
    loop {
        match *bytes.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
}

/// For the value starting at `i`: the index after its last byte.
fn value_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    match *bytes.get(i)? {
        b'"' => string_end(bytes, i).map(|(end, _)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            loop {
                match *bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        // A number, `true`, `false` or `null`: up to the next delimiter.
        _ => {
            let start = i;
            while let Some(b) = bytes.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            (i > start).then_some(i)
        }
    }
}

fn repeats_a_key(bytes: &[u8], fields: &[FieldSpan]) -> bool {
    // A handful of fields is the norm: comparing pairs beats hashing. Raw keys without escapes
    // are equal exactly when their names are.
    if fields.len() <= 16 && !fields.iter().any(|f| f.escaped) {
        return fields.iter().enumerate().any(|(i, f)| {
            fields[..i]
                .iter()
                .any(|g| g.raw_key(bytes) == f.raw_key(bytes))
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(fields.len());
    !fields.iter().all(|f| seen.insert(f.key(bytes)))
}

/// Token counts as OpenAI reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Every prompt token, those read from or written to a prompt cache included.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub prompt_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub completion_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub total_tokens: u64,
    /// The prompt tokens a provider's prompt cache served or stored; absent when none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// The part of a prompt a provider's prompt cache concerned, as OpenAI reports it
/// (`cached_tokens`), plus what Anthropic reports as written to its cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the cache (OpenAI `cached_tokens`, Anthropic
    /// `cache_read_input_tokens`, Gemini `cachedContentTokenCount`).
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cached_tokens: u64,
    /// Prompt tokens written to the cache (Anthropic `cache_creation_input_tokens`); not an
    /// OpenAI field, so left out when zero.
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_as_zero"
    )]
    pub cache_write_tokens: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Providers write `null` for a count they do not have; that is 0, not an unreadable usage.
fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

impl Usage {
    /// Usage without any prompt caching.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: None,
        }
    }

    /// Records the cached part of the prompt (`read` from, `written` to the cache; both
    /// already counted in `prompt_tokens`). Zero and zero leaves the details out.
    pub fn with_cache(mut self, read: u64, written: u64) -> Usage {
        self.prompt_tokens_details = (read > 0 || written > 0).then_some(PromptTokensDetails {
            cached_tokens: read,
            cache_write_tokens: written,
        });
        self
    }

    /// Prompt tokens read from a prompt cache.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }

    /// Prompt tokens written to a prompt cache.
    pub fn cache_write_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .map_or(0, |d| d.cache_write_tokens)
    }
}

/// Reads `usage` out of a response body or stream chunk without parsing the rest into values.
/// The `usage` of a parsed reply or chunk (zero when it has none).
pub fn usage_of_value(json: &Value) -> Usage {
    json.get("usage")
        .and_then(|u| serde_json::from_value(u.clone()).ok())
        .unwrap_or_default()
}

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

    /// The fields of `text` as (key, value) texts, or `None` when it gets no spans.
    fn fields(text: &str) -> Option<Vec<(String, String)>> {
        let b = text.as_bytes();
        let fields = scan_fields(b)?;
        Some(
            fields
                .iter()
                .map(|f| {
                    let key = String::from_utf8(f.raw_key(b).to_vec()).unwrap();
                    let value = String::from_utf8(f.raw_value(b).to_vec()).unwrap();
                    (key, value)
                })
                .collect(),
        )
    }

    fn pairs(list: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
        Some(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn scan_finds_each_top_level_field_as_written() {
        assert_eq!(fields("{}"), pairs(&[]));
        assert_eq!(fields(" \n{ \t}\r\n "), pairs(&[]));
        // Whitespace around keys, colons and values is not part of a span.
        assert_eq!(
            fields("{ \"a\" :\t1.50 ,\n  \"b\":\r\n[ 1 , 2 ]  ,\"c\" : null }"),
            pairs(&[("\"a\"", "1.50"), ("\"b\"", "[ 1 , 2 ]"), ("\"c\"", "null")])
        );
        // Nested values are one span each, however deep, with brackets inside strings.
        assert_eq!(
            fields(
                r#"{"a":{"b":{"c":[1,{"d":"}]"}]}},"e":"x\"y\\","n":123456789012345678901234567890,"f":1e3}"#
            ),
            pairs(&[
                ("\"a\"", r#"{"b":{"c":[1,{"d":"}]"}]}}"#),
                ("\"e\"", r#""x\"y\\""#),
                ("\"n\"", "123456789012345678901234567890"),
                ("\"f\"", "1e3"),
            ])
        );
        // An escaped key keeps its text; its name is decoded.
        let text = br#"{"\u0062":"\u00e9"}"#;
        let spans = scan_fields(text).unwrap();
        assert_eq!(spans[0].raw_key(text), br#""\u0062""#);
        assert_eq!(spans[0].key(text), "b");
        assert_eq!(spans[0].raw_value(text), br#""\u00e9""#);
    }

    #[test]
    fn scan_gives_up_on_repeated_keys_and_non_objects() {
        assert_eq!(fields(r#"{"a":1,"b":2,"a":3}"#), None);
        assert_eq!(
            fields(r#"{"a":1,"\u0061":2}"#),
            None,
            "the same name, escaped"
        );
        assert_eq!(fields(r#"{"\u00e9":1,"é":2}"#), None);
        assert!(fields(r#"{"a":1,"\u0062":2}"#).is_some());
        // Past the pairwise comparison's limit.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        assert_eq!(
            fields(&format!("{{{}}}", many.join(","))).unwrap().len(),
            40
        );
        let repeated = format!("{{{},\"k7\":0}}", many.join(","));
        assert_eq!(fields(&repeated), None);
        for text in [
            "[1]",
            "\"x\"",
            "1",
            "",
            "{\"a\":}",
            "{\"a\":1",
            "{\"a\":1} {}",
            "{\"a\":1}x",
        ] {
            assert_eq!(fields(text), None, "{text}");
        }
    }

    #[test]
    fn scan_agrees_with_serde_json_on_tricky_bodies() {
        let bodies = [
            r#"{"a":"}]\"{[","b":["\\",{"c":"\\\""}],"d":{}}"#,
            r#"{"n":-0.5e-3,"t":true,"f":false,"z":null,"e":[],"o":{"":[[]]}}"#,
            "\t{\r\n\"a\"\n:\n[ 1 ,\n2 ]\n,\n\"b\" : \"x\"\n}\n",
            r#"{"\"k\"":1,"\\":2,"\u00e8":"\ud83d\ude00","é":"é"}"#,
            r#"{"deep":[[[[{"a":[{"b":"]"}]}]]]],"after":1}"#,
        ];
        for text in bodies {
            let b = text.as_bytes();
            let spans = scan_fields(b).unwrap_or_else(|| panic!("no spans for {text}"));
            let parsed: Map<String, Value> = serde_json::from_str(text).unwrap();
            assert_eq!(spans.len(), parsed.len(), "{text}");
            for (span, (key, value)) in spans.iter().zip(&parsed) {
                assert_eq!(span.key(b), key.as_str(), "{text}");
                let raw: Value = serde_json::from_slice(span.raw_value(b)).unwrap();
                assert_eq!(&raw, value, "{text}");
            }
        }
    }

    fn kept(text: &str) -> RequestBody {
        let typed = Typed::Chat(serde_json::from_str(text).unwrap());
        let body = RequestBody::with_original(typed, Bytes::copy_from_slice(text.as_bytes()));
        assert!(body.keeps_original());
        body
    }

    fn upstream(body: &RequestBody) -> String {
        String::from_utf8(body.to_upstream_json("real-id").unwrap()).unwrap()
    }

    const SENT: &str = r#"{ "messages": [{"role":"user","content":"a \"quoted\" \u00e9\n","x":{"y":[1.0,2e0]}}],
        "model" : "alias", "temperature": 1.50, "seed":123456789012345678901234567890,
        "max_tokens":1e3, "user":"\u00e9", "stream":false, "tools":[{"type":"function"}] }"#;

    #[test]
    fn untouched_fields_are_copied_byte_for_byte() {
        assert_eq!(
            upstream(&kept(SENT)),
            r#"{"model":"real-id","messages":[{"role":"user","content":"a \"quoted\" \u00e9\n","x":{"y":[1.0,2e0]}}],"temperature":1.50,"seed":123456789012345678901234567890,"max_tokens":1e3,"user":"\u00e9","stream":false,"tools":[{"type":"function"}]}"#
        );
        // Re-encoded from values, the same request loses all of that.
        let typed: ChatRequest = serde_json::from_str(SENT).unwrap();
        let lossy = upstream(&RequestBody::from(typed));
        assert!(
            lossy.contains(r#""seed":1.2345678901234568e+29"#),
            "{lossy}"
        );
        assert!(lossy.contains(r#""temperature":1.5,"#), "{lossy}");
    }

    #[test]
    fn changed_fields_are_encoded_in_place_and_added_ones_last() {
        let mut body = kept(SENT);
        body.set_param("temperature", serde_json::json!(0.2));
        assert!(body.remove_param("user").is_some());
        assert!(body.remove_param("absent").is_none());
        body.set_param("top_p", serde_json::json!(0.9));
        body.set_param("max_tokens", serde_json::json!(1000.0)); // the value it has: unchanged
        body.set_model("other".into());
        assert_eq!(
            upstream(&body),
            r#"{"model":"real-id","messages":[{"role":"user","content":"a \"quoted\" \u00e9\n","x":{"y":[1.0,2e0]}}],"temperature":0.2,"seed":123456789012345678901234567890,"max_tokens":1e3,"stream":false,"tools":[{"type":"function"}],"top_p":0.9}"#
        );
    }

    #[test]
    fn replacing_params_changes_only_the_fields_that_differ() {
        let mut body = kept(SENT);
        let mut params = body.extra().clone();
        params.insert("temperature".into(), serde_json::json!(1.5)); // the same value
        params.insert("tools".into(), serde_json::json!([]));
        params.shift_remove("seed");
        params.insert("n".into(), serde_json::json!(2));
        body.replace_params(params);
        assert_eq!(
            upstream(&body),
            r#"{"model":"real-id","messages":[{"role":"user","content":"a \"quoted\" \u00e9\n","x":{"y":[1.0,2e0]}}],"temperature":1.50,"max_tokens":1e3,"user":"\u00e9","stream":false,"tools":[],"n":2}"#
        );
    }

    #[test]
    fn messages_are_re_encoded_only_when_they_change() {
        let mut body = kept(SENT);
        let same = body.messages().unwrap().to_vec();
        assert!(body.set_messages(same));
        let untouched = upstream(&body);
        assert!(
            untouched.contains(r#""content":"a \"quoted\" \u00e9\n""#),
            "{untouched}"
        );
        assert!(body.set_messages(vec![ChatMessage {
            role: "system".into(),
            rest: Map::from_iter([("content".to_string(), Value::from("é"))]),
        }]));
        assert_eq!(
            upstream(&body),
            r#"{"model":"real-id","messages":[{"role":"system","content":"é"}],"temperature":1.50,"seed":123456789012345678901234567890,"max_tokens":1e3,"user":"\u00e9","stream":false,"tools":[{"type":"function"}]}"#
        );
        let mut embeddings = RequestBody::from(EmbeddingRequest {
            model: "m".into(),
            input: Value::from("x"),
            extra: Map::new(),
        });
        assert!(!embeddings.set_messages(Vec::new()));
    }

    #[test]
    fn stream_usage_is_added_or_merged_and_the_rest_kept() {
        let mut body = kept(r#"{"model":"m","stream":true,"messages":[],"n":1.0}"#);
        body.request_stream_usage();
        assert_eq!(
            upstream(&body),
            r#"{"model":"real-id","stream":true,"messages":[],"n":1.0,"stream_options":{"include_usage":true}}"#
        );
        let mut body =
            kept(r#"{"model":"m","stream_options":{"x":1e0},"stream":true,"messages":[],"n":1.0}"#);
        body.request_stream_usage();
        assert_eq!(
            upstream(&body),
            r#"{"model":"real-id","stream_options":{"x":1.0,"include_usage":true},"stream":true,"messages":[],"n":1.0}"#
        );
        // Asked for already: nothing to change.
        let mut body = kept(
            r#"{"model":"m","stream_options":{"include_usage":true },"stream":true,"messages":[]}"#,
        );
        body.request_stream_usage();
        assert!(upstream(&body).contains(r#""stream_options":{"include_usage":true }"#));
    }

    #[test]
    fn repeated_keys_and_escaped_model_keys() {
        // A repeated key: no spans, so the body is encoded from the values (the last one wins).
        let text = r#"{"model":"m","messages":[],"n":1,"n":2.50}"#;
        let typed = Typed::Chat(serde_json::from_str(text).unwrap());
        let body = RequestBody::with_original(typed, Bytes::from_static(text.as_bytes()));
        assert!(!body.keeps_original());
        assert_eq!(
            upstream(&body),
            r#"{"model":"real-id","messages":[],"n":2.5}"#
        );
        // `model` spelled with an escape is still the model, and still replaced.
        assert_eq!(
            upstream(&kept(r#"{"mod\u0065l":"m","messages":[]}"#)),
            r#"{"model":"real-id","messages":[]}"#
        );
    }

    #[test]
    fn completions_and_embeddings_keep_their_fields_too() {
        let text = r#"{"model":"m","prompt":[[1, 2]],"suffix":"\u00e9","stream":null}"#;
        let typed = Typed::Completions(serde_json::from_str(text).unwrap());
        let body = RequestBody::with_original(typed, Bytes::from_static(text.as_bytes()));
        assert_eq!(
            upstream(&body),
            r#"{"model":"real-id","prompt":[[1, 2]],"suffix":"\u00e9","stream":null}"#
        );
        let text = r#"{"input":"\u00e9","dimensions":3e2,"model":"m"}"#;
        let typed = Typed::Embeddings(serde_json::from_str(text).unwrap());
        let body = RequestBody::with_original(typed, Bytes::from_static(text.as_bytes()));
        assert_eq!(
            upstream(&body),
            r#"{"model":"real-id","input":"\u00e9","dimensions":3e2}"#
        );
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
