//! Event-time windows: tumbling, sliding and session windows over a keyed stream, with
//! incremental aggregation, allowed lateness and a late-data side output.
//!
//! ```
//! use std::time::Duration;
//! use sluice_engine::prelude::*;
//! use sluice_engine::window::{Tumbling, WindowResult};
//! use sluice_connectors::{CollectSink, VecSource};
//!
//! let env = StreamEnv::new(Config::default().parallelism(2));
//! let out = CollectSink::new();
//! // (zone, timestamp in ms)
//! env.source(VecSource::new(vec![(1u32, 1_000i64), (1, 2_000), (2, 2_500), (1, 6_000)]))
//!     .with_watermarks(Watermarks::bounded_out_of_orderness(Duration::from_secs(1)).timestamps(|e: &(u32, i64)| e.1))
//!     .key_by(|e| e.0)
//!     .window(Tumbling::of(Duration::from_secs(5)))
//!     .count()
//!     .map(|r: WindowResult<u32, u64>| (r.key, r.window.start, r.value))
//!     .sink(out.clone());
//! env.execute()?;
//! assert_eq!(out.sorted_values(), vec![(1, 0, 2), (1, 5_000, 1), (2, 0, 1)]);
//! # Ok::<(), sluice_engine::JobError>(())
//! ```
//!
//! # Semantics (Flink's)
//!
//! - A window is `[start, end)`; its *max timestamp* is `end - 1`. It fires when the watermark
//!   reaches its max timestamp. Results carry the key, the window and the value, with timestamp
//!   `end - 1`.
//! - Tumbling windows of size `s` (offset `o`) start at `o + k * s`. Sliding windows of size `s`
//!   and slide `d` (`d <= s`) start at `o + k * d`; an element belongs to `s / d` of them
//!   (rounded up or down when `d` does not divide `s`).
//!   Session windows start at an element and end `gap` after the last element; sessions of a key
//!   that touch or overlap merge, whatever the order the elements arrive in. (As in Flink, a
//!   session fires when the watermark reaches `end - 1`: an element at exactly `end` that
//!   arrives after that is not late, but starts a new session.)
//! - **Allowed lateness** `l`: a window's state is kept until the watermark reaches
//!   `end - 1 + l`. An element that arrives after its window fired, but before that, updates the
//!   window, which fires again at once, with [`WindowResult::is_update`] set if its key had a
//!   result in that window. (A session that such an element merges past the watermark fires
//!   again when the watermark reaches its new end.)
//! - An element whose windows are all past `end - 1 + l` is **late**: it is counted in the
//!   operator's `late` metric and emitted to the late-data side output if one was set with
//!   [`WindowedStream::late_data`]. It is never silently dropped and never causes a panic.
//!   Records without a timestamp (no watermark strategy upstream) are treated as late.
//!
//! # Implementation
//!
//! Tumbling and sliding windows keep state as *pane -> (key -> accumulator)* where a pane is a
//! slice of time of length `gcd(size, slide)`: an element updates exactly one accumulator, only a
//! few panes are open at a time, and a watermark that closes a window walks the panes in time
//! order; there is no timer per key. Sessions keep, per key, a short list of open sessions and
//! one time-ordered queue of "earliest possible close" entries that is re-armed lazily.

pub(crate) mod function;

use std::time::Duration;

pub use function::{Aggregate, Count};

use crate::time::{duration_ms, Timestamp};

/// A time window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// Inclusive start, in milliseconds.
    pub start: Timestamp,
    /// Exclusive end, in milliseconds.
    pub end: Timestamp,
}

impl Window {
    /// The largest timestamp inside the window: `end - 1`.
    pub fn max_timestamp(&self) -> Timestamp {
        self.end - 1
    }
}

/// The result of one window for one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowResult<K, V> {
    /// The key.
    pub key: K,
    /// The window.
    pub window: Window,
    /// The window function's output.
    pub value: V,
    /// Whether this result replaces one emitted earlier for the same key and window (a late
    /// element within the allowed lateness arrived; for sessions, the window may also have
    /// grown by merging).
    pub is_update: bool,
}

