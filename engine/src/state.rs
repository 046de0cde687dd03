//! Keyed state: typed, named tables owned by the runtime, addressed by an explicit key.
//!
//! A keyed operator declares its state when it is instantiated, through a [`StateRegistry`]:
//! each declaration returns a small typed handle ([`ValueState`], [`MapState`], [`ListState`]).
//! The tables themselves belong to the operator instance (one per worker) and are reached through
//! the [`Context`](crate::process::Context) with the handle; every access names the key
//! explicitly, there is no implicit "current key".
//!
//! Because the runtime owns every table, it can snapshot and restore all of them (grouped by key
//! group) without help from the user's code. State names must be unique within an operator and
//! stable across versions of a job: they identify the state in checkpoints.

use std::any::Any;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::time::Duration;

use hashbrown::hash_map::RawEntryMut;

use crate::checkpoint::by_group;
use crate::checkpoint::store::{decode, encode};
use crate::keys::{fast_map, FastMap, FixedState, Key, StateData};
use crate::metrics::{Counter, InstanceMetrics};
use crate::time::{duration_ms, Timestamp};

/// Handle to a per-key single value of type `V`.
#[derive(Debug)]
pub struct ValueState<V> {
    pub(crate) id: usize,
    _v: PhantomData<fn() -> V>,
}

/// Handle to a per-key map from `UK` to `UV`.
#[derive(Debug)]
pub struct MapState<UK, UV> {
    pub(crate) id: usize,
    _v: PhantomData<fn() -> (UK, UV)>,
}

/// Handle to a per-key list of `V`.
#[derive(Debug)]
pub struct ListState<V> {
    pub(crate) id: usize,
    _v: PhantomData<fn() -> V>,
}

macro_rules! copy_handle {
    ($($t:ident<$($p:ident),*>),*) => {$(
        impl<$($p),*> Clone for $t<$($p),*> {
            fn clone(&self) -> Self { *self }
        }
        impl<$($p),*> Copy for $t<$($p),*> {}
    )*};
}
copy_handle!(ValueState<V>, MapState<UK, UV>, ListState<V>);

/// A table of keyed state, as the runtime sees it.
pub(crate) trait StateTable<K>: Any {
    fn name(&self) -> &str;
    fn keys(&self) -> usize;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The watermark reached `wm`: drop what expired. Default: nothing expires.
    fn expire(&mut self, _wm: Timestamp) {}
    /// The table's entries, serialized per key group (`out[g]`; empty: no entries).
    fn snapshot(&self, max_parallelism: usize) -> Vec<Vec<u8>>;
    /// Adds the entries of one key group, as [`snapshot`](Self::snapshot) wrote them.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), bincode::Error>;
}

/// Serializes grouped entries: one blob per non-empty group.
fn encode_groups<T: serde::Serialize>(groups: Vec<Vec<T>>) -> Vec<Vec<u8>> {
    groups
        .into_iter()
        .map(|g| if g.is_empty() { Vec::new() } else { encode(&g) })
        .collect()
}

/// Where a keyed operator declares its state. Handed to the operator's constructor, once per
/// worker.
pub struct StateRegistry<K> {
    pub(crate) tables: Vec<Box<dyn StateTable<K>>>,
    /// The operator instance's metrics, for [`counter`](Self::counter).
    metrics: InstanceMetrics,
}

impl<K: Key> StateRegistry<K> {
    pub(crate) fn new(metrics: InstanceMetrics) -> Self {
        Self {
            tables: Vec::new(),
            metrics,
        }
    }

