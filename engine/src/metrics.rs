//! Job metrics: per-operator record counts and per-exchange buffering.
//!
//! Counters are updated once per batch (never per record) with relaxed atomics, so reading them
//! from another thread through a [`JobHandle`](crate::JobHandle) is cheap and safe while the job
//! runs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Live counters of one operator, shared by all its instances (one per worker).
#[derive(Debug, Default)]
pub(crate) struct OpMetrics {
    pub(crate) records_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    pub(crate) late: AtomicU64,
    /// One counter per side-output port, in port order.
    pub(crate) side: Vec<AtomicU64>,
    /// Keys with keyed state, per worker (a gauge, updated once per batch).
    pub(crate) state_keys: Vec<AtomicU64>,
    /// Pending timers, per worker (a gauge, updated once per batch).
    pub(crate) timers: Vec<AtomicU64>,
}

impl OpMetrics {
    pub(crate) fn new(side_ports: usize, workers: usize) -> Self {
        let zeros = |n| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            side: zeros(side_ports),
            state_keys: zeros(workers),
            timers: zeros(workers),
            ..Self::default()
        }
    }

    /// Records the state size of the instance on `worker`.
    #[inline]
    pub(crate) fn set_state(&self, worker: usize, keys: usize, timers: usize) {
        self.state_keys[worker].store(keys as u64, Ordering::Relaxed);
        self.timers[worker].store(timers as u64, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn add_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn add_out(&self, n: usize) {
        if n > 0 {
            self.records_out.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn add_late(&self, n: usize) {
        if n > 0 {
            self.late.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn add_side(&self, port: usize, n: usize) {
        if n > 0 {
            self.side[port].fetch_add(n as u64, Ordering::Relaxed);
        }
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
    /// Keys holding keyed state, over all workers (keyed operators only).
    pub state_keys: u64,
    /// Pending timers, over all workers (keyed operators only).
    pub pending_timers: u64,
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
