//! Which of `shards` locks a key falls under, for the stores that split their in-memory state
//! so workers touching different keys never wait for each other.

/// The shard of `key` among `shards` (more than 0).
///
/// FNV-1a: the keys are ours (limit names with key ids, split and sticky ids), so a fast hash
/// with a good spread serves; nothing here needs SipHash's resistance to chosen keys, and the
/// map inside each shard keeps its own.
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    let h = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (h % shards.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_every_shard() {
        let mut seen = [0usize; 16];
        for i in 0..1600 {
            seen[shard_of(format!("key_{i}:rpm").as_bytes(), 16)] += 1;
        }
        assert!(seen.iter().all(|n| (50..150).contains(n)), "{seen:?}");
        assert_eq!(shard_of(b"x", 0), 0, "no shards counts as one");
    }
}
