//! A seeded synthetic source, [`GeneratorSource`], and the small RNG it hands to its function,
//! [`SplitMix64`].
//!
//! The point of the design: a record's value depends only on the seed and its sequence number,
//! never on parallelism, splits, batching or timing, so that runs, restores and tests are exact.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use sluice_engine::source::{Source, SourceOutput, SourceStatus, Split, SplitReader};
use sluice_engine::BoxError;

use crate::share::{share_count, share_splits};

/// The SplitMix64 increment (2^64 divided by the golden ratio, rounded to odd).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijective 64-bit mixer.
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small, fast, seedable pseudo-random generator (Steele, Lea and Flood's SplitMix64).
///
/// Good enough for synthetic data and tests; not for cryptography. Its output for a given seed
/// is fixed: generated data sets are reproducible across versions of this crate.
///
/// # Examples
///
/// ```
/// use sluice_connectors::SplitMix64;
///
/// let mut rng = SplitMix64::new(42);
/// let die = 1 + rng.below(6);
/// assert!((1..=6).contains(&die));
/// assert_eq!(SplitMix64::new(42).next_u64(), SplitMix64::new(42).next_u64());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The generator [`GeneratorSource`] hands to its function for record `seq` under `seed`.
    ///
    /// The state is `mix64(seed ^ seq * GOLDEN_GAMMA)`: distinct sequence numbers get distinct,
    /// well-spread starting states (the mixing keeps the streams of neighbouring records from
    /// overlapping, which plain `seed ^ seq * GOLDEN_GAMMA` would do for SplitMix64).
    #[inline]
    pub fn for_record(seed: u64, seq: u64) -> Self {
        Self::new(mix64(seed ^ seq.wrapping_mul(GOLDEN_GAMMA)))
    }

    /// The next 64 uniformly distributed bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// The next 32 uniformly distributed bits.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniform `f64` in `[0, 1)`, with 53 bits of precision.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n`, without modulo bias (Lemire's multiply-and-reject).
    ///
    /// # Panics
    ///
    /// If `n == 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SplitMix64::below(0): the range 0..0 is empty");
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            // Reject the few low products that would make some results more likely.
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// A uniform `f64` in `[low, high)` (or `low` when `high <= low`).
    #[inline]
    pub fn range_f64(&mut self, low: f64, high: f64) -> f64 {
        if high <= low {
            return low;
        }
        low + (high - low) * self.next_f64()
    }

    /// `true` with probability `p` (clamped to `[0, 1]`).
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// A uniformly chosen element of `items`, or `None` if it is empty.
    #[inline]
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.below(items.len() as u64) as usize)
    }
}

/// The generating function, boxed at the connector boundary.
type GenFn<T> = Arc<dyn Fn(u64, &mut SplitMix64) -> T + Send + Sync>;

/// A synthetic source: record `seq` is `f(seq, &mut SplitMix64::for_record(seed, seq))`, for
/// every `seq` in `0..count`.
///
/// The RNG handed to `f` is derived from `(seed, seq)` alone ([`SplitMix64::for_record`]), so
/// the value of record `seq` depends only on the seed and `seq`: never on the parallelism, the
/// number of splits, the batch size or timing. Two runs with the same seed produce the same
/// multiset of records at any parallelism. Records carry no timestamp: derive one from the value
/// with `Watermarks::...timestamps(..)`.
///
/// # Checkpointing
///
/// Split `i` of `n` generates the sequence numbers `i, i + n, i + 2n, ...` below `count`. Its
/// position is the number of records it has emitted; `open(split, Some(k))` resumes at its
/// `k`-th sequence number, so a restored split produces exactly the records it had not emitted.
///
/// # Rate limiting
///
/// With [`rate`](Self::rate) each split keeps to a schedule of `rate / n` records per second
/// from its first poll. A split that is ahead of its schedule reports
/// [`SourceStatus::Pending`]: it never sleeps, so the worker thread stays free for other work.
/// A split that fell behind (a slow consumer) catches up in full batches.
///
/// # Examples
///
/// ```
/// use sluice_connectors::{CollectSink, GeneratorSource};
/// use sluice_engine::{Config, StreamEnv};
///
/// let env = StreamEnv::new(Config::default().parallelism(2));
/// let out = CollectSink::new();
/// let dice = GeneratorSource::new(|_seq, rng| 1 + rng.below(6)).count(1_000).seed(7);
/// env.source(dice).sink(out.clone());
/// env.execute().unwrap();
/// assert_eq!(out.len(), 1_000);
/// assert!(out.values().iter().all(|d| (1..=6).contains(d)));
/// ```
pub struct GeneratorSource<T> {
    f: GenFn<T>,
    count: Option<u64>,
    splits: Option<usize>,
    seed: u64,
    rate: Option<f64>,
}

