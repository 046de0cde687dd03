//! Timer queues: per-key timers ordered by time.
//!
//! A queue maps a time to the set of keys with a timer at that time, so registering the same
//! `(key, time)` twice is one timer (as in Flink), deleting is a set removal, and firing
//! everything up to a watermark pops from the front in time order: no scan over keys.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use crate::keys::{fast_set, FastSet, Key};
use crate::time::Timestamp;

/// Timers of one time domain.
/// Timers of one time domain.
#[derive(Debug)]
pub(crate) struct TimerQueue<K> {
    by_time: BTreeMap<Timestamp, Keys<K>>,
    len: usize,
}

/// The keys with a timer at one time. Most times have one key (a timer per event timestamp,
/// say), which needs no allocation; a set once there are more.
#[derive(Debug)]
pub(crate) enum Keys<K> {
    One(K),
    Many(FastSet<K>),
}

impl<K: Key> Keys<K> {
    fn contains(&self, key: &K) -> bool {
        match self {
            Keys::One(k) => k == key,
            Keys::Many(set) => set.contains(key),
        }
    }

    /// Adds `key`, which is not in `self`.
    fn add(&mut self, key: &K) {
        match self {
            Keys::One(k) => {
                let mut set = fast_set();
                set.insert(k.clone());
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
            Keys::Many(set) => set.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &K> {
        let (one, many) = match self {
            Keys::One(k) => (Some(k), None),
            Keys::Many(set) => (None, Some(set.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl<K> IntoIterator for Keys<K> {
    type Item = K;
    type IntoIter = std::iter::Chain<
        std::option::IntoIter<K>,
        std::iter::Flatten<std::option::IntoIter<hashbrown::hash_set::IntoIter<K>>>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        let (one, many) = match self {
            Keys::One(k) => (Some(k), None),
            Keys::Many(set) => (None, Some(set.into_iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
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
        match self.by_time.entry(time) {
            Entry::Vacant(v) => {
                v.insert(Keys::One(key.clone()));
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
            Keys::Many(set) => (set.remove(key), set.is_empty()),
        };
        if empty {
            o.remove();
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
    pub(crate) fn pop_due(&mut self, upto: Timestamp) -> Option<(Timestamp, Keys<K>)> {
        let entry = self.by_time.first_entry()?;
        if *entry.key() > upto {
            return None;
        }
        let (time, keys) = entry.remove_entry();
        self.len -= keys.len();
        Some((time, keys))
    }

    /// Every timer, in time order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, Timestamp)> {
        self.by_time
            .iter()
            .flat_map(|(t, keys)| keys.iter().map(move |k| (k, *t)))
    }

    /// How many timers are registered.
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
