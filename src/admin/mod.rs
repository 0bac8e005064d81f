//! The `/admin` API. Every handler takes an `AdminCaller`: no key is 401, a user key is 403.

pub mod batches;
pub mod config;
pub mod fields;
pub mod keys;
pub mod policies;
pub mod policy_editor;
pub mod providers;
pub mod status;
pub mod teams;
pub mod usage;
pub mod webhooks;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    batches::configure(cfg);
    config::configure(cfg);
    keys::configure(cfg);
    policies::configure(cfg);
    policy_editor::configure(cfg);
    providers::configure(cfg);
    status::configure(cfg);
    teams::configure(cfg);
    usage::configure(cfg);
    webhooks::configure(cfg);
}

/// The answer to a store failure: logged, and answered with a 503 (the store cannot write
/// now) or a 500 that says where to look, never with its cause.
pub(crate) fn store_failed(e: crate::store::StoreError) -> crate::error::ApiError {
    use crate::error::ApiError;
    if e.is_unreachable() {
        tracing::warn!(error = %e, "store call failed");
        ApiError::store_unavailable()
    } else if e.is_storage() {
        // The store's state is in /health/ready and logged once when it changes.
        tracing::warn!(error = %e, "store call failed");
        ApiError::storage_unavailable()
    } else {
        tracing::error!(error = %e, "store call failed");
        ApiError::internal("the store failed; see the gateway log")
    }
}
