//! Bounds per request that hold whatever the provider kind: a small request must never ask
//! the gateway (or, through it, a provider) for unbounded work.
//!
//! [`check`] runs once, on the parsed request, before policies or any provider see it; each
//! bound exceeded is a 400 (`invalid_request_error`) naming the field in `param` and the bound
//! in the message. What a provider builds itself has bounds of its own (the mock's reply and
//! embeddings, see `providers::mock`), and [`capture_limit`] bounds what a stream keeps for
//! the cache and the request log. The README lists them all under "Bounds per request".

use crate::config::raw::DEFAULT_MAX_RESPONSE_BYTES;
use crate::error::ApiError;
use crate::error_codes::Code;
use crate::providers::embeddings;
use crate::snapshot::Snapshot;
use crate::wire::{RequestBody, Typed};
use serde_json::Value;

/// The most inputs one embeddings request may carry: OpenAI's own limit.
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// The largest `dimensions` an embeddings request may ask for: well above the largest OpenAI
/// and Gemini offer (3072), and small enough that the reply it asks for stays bounded.
pub const MAX_EMBEDDING_DIMENSIONS: u64 = 8192;

/// Refuses a request that asks for more than the bounds allow.
pub fn check(body: &RequestBody) -> Result<(), ApiError> {
    let Typed::Embeddings(req) = body.typed() else {
        return Ok(());
    };
    let inputs = embeddings::inputs(&req.input).len();
    if inputs > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::bad_request(format!(
            "`input` holds {inputs} inputs; at most {MAX_EMBEDDING_INPUTS} are allowed per request"
        ))
        .with_param("input")
        .with_code(Code::TooManyInputs));
    }
    // Any number counts, so `1e300` or `8193.5` cannot slip past as "not an integer".
    if let Some(dimensions) = req.extra.get("dimensions").and_then(Value::as_f64) {
        if dimensions > MAX_EMBEDDING_DIMENSIONS as f64 {
            return Err(ApiError::bad_request(format!(
                "`dimensions` is {}; at most {MAX_EMBEDDING_DIMENSIONS} are allowed",
                req.extra["dimensions"]
            ))
            .with_param("dimensions")
            .with_code(Code::DimensionsTooLarge));
        }
    }
    Ok(())
}

/// The most payload bytes a relayed stream keeps for the cache and the request log: the
/// serving provider's `max_response_bytes`, the bound its non-streamed replies have. A stream
/// past it is still relayed whole, but is neither cached nor logged.
pub fn capture_limit(snapshot: &Snapshot, provider: &str) -> usize {
    snapshot
        .config
        .providers
        .iter()
        .find(|p| p.name == provider)
        .map_or(DEFAULT_MAX_RESPONSE_BYTES, |p| p.max_response_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn embeddings(body: Value) -> RequestBody {
        RequestBody::from(Typed::Embeddings(serde_json::from_value(body).unwrap()))
    }

    fn refusal(body: Value) -> Option<(String, String)> {
        check(&embeddings(body))
            .err()
            .map(|e| (e.param.unwrap(), e.code.unwrap()))
    }

    #[test]
    fn inputs_and_dimensions_are_bounded() {
        let inputs = |n: usize| json!({"model": "m", "input": vec!["x"; n]});
        assert_eq!(refusal(inputs(2048)), None);
        assert_eq!(
            refusal(inputs(2049)),
            Some(("input".into(), "too_many_inputs".into()))
        );
        // One token array is one input, however long.
        assert_eq!(refusal(json!({"model": "m", "input": vec![1; 5000]})), None);
        let dims = |d: Value| json!({"model": "m", "input": "x", "dimensions": d});
        for fine in [
            json!(8192),
            json!(8192.0),
            json!(1),
            json!("9000"),
            Value::Null,
        ] {
            assert_eq!(refusal(dims(fine.clone())), None, "{fine}");
        }
        for over in [json!(8193), json!(8192.5), json!(1e300), json!(u64::MAX)] {
            assert_eq!(
                refusal(dims(over.clone())),
                Some(("dimensions".into(), "dimensions_too_large".into())),
                "{over}"
            );
        }
    }

    #[test]
    fn chat_and_completions_are_not_embeddings() {
        let chat: crate::wire::ChatRequest =
            serde_json::from_value(json!({"model": "m", "messages": [], "dimensions": 1e9}))
                .unwrap();
        assert!(check(&RequestBody::from(Typed::Chat(chat))).is_ok());
    }
}
