//! Job metrics: per-operator record counts, counters that operators name themselves
//! ([`Counter`]), and per-exchange buffering.
//!
//! Counters are updated once per batch (never per record). Each operator instance has its own
//! counters, written only by its worker's thread (a relaxed load and store, no read-modify-write;
//! the main counters sit on cache lines of their own), so reading them from another thread through a
//! [`JobHandle`](crate::JobHandle) is cheap and safe while the job runs.
//!
//! # Checkpointing
//!
//! Every operator instance puts its counts in each checkpoint, as of the barrier (the same cut
//! as its state), and a job restored from a checkpoint starts its counts from the checkpoint's
//! ([`OperatorMetrics::restored`]). So the counts of a job that failed and was restored equal
//! those of a run without failure, as its exactly-once output does.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Record counts of one operator (or one instance of it), as checkpointed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub(crate) records_in: u64,
    pub(crate) records_out: u64,
    pub(crate) late: u64,
    /// Per side-output port, in port order.
    pub(crate) side: Vec<u64>,
    /// Named counters ([`Counter`]), sorted by name.
    pub(crate) named: Vec<(String, u64)>,
}

impl Counts {
    /// Adds `other` in (side ports by position).
    pub(crate) fn add(&mut self, other: &Counts) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.late += other.late;
        if self.side.len() < other.side.len() {
            self.side.resize(other.side.len(), 0);
        }
        for (a, b) in self.side.iter_mut().zip(&other.side) {
            *a += b;
        }
        for (name, n) in &other.named {
            add_named(&mut self.named, name, *n);
        }
    }
}

/// Adds `n` to the entry `name` of `named` (sorted by name), inserting it if missing.
fn add_named(named: &mut Vec<(String, u64)>, name: &str, n: u64) {
    match named.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
        Ok(i) => named[i].1 += n,
        Err(i) => named.insert(i, (name.to_string(), n)),
    }
}

