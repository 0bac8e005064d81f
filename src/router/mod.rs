//! Turning a requested model (or a policy's route list) into the upstream targets to try, and
//! trying them: balancing, retries with backoff, fallback, circuit breakers, health.

pub mod attempts;
pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod checks;
pub mod models;
pub mod plan;
pub mod policy_facts;
pub mod provider_health;
pub mod stream_guard;
pub mod targets;

pub use models::{ModelIndex, Target};