impl<T> Clone for GeneratorSource<T> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            count: self.count,
            splits: self.splits,
            seed: self.seed,
            rate: self.rate,
        }
    }
}

impl<T> fmt::Debug for GeneratorSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratorSource")
            .field("count", &self.count)
            .field("splits", &self.splits)
            .field("seed", &self.seed)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl<T: 'static> GeneratorSource<T> {
    /// An unbounded generator of `f(seq, rng)`, seed 0, one split per worker, no rate limit.
    pub fn new(f: impl Fn(u64, &mut SplitMix64) -> T + Send + Sync + 'static) -> Self {
        Self {
            f: Arc::new(f),
            count: None,
            splits: None,
            seed: 0,
            rate: None,
        }
    }

    /// Generates the sequence numbers `0..n` only (a bounded source). Default: unbounded.
    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    /// Uses exactly `n` splits (at least 1) instead of one per worker.
    ///
    /// The generated records do not depend on it; only which worker generates which does.
    pub fn splits(mut self, n: usize) -> Self {
        self.splits = Some(n.max(1));
        self
    }

    /// Seeds the per-record generators (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Limits the source to about `events_per_sec` records per second in total, shared evenly
    /// by the splits. An infinite rate means no limit (the default).
    ///
    /// # Panics
    ///
    /// If `events_per_sec` is not positive (or is NaN).
    pub fn rate(mut self, events_per_sec: f64) -> Self {
        assert!(
            events_per_sec > 0.0,
            "GeneratorSource::rate must be positive, got {events_per_sec}"
        );
        self.rate = events_per_sec.is_finite().then_some(events_per_sec);
        self
    }
}

impl<T: 'static> Source<T> for GeneratorSource<T> {
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok(share_splits(
            "generator",
            self.splits.unwrap_or(parallelism).max(1),
        ))
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<T>>, BoxError> {
        let n = share_count(split)?;
        Ok(Box::new(GeneratorReader::new(
            self,
            split.index as u64,
            n as u64,
            position.unwrap_or(0),
        )))
    }
}

/// Keeps a split to `per_sec` records per second from its first poll.
#[derive(Debug)]
struct RateLimiter {
    per_sec: f64,
    start: Option<Instant>,
    granted: u64,
}

impl RateLimiter {
    fn new(per_sec: f64) -> Self {
        Self {
            per_sec,
            start: None,
            granted: 0,
        }
    }

    /// How many records may be emitted at `now`. The first one is due immediately.
    fn allowance(&mut self, now: Instant) -> u64 {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        // `as` saturates, so a very long run cannot overflow.
        let due = ((elapsed * self.per_sec) as u64).saturating_add(1);
        due.saturating_sub(self.granted)
    }

    fn take(&mut self, n: u64) {
        self.granted += n;
    }
}

struct GeneratorReader<T> {
    f: GenFn<T>,
    seed: u64,
    /// The next sequence number, or `None` once past `u64::MAX`.
    next: Option<u64>,
    stride: u64,
    /// Exclusive upper bound on sequence numbers.
    end: u64,
    emitted: u64,
    limiter: Option<RateLimiter>,
}

impl<T> GeneratorReader<T> {
    fn new(source: &GeneratorSource<T>, index: u64, n: u64, position: u64) -> Self {
        Self {
            f: source.f.clone(),
            seed: source.seed,
            next: position.checked_mul(n).and_then(|k| k.checked_add(index)),
            stride: n,
            end: source.count.unwrap_or(u64::MAX),
            emitted: position,
            limiter: source.rate.map(|r| RateLimiter::new(r / n as f64)),
        }
    }

    fn done(&self) -> bool {
        !matches!(self.next, Some(seq) if seq < self.end)
    }

    /// Emits up to `budget` records (fewer if the rate limit says so) through `emit`.
    #[inline]
    fn fill(&mut self, budget: usize, now: Instant, mut emit: impl FnMut(T)) -> SourceStatus {
        let mut budget = budget as u64;
        let mut limited = false;
        if let Some(limiter) = &mut self.limiter {
            let allowed = limiter.allowance(now);
            if allowed <= budget {
                budget = allowed;
                limited = true;
            }
        }
        let mut produced = 0;
        while produced < budget {
            let Some(seq) = self.next.filter(|&s| s < self.end) else {
                break;
            };
            let mut rng = SplitMix64::for_record(self.seed, seq);
            emit((self.f)(seq, &mut rng));
            produced += 1;
            self.next = seq.checked_add(self.stride);
        }
        self.emitted += produced;
        if let Some(limiter) = &mut self.limiter {
            limiter.take(produced);
        }
        if self.done() {
            SourceStatus::Finished
        } else if limited {
            SourceStatus::Pending
        } else {
            SourceStatus::More
        }
    }
}

