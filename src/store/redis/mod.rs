//! The Redis backend (`--store redis`): every store shared by a fleet of gateways through one
//! Redis (or Valkey). What runs on every request is answered from memory (keys, teams, split
//! assignments: kept current by pub/sub) or costs one round trip (a request's limits, checked
//! and charged by one Lua script); the request log, usage and settlements are written off the
//! request path. Every call is bounded by `--redis-timeout-ms`, and while Redis is away calls
//! fail at once (see `conn.rs`); limits then follow `--redis-unavailable`.

pub mod assignments;
pub mod cache;
pub mod conn;
pub mod counters;
pub mod events;
pub mod keys;
pub mod ledger;
pub mod portable;
pub mod responses;
pub mod teams;

use crate::store::backend::{Backend, Store, StoreKind};
use crate::store::error::{StoreError, What, WriteFailures};
use crate::store::keys::KeyRecord;
use conn::Redis;
pub use counters::Unavailable;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How to reach Redis and what to do without it.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://` or `rediss://`, possibly with a password: never logged.
    pub url: String,
    /// Put before every key, so several fleets can share one Redis.
    pub prefix: String,
    /// The most any call on the request path may take.
    pub timeout: Duration,
    pub unavailable: Unavailable,
}

impl RedisOptions {
    pub const DEFAULT_PREFIX: &'static str = "switchboard:";
    pub const DEFAULT_TIMEOUT_MS: u64 = 100;
}

impl std::fmt::Debug for RedisOptions {
    /// Without the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &"(hidden)")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("unavailable", &self.unavailable)
            .finish()
    }
}

/// How long the first connection may take at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects and opens every store on Redis; `cache_max_entries` bounds the fleet's cache.
pub async fn open(options: &RedisOptions, cache_max_entries: usize) -> Result<Store, StoreError> {
    let redis = Redis::connect(
        &options.url,
        &options.prefix,
        options.timeout,
        CONNECT_TIMEOUT.max(options.timeout),
    )
    .await?;
    let write = Arc::new(redis::Script::new(include_str!("lua/record_write.lua")));
    let keys = keys::RedisKeyStore::open(redis.clone(), write.clone()).await?;
    let teams = teams::RedisTeamStore::open(redis.clone(), write).await?;
    let assignments = assignments::RedisAssignments::open(redis.clone()).await?;
    events::spawn(
        &redis,
        events::Listeners {
            keys: Arc::downgrade(&keys),
            teams: Arc::downgrade(&teams),
            assignments: Arc::downgrade(&assignments),
        },
    );
    let counters = counters::RedisCounters::new(redis.clone(), options.unavailable);
    let portable = Arc::new(portable::RedisPortable {
        redis: redis.clone(),
        keys: keys.clone(),
        teams: teams.clone(),
        assignments: assignments.clone(),
    });
    let ledger = Arc::new(ledger::RedisLedger::new(redis.clone()));
    Ok(Store {
        keys,
        teams,
        counters: counters.clone(),
        assignments,
        cache: Arc::new(cache::RedisCache::new(redis.clone(), cache_max_entries)),
        logs: ledger.clone(),
        usage: ledger.clone(),
        ledger,
        responses: Arc::new(responses::RedisResponses::new(redis.clone())),
        portable,
        backend: Arc::new(RedisBackend {
            redis,
            counters,
            failures: Default::default(),
        }),
    })
}

/// A hash of records (keys, teams) and the `version` field it was read at, in one round trip:
/// what an instance's in-memory copy is reloaded from.
pub(crate) async fn read_versioned(
    redis: &Redis,
    version_field: &str,
    hash: &str,
) -> Result<(u64, HashMap<String, String>), StoreError> {
    let mut pipe = redis::pipe();
    pipe.cmd("HGET")
        .arg(redis.key("version"))
        .arg(version_field)
        .cmd("HGETALL")
        .arg(redis.key(hash));
    let (version, all): (Option<u64>, HashMap<String, String>) = redis.pipe(&pipe).await?;
    Ok((version.unwrap_or(0), all))
}

/// Every key by id, for the few admin answers that need them all.
pub(crate) async fn keys_by_id(redis: &Redis) -> Result<HashMap<String, KeyRecord>, StoreError> {
    let all: HashMap<String, String> = redis
        .cmd(redis::cmd("HGETALL").arg(redis.key("keys")))
        .await?;
    Ok(all
        .into_values()
        .filter_map(|json| serde_json::from_str::<KeyRecord>(&json).ok())
        .map(|k| (k.id.clone(), k))
        .collect())
}

/// What the store as a whole does on Redis: health and metrics. Durability is Redis's own
/// (see README, "Running a fleet": `appendonly yes`).
pub struct RedisBackend {
    redis: Arc<Redis>,
    counters: Arc<counters::RedisCounters>,
    failures: WriteFailures,
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> StoreKind {
        StoreKind::Redis
    }

    async fn flush(&self) -> Result<(), StoreError> {
        match self.redis.cause() {
            Some(cause) => Err(StoreError::Unreachable(cause)),
            None => Ok(()),
        }
    }

    /// What Redis acknowledged is as durable as its persistence makes it.
    async fn sync(&self) -> Result<(), StoreError> {
        self.flush().await
    }

    fn is_healthy(&self) -> bool {
        self.redis.is_up()
    }

    fn write_fault(&self) -> Option<String> {
        self.redis.cause()
    }

    fn check(&self) -> bool {
        self.redis.is_up()
    }

    /// Redis keeps what it acknowledged across reconnections: nothing is written again.
    fn generation(&self) -> u64 {
        0
    }

    fn report(&self, what: What, e: &StoreError) {
        self.failures.count(what);
        tracing::debug!(what = what.name(), error = %e, "a write to redis failed");
    }

    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        self.failures.render(out);
        let _ = writeln!(
            out,
            "# HELP switchboard_redis_up Whether redis answers (1) or not (0).\n\
             # TYPE switchboard_redis_up gauge\n\
             switchboard_redis_up {}\n\
             # HELP switchboard_redis_call_failures_total Redis calls that failed for the connection or timed out.\n\
             # TYPE switchboard_redis_call_failures_total counter\n\
             switchboard_redis_call_failures_total {}\n\
             # HELP switchboard_redis_calls_refused_total Calls refused at once while redis was unreachable.\n\
             # TYPE switchboard_redis_calls_refused_total counter\n\
             switchboard_redis_calls_refused_total {}\n\
             # HELP switchboard_redis_deferred_dropped_total Limit charges of requests admitted while redis was away (--redis-unavailable open) that could not be kept.\n\
             # TYPE switchboard_redis_deferred_dropped_total counter\n\
             switchboard_redis_deferred_dropped_total {}",
            u8::from(self.redis.is_up()),
            self.redis.failures.load(Ordering::Relaxed),
            self.redis.refused.load(Ordering::Relaxed),
            self.counters.deferred_dropped.load(Ordering::Relaxed),
        );
    }
}
