//! Event time and processing time.
//!
//! sluice follows Flink's time model. Every record carries an *event timestamp*: milliseconds
//! since the Unix epoch as an [`i64`] ([`Timestamp`]). A *watermark* `w` is an assertion that no
//! more records with a timestamp `<= w` are expected; event-time timers and windows fire when the
//! watermark passes them. End of bounded input is a final watermark of [`Timestamp::MAX`], which
//! fires everything that is pending.
//!
//! *Processing time* is read from a [`Clock`]. The default is [`SystemClock`]; tests inject a
//! [`ManualClock`] and advance it by hand, so no test ever has to sleep.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch. The unit of event time and processing time.
pub type Timestamp = i64;

/// The timestamp of a record that has none yet (before a watermark strategy assigns one).
pub const NO_TIMESTAMP: Timestamp = Timestamp::MIN;

/// Converts a [`Duration`] to whole milliseconds, saturating at [`i64::MAX`].
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A source of processing time.
///
/// Implementations must be cheap to call: the runtime reads the clock once per loop iteration of
/// every worker, not once per record.
pub trait Clock: Send + Sync + 'static {
    /// The current processing time in milliseconds since the Unix epoch.
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(duration_ms)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// # Examples
///
/// ```
/// use sluice_engine::time::{Clock, ManualClock};
/// let clock = ManualClock::new(1_000);
/// let view = clock.clone();
/// clock.advance(std::time::Duration::from_millis(500));
/// assert_eq!(view.now(), 1_500);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// A manual clock that reads `start` until it is moved.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Arc::new(AtomicI64::new(start)),
        }
    }

    /// Sets the time. Moving it backwards is allowed but timers already fired stay fired.
    pub fn set(&self, t: Timestamp) {
        self.now.store(t, Ordering::Release);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(duration_ms(d), Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        self.now.load(Ordering::Acquire)
    }
}
