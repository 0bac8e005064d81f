//! Integration tests: the real server on port 0, real HTTP mock upstreams on 127.0.0.1.
//! One test binary (modules below) keeps link time down.

mod anthropic_upstream;
mod gemini_upstream;
mod helpers;
mod recorder;
mod upstream;
mod webdriver;

mod admin;
mod anthropic;
mod auth;
mod azure;
mod cli;
mod dashboard;
mod dashboard_e2e;
mod errors;
mod full_disk;
mod gemini;
mod health;
mod mock_provider;
mod models;
mod openapi;
mod passthrough;
mod policies;
mod reload;
mod resilience;
mod streaming;
