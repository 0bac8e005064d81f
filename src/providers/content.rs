//! Reading OpenAI message content for adapters whose formats take it apart differently.

use super::translate_error::TranslateError;
use serde_json::Value;

/// A content that may only hold text: a string, or text parts. `i`: the message's index.
pub fn plain_text(content: Option<&Value>, i: usize) -> Result<String, TranslateError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .filter(|_| p.get("type").and_then(Value::as_str) == Some("text"))
                    .ok_or(TranslateError::OnlyText { message: i })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("")),
        Some(_) => Err(TranslateError::ContentShape { message: i }),
    }
}

/// `data:image/png;base64,AAAA` -> (`image/png`, `AAAA`). Only base64 data URLs qualify.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    (!media_type.is_empty()).then_some((media_type, data))
}
