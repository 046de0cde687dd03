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
#[derive(Debug)]
pub(crate) struct TimerQueue<K> {
    by_time: BTreeMap<Timestamp, Keys<K>>,
    len: usize,
}

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
}
