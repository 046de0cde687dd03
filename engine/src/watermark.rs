//! Watermark strategies: where event timestamps come from and how far behind the newest one the
//! watermark trails.
//!
//! Build one with [`Watermarks`], give it a timestamp extractor, and pass it to
//! [`Stream::with_watermarks`](crate::Stream::with_watermarks):
//!
//! ```
//! use std::time::Duration;
//! use sluice_engine::Watermarks;
//! struct Ride { ts: i64 }
//! let strategy = Watermarks::bounded_out_of_orderness(Duration::from_secs(5))
//!     .timestamps(|r: &Ride| r.ts)
//!     .idle_after(Duration::from_secs(30));
//! ```
//!
//! The watermark is `max_timestamp_seen - bound - 1` (Flink's definition): a record whose
//! timestamp is at most the watermark is *late*. It is computed once per batch, not per record.
//!
//! Applied directly to a source, the strategy runs *per split* inside the source (as Flink's
//! FLIP-27 sources do) and the source's watermark is the minimum over its splits, so splits that
//! progress at different speeds do not make each other's records late. An input that produced
//! nothing for the idle timeout (processing time) is marked idle and does not hold back the
//! watermark of the operators downstream until it produces again.

use std::marker::PhantomData;
use std::time::Duration;

use crate::record::Record;
use crate::time::{duration_ms, Timestamp};

/// Entry point for building a [`WatermarkStrategy`].
#[derive(Debug, Clone, Copy)]
pub struct Watermarks;

impl Watermarks {
    /// Records may arrive up to `max` out of order; the watermark trails the largest timestamp
    /// seen by `max` (plus one millisecond).
    pub fn bounded_out_of_orderness(max: Duration) -> WatermarkStrategy<FromSource> {
        WatermarkStrategy {
            bound: duration_ms(max),
            idle_timeout: None,
            max_drift: None,
            assigner: FromSource,
        }
    }

    /// Timestamps never decrease; the watermark trails the largest timestamp by one millisecond.
    pub fn monotonous() -> WatermarkStrategy<FromSource> {
        Self::bounded_out_of_orderness(Duration::ZERO)
    }
}

/// How watermarks are generated for a stream: an out-of-orderness bound, an optional idleness
/// timeout, and a timestamp assigner.
#[derive(Debug, Clone)]
pub struct WatermarkStrategy<A> {
    pub(crate) bound: i64,
    pub(crate) idle_timeout: Option<i64>,
    pub(crate) max_drift: Option<i64>,
    pub(crate) assigner: A,
}

impl<A> WatermarkStrategy<A> {
    /// Takes each record's timestamp from its value.
    pub fn timestamps<T, F>(self, f: F) -> WatermarkStrategy<Extract<F, T>>
    where
        F: Fn(&T) -> Timestamp + Send + Sync + 'static,
    {
        WatermarkStrategy {
            bound: self.bound,
            idle_timeout: self.idle_timeout,
            max_drift: self.max_drift,
            assigner: Extract(f, PhantomData),
        }
    }

    /// Marks an input idle after `timeout` of processing time without records, so that it does
    /// not hold back the watermark. Default: never.
    pub fn idle_after(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(duration_ms(timeout).max(1));
        self
    }

    /// Watermark alignment (as Flink's): a source split stops being read while its watermark is
    /// more than `max_drift` ahead of the least advanced split of the same source, on any
    /// worker, and resumes when the others catch up. Without it, splits read at their own pace
    /// (a worker per split), event time drifts apart between them, and everything downstream
    /// buffers the difference until the slowest watermark catches up. Applies when the strategy
    /// is set on a source (`env.source(..).with_watermarks(..)`); ignored elsewhere. A split
    /// that produces nothing holds the others back unless it is marked idle
    /// ([`idle_after`](Self::idle_after)). Default: off.
    pub fn align_splits(mut self, max_drift: Duration) -> Self {
        self.max_drift = Some(duration_ms(max_drift));
        self
    }

    /// The out-of-orderness bound in milliseconds.
    pub fn bound_ms(&self) -> i64 {
        self.bound
    }
}

/// Assigns event timestamps to a batch of records.
pub trait TimestampAssigner<T>: Send + Sync + 'static {
    /// Sets each record's timestamp; returns the largest one (or `Timestamp::MIN` if empty).
    fn assign(&self, batch: &mut [Record<T>]) -> Timestamp;
}

/// Keep the timestamps the source attached (see
/// [`SourceOutput::push_at`](crate::source::SourceOutput::push_at)).
#[derive(Debug, Clone, Copy)]
pub struct FromSource;

