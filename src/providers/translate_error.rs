//! Why a translating adapter (anthropic, gemini) cannot send a request: the field at fault and
//! what is wrong with it.
//!
//! The client gets a 400 before anything goes upstream. Its `param` is the field each variant
//! names, and its message says the same in words and then names the provider, so a client
//! behind a fallback chain knows which provider refused.

use super::ProviderError;
use crate::error_codes::Code;
use crate::wire::Endpoint;
use actix_web::http::StatusCode;
use std::fmt;

/// The upstream API a request is translated for, as refusals name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    AnthropicMessages,
    Gemini,
    GeminiEmbeddings,
}

impl Api {
    /// Who offers it, for "not available from ..." messages.
    fn vendor(self) -> &'static str {
        match self {
            Api::AnthropicMessages => "Anthropic",
            Api::Gemini | Api::GeminiEmbeddings => "Gemini",
        }
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::AnthropicMessages => "the Anthropic Messages API",
            Api::Gemini => "the Gemini API",
            Api::GeminiEmbeddings => "Gemini embeddings",
        })
    }
}

/// A request the target format cannot express. Indexes are positions in the client's request:
/// `message` in `messages`, `part` in a message's `content`, `call` in its `tool_calls`, `tool`
/// in `tools`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TranslateError {
    #[error("parameter `{key}` is not supported by {api}")]
    Unsupported { key: String, api: Api },
    /// Part of a Messages or Responses request that the chat form cannot carry
    /// (`Inbound::untranslated`: `path: what`), for a provider that does not speak that API.
    #[error("{what} cannot be sent to this provider; only a provider that speaks the client's API takes it")]
    Untranslated { what: String },
    #[error("`/v1/{}` is not available from {}; use /v1/chat/completions", .endpoint.path(), .api.vendor())]
    Endpoint { endpoint: Endpoint, api: Api },
    #[error("`{key}` must be a positive integer")]
    NotPositive { key: String },
    #[error("`stop` must be a string or an array of strings")]
    Stop,
    #[error("`tools` must be an array")]
    ToolsNotArray,
    #[error("tools[{tool}]: only `function` tools are supported")]
    ToolNotFunction { tool: usize },
    #[error("tools[{tool}].function.name is required")]
    ToolName { tool: usize },
    #[error("`tool_choice` value `{value}` is not supported")]
    ToolChoiceValue { value: String },
    #[error(
        "`tool_choice` must be a string or {{\"type\":\"function\",\"function\":{{\"name\":...}}}}"
    )]
    ToolChoiceShape,
    #[error("`response_format.json_schema.schema` is required")]
    JsonSchemaMissing,
    #[error("`response_format` type is not supported")]
    ResponseFormat,
    /// An embeddings `input` array with something else than strings in it.
    #[error("`input` must be a string or an array of strings (token arrays are not supported)")]
    InputTokens,
    #[error("`input` must be a string or an array of strings")]
    Input,
    #[error("messages[{message}]: role `{role}` is not supported")]
    Role { message: usize, role: String },
    #[error("messages[{message}].content must be a string or an array")]
    ContentShape { message: usize },
    #[error("messages[{message}]: only text content is supported here")]
    OnlyText { message: usize },
    #[error("messages[{message}].content[{part}]: content part type `{kind}` is not supported")]
    PartType {
        message: usize,
        part: usize,
        kind: String,
    },
    #[error("messages[{message}].content[{part}].image_url.url is required")]
    ImageUrlMissing { message: usize, part: usize },
    #[error(
        "messages[{message}].content[{part}]: images must be base64 `data:` URLs or http(s) URLs"
    )]
    ImageNotDataOrHttp { message: usize, part: usize },
    #[error("messages[{message}].content[{part}]: images must be base64 `data:` URLs")]
    ImageNotData { message: usize, part: usize },
    #[error("messages[{message}].tool_calls[{call}].id is required")]
    ToolCallId { message: usize, call: usize },
    #[error("messages[{message}].tool_calls[{call}].function.name is required")]
    ToolCallName { message: usize, call: usize },
    #[error("messages[{message}].tool_calls[{call}].function.arguments is not valid JSON")]
    ToolCallArgumentsJson { message: usize, call: usize },
    #[error("messages[{message}].tool_calls[{call}].function.arguments must be a JSON object")]
    ToolCallArgumentsObject { message: usize, call: usize },
    #[error("messages[{message}].tool_call_id is required")]
    ToolResultId { message: usize },
    #[error("messages[{message}].tool_call_id `{id}` matches no earlier assistant tool call")]
    ToolResultUnmatched { message: usize, id: String },
}