    /// The operator instance's counter `name`: what the function adds is reported as the
    /// operator's [`OperatorMetrics::counter`](crate::OperatorMetrics::counter) (summed over
    /// the workers) and checkpointed with its state, so that a restored job continues it (see
    /// [`Counter`]). Asking again for a name gives the same counter.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice_engine::prelude::*;
    /// use sluice_engine::Counter;
    /// use sluice_connectors::VecSource;
    ///
    /// struct FirstSeen { seen: ValueState<()>, repeats: Counter }
    ///
    /// impl KeyedProcessFunction<u32, u32> for FirstSeen {
    ///     type Out = u32;
    ///     fn process(&mut self, key: &u32, v: u32, ctx: &mut Context<'_, u32, u32>) {
    ///         if ctx.value(self.seen).set_if_absent(key, ()) {
    ///             ctx.emit(v);
    ///         } else {
    ///             self.repeats.add(1);
    ///         }
    ///     }
    /// }
    ///
    /// let env = StreamEnv::new(Config::default().parallelism(2));
    /// env.source(VecSource::new(vec![1u32, 2, 1, 3, 1]))
    ///     .key_by(|v| *v)
    ///     .process(|reg| FirstSeen { seen: reg.value("seen"), repeats: reg.counter("repeats") })
    ///     .name("first_seen");
    /// let metrics = env.execute()?;
    /// assert_eq!(metrics.operator("first_seen").unwrap().counter("repeats"), 2);
    /// # Ok::<(), sluice_engine::JobError>(())
    /// ```
    pub fn counter(&mut self, name: &str) -> Counter {
        self.metrics.counter(name)
    }

    fn check_name(&self, name: &str) {
        assert!(
            self.tables.iter().all(|t| t.name() != name),
            "keyed state `{name}` is declared twice in the same operator; state names must be unique"
        );
    }

    /// Declares a per-key value.
    ///
    /// # Panics
    ///
    /// If `name` is already declared in this operator (the job then fails with an error naming
    /// the operator).
    pub fn value<V: StateData>(&mut self, name: &str) -> ValueState<V> {
        self.value_table(name, None)
    }

    /// Declares a per-key value that expires `ttl` of *event time* after it was last written.
    ///
    /// A value written while processing a record with timestamp `t` (or a timer at `t`) expires
    /// once the operator's watermark reaches `t + ttl`: from then on it is invisible (reads
    /// return `None`, as if it had never been set) and it is removed from memory within
    /// `ttl / 4` more of event time. Every write ([`ValueTable::set`], and the mutable accessors
    /// [`ValueTable::get_mut`] and [`ValueTable::get_or_insert_with`]) renews the expiry.
    /// Processing time plays no part: a replay expires exactly what the live run expired.
    ///
    /// # Panics
    ///
    /// If `name` is already declared in this operator.
    pub fn value_with_ttl<V: StateData>(&mut self, name: &str, ttl: Duration) -> ValueState<V> {
        self.value_table(name, Some(duration_ms(ttl).max(1)))
    }

    fn value_table<V: StateData>(&mut self, name: &str, ttl: Option<i64>) -> ValueState<V> {
        self.check_name(name);
        self.tables.push(Box::new(ValueTable::<K, V> {
            name: name.to_string(),
            values: match ttl {
                None => Values::Plain(fast_map()),
                Some(_) => Values::Expiring(fast_map()),
            },
            ttl,
            sweep_every: ttl.map_or(1, |t| (t / 4).max(1)),
            next_sweep: Timestamp::MIN,
            earliest: Timestamp::MAX,
            write_time: Timestamp::MIN,
            watermark: Timestamp::MIN,
        }));
        ValueState {
            id: self.tables.len() - 1,
            _v: PhantomData,
        }
    }

    /// Declares a per-key map.
    ///
    /// # Panics
    ///
    /// If `name` is already declared in this operator.
    pub fn map<UK: Key, UV: StateData>(&mut self, name: &str) -> MapState<UK, UV> {
        self.check_name(name);
        self.tables.push(Box::new(MapTable::<K, UK, UV> {
            name: name.to_string(),
            map: fast_map(),
        }));
        MapState {
            id: self.tables.len() - 1,
            _v: PhantomData,
        }
    }

