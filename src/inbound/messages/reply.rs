//! A chat completion -> an Anthropic message.

use serde_json::Value;

/// The Anthropic message for an OpenAI `chat.completion` body.
pub fn from_chat(completion: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice(completion)
}