/// How elements are assigned to windows. Build one with [`Tumbling`], [`Sliding`] or
/// [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed-size windows every `slide` (tumbling when `slide == size`).
    Sliding {
        /// Window length in ms.
        size: i64,
        /// Distance between window starts in ms.
        slide: i64,
        /// Offset of window starts from the epoch in ms.
        offset: i64,
    },
    /// Session windows that close after `gap` ms without elements.
    Session {
        /// Inactivity gap in ms.
        gap: i64,
    },
}

/// Tumbling (fixed, non-overlapping) windows.
#[derive(Debug, Clone, Copy)]
pub struct Tumbling;

impl Tumbling {
    /// Windows of length `size`, aligned to the epoch.
    pub fn of(size: Duration) -> WindowSpec {
        let size = duration_ms(size);
        WindowSpec::Sliding {
            size,
            slide: size,
            offset: 0,
        }
    }

    /// Windows of length `size` starting at `offset` past each multiple of `size` (use it for
    /// time zones, say).
    pub fn with_offset(size: Duration, offset: Duration) -> WindowSpec {
        let size = duration_ms(size);
        WindowSpec::Sliding {
            size,
            slide: size,
            offset: duration_ms(offset),
        }
    }
}

/// Sliding (hopping, overlapping) windows.
#[derive(Debug, Clone, Copy)]
pub struct Sliding;

impl Sliding {
    /// Windows of length `size` starting every `slide`. `slide` must not exceed `size`.
    pub fn of(size: Duration, slide: Duration) -> WindowSpec {
        WindowSpec::Sliding {
            size: duration_ms(size),
            slide: duration_ms(slide),
            offset: 0,
        }
    }
}

/// Session windows.
#[derive(Debug, Clone, Copy)]
pub struct Session;

impl Session {
    /// A session ends `gap` after its last element.
    pub fn with_gap(gap: Duration) -> WindowSpec {
        WindowSpec::Session {
            gap: duration_ms(gap),
        }
    }
}

impl WindowSpec {
    /// Checks the parameters; the message says what is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match *self {
            WindowSpec::Sliding {
                size,
                slide,
                offset,
            } => {
                if size <= 0 || slide <= 0 {
                    return Err(format!(
                        "window size ({size} ms) and slide ({slide} ms) must be positive"
                    ));
                }
                if slide > size {
                    return Err(format!(
                        "window slide ({slide} ms) must not exceed its size ({size} ms): elements between windows would belong to none"
                    ));
                }
                if offset < 0 || offset >= slide {
                    return Err(format!(
                        "window offset ({offset} ms) must be in 0..slide ({slide} ms)"
                    ));
                }
                Ok(())
            }
            WindowSpec::Session { gap } => {
                if gap <= 0 {
                    return Err(format!("session gap ({gap} ms) must be positive"));
                }
                Ok(())
            }
        }
    }
}

pub(crate) fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The start of the slice of length `len` (aligned at `offset`) that holds `ts`.
#[inline]
pub(crate) fn align(ts: Timestamp, len: i64, offset: i64) -> Timestamp {
    ts - (ts - offset).rem_euclid(len)
}

pub use crate::stream::WindowedStream;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_handles_negative_timestamps_and_offsets() {
        assert_eq!(align(7, 5, 0), 5);
        assert_eq!(align(-1, 5, 0), -5);
        assert_eq!(align(7, 5, 3), 3);
        assert_eq!(align(2, 5, 3), -2);
    }

    #[test]
    fn invalid_specs_are_rejected_with_reasons() {
        assert!(Sliding::of(Duration::from_secs(1), Duration::from_secs(2))
            .validate()
            .unwrap_err()
            .contains("must not exceed"));
        assert!(Tumbling::of(Duration::ZERO).validate().is_err());
        assert!(Session::with_gap(Duration::ZERO).validate().is_err());
        assert!(
            Sliding::of(Duration::from_secs(300), Duration::from_secs(60))
                .validate()
                .is_ok()
        );
    }
}