    /// Declares a per-key list.
    ///
    /// # Panics
    ///
    /// If `name` is already declared in this operator.
    pub fn list<V: StateData>(&mut self, name: &str) -> ListState<V> {
        self.check_name(name);
        self.tables.push(Box::new(ListTable::<K, V> {
            name: name.to_string(),
            map: fast_map(),
        }));
        ListState {
            id: self.tables.len() - 1,
            _v: PhantomData,
        }
    }
}

/// The tables of one keyed operator instance.
pub(crate) struct StateStore<K> {
    tables: Vec<Box<dyn StateTable<K>>>,
}

impl<K: Key> StateStore<K> {
    pub(crate) fn new(registry: StateRegistry<K>) -> Self {
        Self {
            tables: registry.tables,
        }
    }

    #[inline]
    fn table<X: 'static>(&mut self, id: usize) -> &mut X {
        self.tables[id]
            .as_any_mut()
            .downcast_mut::<X>()
            .expect("state handle used with the operator that declared it")
    }

    /// The value table of `h`, told the event time of the current write and the watermark
    /// (for TTL).
    #[inline]
    pub(crate) fn value<V: 'static>(
        &mut self,
        h: ValueState<V>,
        now: Timestamp,
        watermark: Timestamp,
    ) -> &mut ValueTable<K, V> {
        let t: &mut ValueTable<K, V> = self.table(h.id);
        t.write_time = now;
        t.watermark = watermark;
        t
    }

    /// Drops expired state in every table.
    pub(crate) fn expire(&mut self, wm: Timestamp) {
        for t in &mut self.tables {
            t.expire(wm);
        }
    }

    #[inline]
    pub(crate) fn map<UK: Key, UV: 'static>(
        &mut self,
        h: MapState<UK, UV>,
    ) -> &mut MapTable<K, UK, UV> {
        self.table(h.id)
    }

    #[inline]
    pub(crate) fn list<V: 'static>(&mut self, h: ListState<V>) -> &mut ListTable<K, V> {
        self.table(h.id)
    }

    /// Every table's entries, per key group: `out[g]` lists `(table name, entries)` for the
    /// tables with entries in group `g`.
    pub(crate) fn snapshot(&self, max_parallelism: usize) -> Vec<Vec<(String, Vec<u8>)>> {
        let mut out: Vec<Vec<(String, Vec<u8>)>> =
            (0..max_parallelism).map(|_| Vec::new()).collect();
        for t in &self.tables {
            for (g, bytes) in t.snapshot(max_parallelism).into_iter().enumerate() {
                if !bytes.is_empty() {
                    out[g].push((t.name().to_string(), bytes));
                }
            }
        }
        out
    }

    /// Adds one key group's entries of the table called `name`.
    pub(crate) fn restore(&mut self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let table = self
            .tables
            .iter_mut()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                format!("the checkpoint has keyed state `{name}`, which this operator no longer declares")
            })?;
        table
            .restore(bytes)
            .map_err(|e| format!("cannot decode keyed state `{name}` from the checkpoint: {e}"))
    }

    /// Total number of keys with state, over all tables.
    pub(crate) fn keys(&self) -> usize {
        self.tables.iter().map(|t| t.keys()).sum()
    }
}

/// Per-key values of one [`ValueState`].
pub struct ValueTable<K, V> {
    name: String,
    values: Values<K, V>,
    /// Time to live in event-time ms, if any.
    ttl: Option<i64>,
    /// Expired values are swept out of memory at most this often (event-time ms: `ttl / 4`).
    ///
    /// A sweep is one pass over the table (`retain`), not a queue of keys by expiry: reads
    /// already treat an expired value as absent, so removal only has to bound memory (at most
    /// a quarter more keys than are live). A sequential pass every `ttl / 4` (each key visited
    /// about five times in its life) costs less than a random probe per key (a queue entry, a
    /// key clone, a cache miss to find it again) and needs no memory besides the table.
    sweep_every: i64,
    /// The watermark from which the next sweep may run.
    next_sweep: Timestamp,
    /// No value in the table expires before this (a lower bound): a sweep before it would
    /// find nothing.
    earliest: Timestamp,
    write_time: Timestamp,
    watermark: Timestamp,
}

