//! A Messages request -> its chat completions form.

use crate::error::ApiError;
use serde_json::{Map, Value};

/// A Messages request in the chat form.
#[derive(Debug)]
pub struct Translated {
    /// The chat completions body: `model` as the client sent it, `messages`, the parameters,
    /// `stream` and, when streaming, `stream_options.include_usage`.
    pub chat: Map<String, Value>,
    /// What the chat form cannot carry, each as `path: what`.
    pub untranslated: Vec<String>,
}

/// Translates a Messages request body; a body that is not a valid Messages request is a 400
/// naming the field.
pub fn to_chat(body: &Value) -> Result<Translated, ApiError> {
    let _ = body;
    Err(ApiError::bad_request("not yet translated"))
}
