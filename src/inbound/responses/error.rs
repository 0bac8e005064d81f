//! Why a Responses request cannot be translated: the field at fault and what is wrong with it.
//!
//! Every variant names its field as the request spells it (`input[2].content[0]`,
//! `tools[1]`), so the client's 400 carries it as `param`, as OpenAI's own errors do.

use crate::error::ApiError;

/// A Responses request that is malformed, or asks for what this gateway cannot do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("the request body must be a JSON object")]
    NotObject,
    #[error("`{param}` is required")]
    Missing { param: String },
    #[error("`{param}` must be {expected}")]
    Type {
        param: String,
        expected: &'static str,
    },
    #[error("{param}: items of type `{kind}` are not supported through this gateway")]
    ItemType { param: String, kind: String },
    #[error("{param}: content parts of type `{kind}` are not supported")]
    PartType { param: String, kind: String },
    #[error("{param}: role `{role}` is not supported (user, assistant, system or developer)")]
    Role { param: String, role: String },
    #[error("{param}: tools of type `{kind}` are not supported through this gateway (only `function` tools)")]
    ToolType { param: String, kind: String },
    #[error("`{param}` value {value} is not supported")]
    Value { param: String, value: String },
    #[error("`background: true` is not supported through this gateway")]
    Background,
    /// An item of the stored conversation that `previous_response_id` continues (the gateway
    /// wrote it, so this means a stored record it can no longer read).
    #[error("the conversation of `previous_response_id` cannot be continued: {source}")]
    History { source: Box<RequestError> },
}

impl RequestError {
    /// The request field the error names, as OpenAI's `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            RequestError::NotObject => None,
            RequestError::Missing { param }
            | RequestError::Type { param, .. }
            | RequestError::ItemType { param, .. }
            | RequestError::PartType { param, .. }
            | RequestError::Role { param, .. }
            | RequestError::ToolType { param, .. }
            | RequestError::Value { param, .. } => Some(param),
            RequestError::Background => Some("background"),
            RequestError::History { .. } => Some("previous_response_id"),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> ApiError {
        let param = e.param().map(str::to_string);
        let err = ApiError::bad_request(e.to_string());
        match param {
            Some(param) => err.with_param(param),
            None => err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_error_names_the_field() {
        let err = ApiError::from(RequestError::PartType {
            param: "input[2].content[0]".into(),
            kind: "input_audio".into(),
        });
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(err.param.as_deref(), Some("input[2].content[0]"));
        assert!(err.message.contains("input_audio"), "{}", err.message);

        let err = ApiError::from(RequestError::History {
            source: Box::new(RequestError::ItemType {
                param: "conversation[1]".into(),
                kind: "x".into(),
            }),
        });
        assert_eq!(err.param.as_deref(), Some("previous_response_id"));
        assert!(err.message.contains("conversation[1]"), "{}", err.message);

        assert_eq!(ApiError::from(RequestError::NotObject).param, None);
    }
}
