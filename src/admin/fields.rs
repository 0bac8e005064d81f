//! Checks and shapes of request fields that several admin resources share (keys, teams).

use crate::error::ApiError;
use crate::store::Limits;
use serde::{Deserialize, Deserializer};

/// A name, trimmed: 1 to 100 characters.
pub fn valid_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::bad_request("`name` must be 1 to 100 characters").with_param("name"));
    }
    Ok(name.to_string())
}

/// Limits that can be enforced as given (`Limits::validate`); a 400 naming `limits` otherwise.
pub fn valid_limits(limits: Limits) -> Result<Limits, ApiError> {
    limits
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()).with_param("limits"))?;
    Ok(limits)
}

/// Tells `"field": null` (remove) from an absent field (keep).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
