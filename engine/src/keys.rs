//! Keys, key groups and routing.
//!
//! A key is hashed with a fixed-seed hash (stable across processes and runs), the hash picks one
//! of `max_parallelism` *key groups*, and the key group picks a worker, as in Flink:
//! `worker = key_group * parallelism / max_parallelism`. Key groups are the unit in which keyed
//! state is redistributed when a checkpoint is restored at another parallelism.

use std::hash::{BuildHasher, Hash};

/// What a key must be: hashable, comparable, cloneable, sendable, and serializable (keys are
/// written to checkpoints with the state they own).
pub trait Key: Hash + Eq + Clone + Send + StateData {}
impl<T: Hash + Eq + Clone + Send + StateData> Key for T {}

/// What keyed state values, window accumulators and buffered elements must be: serializable
/// with serde, so that checkpoints can write them and a restore can read them back.
pub trait StateData: serde::Serialize + serde::de::DeserializeOwned + 'static {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + 'static> StateData for T {}

/// The hasher used for routing and for all keyed state maps: fast and seeded identically in
/// every process so that routing (and map iteration order) is reproducible.
pub type FixedState = foldhash::fast::FixedState;

/// A `hashbrown` map with sluice's hasher.
pub type FastMap<K, V> = hashbrown::HashMap<K, V, FixedState>;

/// A `hashbrown` set with sluice's hasher.
pub type FastSet<K> = hashbrown::HashSet<K, FixedState>;

/// A fresh, empty [`FastMap`].
pub fn fast_map<K, V>() -> FastMap<K, V> {
    FastMap::with_hasher(FixedState::with_seed(STATE_SEED))
}

/// A fresh, empty [`FastSet`].
pub fn fast_set<K>() -> FastSet<K> {
    FastSet::with_hasher(FixedState::with_seed(STATE_SEED))
}

const ROUTING_SEED: u64 = 0x0051_0000_00ce;
const STATE_SEED: u64 = 0x005e_ed51;

/// The stable 64-bit routing hash of a key.
#[inline]
pub fn key_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    FixedState::with_seed(ROUTING_SEED).hash_one(key)
}

/// The key group (in `0..max_parallelism`) a key belongs to.
#[inline]
pub fn key_group<K: Hash + ?Sized>(key: &K, max_parallelism: usize) -> usize {
    // Multiply-shift instead of modulo: uniform and branch-free.
    (((key_hash(key) >> 32) * max_parallelism as u64) >> 32) as usize
}

/// The worker (in `0..parallelism`) that owns a key group.
#[inline]
pub fn worker_for_key_group(key_group: usize, max_parallelism: usize, parallelism: usize) -> usize {
    key_group * parallelism / max_parallelism
}

/// Pre-computed routing for one exchange.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    /// worker index per key group
    table: Vec<u32>,
    max_parallelism: usize,
}

impl Router {
    pub(crate) fn new(max_parallelism: usize, parallelism: usize) -> Self {
        let table = (0..max_parallelism)
            .map(|kg| worker_for_key_group(kg, max_parallelism, parallelism) as u32)
            .collect();
        Self {
            table,
            max_parallelism,
        }
    }

    #[inline]
    pub(crate) fn route<K: Hash + ?Sized>(&self, key: &K) -> usize {
        self.table[key_group(key, self.max_parallelism)] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_are_in_range_and_spread() {
        let mut counts = [0usize; 128];
        for k in 0u64..100_000 {
            counts[key_group(&k, 128)] += 1;
        }
        let (min, max) = (
            counts.iter().min().copied().unwrap(),
            counts.iter().max().copied().unwrap(),
        );
        assert!(min > 600 && max < 1000, "uneven spread: {min}..{max}");
    }

    #[test]
    fn routing_is_stable_across_calls() {
        assert_eq!(key_hash("driver-7"), key_hash("driver-7"));
        assert_eq!(key_group(&42u32, 128), key_group(&42u32, 128));
    }

    #[test]
    fn every_worker_owns_a_contiguous_range_of_key_groups() {
        for p in 1..=8 {
            let r = Router::new(128, p);
            let mut last = 0;
            for kg in 0..128 {
                let w = r.table[kg] as usize;
                assert!(w >= last && w < p);
                last = w;
            }
            assert_eq!(last, p - 1);
        }
    }
}
