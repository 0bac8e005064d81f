//! `${VAR}` and `${VAR:-default}` in provider files, resolved from the environment.
//!
//! A reference to an unset variable is not an error: the value is marked missing, and the
//! provider that needs it is skipped with one log line. That keeps the shipped presets loadable
//! on a machine that has none of their keys.

use serde::de::{Deserialize, Deserializer, Error as _};

/// A malformed `${...}` reference; serde adds the file position and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// The value is not quoted: it may hold a secret (an `api_key` with a stray `${`).
    #[error("unclosed `${{` at byte {at} of the value (not shown: it may hold a secret)")]
    Unclosed { at: usize },
    #[error(
        "`${{{reference}}}` is not a valid variable reference (use ${{NAME}} or ${{NAME:-default}})"
    )]
    BadReference { reference: String },
}

/// A string from a provider file after interpolation.
#[derive(Clone, PartialEq)]
pub struct EnvString {
    /// The resolved text, or `None` when a variable it names is unset.
    pub value: Option<String>,
    /// The unset variables it names, in order.
    pub missing: Vec<String>,
}

impl std::fmt::Debug for EnvString {
    // Values may be secrets; only say whether they resolved.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(_) => f.write_str("EnvString(<resolved>)"),
            None => write!(f, "EnvString(missing {:?})", self.missing),
        }
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        interpolate(&raw, |name| std::env::var(name).ok()).map_err(D::Error::custom)
    }
}

/// Replaces every `${NAME}` / `${NAME:-default}` in `raw` using `lookup`. `$$` is a literal `$`.
pub fn interpolate(
    raw: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<EnvString, EnvError> {
    let mut out = String::with_capacity(raw.len());
    let mut missing = Vec::new();
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body.find('}').ok_or_else(|| EnvError::Unclosed {
            at: raw.len() - body.len() - 2,
        })?;
        let reference = &body[..end];
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(EnvError::BadReference {
                reference: reference.to_string(),
            });
        }
        match (lookup(name).filter(|v| !v.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => missing.push(name.to_string()),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(EnvString {
        value: missing.is_empty().then_some(out),
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn resolves_set_variables_and_defaults() {
        let s = interpolate("a-${SET}-${UNSET:-dflt}-$$-$x", env).unwrap();
        assert_eq!(s.value.as_deref(), Some("a-value-dflt-$-$x"));
        assert!(s.missing.is_empty());
    }

    #[test]
    fn an_empty_variable_counts_as_unset() {
        let s = interpolate("${EMPTY}", env).unwrap();
        assert_eq!(s.value, None);
        assert_eq!(s.missing, vec!["EMPTY".to_string()]);
    }

    #[test]
    fn reports_every_missing_variable() {
        let s = interpolate("${A}/${SET}/${B}", env).unwrap();
        assert_eq!(s.value, None);
        assert_eq!(s.missing, vec!["A".to_string(), "B".to_string()]);
    }

    #[test]
    fn rejects_malformed_references() {
        assert_eq!(
            interpolate("${OPEN", env).unwrap_err().to_string(),
            "unclosed `${` at byte 0 of the value (not shown: it may hold a secret)"
        );
        let leaky = interpolate("sk-live-hunter${", env)
            .unwrap_err()
            .to_string();
        assert!(!leaky.contains("hunter"), "{leaky}");
        assert!(leaky.contains("byte 14"), "{leaky}");
        assert_eq!(
            interpolate("${bad name}", env).unwrap_err().to_string(),
            "`${bad name}` is not a valid variable reference (use ${NAME} or ${NAME:-default})"
        );
    }
}
