//! Integration tests: the real server on port 0, real HTTP mock upstreams on 127.0.0.1.
//! One test binary (modules below) keeps link time down.

// Test code: a failed unwrap or assertion is a failed test, which is what it is for
// (clippy.toml allows these in test functions; this covers the helpers around them).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod anthropic_upstream;
mod gemini_upstream;
mod helpers;
mod recorder;
#[path = "../support/redis_server.rs"]
mod redis_server;
mod upstream;
mod webdriver;

mod admin;
mod anthropic;
mod auth;
mod azure;
mod batches;
mod bounds;
mod cli;
mod container;
mod cors;
mod dashboard;
mod dashboard_e2e;
mod dotenv;
mod errors;
mod fleet;
mod full_disk;
mod gemini;
mod governance;
mod health;
mod inbound;
mod inbound_matrix;
mod metrics_access;
mod mirror;
mod mock_provider;
mod models;
mod openapi;
mod otel;
mod output_guard;
mod passthrough;
mod policies;
mod policy_context;
mod policy_editor;
mod process;
mod prompt_cache;
mod reload;
mod resilience;
mod settings_file;
mod streaming;
mod teams;
mod tls;
mod webhooks;
