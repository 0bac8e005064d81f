//! A Responses request -> its chat completions form.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// A Responses request in the chat form.
#[derive(Debug)]
pub struct Translated {
    /// The chat completions body: `model` as the client sent it, `messages` (the history's,
    /// then the instructions as a system message first, then this input), the parameters,
    /// `stream` and, when streaming, `stream_options.include_usage`.
    pub chat: Map<String, Value>,
    /// This request's `input` as a list of items (a string input becomes one user message
    /// item): what a stored response keeps so a later request can continue from it.
    pub input_items: Vec<Value>,
    /// What the chat form cannot carry, each as `path: what`.
    pub untranslated: Vec<String>,
}

/// Translates a Responses request body. `history` is the conversation of its
/// `previous_response_id` (its items in order, the earlier outputs included), empty without one.
pub fn to_chat(body: &Value, history: &[Value]) -> Result<Translated, ApiError> {
    let _ = (body, history);
    Err(ApiError::bad_request("not yet translated"))
}
