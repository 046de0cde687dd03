//! Timer queues: per-key timers ordered by time.
//!
//! A queue maps a time to the set of keys with a timer at that time, so registering the same
//! `(key, time)` twice is one timer (as in Flink), deleting is a set removal, and firing
//! everything up to a watermark pops from the front in time order: no scan over keys.

use std::collections::BTreeMap;

use crate::keys::{fast_set, FastSet, Key};
use crate::time::Timestamp;

/// Timers of one time domain.
#[derive(Debug)]
pub(crate) struct TimerQueue<K> {
    by_time: BTreeMap<Timestamp, FastSet<K>>,
    len: usize,
}

impl<K: Key> TimerQueue<K> {
    pub(crate) fn new() -> Self {
        Self {
            by_time: BTreeMap::new(),
            len: 0,
        }
    }

    /// Registers a timer for `key` at `time`. Returns false if it already existed.
    pub(crate) fn register(&mut self, key: &K, time: Timestamp) -> bool {
        let set = self.by_time.entry(time).or_insert_with(fast_set);
        if set.contains(key) {
            return false;
        }
        set.insert(key.clone());
        self.len += 1;
        true
    }

    /// Deletes the timer for `key` at `time`, if any.
    pub(crate) fn delete(&mut self, key: &K, time: Timestamp) -> bool {
        let Some(set) = self.by_time.get_mut(&time) else {
            return false;
        };
        let removed = set.remove(key);
        if set.is_empty() {
            self.by_time.remove(&time);
        }
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// The earliest timer's time.
    pub(crate) fn next_time(&self) -> Option<Timestamp> {
        self.by_time.keys().next().copied()
    }

    /// Removes and returns all timers at the earliest time if it is `<= upto`.
    pub(crate) fn pop_due(&mut self, upto: Timestamp) -> Option<(Timestamp, FastSet<K>)> {
        let entry = self.by_time.first_entry()?;
        if *entry.key() > upto {
            return None;
        }
        let (time, keys) = entry.remove_entry();
        self.len -= keys.len();
        Some((time, keys))
    }

    /// Every pending timer, in time order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, Timestamp)> {
        self.by_time
            .iter()
            .flat_map(|(t, keys)| keys.iter().map(move |k| (k, *t)))
    }

    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
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
    fn deleted_timers_do_not_fire() {
        let mut q = TimerQueue::<u32>::new();
        q.register(&1, 5);
        assert!(q.delete(&1, 5));
        assert!(!q.delete(&1, 5));
        assert!(q.pop_due(i64::MAX).is_none());
        assert_eq!(q.len(), 0);
    }
}