impl TranslateError {
    /// The request field at fault, as OpenAI's `param` names it; none for a whole endpoint.
    pub fn param(&self) -> Option<String> {
        use TranslateError as E;
        let param = match self {
            E::Endpoint { .. } => return None,
            E::Unsupported { key, .. } | E::NotPositive { key } => key.clone(),
            E::Untranslated { what } => what.split(':').next().unwrap_or(what).to_string(),
            E::Stop => "stop".into(),
            E::ToolsNotArray => "tools".into(),
            E::ToolNotFunction { tool } => format!("tools[{tool}]"),
            E::ToolName { tool } => format!("tools[{tool}].function.name"),
            E::ToolChoiceValue { .. } | E::ToolChoiceShape => "tool_choice".into(),
            E::JsonSchemaMissing => "response_format.json_schema.schema".into(),
            E::ResponseFormat => "response_format".into(),
            E::InputTokens | E::Input => "input".into(),
            E::Role { message, .. } | E::OnlyText { message } => format!("messages[{message}]"),
            E::ContentShape { message } => format!("messages[{message}].content"),
            E::PartType { message, part, .. }
            | E::ImageNotDataOrHttp { message, part }
            | E::ImageNotData { message, part } => format!("messages[{message}].content[{part}]"),
            E::ImageUrlMissing { message, part } => {
                format!("messages[{message}].content[{part}].image_url.url")
            }
            E::ToolCallId { message, call } => format!("messages[{message}].tool_calls[{call}].id"),
            E::ToolCallName { message, call } => {
                format!("messages[{message}].tool_calls[{call}].function.name")
            }
            E::ToolCallArgumentsJson { message, call }
            | E::ToolCallArgumentsObject { message, call } => {
                format!("messages[{message}].tool_calls[{call}].function.arguments")
            }
            E::ToolResultId { message } | E::ToolResultUnmatched { message, .. } => {
                format!("messages[{message}].tool_call_id")
            }
        };
        Some(param)
    }

    /// The 400 the client gets when `provider` cannot take the request: the one place a
    /// translation error becomes a [`ProviderError`] (and from there an `ApiError`).
    pub fn refused_by(self, provider: &str) -> ProviderError {
        ProviderError::Status {
            status: StatusCode::BAD_REQUEST,
            param: self.param(),
            message: format!("{self} (provider `{provider}`)"),
            kind: Some("invalid_request_error".into()),
            code: Some(Code::UnsupportedParameter.as_str().into()),
            retry_after: None,
            headers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_params_name_the_field() {
        use TranslateError as E;
        let cases = [
            (
                E::Unsupported {
                    key: "seed".into(),
                    api: Api::Gemini,
                },
                "parameter `seed` is not supported by the Gemini API",
                Some("seed"),
            ),
            (
                E::Stop,
                "`stop` must be a string or an array of strings",
                Some("stop"),
            ),
            (
                E::Role {
                    message: 2,
                    role: "robot".into(),
                },
                "messages[2]: role `robot` is not supported",
                Some("messages[2]"),
            ),
            (
                E::ImageUrlMissing {
                    message: 0,
                    part: 1,
                },
                "messages[0].content[1].image_url.url is required",
                Some("messages[0].content[1].image_url.url"),
            ),
            (
                E::ToolNotFunction { tool: 3 },
                "tools[3]: only `function` tools are supported",
                Some("tools[3]"),
            ),
            (
                E::ToolChoiceShape,
                r#"`tool_choice` must be a string or {"type":"function","function":{"name":...}}"#,
                Some("tool_choice"),
            ),
            (
                E::ToolResultUnmatched {
                    message: 4,
                    id: "c9".into(),
                },
                "messages[4].tool_call_id `c9` matches no earlier assistant tool call",
                Some("messages[4].tool_call_id"),
            ),
            (
                E::Endpoint {
                    endpoint: Endpoint::Completions,
                    api: Api::Gemini,
                },
                "`/v1/completions` is not available from Gemini; use /v1/chat/completions",
                None,
            ),
        ];
        for (error, message, param) in cases {
            assert_eq!(error.to_string(), message);
            assert_eq!(error.param().as_deref(), param, "{message}");
        }
    }

    #[test]
    fn a_refusal_is_a_400_naming_the_provider_and_the_param() {
        let refused = TranslateError::NotPositive {
            key: "max_tokens".into(),
        }
        .refused_by("claude");
        match refused {
            ProviderError::Status {
                status,
                message,
                param,
                code,
                ..
            } => {
                assert_eq!(status, StatusCode::BAD_REQUEST);
                assert_eq!(
                    message,
                    "`max_tokens` must be a positive integer (provider `claude`)"
                );
                assert_eq!(param.as_deref(), Some("max_tokens"));
                assert_eq!(code.as_deref(), Some(Code::UnsupportedParameter.as_str()));
            }
            other => panic!("{other:?}"),
        }
    }
}