/// A table's values: bare, or (with a TTL) each with its expiry. Two representations so that
/// tables without a TTL pay nothing for it: a busy keyed operator is bound by how much of its
/// table stays in cache, and an expiry per entry makes a table of `i64`s half as big again
/// (about 10% of `benches/pipeline.rs` throughput at one worker).
enum Values<K, V> {
    Plain(FastMap<K, V>),
    Expiring(FastMap<K, Slot<V>>),
}

struct Slot<V> {
    value: V,
    /// Event time at which the value stops being visible (`Timestamp::MAX`: never).
    expires: Timestamp,
}

/// `key`'s hash in `map`, and its entry: a vacant entry inserts with that hash
/// (`insert_hashed_nocheck`), where `RawVacantEntryMut::insert` would hash the key again.
#[inline]
fn entry<'m, K: Key, W>(
    map: &'m mut FastMap<K, W>,
    key: &K,
) -> (u64, RawEntryMut<'m, K, W, FixedState>) {
    let hash = map.hasher().hash_one(key);
    (hash, map.raw_entry_mut().from_key_hashed_nocheck(hash, key))
}

impl<K: Key, V> ValueTable<K, V> {
    /// The expiry of a value written now; lowers the table's earliest expiry to it.
    #[inline]
    fn expiry_for_write(&mut self) -> Timestamp {
        let expires = match self.ttl {
            Some(ttl) if self.write_time != Timestamp::MIN => self.write_time.saturating_add(ttl),
            // A write with no timestamp expires with the next watermark... unless none comes:
            // use the watermark as the base instead.
            Some(ttl) => self.watermark.max(0).saturating_add(ttl),
            None => Timestamp::MAX,
        };
        self.earliest = self.earliest.min(expires);
        expires
    }

