//! `encoding_format` for the embeddings the gateway builds itself (`kind: gemini` and
//! `kind: mock`; `openai` and `azure` pass the field upstream, which does the encoding), and
//! what counts as one input.
//!
//! OpenAI answers `encoding_format: "base64"` with each vector as one string: its values as
//! float32, little-endian, in standard base64 with padding. The official Python and Node SDKs
//! ask for that by default and decode it back to floats.

use super::ProviderError;
use crate::error_codes::Code;
use crate::wire::EmbeddingRequest;
use actix_web::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

/// The inputs of an embeddings request as OpenAI counts them: each item of an array of
/// strings or of token arrays; a string, or one token array (an array of numbers), is one.
pub fn inputs(input: &Value) -> &[Value] {
    match input {
        Value::Array(items) if items.is_empty() || !items.iter().all(Value::is_number) => items,
        one => std::slice::from_ref(one),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    /// An array of numbers (also when the field is absent or null).
    Float,
    /// A base64 string of float32 little-endian bytes.
    Base64,
}

impl EncodingFormat {
    /// The request's `encoding_format`; any value but `float` or `base64` is a 400 naming the
    /// parameter, as OpenAI answers it.
    pub fn of(req: &EmbeddingRequest, provider: &str) -> Result<Self, ProviderError> {
        match req.extra.get("encoding_format") {
            None | Some(Value::Null) => Ok(EncodingFormat::Float),
            Some(Value::String(s)) if s == "float" => Ok(EncodingFormat::Float),
            Some(Value::String(s)) if s == "base64" => Ok(EncodingFormat::Base64),
            Some(other) => Err(ProviderError::Status {
                status: StatusCode::BAD_REQUEST,
                message: format!(
                    "`encoding_format` must be `float` or `base64`, not {other} (provider `{provider}`)"
                ),
                kind: Some("invalid_request_error".into()),
                code: Some(Code::UnsupportedValue.as_str().into()),
                param: Some("encoding_format".into()),
                retry_after: None,
                headers: Vec::new(),
            }),
        }
    }

    /// One vector as the reply's `embedding` field.
    pub fn encode(self, values: &[f64]) -> Value {
        match self {
            EncodingFormat::Float => Value::from(values.to_vec()),
            EncodingFormat::Base64 => {
                let bytes: Vec<u8> = values
                    .iter()
                    .flat_map(|v| (*v as f32).to_le_bytes())
                    .collect();
                Value::String(STANDARD.encode(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn format_of(body: Value) -> Result<EncodingFormat, ProviderError> {
        let req: EmbeddingRequest = serde_json::from_value(body).unwrap();
        EncodingFormat::of(&req, "p")
    }

    #[test]
    fn absent_null_and_float_are_floats_base64_is_base64_the_rest_a_400() {
        for body in [
            json!({"model": "m", "input": "x"}),
            json!({"model": "m", "input": "x", "encoding_format": null}),
            json!({"model": "m", "input": "x", "encoding_format": "float"}),
        ] {
            assert_eq!(format_of(body).unwrap(), EncodingFormat::Float);
        }
        assert_eq!(
            format_of(json!({"model": "m", "input": "x", "encoding_format": "base64"})).unwrap(),
            EncodingFormat::Base64
        );
        for bad in [json!("int8"), json!(1), json!("BASE64")] {
            match format_of(json!({"model": "m", "input": "x", "encoding_format": bad})) {
                Err(ProviderError::Status {
                    status,
                    param,
                    message,
                    ..
                }) => {
                    assert_eq!(status, 400);
                    assert_eq!(param.as_deref(), Some("encoding_format"));
                    assert!(message.contains("`p`"), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn inputs_are_counted_as_openai_counts_them() {
        let count = |input: Value| inputs(&input).len();
        assert_eq!(count(json!("one")), 1);
        assert_eq!(count(json!([1, 2, 3])), 1, "one token array");
        assert_eq!(count(json!(["a", "b"])), 2);
        assert_eq!(count(json!([[1, 2], [3]])), 2);
        assert_eq!(count(json!([])), 0);
    }

    #[test]
    fn base64_is_float32_little_endian_like_openai() {
        // [1.0, -2.0, 0.5] as float32 LE: 0000803f 000000c0 0000003f.
        assert_eq!(
            EncodingFormat::Base64.encode(&[1.0, -2.0, 0.5]),
            json!("AACAPwAAAMAAAAA/")
        );
        assert_eq!(
            EncodingFormat::Float.encode(&[1.0, -2.0]),
            json!([1.0, -2.0])
        );
        assert_eq!(
            EncodingFormat::Base64.encode(&[1.0]),
            json!("AACAPw=="),
            "padded"
        );
        assert_eq!(EncodingFormat::Base64.encode(&[]), json!(""));
    }
}
