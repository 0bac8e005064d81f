//! From a policy's route list (or the requested model) to the ordered targets to try.

use super::models::{ModelIndex, Target};
use crate::error::ApiError;

/// The targets in order. Route entries that name no served model are skipped with a warning
/// (a fallback list may name providers that are not configured here); if nothing is left,
/// the request is a 404 naming what was asked for.
pub fn resolve(
    index: &ModelIndex,
    routes: &[String],
    requested: &str,
) -> Result<Vec<Target>, ApiError> {
    if routes.is_empty() {
        return index
            .resolve(requested)
            .cloned()
            .map(|t| vec![t])
            .ok_or_else(|| ApiError::model_not_found(requested));
    }
    let mut targets: Vec<Target> = Vec::with_capacity(routes.len());
    for route in routes {
        match index.resolve(route) {
            Some(t) if !targets.iter().any(|seen| seen.id == t.id) => targets.push(t.clone()),
            Some(_) => {}
            None => tracing::debug!(route = %route, "policy route names no served model; skipped"),
        }
    }
    if targets.is_empty() {
        return Err(ApiError::model_not_found(&routes.join(", ")));
    }
    Ok(targets)
}
