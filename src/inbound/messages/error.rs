//! Errors in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.

use crate::error::ApiError;
use serde_json::json;

/// The error body an Anthropic client expects.
pub fn body(error: &ApiError) -> String {
    json!({"type": "error", "error": {"type": "api_error", "message": error.message}}).to_string()
}
