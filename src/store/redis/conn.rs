//! One multiplexed connection to Redis, shared by every store, with a bounded time per call.
//!
//! Every call is given `timeout` at most (default 100 ms): a slow or vanished Redis costs a
//! request that long, never more. After a call fails for the connection (refused, reset), or
//! several in a row time out, the connection is marked down and every call fails at once,
//! without waiting, until a background probe gets an answer again: while Redis is gone a
//! request learns it in microseconds, and the connection manager reconnects on its own. One
//! slow answer alone does not mark it down: under load a single call can outlast the timeout.
//!
//! Each thread that calls Redis from inside a runtime gets its own multiplexed connection, made
//! on first use, the way each HTTP worker has its own upstream clients: the connection's driver
//! then runs on the caller's own runtime, and a call never waits for another thread to wake.

use crate::store::error::StoreError;
use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, Pipeline, ScriptInvocation};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The least time given to a call off the request path that carries much.
const SLOW_CALL: Duration = Duration::from_secs(5);
/// Calls in a row that time out before the connection counts as down.
const TIMEOUTS_DOWN: u64 = 3;
/// How often a connection marked down is probed.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// The connection and what is known of its health.
pub struct Redis {
    /// The connection made at start; for callers outside a runtime.
    conn: ConnectionManager,
    /// One connection per calling thread (see the module doc).
    local: thread_local::ThreadLocal<ConnectionManager>,
    config: redis::aio::ConnectionManagerConfig,
    /// Calls in a row that timed out; at [`TIMEOUTS_DOWN`] the connection is marked down.
    timeouts: AtomicU64,
    /// For the pub/sub connection (a subscribed connection can run nothing else).
    pub(super) client: redis::Client,
    prefix: Vec<u8>,
    timeout: Duration,
    down: AtomicBool,
    /// Why it is down, for `/health/ready` (never the URL: it may hold a password).
    cause: Mutex<Option<String>>,
    /// Calls that failed for the connection, and calls refused at once while it was down.
    pub(super) failures: AtomicU64,
    pub(super) refused: AtomicU64,
}

impl Redis {
    /// Connects (once, within `connect_timeout`) and starts the probe.
    pub async fn connect(
        url: &str,
        prefix: &str,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Arc<Redis>, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Backend(format!("bad --redis-url: {}", describe(&e))))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(timeout.max(SLOW_CALL)))
            // Reconnection is retried by the probe, not by the call that found it down.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = tokio::time::timeout(
            connect_timeout,
            ConnectionManager::new_with_config(client.clone(), config.clone()),
        )
        .await
        .map_err(|_| StoreError::Unreachable("redis did not answer in time".into()))?
        .map_err(|e| StoreError::Unreachable(describe(&e)))?;
        let redis = Arc::new(Redis {
            conn,
            local: thread_local::ThreadLocal::new(),
            config,
            timeouts: AtomicU64::new(0),
            client,
            prefix: prefix.as_bytes().to_vec(),
            timeout,
            down: AtomicBool::new(false),
            cause: Mutex::new(None),
            failures: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        tokio::spawn(probe(Arc::downgrade(&redis)));
        Ok(redis)
    }

    /// A key under this fleet's prefix.
    pub fn key(&self, rest: impl AsRef<[u8]>) -> Vec<u8> {
        let rest = rest.as_ref();
        let mut k = Vec::with_capacity(self.prefix.len() + rest.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(rest);
        k
    }

    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The pub/sub channel every instance of the fleet listens on.
    pub fn channel(&self) -> Vec<u8> {
        self.key("events")
    }

    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// Why the connection is down, if it is.
    pub fn cause(&self) -> Option<String> {
        if self.is_up() {
            return None;
        }
        self.cause
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .or_else(|| Some("redis is unreachable".into()))
    }

    pub async fn cmd<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        self.bounded(self.timeout, |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await
    }

    pub async fn pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        self.bounded(self.timeout, |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await
    }

    /// A pipeline off the request path that may carry much (a batch of log entries, a
    /// month of usage): given `SLOW_CALL` at least.
    pub async fn pipe_slow<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        self.bounded(self.timeout.max(SLOW_CALL), |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await
    }

    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.bounded(self.timeout, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// A script off the request path that may carry much (see [`Redis::pipe_slow`]).
    pub async fn script_slow<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.bounded(self.timeout.max(SLOW_CALL), |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// This thread's connection, made on first use inside a runtime; the shared one elsewhere.
    fn connection(&self) -> ConnectionManager {
        if tokio::runtime::Handle::try_current().is_err() {
            return self.conn.clone();
        }
        self.local
            .get_or(|| {
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
                    .unwrap_or_else(|_| self.conn.clone())
            })
            .clone()
    }

    /// Runs a call within `timeout`; refuses at once while the connection is down. A call that
    /// finds this thread's connection broken (Redis restarted since it was last used) is made
    /// once more on the reconnected one, within what is left of the time: each thread's
    /// connection notices a restart on its own, and only a second failure says Redis is gone.
    async fn bounded<T, F>(
        &self,
        timeout: Duration,
        call: impl Fn(ConnectionManager) -> F,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Unreachable(
                self.cause()
                    .unwrap_or_else(|| "redis is unreachable".into()),
            ));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let first = tokio::time::timeout_at(deadline, call(self.connection())).await;
        let answer = match first {
            Ok(Err(e)) if is_connection(&e) => {
                tokio::time::timeout_at(deadline, call(self.connection())).await
            }
            other => other,
        };
        match answer {
            Ok(Ok(value)) => {
                self.timeouts.store(0, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e)) if is_connection(&e) => Err(self.mark_down(describe(&e))),
            Ok(Err(e)) => Err(StoreError::Backend(describe(&e))),
            Err(_) => {
                let cause = format!("redis did not answer within {} ms", timeout.as_millis());
                self.failures.fetch_add(1, Ordering::Relaxed);
                if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_DOWN {
                    return Err(self.mark_down(cause));
                }
                Err(StoreError::Unreachable(cause))
            }
        }
    }

    fn mark_down(&self, cause: String) -> StoreError {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(cause = %cause, "redis is unreachable; limits follow --redis-unavailable until it answers again");
        }
        *self.cause.lock().unwrap_or_else(|p| p.into_inner()) = Some(cause.clone());
        StoreError::Unreachable(cause)
    }

    /// One PING within the timeout, whatever the state: the probe's check.
    async fn ping(&self) -> bool {
        let mut conn = self.connection();
        let call = async move { redis::cmd("PING").query_async::<String>(&mut conn).await };
        matches!(tokio::time::timeout(self.timeout, call).await, Ok(Ok(_)))
    }
}

/// While the connection is down, pings it every [`PROBE_EVERY`] and marks it up when it
/// answers. Ends with the store.
async fn probe(redis: std::sync::Weak<Redis>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(redis) = redis.upgrade() else {
            return;
        };
        if redis.is_up() {
            continue;
        }
        if redis.ping().await {
            redis.timeouts.store(0, Ordering::Relaxed);
            redis.down.store(false, Ordering::Release);
            tracing::info!("redis answers again");
        }
    }
}

/// Whether an error says the connection failed (rather than the command).
fn is_connection(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// An error's text without anything from the URL (redis errors never carry the password, but
/// a parse error could quote the URL, so only its kind is kept then).
fn describe(e: &redis::RedisError) -> String {
    match e.kind() {
        redis::ErrorKind::InvalidClientConfig => {
            "the URL is not a valid redis:// or rediss:// URL".into()
        }
        _ => e.to_string(),
    }
}