    /// The value for `key`, if set (and not expired).
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        match &self.values {
            Values::Plain(map) => map.get(key),
            Values::Expiring(map) => map
                .get(key)
                .filter(|s| s.expires > self.watermark)
                .map(|s| &s.value),
        }
    }

    /// The value for `key`, mutably, if set (and not expired). Renews a TTL.
    #[inline]
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let expires = self.expiry_for_write();
        let wm = self.watermark;
        match &mut self.values {
            Values::Plain(map) => map.get_mut(key),
            Values::Expiring(map) => {
                let slot = map.get_mut(key).filter(|s| s.expires > wm)?;
                slot.expires = expires;
                Some(&mut slot.value)
            }
        }
    }

    /// Sets the value for `key`; returns the previous (unexpired) one. Clones the key only when
    /// it is new.
    #[inline]
    pub fn set(&mut self, key: &K, value: V) -> Option<V> {
        let expires = self.expiry_for_write();
        let wm = self.watermark;
        // One hash and one probe, whether the key is new or not.
        match &mut self.values {
            Values::Plain(map) => match entry(map, key) {
                (_, RawEntryMut::Occupied(mut o)) => Some(std::mem::replace(o.get_mut(), value)),
                (hash, RawEntryMut::Vacant(v)) => {
                    v.insert_hashed_nocheck(hash, key.clone(), value);
                    None
                }
            },
            Values::Expiring(map) => match entry(map, key) {
                (_, RawEntryMut::Occupied(mut o)) => {
                    let slot = o.get_mut();
                    let old = std::mem::replace(&mut slot.value, value);
                    let was_live = slot.expires > wm;
                    slot.expires = expires;
                    was_live.then_some(old)
                }
                (hash, RawEntryMut::Vacant(v)) => {
                    v.insert_hashed_nocheck(hash, key.clone(), Slot { value, expires });
                    None
                }
            },
        }
    }

    /// Sets the value for `key` if it has none (or it expired); returns whether it did. One
    /// hash and one probe. A live value is left as it is, and its TTL is *not* renewed: what a
    /// "first occurrence wins" operator such as a deduplicator needs.
    #[inline]
    pub fn set_if_absent(&mut self, key: &K, value: V) -> bool {
        let expires = self.expiry_for_write();
        let wm = self.watermark;
        match &mut self.values {
            Values::Plain(map) => match entry(map, key) {
                (_, RawEntryMut::Occupied(_)) => false,
                (hash, RawEntryMut::Vacant(v)) => {
                    v.insert_hashed_nocheck(hash, key.clone(), value);
                    true
                }
            },
            Values::Expiring(map) => match entry(map, key) {
                (_, RawEntryMut::Occupied(mut o)) => {
                    let slot = o.get_mut();
                    if slot.expires > wm {
                        return false;
                    }
                    *slot = Slot { value, expires };
                    true
                }
                (hash, RawEntryMut::Vacant(v)) => {
                    v.insert_hashed_nocheck(hash, key.clone(), Slot { value, expires });
                    true
                }
            },
        }
    }

    /// The value for `key`, inserting `make()` first if there is none (or it expired).
    /// Renews a TTL.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: &K, make: impl FnOnce() -> V) -> &mut V {
        let expires = self.expiry_for_write();
        let wm = self.watermark;
        match &mut self.values {
            Values::Plain(map) => match entry(map, key) {
                (_, RawEntryMut::Occupied(o)) => o.into_mut(),
                (hash, RawEntryMut::Vacant(v)) => {
                    v.insert_hashed_nocheck(hash, key.clone(), make()).1
                }
            },
            Values::Expiring(map) => match entry(map, key) {
                (_, RawEntryMut::Occupied(o)) => {
                    let slot = o.into_mut();
                    if slot.expires <= wm {
                        slot.value = make();
                    }
                    slot.expires = expires;
                    &mut slot.value
                }
                (hash, RawEntryMut::Vacant(v)) => {
                    let (_, slot) = v.insert_hashed_nocheck(
                        hash,
                        key.clone(),
                        Slot {
                            value: make(),
                            expires,
                        },
                    );
                    &mut slot.value
                }
            },
        }
    }

    /// Removes and returns the (unexpired) value for `key`.
    #[inline]
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let wm = self.watermark;
        match &mut self.values {
            Values::Plain(map) => map.remove(key),
            Values::Expiring(map) => map.remove(key).filter(|s| s.expires > wm).map(|s| s.value),
        }
    }

    /// Number of keys holding a value in memory (expired values not yet swept included).
    pub fn len(&self) -> usize {
        match &self.values {
            Values::Plain(map) => map.len(),
            Values::Expiring(map) => map.len(),
        }
    }

    /// Whether no key holds a value in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-key maps of one [`MapState`].
pub struct MapTable<K, UK, UV> {
    name: String,
    map: FastMap<K, FastMap<UK, UV>>,
}

impl<K: Key, UK: Key, UV> MapTable<K, UK, UV> {
    /// The entry `user_key` of `key`'s map.
    #[inline]
    pub fn get(&self, key: &K, user_key: &UK) -> Option<&UV> {
        self.map.get(key).and_then(|m| m.get(user_key))
    }

    /// The entry `user_key` of `key`'s map, mutably.
    #[inline]
    pub fn get_mut(&mut self, key: &K, user_key: &UK) -> Option<&mut UV> {
        self.map.get_mut(key).and_then(|m| m.get_mut(user_key))
    }

    /// Inserts into `key`'s map; returns the previous value.
    #[inline]
    pub fn insert(&mut self, key: &K, user_key: UK, value: UV) -> Option<UV> {
        match entry(&mut self.map, key) {
            (_, RawEntryMut::Occupied(o)) => o.into_mut().insert(user_key, value),
            (hash, RawEntryMut::Vacant(v)) => {
                let mut m = fast_map();
                m.insert(user_key, value);
                v.insert_hashed_nocheck(hash, key.clone(), m);
                None
            }
        }
    }

