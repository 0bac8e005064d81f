//! What scripts may know about providers (`ctx.provider(name)`, `ctx.providers()`): each
//! one's health as the router sees it and each model's pricing, read from memory when a script
//! asks. The live source (the router's health registry and the loaded config) implements
//! [`ProviderSource`] in `router::policy_facts`; `switchboard policy test` fixtures describe
//! providers inline.

use rhai::Dynamic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One provider as a script sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFacts {
    pub name: String,
    /// `openai`, `anthropic`, `gemini`, `azure`, `mock`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// False while the breaker is open: the router skips it.
    #[serde(default = "yes")]
    pub healthy: bool,
    /// `closed`, `open` or `half_open`.
    #[serde(default = "closed")]
    pub breaker: String,
    /// Failed share of the calls in the breaker's window, 0..1.
    #[serde(default)]
    pub error_rate: f64,
    /// Average (EWMA) time of a whole successful reply (a stream: to its end), in
    /// milliseconds. `()` before the first.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// Average (EWMA) time to the first byte of successful calls, in milliseconds: for a
    /// stream, its time to first token. `()` before the first call.
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    /// Calls and failures since start.
    #[serde(default)]
    pub calls: u64,
    #[serde(default)]
    pub failures: u64,
    /// Each model the provider serves (its name after `provider/`) with its price per million
    /// tokens, or `()` when the provider file gives none.
    #[serde(default)]
    pub models: BTreeMap<String, Option<Price>>,
}

/// A model's price, as in its provider file: US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens read from the provider's prompt cache (default: `input`).
    #[serde(default)]
    pub cache_read: Option<f64>,
}

fn default_kind() -> String {
    "mock".to_string()
}
fn yes() -> bool {
    true
}
fn closed() -> String {
    "closed".to_string()
}

impl ProviderFacts {
    /// As a Rhai map (absent values as `()`).
    pub fn to_dynamic(&self) -> Dynamic {
        rhai::serde::to_dynamic(self).unwrap_or(Dynamic::UNIT)
    }
}

/// Where the facts come from: the running gateway, or a fixture.
pub trait ProviderSource: Send + Sync {
    fn provider(&self, name: &str) -> Option<ProviderFacts>;
    /// Every provider serving, in name order.
    fn providers(&self) -> Vec<ProviderFacts>;
}

/// Facts given as a list (fixtures).
pub struct FixedProviders(pub Vec<ProviderFacts>);

impl ProviderSource for FixedProviders {
    fn provider(&self, name: &str) -> Option<ProviderFacts> {
        self.0.iter().find(|p| p.name == name).cloned()
    }

    fn providers(&self) -> Vec<ProviderFacts> {
        let mut all = self.0.clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}
