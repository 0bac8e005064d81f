//! The API a reply goes back in: what the client spoke. The pipeline's replies are OpenAI's
//! (a chat completion, or its chunks); a Messages or Responses client gets them translated
//! (`inbound/`), errors included. A Responses reply is also saved, for
//! `previous_response_id` and `GET /v1/responses/{id}`.

use super::stored::StoredResponses;
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::inbound::responses::reply::Meta;
use crate::inbound::{messages, responses, OpenAiEncoder, StreamEncoder};
use crate::store::responses::StoredResponse;
use actix_web::HttpResponse;
use bytes::Bytes;
use serde_json::Value;
use std::sync::Arc;

pub enum Shape {
    /// Chat completions, completions, embeddings: as they are.
    OpenAi,
    /// Anthropic Messages.
    Messages,
    /// OpenAI Responses: one turn of a conversation.
    Responses(Arc<Turn>),
}

/// A Responses request in flight: what its response says besides the reply, and where it is
/// saved.
pub struct Turn {
    pub meta: Meta,
    /// The conversation up to and including this request's input, saved with the response.
    pub conversation: Vec<Value>,
    pub key_id: String,
    /// The request's `store` (true unless it said false).
    pub store: bool,
    pub saved: Arc<StoredResponses>,
}

impl Turn {
    /// Saves the finished response, when the request asked for it to be stored.
    fn save(&self, response: &Value) {
        if !self.store {
            return;
        }
        self.saved.save(StoredResponse {
            id: self.meta.id.clone(),
            key_id: self.key_id.clone(),
            created_ms: self.meta.created_at.saturating_mul(1000),
            conversation: self.conversation.clone(),
            response: response.clone(),
        });
    }
}

impl Shape {
    pub fn is_openai(&self) -> bool {
        matches!(self, Shape::OpenAi)
    }

    /// Writes a reply stream in the client's API. `model` names the model that serves.
    pub fn encoder(&self, model: &str, request_id: &str) -> Box<dyn StreamEncoder> {
        match self {
            Shape::OpenAi => Box::new(OpenAiEncoder),
            Shape::Messages => Box::new(messages::stream::MessagesEncoder::new(
                format!("msg_{request_id}"),
                model.to_string(),
            )),
            Shape::Responses(turn) => {
                let saving = turn.clone();
                Box::new(responses::stream::ResponsesEncoder::new(
                    turn.meta.clone(),
                    Some(Box::new(move |response: Value| saving.save(&response))),
                ))
            }
        }
    }

    /// A chat completion body in the client's API; an error when it cannot be read.
    pub fn json(&self, completion: Bytes) -> Result<Bytes, ApiError> {
        let unreadable = |e: serde_json::Error| {
            tracing::warn!(error = %e, "a reply could not be translated");
            ApiError::bad_gateway("the provider's reply could not be translated")
                .with_code(Code::BadUpstreamResponse)
        };
        match self {
            Shape::OpenAi => Ok(completion),
            Shape::Messages => messages::reply::from_chat(&completion)
                .map(|v| Bytes::from(v.to_string()))
                .map_err(unreadable),
            Shape::Responses(turn) => {
                let response =
                    responses::reply::from_chat(&turn.meta, &completion).map_err(unreadable)?;
                turn.save(&response);
                Ok(Bytes::from(response.to_string()))
            }
        }
    }

    /// An error response in the client's API.
    pub fn error(&self, error: &ApiError) -> HttpResponse {
        match self {
            Shape::Messages => error.response_with_body(messages::error::body(error)),
            Shape::OpenAi | Shape::Responses(_) => actix_web::ResponseError::error_response(error),
        }
    }
}