/// A count that an operator names and keeps itself, such as a sink's records per kind
/// ([`SinkContext::counter`](crate::sink::SinkContext::counter)): Flink's user metrics and
/// accumulators in one.
///
/// Each operator instance has its own counter of a name; [`OperatorMetrics::counters`] reports
/// their sum. Counters are checkpointed with the record counts, as of the barrier, and a
/// restored job continues them from the checkpoint's, so they count each record once across
/// failures, as the exactly-once output does.
///
/// [`add`](Self::add) is an atomic add on a counter of this instance alone: cheap, but on a
/// hot path count in a local variable and add once per batch.
#[derive(Debug, Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// A counter that belongs to no job (what a [`SinkContext`](crate::sink::SinkContext) made
    /// outside a job gives): it counts, but nothing reports or checkpoints it.
    pub fn detached() -> Self {
        Self::default()
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// What this instance has counted in this run (without what a restored checkpoint had
    /// counted; [`OperatorMetrics::counter`] has the whole).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The counters of one operator instance. Aligned to their own cache lines: the instances of an
/// operator run on different cores. (The side-output counters are a separate small allocation.)
#[derive(Debug, Default)]
#[repr(align(128))]
struct InstanceCounters {
    records_in: AtomicU64,
    records_out: AtomicU64,
    late: AtomicU64,
    /// One counter per side-output port, in port order.
    side: Box<[AtomicU64]>,
    /// Keys with keyed state (a gauge).
    state_keys: AtomicU64,
    /// Pending timers (a gauge).
    timers: AtomicU64,
    /// Named counters, in the order they were asked for. Locked only to register one and to
    /// read them (at barriers and for metrics), never to count.
    named: parking_lot::Mutex<Vec<(String, Counter)>>,
}

impl InstanceCounters {
    fn counts(&self) -> Counts {
        Counts {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            side: self
                .side
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            named: {
                let mut named = Vec::new();
                for (name, c) in self.named.lock().iter() {
                    add_named(&mut named, name, c.get());
                }
                named
            },
        }
    }
}

/// Adds `n` to a counter that only one thread writes: a plain load and store, not a locked
/// read-modify-write.
#[inline]
fn bump(c: &AtomicU64, n: usize) {
    if n > 0 {
        c.store(c.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
    }
}

/// The counters of one operator: one set per worker, plus what a restored checkpoint had
/// counted.
#[derive(Debug)]
pub(crate) struct OpMetrics {
    instances: Box<[InstanceCounters]>,
    restored: Counts,
}

impl OpMetrics {
    /// Counters for an operator with `side_ports` side-output ports on `workers` workers,
    /// starting from `restored`.
    pub(crate) fn new(side_ports: usize, workers: usize, mut restored: Counts) -> Self {
        restored.side.resize(side_ports, 0);
        let zeros = || (0..side_ports).map(|_| AtomicU64::new(0)).collect();
        Self {
            instances: (0..workers)
                .map(|_| InstanceCounters {
                    side: zeros(),
                    ..InstanceCounters::default()
                })
                .collect(),
            restored,
        }
    }

    /// What the restored checkpoint had counted (zero on a fresh start).
    pub(crate) fn restored(&self) -> &Counts {
        &self.restored
    }

    /// The counts over every instance, the restored ones included.
    pub(crate) fn totals(&self) -> Counts {
        let mut total = self.restored.clone();
        for i in self.instances.iter() {
            total.add(&i.counts());
        }
        total
    }

    /// Keys with keyed state, over all instances.
    pub(crate) fn state_keys(&self) -> u64 {
        self.instances
            .iter()
            .map(|i| i.state_keys.load(Ordering::Relaxed))
            .sum()
    }

    /// Pending timers, over all instances.
    pub(crate) fn timers(&self) -> u64 {
        self.instances
            .iter()
            .map(|i| i.timers.load(Ordering::Relaxed))
            .sum()
    }
}

/// An operator instance's handle on its counters. Written only on its worker's thread.
#[derive(Debug, Clone)]
pub(crate) struct InstanceMetrics {
    op: std::sync::Arc<OpMetrics>,
    worker: usize,
}

impl InstanceMetrics {
    pub(crate) fn new(op: std::sync::Arc<OpMetrics>, worker: usize) -> Self {
        assert!(worker < op.instances.len(), "worker index out of range");
        Self { op, worker }
    }

    /// The counters of a lone instance that belongs to no job (for tests of parts).
    #[cfg(test)]
    pub(crate) fn standalone() -> Self {
        Self::new(Arc::new(OpMetrics::new(0, 1, Counts::default())), 0)
    }

    #[inline]
    fn mine(&self) -> &InstanceCounters {
        &self.op.instances[self.worker]
    }

    /// Records the state size of this instance.
    #[inline]
    pub(crate) fn set_state(&self, keys: usize, timers: usize) {
        let c = self.mine();
        c.state_keys.store(keys as u64, Ordering::Relaxed);
        c.timers.store(timers as u64, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn add_in(&self, n: usize) {
        bump(&self.mine().records_in, n);
    }

    #[inline]
    pub(crate) fn add_out(&self, n: usize) {
        bump(&self.mine().records_out, n);
    }

    #[inline]
    pub(crate) fn add_late(&self, n: usize) {
        bump(&self.mine().late, n);
    }

    #[inline]
    pub(crate) fn add_side(&self, port: usize, n: usize) {
        bump(&self.mine().side[port], n);
    }

    /// This instance's counter `name`, registered on first use.
    pub(crate) fn counter(&self, name: &str) -> Counter {
        let mut named = self.mine().named.lock();
        if let Some((_, c)) = named.iter().find(|(n, _)| n == name) {
            return c.clone();
        }
        let c = Counter::default();
        named.push((name.to_string(), c.clone()));
        c
    }

    /// This instance's counts for a checkpoint: its own, plus (on worker 0, so that they are
    /// counted once) everything the job restored, so that a later restore starts from the
    /// whole.
    pub(crate) fn checkpoint_counts(&self) -> Counts {
        let mut c = self.mine().counts();
        if self.worker == 0 {
            c.add(&self.op.restored);
        }
        c
    }
}

/// Live counters of one exchange (`key_by`).
#[derive(Debug, Default)]
pub(crate) struct ExchangeStats {
    /// Records handed to the exchange and not yet taken out by a receiving worker.
    pub(crate) in_flight: AtomicUsize,
    /// The largest `in_flight` seen.
    pub(crate) max_in_flight: AtomicUsize,
    /// Batches sent.
    pub(crate) batches: AtomicU64,
}

impl ExchangeStats {
    #[inline]
    pub(crate) fn sent(&self, n: usize) {
        let now = self.in_flight.fetch_add(n, Ordering::Relaxed) + n;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn received(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A snapshot of one operator's counters, summed over its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperatorMetrics {
    /// Position in the job graph.
    pub id: usize,
    /// Operator name.
    pub name: String,
    /// Records received.
    pub records_in: u64,
    /// Records emitted on the main output.
    pub records_out: u64,
    /// Records that arrived behind the watermark (for windows: dropped from the result and sent
    /// to the late-data side output, if any).
    pub late: u64,
    /// Records emitted per side output, by tag name.
    pub side_outputs: Vec<(String, u64)>,
    /// The operator's own [`Counter`]s, by name (sorted), summed over its instances.
    pub counters: Vec<(String, u64)>,
    /// Keys holding keyed state, over all workers (keyed operators only).
    pub state_keys: u64,
    /// Pending timers, over all workers (keyed operators only).
    pub pending_timers: u64,
    /// The part of the counts above that the checkpoint the job restored from had counted
    /// (all zero on a fresh start): this run's own counts are the difference.
    pub restored: RestoredCounts,
}

/// What a restored checkpoint had counted for one operator ([`OperatorMetrics::restored`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoredCounts {
    /// Records received.
    pub records_in: u64,
    /// Records emitted on the main output.
    pub records_out: u64,
    /// Late records.
    pub late: u64,
    /// Records emitted per side output, by tag name.
    pub side_outputs: Vec<(String, u64)>,
    /// The operator's own [`Counter`]s, by name.
    pub counters: Vec<(String, u64)>,
}

impl OperatorMetrics {
    /// Records emitted to the side output named `tag`, or 0.
    pub fn side_output(&self, tag: &str) -> u64 {
        self.side_outputs
            .iter()
            .find(|(n, _)| n == tag)
            .map(|(_, c)| *c)
            .unwrap_or(0)
    }

    /// The operator's [`Counter`] `name`, summed over its instances, or 0.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, c)| *c)
    }
}

/// A snapshot of one exchange's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangeMetrics {
    /// The `key_by` operator id.
    pub id: usize,
    /// Its name.
    pub name: String,
    /// Records in flight at the time of the snapshot.
    pub in_flight: usize,
    /// The most records ever in flight at once (bounded by `Config::max_in_flight` plus one
    /// batch per worker).
    pub max_in_flight: usize,
    /// Batches sent over the exchange.
    pub batches: u64,
}

/// Metrics of a job: per operator, per exchange, and the wall time.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct JobMetrics {
    /// Every operator, in graph order.
    pub operators: Vec<OperatorMetrics>,
    /// Every exchange, in graph order.
    pub exchanges: Vec<ExchangeMetrics>,
    /// Time from start until the snapshot (or the end of the job).
    pub elapsed: Duration,
    /// Checkpoints taken so far (all zero when checkpointing is off).
    pub checkpoints: CheckpointMetrics,
}

/// Checkpoint counters of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointMetrics {
    /// Checkpoints (and savepoints) completed: written and committed.
    pub completed: u64,
    /// Id of the newest completed one.
    pub last_id: u64,
    /// Size of its state, in bytes.
    pub last_bytes: u64,
    /// Time from trigger to completion of the newest one.
    pub last_duration: Duration,
    /// The checkpoint the job restored from, if any.
    pub restored_id: Option<u64>,
}

impl JobMetrics {
    /// The operator called `name` (the first one, if several share the name).
    pub fn operator(&self, name: &str) -> Option<&OperatorMetrics> {
        self.operators.iter().find(|o| o.name == name)
    }

    /// The exchange called `name`.
    pub fn exchange(&self, name: &str) -> Option<&ExchangeMetrics> {
        self.exchanges.iter().find(|o| o.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_counters_are_per_instance_and_summed_by_name_with_the_restored_ones() {
        let restored = Counts {
            named: vec![("a".into(), 10), ("old".into(), 4)],
            ..Counts::default()
        };
        let op = Arc::new(OpMetrics::new(0, 2, restored));
        let (w0, w1) = (
            InstanceMetrics::new(op.clone(), 0),
            InstanceMetrics::new(op.clone(), 1),
        );
        w0.counter("b").add(1);
        w0.counter("a").add(2);
        w0.counter("a").add(3); // the same counter again
        w1.counter("a").add(5);
        assert_eq!(
            op.totals().named,
            vec![("a".into(), 20), ("b".into(), 1), ("old".into(), 4)]
        );
        // Worker 0 carries the restored part into the next checkpoint, once.
        assert_eq!(
            w0.checkpoint_counts().named,
            vec![("a".into(), 15), ("b".into(), 1), ("old".into(), 4)]
        );
        assert_eq!(w1.checkpoint_counts().named, vec![("a".into(), 5)]);
    }
}
