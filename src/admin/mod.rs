//! The `/admin` API. Every handler takes an `AdminCaller`: no key is 401, a user key is 403.

pub mod config;
pub mod keys;
pub mod policies;
pub mod providers;
pub mod usage;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    config::configure(cfg);
    keys::configure(cfg);
    policies::configure(cfg);
    providers::configure(cfg);
    usage::configure(cfg);
}
