//! The running gateway's answer to `ctx.provider(name)` / `ctx.providers()`: health from the
//! router's registry, models and pricing from the snapshot serving now. Built once at start;
//! a request pays for it only when a script asks.

use super::provider_health::{ProviderHealth, Registry};
use crate::config::ProviderConfig;
use crate::policy::facts::{Price, ProviderFacts, ProviderSource};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::sync::Arc;

pub struct LiveProviders {
    pub health: Arc<Registry>,
    pub live: Arc<ArcSwap<Snapshot>>,
}

impl ProviderSource for LiveProviders {
    fn provider(&self, name: &str) -> Option<ProviderFacts> {
        let snapshot = self.live.load();
        let config = snapshot.config.providers.iter().find(|p| p.name == name)?;
        Some(facts(config, &self.health.health(name)))
    }

    fn providers(&self) -> Vec<ProviderFacts> {
        let snapshot = self.live.load();
        let mut all: Vec<ProviderFacts> = self
            .health
            .snapshot(&snapshot)
            .iter()
            .filter_map(|h| {
                let config = snapshot
                    .config
                    .providers
                    .iter()
                    .find(|p| p.name == h.name)?;
                Some(facts(config, h))
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

fn facts(config: &ProviderConfig, health: &ProviderHealth) -> ProviderFacts {
    ProviderFacts {
        name: config.name.clone(),
        kind: config.kind.as_str().to_string(),
        healthy: health.can_serve,
        breaker: match health.breaker {
            super::breaker::BreakerState::Closed => "closed",
            super::breaker::BreakerState::Open => "open",
            super::breaker::BreakerState::HalfOpen => "half_open",
        }
        .to_string(),
        error_rate: health.error_rate,
        latency_ms: health.reply_ewma_ms,
        ttft_ms: health.latency_ewma_ms,
        calls: health.calls,
        failures: health.failures,
        models: config
            .models
            .iter()
            .map(|m| {
                let price = m.pricing.map(|p| Price {
                    input: p.input,
                    output: p.output,
                    cache_read: p.cache_read,
                });
                (m.name.clone(), price)
            })
            .collect(),
    }
}
