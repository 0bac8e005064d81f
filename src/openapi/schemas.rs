//! Schemas of responses the gateway relays rather than builds (upstream completions, streams)
//! and of `/health*`, whose handlers build their JSON inline. These types are never
//! constructed; they exist so the documents describe those bodies truthfully. Objects allow
//! extra fields: upstreams add their own.

use crate::wire::Usage;
use serde::Serialize;
use utoipa::ToSchema;

/// A chat completion in OpenAI's shape (relayed from the upstream, or converted to this shape
/// for Anthropic and Gemini).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "chatcmpl-123", "object": "chat.completion", "created": 1700000000, "model": "echo",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                 "logprobs": null, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
}))]
pub struct ChatCompletion {
    pub id: Option<String>,
    /// `chat.completion`
    pub object: String,
    pub created: Option<u64>,
    pub model: Option<String>,
    pub choices: Vec<ChatChoice>,
    pub usage: Option<Usage>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: Option<u32>,
    pub message: Option<AssistantMessage>,
    pub finish_reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AssistantMessage {
    pub role: String,
    /// Text, or `null` when the model called tools.
    pub content: Option<String>,
}

/// A legacy text completion in OpenAI's shape.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "cmpl-123", "object": "text_completion", "created": 1700000000, "model": "echo",
    "choices": [{"index": 0, "text": "Hello", "logprobs": null, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
}))]
pub struct Completion {
    pub id: Option<String>,
    /// `text_completion`
    pub object: String,
    pub created: Option<u64>,
    pub model: Option<String>,
    pub choices: Vec<CompletionChoice>,
    pub usage: Option<Usage>,
}

#[derive(Serialize, ToSchema)]
pub struct CompletionChoice {
    pub index: Option<u32>,
    pub text: Option<String>,
    pub finish_reason: Option<String>,
}

/// Embeddings in OpenAI's shape.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "object": "list", "model": "text-embedding-mock",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}],
    "usage": {"prompt_tokens": 1, "total_tokens": 1}
}))]
pub struct EmbeddingList {
    /// `list`
    pub object: String,
    pub model: Option<String>,
    pub data: Vec<Embedding>,
    pub usage: Option<Usage>,
}

#[derive(Serialize, ToSchema)]
pub struct Embedding {
    /// `embedding`
    pub object: Option<String>,
    pub index: u32,
    /// Floats; a base64 string when the request asked for `encoding_format: base64`.
    pub embedding: serde_json::Value,
}

/// What `/health` answers (503 with `status: degraded` when the store does not answer or
/// cannot write).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "version": "0.1.0", "config_version": 1,
                          "providers": 1, "models": 3, "store": "ok"}))]
pub struct Health {
    /// `ok` or `degraded`
    pub status: String,
    /// The gateway's version.
    pub version: String,
    /// Increases by one with every applied reload.
    pub config_version: u64,
    /// Enabled providers.
    pub providers: u64,
    /// Models served, over all providers.
    pub models: u64,
    /// `ok`, `unwritable` (it reads but cannot write: see `store_error`) or `unavailable`
    pub store: String,
    /// Why the store cannot write (e.g. `no space left on the device`); only when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

/// What `/health/ready` answers (503 with `status: not_ready` when the store does not answer
/// or cannot write, or no provider can serve).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "config_version": 1, "store": "ok"}))]
pub struct Readiness {
    /// `ready` or `not_ready`
    pub status: String,
    pub config_version: u64,
    /// `ok`, `unwritable` (it reads but cannot write: see `store_error`) or `unavailable`
    pub store: String,
    /// Why the store cannot write (e.g. `no space left on the device`); only when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

/// What `/health/live` answers.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

/// One server-sent event of a streamed answer (`stream: true`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"data": "{\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}"}))]
pub struct StreamEvent {
    /// A JSON chunk object (`chat.completion.chunk` or `text_completion`); the last event's
    /// data is `[DONE]`. An error after the stream has started arrives in band as a JSON
    /// error body.
    pub data: String,
    pub event: Option<String>,
    pub id: Option<String>,
}

/// An Anthropic Messages request. The fields the gateway reads are listed; every other field
/// of Anthropic's API is accepted (passed through to Anthropic providers, translated or refused
/// for the others; see README, "Anthropic Messages").
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "mock/echo", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]}))]
pub struct MessagesRequest {
    pub model: String,
    /// Required by `/v1/messages`; not by `count_tokens`.
    pub max_tokens: Option<u64>,
    pub messages: Vec<AnthropicMessage>,
    /// A string, or text blocks.
    pub system: Option<serde_json::Value>,
    pub stream: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct AnthropicMessage {
    /// `user` or `assistant`
    pub role: String,
    /// A string, or content blocks (`text`, `image`, `document`, `tool_use`, `tool_result`,
    /// `thinking`).
    pub content: serde_json::Value,
}

/// An Anthropic message.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "msg_123", "type": "message", "role": "assistant", "model": "echo",
    "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn",
    "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}
}))]
pub struct Message {
    pub id: String,
    /// `message`
    #[serde(rename = "type")]
    pub kind: String,
    pub role: String,
    pub model: String,
    pub content: Vec<serde_json::Value>,
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: serde_json::Value,
}

/// An error in Anthropic's shape, for Messages clients.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}))]
pub struct AnthropicError {
    /// `error`
    #[serde(rename = "type")]
    pub kind: String,
    pub error: AnthropicErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `request_too_large`, `rate_limit_error`, `api_error`, `overloaded_error`
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// `POST /v1/messages/count_tokens`'s answer.
#[derive(Serialize, ToSchema)]
pub struct TokenCount {
    pub input_tokens: u64,
}

/// An OpenAI Responses request. The fields the gateway reads are listed; see README,
/// "OpenAI Responses", for what is translated, kept or refused.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "mock/echo", "input": "Hello", "store": true}))]
pub struct ResponsesRequest {
    pub model: String,
    /// A string, or a list of input items (messages, `function_call`, `function_call_output`).
    pub input: serde_json::Value,
    pub instructions: Option<String>,
    /// Continues the conversation of a stored response made with the same key.
    pub previous_response_id: Option<String>,
    /// Whether to keep the response (default true) for `previous_response_id` and `GET`.
    pub store: Option<bool>,
    pub stream: Option<bool>,
    pub max_output_tokens: Option<u64>,
    /// `function` tools.
    pub tools: Option<Vec<serde_json::Value>>,
}

/// A Responses API response object.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": "resp_123", "object": "response", "created_at": 1700000000, "status": "completed",
    "model": "echo", "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
    "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}],
    "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}
}))]
pub struct ResponseObject {
    pub id: String,
    /// `response`
    pub object: String,
    pub created_at: u64,
    /// `completed`, `incomplete`, `failed`
    pub status: String,
    pub model: String,
    pub output: Vec<serde_json::Value>,
    pub usage: Option<serde_json::Value>,
}

/// What `DELETE /v1/responses/{id}` answers.
#[derive(Serialize, ToSchema)]
pub struct DeletedResponse {
    pub id: String,
    /// `response`
    pub object: String,
    pub deleted: bool,
}

/// `POST /v1/files`' form.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct FileUpload {
    /// The file: JSON lines, each `{"custom_id", "method": "POST", "url", "body"}`.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// `batch`.
    pub purpose: String,
}