impl<T> SplitReader<T> for GeneratorReader<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, BoxError> {
        if self.done() {
            return Ok(SourceStatus::Finished);
        }
        let budget = out.remaining();
        Ok(self.fill(budget, Instant::now(), |v| out.push(v)))
    }

    fn position(&self) -> u64 {
        self.emitted
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn reader(
        src: &GeneratorSource<(u64, u64)>,
        i: usize,
        n: usize,
        pos: Option<u64>,
    ) -> GeneratorReader<(u64, u64)> {
        let split = &share_splits("generator", n)[i];
        GeneratorReader::new(
            src,
            split.index as u64,
            share_count(split).unwrap() as u64,
            pos.unwrap_or(0),
        )
    }

    fn drain(r: &mut GeneratorReader<(u64, u64)>, budget: usize) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        while r.fill(budget, Instant::now(), |v| out.push(v)) != SourceStatus::Finished {}
        out
    }

    fn pairs() -> GeneratorSource<(u64, u64)> {
        GeneratorSource::new(|seq, rng| (seq, rng.next_u64()))
    }

    #[test]
    fn splitmix64_matches_reference_vector() {
        // First outputs of SplitMix64 seeded with 1234567 (the reference implementation's test).
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
        assert_eq!(rng.next_u64(), 9817491932198370423);
    }

    #[test]
    fn below_and_next_f64_stay_in_range() {
        let mut rng = SplitMix64::new(9);
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            seen[rng.below(7) as usize] += 1;
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
        // Every value shows up about 1000 times.
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(rng.below(1), 0);
        assert!(rng.below(u64::MAX) < u64::MAX);
        assert_eq!(rng.pick::<u8>(&[]), None);
        assert_eq!(rng.range_f64(3.0, 3.0), 3.0);
    }

    #[test]
    fn record_rngs_of_neighbouring_sequence_numbers_do_not_overlap() {
        let mut a = SplitMix64::for_record(0, 5);
        let mut b = SplitMix64::for_record(0, 6);
        a.next_u64();
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn splits_partition_the_sequence() {
        let src = pairs().count(10).seed(3);
        let mut all: Vec<_> = (0..3)
            .flat_map(|i| drain(&mut reader(&src, i, 3, None), 4))
            .collect();
        all.sort();
        let single = drain(&mut reader(&src, 0, 1, None), 1024);
        assert_eq!(all, single);
        assert_eq!(
            all.iter().map(|p| p.0).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn position_counts_records_and_resumes_exactly() {
        let src = pairs().count(20).seed(11);
        let full = drain(&mut reader(&src, 1, 2, None), 1024);
        let mut r = reader(&src, 1, 2, None);
        let mut head = Vec::new();
        assert_eq!(
            r.fill(4, Instant::now(), |v| head.push(v)),
            SourceStatus::More
        );
        assert_eq!(r.position(), 4);
        let tail = drain(&mut reader(&src, 1, 2, Some(r.position())), 3);
        head.extend(tail);
        assert_eq!(head, full);
    }

    #[test]
    fn zero_count_and_far_positions_finish_at_once() {
        let mut r = reader(&pairs().count(0), 0, 1, None);
        assert_eq!(
            r.fill(10, Instant::now(), |_| unreachable!()),
            SourceStatus::Finished
        );
        let r = reader(&pairs(), 1, 2, Some(u64::MAX));
        assert!(r.done());
    }

    #[test]
    fn rate_limit_returns_pending_when_ahead_of_schedule() {
        // 10 records/s over 2 splits: 5 per second per split.
        let src = pairs().rate(10.0).splits(2);
        let mut r = reader(&src, 0, 2, None);
        let t0 = Instant::now();
        let mut out = Vec::new();
        assert_eq!(r.fill(100, t0, |v| out.push(v)), SourceStatus::Pending);
        assert_eq!(out.len(), 1, "the first record is due at once");
        assert_eq!(r.fill(100, t0, |v| out.push(v)), SourceStatus::Pending);
        assert_eq!(out.len(), 1);
        // One second later, five more are due.
        assert_eq!(
            r.fill(100, t0 + Duration::from_secs(1), |v| out.push(v)),
            SourceStatus::Pending
        );
        assert_eq!(out.len(), 6);
        // A small budget is the limit when the schedule allows more.
        assert_eq!(
            r.fill(2, t0 + Duration::from_secs(3), |v| out.push(v)),
            SourceStatus::More
        );
        assert_eq!(out.len(), 8);
        assert_eq!(r.position(), 8);
    }

    #[test]
    #[should_panic(expected = "must be positive")]
    fn rate_rejects_zero() {
        let _ = pairs().rate(0.0);
    }
}