    /// Removes one entry of `key`'s map (and the key, when its map becomes empty).
    #[inline]
    pub fn remove(&mut self, key: &K, user_key: &UK) -> Option<UV> {
        let m = self.map.get_mut(key)?;
        let v = m.remove(user_key);
        if m.is_empty() {
            self.map.remove(key);
        }
        v
    }

    /// Iterates `key`'s map (in no particular order).
    pub fn iter(&self, key: &K) -> impl Iterator<Item = (&UK, &UV)> {
        self.map.get(key).into_iter().flat_map(|m| m.iter())
    }

    /// Number of entries in `key`'s map.
    pub fn len_of(&self, key: &K) -> usize {
        self.map.get(key).map_or(0, |m| m.len())
    }

    /// Removes `key`'s whole map.
    pub fn clear(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Number of keys with a non-empty map.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key has entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Per-key lists of one [`ListState`].
pub struct ListTable<K, V> {
    name: String,
    map: FastMap<K, Vec<V>>,
}

impl<K: Key, V> ListTable<K, V> {
    /// Appends to `key`'s list.
    #[inline]
    pub fn push(&mut self, key: &K, value: V) {
        match entry(&mut self.map, key) {
            (_, RawEntryMut::Occupied(o)) => o.into_mut().push(value),
            (hash, RawEntryMut::Vacant(v)) => {
                v.insert_hashed_nocheck(hash, key.clone(), vec![value]);
            }
        }
    }

    /// `key`'s list (empty if none).
    #[inline]
    pub fn get(&self, key: &K) -> &[V] {
        self.map.get(key).map_or(&[], |l| l.as_slice())
    }

    /// Removes and returns `key`'s list.
    #[inline]
    pub fn take(&mut self, key: &K) -> Vec<V> {
        self.map.remove(key).unwrap_or_default()
    }

    /// Removes `key`'s list.
    pub fn clear(&mut self, key: &K) {
        self.map.remove(key);
    }

    /// Number of keys with a list.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key has a list.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<K: Key, UK: Key, UV: StateData> StateTable<K> for MapTable<K, UK, UV> {
    fn name(&self) -> &str {
        &self.name
    }
    fn keys(&self) -> usize {
        self.map.len()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn snapshot(&self, max_parallelism: usize) -> Vec<Vec<u8>> {
        let entries = self
            .map
            .iter()
            .map(|(k, m)| (k, m.iter().collect::<Vec<(&UK, &UV)>>()));
        encode_groups(by_group(max_parallelism, entries))
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), bincode::Error> {
        let entries: Vec<(K, Vec<(UK, UV)>)> = decode(bytes)?;
        for (k, m) in entries {
            self.map.entry(k).or_insert_with(fast_map).extend(m);
        }
        Ok(())
    }
}

impl<K: Key, V: StateData> StateTable<K> for ListTable<K, V> {
    fn name(&self) -> &str {
        &self.name
    }
    fn keys(&self) -> usize {
        self.map.len()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn snapshot(&self, max_parallelism: usize) -> Vec<Vec<u8>> {
        encode_groups(by_group(max_parallelism, self.map.iter()))
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), bincode::Error> {
        let entries: Vec<(K, Vec<V>)> = decode(bytes)?;
        for (k, l) in entries {
            self.map.entry(k).or_default().extend(l);
        }
        Ok(())
    }
}

impl<K: Key, V: StateData> StateTable<K> for ValueTable<K, V> {
    fn snapshot(&self, max_parallelism: usize) -> Vec<Vec<u8>> {
        match &self.values {
            Values::Plain(map) => encode_groups(by_group(max_parallelism, map.iter())),
            Values::Expiring(map) => {
                let wm = self.watermark;
                let live = map
                    .iter()
                    .filter(|(_, s)| s.expires > wm)
                    .map(|(k, s)| (k, (&s.value, s.expires)));
                encode_groups(by_group(max_parallelism, live))
            }
        }
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), bincode::Error> {
        match &mut self.values {
            Values::Plain(map) => {
                let entries: Vec<(K, V)> = decode(bytes)?;
                map.reserve(entries.len());
                map.extend(entries);
            }
            Values::Expiring(map) => {
                let entries: Vec<(K, (V, Timestamp))> = decode(bytes)?;
                map.reserve(entries.len());
                for (k, (value, expires)) in entries {
                    self.earliest = self.earliest.min(expires);
                    map.insert(k, Slot { value, expires });
                }
            }
        }
        Ok(())
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn keys(&self) -> usize {
        self.len()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn expire(&mut self, wm: Timestamp) {
        self.watermark = self.watermark.max(wm);
        let Values::Expiring(map) = &mut self.values else {
            return;
        };
        if wm < self.earliest || wm < self.next_sweep {
            return;
        }
        let mut earliest = Timestamp::MAX;
        map.retain(|_, s| {
            let live = s.expires > wm;
            if live {
                earliest = earliest.min(s.expires);
            }
            live
        });
        self.earliest = earliest;
        self.next_sweep = wm.saturating_add(self.sweep_every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_state_set_get_remove() {
        let mut reg = StateRegistry::<String>::new(InstanceMetrics::standalone());
        let h = reg.value::<u32>("count");
        let mut store = StateStore::new(reg);
        let k = "a".to_string();
        assert_eq!(store.value(h, 0, 0).set(&k, 1), None);
        *store.value(h, 0, 0).get_or_insert_with(&k, || 0) += 1;
        assert_eq!(store.value(h, 0, 0).get(&k), Some(&2));
        assert_eq!(store.keys(), 1);
        assert_eq!(store.value(h, 0, 0).remove(&k), Some(2));
        assert_eq!(store.keys(), 0);
    }

    #[test]
    fn ttl_values_expire_by_event_time_and_are_swept() {
        let mut reg = StateRegistry::<u32>::new(InstanceMetrics::standalone());
        let h = reg.value_with_ttl::<char>("seen", Duration::from_millis(100));
        let mut store = StateStore::new(reg);
        for k in 0..1_000u32 {
            store.value(h, i64::from(k), 0).set(&k, 'x');
        }
        // Not expired yet: key 999 was written at 999 and lives until 1099.
        store.expire(1_000);
        assert_eq!(store.value(h, 0, 1_000).get(&999), Some(&'x'));
        assert_eq!(
            store.value(h, 0, 1_000).get(&0),
            None,
            "expired values are invisible"
        );
        // A write renews the expiry.
        store.value(h, 1_050, 1_000).set(&999, 'y');
        store.expire(1_100);
        assert_eq!(store.value(h, 0, 1_100).get(&999), Some(&'y'));
        store.expire(1_200);
        assert_eq!(store.keys(), 0, "everything is swept once expired");
    }

    #[test]
    fn set_if_absent_keeps_the_first_value_and_its_expiry() {
        let mut reg = StateRegistry::<u32>::new(InstanceMetrics::standalone());
        let h = reg.value_with_ttl::<char>("first", Duration::from_millis(100));
        let plain = reg.value::<char>("plain");
        let mut store = StateStore::new(reg);
        assert!(store.value(h, 10, 0).set_if_absent(&1, 'a'));
        assert!(!store.value(h, 50, 0).set_if_absent(&1, 'b'), "live: kept");
        assert_eq!(store.value(h, 0, 0).get(&1), Some(&'a'));
        // Not renewed by the refused write: expires at 10 + 100.
        store.expire(110);
        assert_eq!(store.value(h, 0, 110).get(&1), None);
        assert!(
            store.value(h, 120, 110).set_if_absent(&1, 'c'),
            "after expiry"
        );
        // Expired but not yet swept (no sweep since it expired): replaced, and swept after
        // its new expiry.
        assert!(store.value(h, 125, 110).set_if_absent(&2, 'x'));
        assert_eq!(store.value(h, 0, 226).get(&2), None, "expired at 225");
        assert!(store.value(h, 300, 226).set_if_absent(&2, 'y'));
        assert_eq!(store.value(h, 0, 226).get(&2), Some(&'y'));
        store.expire(399);
        assert_eq!(
            store.value(h, 0, 399).get(&2),
            Some(&'y'),
            "lives until 400"
        );
        assert_eq!(store.value(h, 0, 400).get(&2), None);
        store.expire(10_000);
        assert_eq!(store.keys(), 0, "swept at its new expiry");
        assert!(store.value(plain, 0, 0).set_if_absent(&7, 'p'));
        assert!(!store.value(plain, 0, 0).set_if_absent(&7, 'q'));
        assert_eq!(store.value(plain, 0, 0).get(&7), Some(&'p'));
    }

    #[test]
    fn expired_values_leave_memory_within_a_quarter_of_the_ttl() {
        let mut reg = StateRegistry::<u32>::new(InstanceMetrics::standalone());
        let h = reg.value_with_ttl::<u8>("v", Duration::from_millis(400));
        let mut store = StateStore::new(reg);
        // Key t written at t: expires at t + 400.
        for t in 0..100u32 {
            store.value(h, i64::from(t), 0).set(&t, 1);
        }
        store.expire(399);
        assert_eq!(store.keys(), 100, "nothing has expired");
        store.expire(450);
        assert_eq!(store.keys(), 49, "keys 0..=50 swept, 51..100 live");
        store.expire(490);
        assert_eq!(store.value(h, 0, 490).get(&99), Some(&1), "expires at 499");
        assert_eq!(
            store.value(h, 0, 490).get(&89),
            None,
            "invisible once expired"
        );
        assert_eq!(
            store.keys(),
            49,
            "no sweep within 100 ms (400 / 4) of the last"
        );
        store.expire(550);
        assert_eq!(store.keys(), 0, "swept 100 ms after the last sweep");
    }

    #[test]
    fn values_without_ttl_never_expire() {
        let mut reg = StateRegistry::<u32>::new(InstanceMetrics::standalone());
        let h = reg.value::<u8>("v");
        let mut store = StateStore::new(reg);
        store.value(h, 5, 0).set(&1, 9);
        store.expire(i64::MAX - 1);
        assert_eq!(store.value(h, 0, i64::MAX - 1).get(&1), Some(&9));
    }

    #[test]
    fn map_state_drops_empty_keys() {
        let mut reg = StateRegistry::<u8>::new(InstanceMetrics::standalone());
        let h = reg.map::<u32, char>("m");
        let mut store = StateStore::new(reg);
        store.map(h).insert(&1, 10, 'x');
        store.map(h).insert(&1, 11, 'y');
        assert_eq!(store.map(h).len_of(&1), 2);
        store.map(h).remove(&1, &10);
        store.map(h).remove(&1, &11);
        assert!(store.map(h).is_empty());
    }

    #[test]
    fn list_state_appends_in_order() {
        let mut reg = StateRegistry::<u8>::new(InstanceMetrics::standalone());
        let h = reg.list::<u32>("l");
        let mut store = StateStore::new(reg);
        store.list(h).push(&7, 1);
        store.list(h).push(&7, 2);
        assert_eq!(store.list(h).get(&7), &[1, 2]);
        assert_eq!(store.list(h).take(&7), vec![1, 2]);
        assert!(store.list(h).get(&7).is_empty());
    }

    #[test]
    #[should_panic(expected = "declared twice")]
    fn duplicate_state_names_are_rejected() {
        let mut reg = StateRegistry::<u8>::new(InstanceMetrics::standalone());
        reg.value::<u32>("x");
        reg.list::<u32>("x");
    }
}
