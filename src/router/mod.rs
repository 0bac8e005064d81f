//! Turning a requested model (or a policy's route list) into the upstream targets to try.

pub mod models;
pub mod targets;

pub use models::{ModelIndex, Target};
