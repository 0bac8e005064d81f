//! `req` as scripts see it: a handle on the parsed request.
//!
//! Fields are converted to Rhai values only when a script reads them, so a policy that looks at
//! `req.model` alone pays nothing for a long conversation. Setters write back into the request
//! that is sent upstream (`req.params.temperature = 0.2` works: rhai feeds a modified property
//! back through its setter).

use crate::store::KeyRecord;
use crate::wire::{ChatMessage, RequestBody};
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position};
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};

struct Inner {
    body: Option<RequestBody>,
    key: Arc<KeyRecord>,
    headers: Vec<(String, String)>,
    client_ip: Option<std::net::IpAddr>,
    batch_id: Option<Arc<str>>,
}

/// Cloning shares the request: the copy a script function receives is the caller's request.
#[derive(Clone)]
pub struct ScriptRequest(Arc<Mutex<Inner>>);

type Res<T> = Result<T, Box<EvalAltResult>>;

fn script_err(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        Dynamic::from(message.into()),
        Position::NONE,
    ))
}

impl ScriptRequest {
    /// `headers` must already be lower-cased and free of credentials.
    /// `client_ip`: what `req.client_ip` reports.
    pub fn new(
        body: RequestBody,
        key: Arc<KeyRecord>,
        headers: Vec<(String, String)>,
        client_ip: Option<std::net::IpAddr>,
        batch_id: Option<Arc<str>>,
    ) -> Self {
        ScriptRequest(Arc::new(Mutex::new(Inner {
            body: Some(body),
            key,
            headers,
            client_ip,
            batch_id,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The (possibly rewritten) request, once the scripts are done.
    pub fn take_body(&self) -> Option<RequestBody> {
        self.lock().body.take()
    }

    fn with_body<T>(&self, f: impl FnOnce(&mut RequestBody) -> Res<T>) -> Res<T> {
        let mut inner = self.lock();
        match inner.body.as_mut() {
            Some(body) => f(body),
            None => Err(script_err("the request is no longer available")),
        }
    }

    fn model(&mut self) -> Res<ImmutableString> {
        self.with_body(|b| Ok(b.model().into()))
    }

    fn set_model(&mut self, model: ImmutableString) -> Res<()> {
        self.with_body(|b| {
            b.set_model(model.to_string());
            Ok(())
        })
    }

    fn stream(&mut self) -> Res<bool> {
        self.with_body(|b| Ok(b.is_stream()))
    }

    fn endpoint(&mut self) -> Res<ImmutableString> {
        self.with_body(|b| Ok(b.endpoint().path().into()))
    }

    /// The API the client spoke: `chat_completions`, `completions`, `embeddings`, `messages`
    /// or `responses` (a Messages or Responses request is seen in its chat form, `endpoint`
    /// `chat/completions`).
    fn format(&mut self) -> Res<ImmutableString> {
        self.with_body(|b| Ok(b.format().as_str().into()))
    }

    fn messages(&mut self) -> Res<Dynamic> {
        self.with_body(|b| match b.messages() {
            Some(messages) => rhai::serde::to_dynamic(messages),
            None => Ok(Dynamic::from(Array::new())),
        })
    }

    fn set_messages(&mut self, messages: Dynamic) -> Res<()> {
        let parsed: Vec<ChatMessage> = rhai::serde::from_dynamic(&messages).map_err(|e| {
            script_err(format!(
                "req.messages must be an array of maps with a `role`: {e}"
            ))
        })?;
        self.with_body(|b| {
            if b.set_messages(parsed) {
                Ok(())
            } else {
                Err(script_err("req.messages can only be set on chat requests"))
            }
        })
    }

    /// Cheaper than `req.messages.len()`: nothing is converted.
    fn message_count(&mut self) -> Res<i64> {
        self.with_body(|b| Ok(b.messages().map_or(0, |m| m.len() as i64)))
    }

    /// A view on the request's other fields: reading `req.params.temperature` converts that
    /// one value, not the whole map.
    fn params(&mut self) -> ScriptParams {
        ScriptParams(self.clone())
    }

    fn set_params(&mut self, params: Map) -> Res<()> {
        let parsed: serde_json::Map<String, Value> =
            rhai::serde::from_dynamic(&Dynamic::from(params))
                .map_err(|e| script_err(format!("req.params must be a map: {e}")))?;
        self.with_body(|b| {
            b.replace_params(parsed);
            Ok(())
        })
    }

    /// Rhai writes a modified property back through its setter (`req.params.x = 1`); the view
    /// already wrote into the request, so there is nothing left to do.
    fn set_params_view(&mut self, _view: ScriptParams) {}

    fn user(&mut self) -> Res<Dynamic> {
        self.with_body(|b| {
            Ok(match b.extra().get("user") {
                Some(Value::String(s)) => Dynamic::from(s.clone()),
                _ => Dynamic::UNIT,
            })
        })
    }

    /// The client's address as text, or `()` when unknown (a request not from the network).
    fn client_ip(&mut self) -> Dynamic {
        self.lock()
            .client_ip
            .map_or(Dynamic::UNIT, |ip| Dynamic::from(ip.to_string()))
    }

    /// The batch that sent the request (`batch_...`), or `()` for a live request.
    fn batch_id(&mut self) -> Dynamic {
        self.lock()
            .batch_id
            .as_deref()
            .map_or(Dynamic::UNIT, |id| Dynamic::from(id.to_string()))
    }

    /// The request's text as a user would read it, whatever API it came in: the text of every
    /// message (parts' `text`; images and audio skipped), one message a line, or the prompt of
    /// a completion, or the input of an embedding.
    fn text(&mut self) -> Res<String> {
        self.with_body(|b| Ok(request_text(b, None)))
    }

    /// As `text()`, only the messages of this role (`user`, `system`, `assistant`, `tool`).
    fn text_of(&mut self, role: ImmutableString) -> Res<String> {
        self.with_body(|b| Ok(request_text(b, Some(role.as_str()))))
    }

    /// The prompt's tokens as the gateway estimates them (what budgets reserve).
    fn estimated_tokens(&mut self) -> Res<i64> {
        self.with_body(|b| Ok(crate::wire::estimate::prompt_tokens(b) as i64))
    }

    fn headers(&mut self) -> Map {
        self.lock()
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
            .collect()
    }

    fn key(&mut self) -> ScriptKey {
        ScriptKey(self.lock().key.clone())
    }

    pub fn register(engine: &mut Engine) {
        engine
            .register_type_with_name::<ScriptRequest>("Request")
            .register_get_set("model", Self::model, Self::set_model)
            .register_get("stream", Self::stream)
            .register_get("endpoint", Self::endpoint)
            .register_get("format", Self::format)
            .register_get_set("messages", Self::messages, Self::set_messages)
            .register_get("message_count", Self::message_count)
            .register_get("params", Self::params)
            .register_set("params", Self::set_params)
            .register_set("params", Self::set_params_view)
            .register_get("user", Self::user)
            .register_get("headers", Self::headers)
            .register_get("client_ip", Self::client_ip)
            .register_get("batch_id", Self::batch_id)
            .register_get("estimated_tokens", Self::estimated_tokens)
            .register_fn("text", Self::text)
            .register_fn("text", Self::text_of)
            .register_get("key", Self::key);
        ScriptKey::register(engine);
        ScriptParams::register(engine);
    }
}

/// The text of a request (see `req.text()`).
fn request_text(body: &RequestBody, role: Option<&str>) -> String {
    fn strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    match body.typed() {
        crate::wire::Typed::Chat(chat) => chat
            .messages
            .iter()
            .filter(|m| role.is_none_or(|r| m.role == r))
            .map(|m| m.text())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        crate::wire::Typed::Completions(c) if role.is_none_or(|r| r == "user") => {
            let mut out = Vec::new();
            strings(&c.prompt, &mut out);
            out.join("\n")
        }
        crate::wire::Typed::Embeddings(e) if role.is_none_or(|r| r == "user") => {
            let mut out = Vec::new();
            strings(&e.input, &mut out);
            out.join("\n")
        }
        _ => String::new(),
    }
}

/// `req.params`: behaves like a map of the body's other fields (read and write by name, `in`,
/// `keys()`, `len()`, `to_map()`), but converts only what a script touches.
#[derive(Clone)]
pub struct ScriptParams(ScriptRequest);

impl ScriptParams {
    fn get(&mut self, name: &str) -> Res<Dynamic> {
        self.0.with_body(|b| match b.extra().get(name) {
            Some(value) => rhai::serde::to_dynamic(value),
            None => Ok(Dynamic::UNIT),
        })
    }

    fn set(&mut self, name: &str, value: Dynamic) -> Res<()> {
        let value: Value = rhai::serde::from_dynamic(&value)
            .map_err(|e| script_err(format!("req.params.{name} cannot be sent as JSON: {e}")))?;
        self.0.with_body(|b| {
            b.set_param(name, value);
            Ok(())
        })
    }

    fn contains(&mut self, name: &str) -> Res<bool> {
        self.0.with_body(|b| Ok(b.extra().contains_key(name)))
    }

    fn remove(&mut self, name: &str) -> Res<Dynamic> {
        self.0.with_body(|b| match b.remove_param(name) {
            Some(old) => rhai::serde::to_dynamic(&old),
            None => Ok(Dynamic::UNIT),
        })
    }

    fn keys(&mut self) -> Res<Array> {
        self.0
            .with_body(|b| Ok(b.extra().keys().map(|k| Dynamic::from(k.clone())).collect()))
    }

    fn len(&mut self) -> Res<i64> {
        self.0.with_body(|b| Ok(b.extra().len() as i64))
    }

    fn whole_map(&mut self) -> Res<Dynamic> {
        self.0.with_body(|b| rhai::serde::to_dynamic(b.extra()))
    }

    fn register(engine: &mut Engine) {
        engine
            .register_type_with_name::<ScriptParams>("Params")
            .register_indexer_get_set(Self::get, Self::set)
            .register_fn("contains", Self::contains)
            .register_fn("remove", Self::remove)
            .register_fn("keys", Self::keys)
            .register_fn("len", Self::len)
            .register_fn("to_map", Self::whole_map);
        // `req.params.x` first looks for a getter named `x`; when there is none, rhai builds an
        // error message (type names, formatting) and only then falls back to the indexer. That
        // costs more than the read itself, so the fields scripts commonly touch get real
        // getters and setters; any other name still works through the indexer.
        for &name in KNOWN_PARAMS {
            engine.register_get_set(
                name,
                move |p: &mut ScriptParams| p.get(name),
                move |p: &mut ScriptParams, value: Dynamic| p.set(name, value),
            );
        }
    }
}

/// Request fields with a direct accessor on `req.params` (see `ScriptParams::register`).
const KNOWN_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "stream_options",
    "metadata",
    "store",
    "reasoning_effort",
    "service_tier",
    "modalities",
    "suffix",
    "echo",
    "best_of",
    "encoding_format",
    "dimensions",
];

/// `req.key`: read-only, and cheap to reach: fields are read on demand, no map is built.
#[derive(Clone)]
pub struct ScriptKey(Arc<KeyRecord>);

impl ScriptKey {
    fn id(&mut self) -> ImmutableString {
        self.0.id.as_str().into()
    }

    fn name(&mut self) -> ImmutableString {
        self.0.name.as_str().into()
    }

    fn role(&mut self) -> ImmutableString {
        match self.0.role {
            crate::store::Role::Admin => "admin".into(),
            crate::store::Role::User => "user".into(),
        }
    }

    fn tags(&mut self) -> Map {
        self.0
            .tags
            .iter()
            .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
            .collect()
    }

    fn register(engine: &mut Engine) {
        engine
            .register_type_with_name::<ScriptKey>("Key")
            .register_get("id", Self::id)
            .register_get("name", Self::name)
            .register_get("role", Self::role)
            .register_get("tags", Self::tags);
    }
}
