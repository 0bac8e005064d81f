//! Turning a requested model into the upstream target that serves it.
//!
//! Later this module also owns balancing, retries, fallbacks and breakers; for now a request
//! resolves to exactly one target.

pub mod models;

pub use models::{ModelIndex, Target};
