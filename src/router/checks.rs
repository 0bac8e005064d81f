//! Active health checks: for providers with `health_check`, a cheap probe (`GET
//! {base_url}/{path}`, `models` by default) every interval, fed to the same breaker as real
//! traffic. One background task serves all providers and follows reloads; it ends when the
//! gateway it belongs to is gone.

use super::provider_health::Registry;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How often the task looks for due checks; intervals are rounded up to it.
const TICK: Duration = Duration::from_millis(100);
/// A probe slower than this is a failure, whatever the provider's timeouts.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

pub fn spawn(registry: &Arc<Registry>, live: &Arc<ArcSwap<Snapshot>>) {
    let registry = Arc::downgrade(registry);
    let live = Arc::downgrade(live);
    tokio::spawn(run(registry, live));
}

async fn run(registry: Weak<Registry>, live: Weak<ArcSwap<Snapshot>>) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut version = 0;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (Some(registry), Some(live)) = (registry.upgrade(), live.upgrade()) else {
            return;
        };
        let snapshot = live.load_full();
        if snapshot.version != version {
            version = snapshot.version;
            registry.prune(&snapshot);
            due.retain(|name, _| snapshot.provider(name).is_some());
        }
        let now = Instant::now();
        for config in &snapshot.config.providers {
            let Some(check) = &config.health_check else {
                continue;
            };
            let next = due.entry(config.name.clone()).or_insert(now);
            if *next > now {
                continue;
            }
            *next = now + check.interval;
            let Some(provider) = snapshot.provider(&config.name).cloned() else {
                continue;
            };
            let entry = registry.entry(&config.name);
            let path = check.path.clone();
            let policy = config.breaker;
            let name = config.name.clone();
            // Probes run apart so a hanging upstream never delays the others' checks.
            tokio::spawn(async move {
                let ok = matches!(
                    tokio::time::timeout(PROBE_LIMIT, provider.probe(&path)).await,
                    Ok(Ok(()))
                );
                if !ok {
                    tracing::warn!(provider = %name, "health check failed");
                }
                entry.checked(&policy, ok);
            });
        }
    }
}
