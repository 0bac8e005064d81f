//! Switchboard: a policy-scripted, OpenAI-compatible LLM gateway.
//!
//! `Application::build(settings)` gives a bound server; `main.rs` and the integration tests
//! both start it that way. See ARCHITECTURE.md in the repository for the map of modules and the life of a request.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod batches;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod durable_file;
pub mod error;
pub mod error_codes;
pub mod health;
pub mod healthcheck;
pub mod http;
pub mod inbound;
pub mod ledger_writer;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod policy;
pub mod providers;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod settings;
pub mod settings_file;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod url_credentials;
pub mod webhooks;
pub mod wire;

pub use server::{Application, StartError};
pub use settings::Settings;
