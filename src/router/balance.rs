//! Ordering the targets of equal rank (a policy's balanced pool) for one request: round robin,
//! smooth weighted round robin, or lowest latency first. The first in the order is the pick;
//! the rest are tried after it, before the pool's fallbacks.

use serde::Serialize;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

/// Pools remembered at most; beyond this a shard's state is dropped and rebuilt (it only
/// affects fairness for a moment, never correctness).
const MAX_POOLS: usize = 1024;

/// The pools' state is split into shards by pool, each behind its own mutex, so requests
/// balanced over different pools never wait for each other.
const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    RoundRobin,
    Weighted,
    Latency,
}

impl Strategy {
    pub fn parse(name: &str) -> Option<Strategy> {
        match name {
            "round_robin" => Some(Strategy::RoundRobin),
            "weighted" => Some(Strategy::Weighted),
            "latency" => Some(Strategy::Latency),
            _ => None,
        }
    }
}

#[derive(Default)]
struct PoolState {
    turn: u64,
    /// Smooth weighted round robin credits, one per member.
    credit: Vec<i64>,
}

/// Per-pool balancing state, keyed by the pool's members and strategy.
pub struct Pools {
    shards: Box<[Mutex<HashMap<u64, PoolState>>]>,
}

impl Default for Pools {
    fn default() -> Self {
        Pools {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Pools {
    /// The order in which to try `members` (their ids), as indices into it.
    /// `weights` are used by `Weighted`; `latency` (ms, `None` when unknown) by `Latency`.
    pub fn order(
        &self,
        strategy: Strategy,
        members: &[&str],
        weights: &[u32],
        latency: impl Fn(usize) -> Option<f64>,
    ) -> Vec<usize> {
        self.order_with(strategy, members, weights, latency, true)
    }

    /// The order the next request would get, without taking its turn (a simulation).
    pub fn peek_order(
        &self,
        strategy: Strategy,
        members: &[&str],
        weights: &[u32],
        latency: impl Fn(usize) -> Option<f64>,
    ) -> Vec<usize> {
        self.order_with(strategy, members, weights, latency, false)
    }

    fn order_with(
        &self,
        strategy: Strategy,
        members: &[&str],
        weights: &[u32],
        latency: impl Fn(usize) -> Option<f64>,
        advance: bool,
    ) -> Vec<usize> {
        let n = members.len();
        if n <= 1 {
            return (0..n).collect();
        }
        match strategy {
            Strategy::Latency => latency_order(n, latency),
            Strategy::RoundRobin => {
                let start = self.with_pool(strategy, members, |p| {
                    let turn = p.turn;
                    if advance {
                        p.turn = p.turn.wrapping_add(1);
                    }
                    (turn % n as u64) as usize
                });
                (0..n).map(|i| (start + i) % n).collect()
            }
            Strategy::Weighted => {
                let pick = self.with_pool(strategy, members, |p| {
                    if advance {
                        smooth_pick(&mut p.credit, weights)
                    } else {
                        smooth_pick(&mut p.credit.clone(), weights)
                    }
                });
                let mut rest: Vec<usize> = (0..n).filter(|i| *i != pick).collect();
                // After the pick, the heavier members first: they are meant to carry more.
                rest.sort_by_key(|i| std::cmp::Reverse(weights.get(*i).copied().unwrap_or(1)));
                std::iter::once(pick).chain(rest).collect()
            }
        }
    }

    fn with_pool<T>(
        &self,
        strategy: Strategy,
        members: &[&str],
        f: impl FnOnce(&mut PoolState) -> T,
    ) -> T {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        strategy.hash(&mut h);
        members.hash(&mut h);
        let key = h.finish();
        let mut pools = self.shards[(key % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if pools.len() >= MAX_POOLS / SHARDS && !pools.contains_key(&key) {
            pools.clear();
        }
        f(pools.entry(key).or_default())
    }
}

/// Smooth weighted round robin (as in nginx): every member gains its weight, the richest is
/// picked and pays the total. Over any run of `sum(weights)` picks each member gets exactly its
/// weight, interleaved rather than in bursts.
fn smooth_pick(credit: &mut Vec<i64>, weights: &[u32]) -> usize {
    if credit.len() != weights.len() {
        *credit = vec![0; weights.len()];
    }
    let total: i64 = weights.iter().map(|w| i64::from(*w)).sum();
    let mut best = 0;
    for (i, w) in weights.iter().enumerate() {
        credit[i] += i64::from(*w);
        if credit[i] > credit[best] {
            best = i;
        }
    }
    credit[best] -= total;
    best
}

/// Fastest first; members with no sample yet come first of all, so each gets measured.
fn latency_order(n: usize, latency: impl Fn(usize) -> Option<f64>) -> Vec<usize> {
    let mut keyed: Vec<(usize, f64)> = (0..n)
        .map(|i| (i, latency(i).unwrap_or(f64::NEG_INFINITY)))
        .collect();
    keyed.sort_by(|a, b| a.1.total_cmp(&b.1));
    keyed.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_rotates() {
        let pools = Pools::default();
        let m = ["a", "b", "c"];
        let firsts: Vec<usize> = (0..6)
            .map(|_| pools.order(Strategy::RoundRobin, &m, &[], |_| None)[0])
            .collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        assert_eq!(
            pools.order(Strategy::RoundRobin, &m, &[], |_| None),
            [0, 1, 2]
        );
    }

    #[test]
    fn weighted_splits_exactly_by_weight_and_keeps_everyone_in_the_order() {
        let pools = Pools::default();
        let m = ["a", "b"];
        let mut counts = [0; 2];
        for _ in 0..40 {
            let order = pools.order(Strategy::Weighted, &m, &[3, 1], |_| None);
            assert_eq!(order.len(), 2);
            counts[order[0]] += 1;
        }
        assert_eq!(counts, [30, 10]);
    }

    #[test]
    fn latency_prefers_unmeasured_then_fastest() {
        let pools = Pools::default();
        let m = ["a", "b", "c"];
        let lat = [Some(50.0), None, Some(10.0)];
        assert_eq!(
            pools.order(Strategy::Latency, &m, &[], |i| lat[i]),
            [1, 2, 0]
        );
    }

    #[test]
    fn strategies_parse_by_name() {
        assert_eq!(Strategy::parse("latency"), Some(Strategy::Latency));
        assert_eq!(Strategy::parse("random"), None);
    }
}
