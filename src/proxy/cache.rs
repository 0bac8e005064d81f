//! Exact-match response caching: the key, and replaying an entry as JSON or as SSE (turning a
//! stream into a reply and back is `wire::chunks`).
//!
//! The key covers the endpoint, the resolved targets and the request in canonical form (object
//! keys sorted, `stream` and `stream_options` left out), so a streamed and a plain request for
//! the same thing share one entry: a stream is assembled into a JSON reply when a plain client
//! hits it, and a JSON reply is replayed as chunks to a streaming client.

use crate::router::Target;
use crate::store::CachedReply;
use crate::wire::chunks;
use crate::wire::{Endpoint, RequestBody};
use bytes::Bytes;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Which requests can be cached: chat (both modes), plain completions and embeddings.
pub fn cacheable(body: &RequestBody) -> bool {
    match body.endpoint() {
        Endpoint::Chat | Endpoint::Embeddings => true,
        Endpoint::Completions => !body.is_stream(),
    }
}

/// `provider/model` of the first target, 0x1f, then the hash.
pub fn key(targets: &[Target], body: &RequestBody) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(body.endpoint().path().as_bytes());
    for t in targets {
        h.update([0]);
        h.update(t.id.as_bytes());
    }
    h.update([1]);
    let mut canonical = match body.to_json_value() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    canonical.remove("model");
    canonical.remove("stream");
    canonical.remove("stream_options");
    h.update(canonical_json(&Value::Object(canonical)).as_bytes());
    // A client's own request (Anthropic Messages) may carry what its chat form does not
    // (thinking, documents, `top_k`): such requests share entries only when that is equal too.
    // Entries are kept in the OpenAI form, so any API's client can be answered from them.
    if let Some(native) = body.inbound().and_then(|i| i.native.as_deref()) {
        if let Ok(Value::Object(mut own)) = serde_json::from_slice::<Value>(native) {
            own.remove("model");
            own.remove("stream");
            h.update([2]);
            h.update(canonical_json(&Value::Object(own)).as_bytes());
        }
    }
    let namespace = targets.first().map(|t| t.id.as_bytes()).unwrap_or_default();
    let mut key = Vec::with_capacity(namespace.len() + 33);
    key.extend_from_slice(namespace);
    key.push(0x1f);
    key.extend_from_slice(&h.finalize());
    key
}

/// JSON with object keys sorted at every level, so field order does not split the cache.
fn canonical_json(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The entry as a JSON body for a plain client.
pub fn as_json(entry: &CachedReply) -> Bytes {
    match &entry.body {
        Some(body) => Bytes::from(body.clone()),
        None => Bytes::from(chunks::assemble(&entry.chunks).to_string()),
    }
}

/// The entry as stream payloads for a streaming client.
pub fn as_chunks(entry: &CachedReply, wants_usage: bool) -> Vec<Bytes> {
    let chunks: Vec<String> = if entry.chunks.is_empty() {
        entry
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .map(|v| chunks::explode(&v))
            .unwrap_or_default()
    } else {
        entry.chunks.clone()
    };
    chunks
        .into_iter()
        .filter(|c| wants_usage || !is_usage_only(c))
        .map(Bytes::from)
        .collect()
}

fn is_usage_only(chunk: &str) -> bool {
    serde_json::from_str::<Value>(chunk)
        .map(|v| v["choices"].as_array().is_some_and(|c| c.is_empty()) && v["usage"].is_object())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_field_order_and_stream_flags() {
        let a =
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0,"top_p":1}"#;
        let b = r#"{"top_p":1,"stream":true,"stream_options":{"include_usage":true},"temperature":0,"messages":[{"content":"x","role":"user"}],"model":"m"}"#;
        let c =
            r#"{"model":"m","messages":[{"role":"user","content":"y"}],"temperature":0,"top_p":1}"#;
        // As the proxy builds them (the client's bytes kept), and from values alone.
        let kept = |text: &'static str| {
            let typed = crate::wire::Typed::Chat(serde_json::from_str(text).unwrap());
            key(
                &[],
                &RequestBody::with_original(typed, Bytes::from_static(text.as_bytes())),
            )
        };
        let plain = |text: &str| {
            let chat: crate::wire::ChatRequest = serde_json::from_str(text).unwrap();
            key(&[], &RequestBody::from(chat))
        };
        assert_eq!(kept(a), kept(b));
        assert_ne!(kept(a), kept(c));
        assert_eq!(kept(a), plain(a));
        assert_eq!(plain(a), plain(b));
    }
}