impl<T> TimestampAssigner<T> for FromSource {
    #[inline]
    fn assign(&self, batch: &mut [Record<T>]) -> Timestamp {
        batch
            .iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(Timestamp::MIN)
    }
}

/// Extract timestamps from record values with a function.
pub struct Extract<F, T>(F, PhantomData<fn(&T)>);

impl<F: Clone, T> Clone for Extract<F, T> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<F, T> std::fmt::Debug for Extract<F, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Extract(..)")
    }
}

impl<T: 'static, F> TimestampAssigner<T> for Extract<F, T>
where
    F: Fn(&T) -> Timestamp + Send + Sync + 'static,
{
    #[inline]
    fn assign(&self, batch: &mut [Record<T>]) -> Timestamp {
        let mut max = Timestamp::MIN;
        for r in batch {
            let ts = (self.0)(&r.value);
            r.timestamp = ts;
            max = max.max(ts);
        }
        max
    }
}

/// The watermark state of one input (a split, or a stream): the largest timestamp seen and when
/// the input was last active.
#[derive(Debug, Clone)]
pub(crate) struct WatermarkGen {
    bound: i64,
    idle_timeout: Option<i64>,
    max_ts: Timestamp,
    last_active: Timestamp,
    pub(crate) idle: bool,
}

impl WatermarkGen {
    pub(crate) fn new<A>(s: &WatermarkStrategy<A>, now: Timestamp) -> Self {
        Self {
            bound: s.bound,
            idle_timeout: s.idle_timeout,
            max_ts: Timestamp::MIN,
            last_active: now,
            idle: false,
        }
    }

    /// Records with timestamps up to `max_ts` were seen at processing time `now`.
    #[inline]
    pub(crate) fn observe(&mut self, max_ts: Timestamp, now: Timestamp) {
        self.max_ts = self.max_ts.max(max_ts);
        self.last_active = now;
        self.idle = false;
    }

    /// The split is being held back (by watermark alignment) at processing time `now`: it is
    /// not idle, whatever its last event's time.
    #[inline]
    pub(crate) fn hold(&mut self, now: Timestamp) {
        self.last_active = now;
    }

    /// The largest timestamp observed.
    pub(crate) fn max_timestamp(&self) -> Timestamp {
        self.max_ts
    }

    /// Continues from a checkpoint in which the largest timestamp observed was `max_ts`.
    pub(crate) fn restore(&mut self, max_ts: Timestamp) {
        self.max_ts = self.max_ts.max(max_ts);
    }

    /// The current watermark.
    #[inline]
    pub(crate) fn watermark(&self) -> Timestamp {
        if self.max_ts == Timestamp::MIN {
            Timestamp::MIN
        } else {
            self.max_ts.saturating_sub(self.bound).saturating_sub(1)
        }
    }

    /// Whether the input has now been silent for the idle timeout. Sets `idle` when it first
    /// becomes true and reports that transition.
    pub(crate) fn check_idle(&mut self, now: Timestamp) -> bool {
        match self.idle_timeout {
            Some(t) if !self.idle && now.saturating_sub(self.last_active) >= t => {
                self.idle = true;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_trails_the_max_timestamp_by_the_bound_plus_one() {
        let s = Watermarks::bounded_out_of_orderness(Duration::from_millis(100));
        let mut g = WatermarkGen::new(&s, 0);
        assert_eq!(g.watermark(), Timestamp::MIN);
        g.observe(1_000, 0);
        g.observe(900, 0);
        assert_eq!(g.watermark(), 899);
    }

    #[test]
    fn a_held_split_is_not_idle() {
        let s = Watermarks::monotonous().idle_after(Duration::from_millis(50));
        let mut g = WatermarkGen::new(&s, 0);
        g.hold(40);
        assert!(!g.check_idle(60), "held at 40: waiting, not idle");
        assert!(g.check_idle(90));
    }

    #[test]
    fn idleness_is_reported_once_after_the_timeout() {
        let s = Watermarks::monotonous().idle_after(Duration::from_millis(50));
        let mut g = WatermarkGen::new(&s, 0);
        assert!(!g.check_idle(49));
        assert!(g.check_idle(50));
        assert!(!g.check_idle(60));
        g.observe(5, 70);
        assert!(!g.idle);
    }

    #[test]
    fn extractor_sets_timestamps_and_returns_the_max() {
        let s = Watermarks::monotonous().timestamps(|v: &i64| *v * 10);
        let mut batch = vec![Record::new(0, 3), Record::new(0, 1)];
        assert_eq!(s.assigner.assign(&mut batch), 30);
        assert_eq!(batch[1].timestamp, 10);
    }
}
