//! Timer queues: per-key timers ordered by time.
//!
//! A queue maps a time to the set of keys with a timer at that time, so registering the same
//! `(key, time)` twice is one timer (as in Flink), deleting is a set removal, and firing
//! everything up to a watermark pops from the front in time order: no scan over keys.
//!
//! The map is a hash map and the order a binary heap of its times (decision 27): most timers
//! sit at times of their own (an operator re-arms at a record's timestamp), and a hash insert
//! plus a heap push into one contiguous array cost less than a B-tree insert, and a heap pop
//! less than a B-tree's first-entry removal with its rebalancing. A deleted time stays in the
//! heap (stale) until it reaches the top, where it is dropped; the top is always live.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::hash_map::Entry;

use crate::keys::{fast_map, fast_set, FastMap, FastSet, Key};
use crate::time::Timestamp;

/// Timers of one time domain.
#[derive(Debug)]
pub(crate) struct TimerQueue<K> {
    by_time: FastMap<Timestamp, Keys<K>>,
    /// Every time in `by_time`, earliest on top, and times since emptied by deletes (stale)
    /// anywhere below the top. A time may appear twice (deleted, then registered again).
    times: BinaryHeap<Reverse<Timestamp>>,
    len: usize,
}

/// Stale times the heap may hold beyond twice its live ones before it is rebuilt.
const STALE_SLACK: usize = 64;

/// The keys with a timer at one time. Most times have one key (a timer per event timestamp,
/// say), which needs no allocation; a few are a list searched in place (no hashing); many, a
/// set.
#[derive(Debug)]
pub(crate) enum Keys<K> {
    One(K),
    Few(Vec<K>),
    Many(FastSet<K>),
}

/// The most keys [`Keys::Few`] holds before it becomes a set.
const FEW: usize = 16;

impl<K: Key> Keys<K> {
    fn contains(&self, key: &K) -> bool {
        match self {
            Keys::One(k) => k == key,
            Keys::Few(keys) => keys.contains(key),
            Keys::Many(set) => set.contains(key),
        }
    }

