//! Stage 4, cache lookup: whether this request may read or write the response cache (the
//! policies' `ctx.cache`, the client's `Cache-Control`), and the entry it finds. Keys and
//! replay are in `cache.rs`.

use super::cache;
use crate::policy::Decision;
use crate::router::Target;
use crate::state::AppState;
use crate::store::CachedReply;
use crate::wire::RequestBody;
use actix_web::http::header::{HeaderMap, CACHE_CONTROL};

/// What the client's `Cache-Control` asks of the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Read and write as the policies decided.
    Normal,
    /// `no-cache`: do not answer from the cache, but store the fresh reply.
    Refresh,
    /// `no-store`: neither read nor write.
    NoStore,
}

pub fn control(headers: &HeaderMap) -> Control {
    let mut control = Control::Normal;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            // A directive may carry an argument (`no-cache="field"`); its name is what counts.
            let name = directive.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("no-store") {
                return Control::NoStore;
            }
            if name.eq_ignore_ascii_case("no-cache") {
                control = Control::Refresh;
            }
        }
    }
    control
}

/// What the cache means for one request.
#[derive(Default)]
pub struct Lookup {
    /// Where a fresh reply is stored, and for how long: `(key, ttl_secs)`.
    pub slot: Option<(Vec<u8>, u64)>,
    /// `x-switchboard-cache`: `hit`, `miss`, `refresh` or `bypass`; none without `ctx.cache`.
    pub label: Option<&'static str>,
    /// The entry found, when the request may be answered from the cache.
    pub hit: Option<CachedReply>,
}

pub async fn lookup(
    state: &AppState,
    decision: &Decision,
    targets: &[Target],
    body: &RequestBody,
    headers: &HeaderMap,
) -> Lookup {
    let Some(ttl_secs) = decision.cache_ttl else {
        return Lookup::default();
    };
    let control = control(headers);
    if control == Control::NoStore {
        return Lookup {
            label: Some("bypass"),
            ..Lookup::default()
        };
    }
    if !cache::cacheable(body) {
        return Lookup::default();
    }
    let key = cache::key(targets, body);
    let (hit, label) = match control {
        Control::Refresh => (None, "refresh"),
        _ => match state.store.cache.get(&key, crate::clock::now_secs()).await {
            Ok(Some(hit)) => (Some(hit), "hit"),
            Ok(None) => (None, "miss"),
            // A cache that cannot answer is a miss: the request goes upstream.
            Err(e) => {
                tracing::warn!(error = %e, "cache lookup failed; treated as a miss");
                (None, "miss")
            }
        },
    };
    Lookup {
        slot: Some((key, ttl_secs)),
        label: Some(label),
        hit,
    }
}
