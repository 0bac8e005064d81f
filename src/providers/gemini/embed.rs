//! OpenAI embeddings <-> Gemini `batchEmbedContents`.
//!
//! Gemini reports no token counts for embeddings, so the reply's usage is zero and the gateway
//! records none. Gemini always answers floats; `encoding_format: base64` is done here.

use crate::providers::embeddings::EncodingFormat;
use crate::providers::translate_error::{Api, TranslateError};
use crate::providers::unsupported::Unmapped;
use crate::providers::upstream::UnreadableReply;
use crate::providers::ProviderError;
use crate::wire::EmbeddingRequest;
use serde::Deserialize;
use serde_json::{json, Value};

/// The `batchEmbedContents` body, and how the reply's vectors are to be encoded.
pub fn batch_request(
    req: &EmbeddingRequest,
    model: &str,
    provider: &str,
    unmapped: &mut Unmapped,
) -> Result<(Value, EncodingFormat), ProviderError> {
    let format = EncodingFormat::of(req, provider)?;
    let body = batch(req, model, unmapped).map_err(|e| e.refused_by(provider))?;
    Ok((body, format))
}

fn batch(
    req: &EmbeddingRequest,
    model: &str,
    unmapped: &mut Unmapped,
) -> Result<Value, TranslateError> {
    let texts: Vec<&str> = match &req.input {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<_>>>()
            .ok_or(TranslateError::InputTokens)?,
        _ => return Err(TranslateError::Input),
    };
    let mut dimensions = None;
    for (key, value) in &req.extra {
        match key.as_str() {
            _ if value.is_null() => {}
            "dimensions" => dimensions = Some(value.clone()),
            "encoding_format" => {} // checked by `batch_request`
            "user" => {}
            _ => unmapped.handle(key, Api::GeminiEmbeddings)?,
        }
    }
    let requests: Vec<Value> = texts
        .into_iter()
        .map(|text| {
            let mut r = json!({
                "model": format!("models/{model}"),
                "content": {"parts": [{"text": text}]},
            });
            if let Some(d) = &dimensions {
                r["outputDimensionality"] = d.clone();
            }
            r
        })
        .collect();
    Ok(json!({ "requests": requests }))
}

/// The OpenAI embeddings list from Gemini's `{"embeddings":[{"values":[...]}]}`.
pub fn embedding_list(
    body: &[u8],
    model: &str,
    format: EncodingFormat,
) -> Result<Value, UnreadableReply> {
    #[derive(Deserialize)]
    struct Batch {
        #[serde(default)]
        embeddings: Vec<Embedding>,
    }
    #[derive(Deserialize)]
    struct Embedding {
        values: Vec<f64>,
    }
    let batch: Batch = serde_json::from_slice(body).map_err(|error| UnreadableReply {
        expected: "an embeddings batch",
        error,
    })?;
    let data: Vec<Value> = batch
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(i, e)| json!({"object": "embedding", "index": i, "embedding": format.encode(&e.values)}))
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_list() {
        let req: EmbeddingRequest = serde_json::from_value(
            json!({"model": "e", "input": ["a", "b"], "dimensions": 3, "encoding_format": "float"}),
        )
        .unwrap();
        let (out, format) = batch_request(
            &req,
            "text-embedding-004",
            "gem",
            &mut Unmapped::new(Default::default()),
        )
        .unwrap();
        assert_eq!(format, EncodingFormat::Float);
        assert_eq!(
            out["requests"][1],
            json!({"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 3})
        );
        let batch = br#"{"embeddings":[{"values":[0.1,0.2]},{"values":[1.0,-2.0,0.5]}]}"#;
        let list = embedding_list(batch, "e", EncodingFormat::Float).unwrap();
        assert_eq!(
            list["data"][1],
            json!({"object": "embedding", "index": 1, "embedding": [1.0, -2.0, 0.5]})
        );
        let list = embedding_list(batch, "e", EncodingFormat::Base64).unwrap();
        assert_eq!(
            list["data"][1],
            json!({"object": "embedding", "index": 1, "embedding": "AACAPwAAAMAAAAA/"})
        );
        let req: EmbeddingRequest = serde_json::from_value(
            json!({"model": "e", "input": "a", "encoding_format": "base64"}),
        )
        .unwrap();
        let (out, format) =
            batch_request(&req, "m", "gem", &mut Unmapped::new(Default::default())).unwrap();
        assert_eq!(format, EncodingFormat::Base64);
        assert!(
            out["requests"][0].get("encoding_format").is_none(),
            "not sent to Gemini"
        );
        let req: EmbeddingRequest =
            serde_json::from_value(json!({"model": "e", "input": [[1, 2]]})).unwrap();
        assert!(batch_request(&req, "m", "gem", &mut Unmapped::new(Default::default())).is_err());
    }
}