    /// Adds `key`, which is not in `self`.
    fn add(&mut self, key: &K) {
        match self {
            Keys::One(k) => {
                let mut keys = Vec::with_capacity(4);
                keys.push(k.clone());
                keys.push(key.clone());
                *self = Keys::Few(keys);
            }
            Keys::Few(keys) if keys.len() < FEW => keys.push(key.clone()),
            Keys::Few(keys) => {
                let mut set: FastSet<K> = fast_set();
                set.extend(keys.drain(..));
                set.insert(key.clone());
                *self = Keys::Many(set);
            }
            Keys::Many(set) => {
                set.insert(key.clone());
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Keys::One(_) => 1,
            Keys::Few(keys) => keys.len(),
            Keys::Many(set) => set.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &K> {
        let (list, set) = match self {
            Keys::One(k) => (std::slice::from_ref(k), None),
            Keys::Few(keys) => (&keys[..], None),
            Keys::Many(set) => (&[][..], Some(set)),
        };
        list.iter().chain(set.into_iter().flatten())
    }
}

impl<K> IntoIterator for Keys<K> {
    type Item = K;
    type IntoIter = KeysIter<K>;

    fn into_iter(self) -> KeysIter<K> {
        match self {
            Keys::One(k) => KeysIter::One(Some(k)),
            Keys::Few(keys) => KeysIter::Few(keys.into_iter()),
            Keys::Many(set) => KeysIter::Many(set.into_iter()),
        }
    }
}

/// The keys of one time, by value.
pub(crate) enum KeysIter<K> {
    One(Option<K>),
    Few(std::vec::IntoIter<K>),
    Many(hashbrown::hash_set::IntoIter<K>),
}

impl<K> Iterator for KeysIter<K> {
    type Item = K;

    #[inline]
    fn next(&mut self) -> Option<K> {
        match self {
            KeysIter::One(k) => k.take(),
            KeysIter::Few(keys) => keys.next(),
            KeysIter::Many(keys) => keys.next(),
        }
    }
}

impl<K: Key> TimerQueue<K> {
    pub(crate) fn new() -> Self {
        Self {
            by_time: fast_map(),
            times: BinaryHeap::new(),
            len: 0,
        }
    }

    /// Registers a timer for `key` at `time`. Returns false if it already existed.
    pub(crate) fn register(&mut self, key: &K, time: Timestamp) -> bool {
        match self.by_time.entry(time) {
            Entry::Vacant(v) => {
                v.insert(Keys::One(key.clone()));
                self.times.push(Reverse(time));
            }
            Entry::Occupied(mut o) => {
                if o.get().contains(key) {
                    return false;
                }
                o.get_mut().add(key);
            }
        }
        self.len += 1;
        true
    }

    /// Deletes the timer for `key` at `time`, if any.
    pub(crate) fn delete(&mut self, key: &K, time: Timestamp) -> bool {
        let Entry::Occupied(mut o) = self.by_time.entry(time) else {
            return false;
        };
        let (removed, empty) = match o.get_mut() {
            Keys::One(k) => {
                let hit = k == key;
                (hit, hit)
            }
            Keys::Few(keys) => match keys.iter().position(|k| k == key) {
                Some(i) => {
                    keys.swap_remove(i);
                    (true, keys.is_empty())
                }
                None => (false, false),
            },
            Keys::Many(set) => (set.remove(key), set.is_empty()),
        };
        if empty {
            o.remove();
            self.tidy();
        }
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// After a time left the map: pops stale times off the top, so that the top is a live
    /// time, or, if the heap is mostly stale, rebuilds it from the live times (linear), so that
    /// deletes far ahead of the watermark cannot grow it without bound. Keeps the heap at most
    /// twice the live times plus [`STALE_SLACK`] (a registration adds one to each side).
    fn tidy(&mut self) {
        if self.times.len() > 2 * self.by_time.len() + STALE_SLACK {
            self.times = self.by_time.keys().map(|&t| Reverse(t)).collect();
            return;
        }
        while let Some(&Reverse(t)) = self.times.peek() {
            if self.by_time.contains_key(&t) {
                break;
            }
            self.times.pop();
        }
    }

    /// The earliest timer's time.
    pub(crate) fn next_time(&self) -> Option<Timestamp> {
        self.times.peek().map(|&Reverse(t)| t)
    }

    /// Removes and returns all timers at the earliest time if it is `<= upto`.
    pub(crate) fn pop_due(&mut self, upto: Timestamp) -> Option<(Timestamp, Keys<K>)> {
        let Reverse(time) = *self.times.peek()?;
        if time > upto {
            return None;
        }
        self.times.pop();
        let keys = self
            .by_time
            .remove(&time)
            .expect("the heap's top is a live time");
        self.len -= keys.len();
        self.tidy();
        Some((time, keys))
    }

    /// Every timer, in time order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, Timestamp)> {
        let mut times: Vec<(&Timestamp, &Keys<K>)> = self.by_time.iter().collect();
        times.sort_unstable_by_key(|(t, _)| **t);
        times
            .into_iter()
            .flat_map(|(t, keys)| keys.iter().map(move |k| (k, *t)))
    }

    /// How many timers are registered.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn timers_fire_in_time_order_and_deduplicate() {
        let mut q = TimerQueue::<u32>::new();
        assert!(q.register(&1, 30));
        assert!(q.register(&2, 10));
        assert!(!q.register(&2, 10));
        assert!(q.register(&3, 10));
        assert_eq!(q.len(), 3);
        let (t, keys) = q.pop_due(20).unwrap();
        assert_eq!(t, 10);
        assert_eq!(keys.len(), 2);
        assert!(q.pop_due(20).is_none());
        assert_eq!(q.next_time(), Some(30));
    }

    #[test]
    fn many_keys_at_one_time_register_once_and_delete_each() {
        let mut q = TimerQueue::<u32>::new();
        for round in 0..2 {
            for k in 0..40 {
                assert_eq!(q.register(&k, 7), round == 0, "key {k} round {round}");
            }
        }
        assert_eq!(q.len(), 40);
        for k in (0..40).step_by(3) {
            assert!(q.delete(&k, 7));
            assert!(!q.delete(&k, 7));
        }
        let mut left: Vec<u32> = q.iter().map(|(k, _)| *k).collect();
        left.sort();
        let want: Vec<u32> = (0..40).filter(|k| k % 3 != 0).collect();
        assert_eq!(left, want);
        let (t, keys) = q.pop_due(7).unwrap();
        let mut fired: Vec<u32> = keys.into_iter().collect();
        fired.sort();
        assert_eq!((t, fired), (7, want));
        assert_eq!(q.len(), 0);
        // A few keys (a list), each deleted: the time goes.
        q.register(&1, 9);
        q.register(&2, 9);
        assert!(q.delete(&2, 9) && q.delete(&1, 9));
        assert_eq!(q.next_time(), None);
    }

    #[test]
    fn deleted_timers_do_not_fire() {
        let mut q = TimerQueue::<u32>::new();
        q.register(&1, 5);
        assert!(q.delete(&1, 5));
        assert!(!q.delete(&1, 5));
        assert!(q.pop_due(i64::MAX).is_none());
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn deleted_times_behind_the_top_do_not_pile_up() {
        // A timer that stays (the top) and many pushed ahead and deleted, as a session window
        // moves its end: the deleted times are stale in the heap until it is rebuilt.
        let mut q = TimerQueue::<u32>::new();
        q.register(&0, 0);
        for t in 1..10_000 {
            q.register(&1, t);
            assert!(q.delete(&1, t));
            assert!(
                q.times.len() <= 2 + STALE_SLACK,
                "at {t}: {}",
                q.times.len()
            );
        }
        q.register(&1, 5);
        assert_eq!(q.pop_due(100).map(|(t, k)| (t, k.len())), Some((0, 1)));
        assert_eq!(q.pop_due(100).map(|(t, k)| (t, k.len())), Some((5, 1)));
        assert_eq!(q.pop_due(i64::MAX).map(|(t, _)| t), None);
        assert!(q.times.is_empty());
    }

    #[test]
    fn firing_keeps_the_heap_bounded_too() {
        // Stale times behind twenty live ones; firing the live ones one by one must not
        // leave the stale ones outnumbering them beyond the bound.
        let mut q = TimerQueue::<u32>::new();
        for t in 0..20 {
            q.register(&0, t);
        }
        // Up to the bound: the next stale time would have the heap rebuilt.
        let mut t = 100;
        while q.times.len() < 2 * 20 + STALE_SLACK {
            q.register(&1, t);
            assert!(q.delete(&1, t));
            t += 1;
        }
        for want in 0..20 {
            assert_eq!(q.pop_due(19).map(|(t, _)| t), Some(want));
            assert!(
                q.times.len() <= 2 * q.by_time.len() + STALE_SLACK,
                "after {want}: {} in the heap, {} live",
                q.times.len(),
                q.by_time.len()
            );
        }
        assert_eq!(q.next_time(), None);
        assert!(q.times.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Register(u32, Timestamp),
        Delete(u32, Timestamp),
        PopDue(Timestamp),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys and times, so that times collide, sets grow past `FEW`, deletes hit and
        // times are deleted and registered again (stale heap entries, and rebuilds).
        prop_oneof![
            4 => (0..40u32, 0..60i64).prop_map(|(k, t)| Op::Register(k, t)),
            3 => (0..40u32, 0..60i64).prop_map(|(k, t)| Op::Delete(k, t)),
            1 => (0..70i64).prop_map(Op::PopDue),
        ]
    }

    proptest! {
        /// The queue against a model (a sorted map of sorted sets): same answers to every
        /// call, same timers in the same order at every step.
        #[test]
        fn the_queue_behaves_as_a_sorted_map_of_sets(ops in vec(op(), 0..400)) {
            let mut q = TimerQueue::<u32>::new();
            let mut model: BTreeMap<Timestamp, BTreeSet<u32>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Register(k, t) => {
                        prop_assert_eq!(q.register(&k, t), model.entry(t).or_default().insert(k));
                    }
                    Op::Delete(k, t) => {
                        let want = model.get_mut(&t).is_some_and(|s| s.remove(&k));
                        model.retain(|_, s| !s.is_empty());
                        prop_assert_eq!(q.delete(&k, t), want);
                    }
                    Op::PopDue(upto) => {
                        let want = model
                            .first_key_value()
                            .filter(|(t, _)| **t <= upto)
                            .map(|(t, _)| *t);
                        let got = q.pop_due(upto).map(|(t, keys)| {
                            (t, keys.into_iter().collect::<BTreeSet<u32>>())
                        });
                        let want = want.map(|t| (t, model.remove(&t).expect("first")));
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(q.next_time(), model.keys().next().copied());
                prop_assert_eq!(q.len(), model.values().map(BTreeSet::len).sum::<usize>());
                let mut got: Vec<(Timestamp, u32)> = q.iter().map(|(k, t)| (t, *k)).collect();
                // In time order; keys within a time in any order.
                prop_assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
                got.sort_unstable();
                let want: Vec<(Timestamp, u32)> = model
                    .iter()
                    .flat_map(|(t, s)| s.iter().map(move |k| (*t, *k)))
                    .collect();
                prop_assert_eq!(got, want);
                prop_assert!(q.times.len() <= 2 * q.by_time.len() + STALE_SLACK);
            }
        }
    }
}
