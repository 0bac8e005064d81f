//! Reading OpenAI message content for adapters whose formats take it apart differently.

use serde_json::Value;

/// A content that may only hold text: a string, or text parts.
pub fn plain_text(content: Option<&Value>, i: usize) -> Result<String, String> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                p.get("text")
                    .and_then(Value::as_str)
                    .filter(|_| p.get("type").and_then(Value::as_str) == Some("text"))
                    .ok_or_else(|| format!("messages[{i}]: only text content is supported here"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("")),
        Some(_) => Err(format!(
            "messages[{i}].content must be a string or an array"
        )),
    }
}

/// `data:image/png;base64,AAAA` -> (`image/png`, `AAAA`). Only base64 data URLs qualify.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    (!media_type.is_empty()).then_some((media_type, data))
}
