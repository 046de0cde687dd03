//! A simulated city that produces ride-hailing events: [`CityGenerator`].
//!
//! Drivers go online and offline, cruise, report their position, get matched to riders' requests,
//! drive to the pickup, start trips, complete or cancel them; riders' requests follow a daily
//! demand curve with morning and evening rush hours ([`demand_factor`]). The output is JSON
//! Lines in the wire format of `shared/reference/events.md` (valid events are written by
//! [`RideEventData::to_json`](crate::event::RideEventData::to_json)), optionally with injected
//! [`Faults`]: duplicates, malformed lines, out-of-order and late events.
//!
//! # Determinism
//!
//! Simulated time starts at [`GeneratorConfig::start_ms`] (default 2026-01-05T07:00:00Z, so the
//! default hour covers the morning rush), never at the wall clock, and nothing depends on
//! timing: the same configuration produces the same lines, byte for byte, in the same order.
//!
//! # Splits
//!
//! The city is divided into [`GeneratorConfig::splits`] independent sub-cities, each with its
//! own share of the drivers and its own riders and trips (ids are prefixed `s{split}-`, so they
//! never collide), its own random streams, and its own simulated clock. A split's lines depend
//! only on the configuration and its index; changing the number of splits changes the data.
//! Splits have (nearly) equal numbers of drivers, so their clocks advance at the same rate per
//! line: event time progresses evenly across splits.
//!
//! Within a split, lines come out in event-time order, apart from the injected disorder.
//!
//! # Two ways to use it
//!
//! - As a [`Source<GeneratedLine>`](sluice_engine::source::Source) in a pipeline: one source
//!   split per simulated split. A valid event stays data ([`GeneratedLine::Event`]: validation
//!   checks it without writing and re-parsing its text, with the same result); a malformed line
//!   is text. Each line carries its event time as its record timestamp (a malformed
//!   line, the time of the event it was derived from), so
//!   `env.source(city).with_watermarks(Watermarks::bounded_out_of_orderness(..))` tracks a
//!   watermark *per split* (see [`crate::ingest`]).
//! - As an iterator ([`CityGenerator::lines`]) for writing a file or standard output: the splits
//!   merged in event-time order.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use sluice_jobs::generator::{CityGenerator, GeneratorConfig};
//!
//! let city = CityGenerator::new(GeneratorConfig {
//!     drivers: 20,
//!     duration: Some(Duration::from_secs(600)),
//!     ..GeneratorConfig::default()
//! })?;
//! let lines: Vec<String> = city.lines().collect();
//! assert!(lines.len() > 1_000);
//! assert!(lines[0].starts_with(r#"{"event_id":"s0-e0","#));
//! assert_eq!(lines, city.lines().collect::<Vec<_>>());
//! # Ok::<(), sluice_jobs::generator::GeneratorError>(())
//! ```

mod city;
mod faults;
mod source;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use sluice_connectors::SplitMix64;

use crate::event::RideEvent;

pub use city::demand_factor;
pub use faults::Faults;

use self::city::City;
use self::faults::Fate;

/// 2026-01-05T07:00:00Z, a Monday at the start of the morning rush: the default start of
/// simulated time.
pub const DEFAULT_START_MS: i64 = 1_767_596_400_000;

/// The area drivers and riders move in, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    /// Southern edge (latitude).
    pub south: f64,
    /// Western edge (longitude).
    pub west: f64,
    /// Northern edge (latitude).
    pub north: f64,
    /// Eastern edge (longitude).
    pub east: f64,
}

impl BoundingBox {
    /// Manhattan and its surroundings: 40.70..40.80 N, 74.02..73.93 W. At H3 resolution 7
    /// (cells of about 5 km²) that is a few dozen zones.
    pub const MANHATTAN: BoundingBox = BoundingBox {
        south: 40.70,
        west: -74.02,
        north: 40.80,
        east: -73.93,
    };
}

/// How fast lines are produced, in wall-clock terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as possible (the default).
    Unlimited,
    /// About this many lines per second in total, shared evenly by the splits.
    LinesPerSec(f64),
    /// Simulated time runs this many times faster than the wall clock (1.0: real time).
    Speedup(f64),
}

/// What to simulate. Every field has a documented default; build with
/// `GeneratorConfig { drivers: 50, ..GeneratorConfig::default() }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneratorConfig {
    /// Seeds every random choice. Default 1.
    pub seed: u64,
    /// Drivers in the whole city, shared by the splits. Default 200.
    pub drivers: usize,
    /// Independent sub-cities (see the module docs). Default 1. In a pipeline, use one per
    /// worker (or a multiple of it).
    pub splits: usize,
    /// Simulated time of the first event, ms since the epoch. Default [`DEFAULT_START_MS`].
    pub start_ms: i64,
    /// Simulated time to cover; `None` for no limit. Default one hour.
    pub duration: Option<Duration>,
    /// Lines to emit in total (shared by the splits as evenly as possible); `None` for no
    /// limit. Default `None`.
    pub max_lines: Option<u64>,
    /// Wall-clock pacing. Default [`Pace::Unlimited`].
    pub pace: Pace,
    /// Rider requests per driver per hour at demand factor 1.0 (see [`demand_factor`]).
    /// Default 2.5: drivers are busy most of the day and short of supply in the rush hours.
    pub requests_per_driver_hour: f64,
    /// Where. Default [`BoundingBox::MANHATTAN`].
    pub city: BoundingBox,
    /// Injected faults. Default none.
    pub faults: Faults,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            drivers: 200,
            splits: 1,
            start_ms: DEFAULT_START_MS,
            duration: Some(Duration::from_secs(3_600)),
            max_lines: None,
            pace: Pace::Unlimited,
            requests_per_driver_hour: 2.5,
            city: BoundingBox::MANHATTAN,
            faults: Faults::default(),
        }
    }
}

/// A configuration the generator cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GeneratorError {
    /// A setting is out of range; the message says which and why.
    #[error("invalid generator configuration: {0}")]
    InvalidConfig(String),
}

impl GeneratorConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`GeneratorError::InvalidConfig`], saying which setting is wrong.
    pub fn validate(&self) -> Result<(), GeneratorError> {
        let bad = |m: String| Err(GeneratorError::InvalidConfig(m));
        if self.splits == 0 {
            return bad("splits must be at least 1".into());
        }
        if self.drivers == 0 {
            return bad("drivers must be at least 1".into());
        }
        let b = self.city;
        let on_globe = (-90.0..=90.0).contains(&b.south)
            && (-90.0..=90.0).contains(&b.north)
            && (-180.0..=180.0).contains(&b.west)
            && (-180.0..=180.0).contains(&b.east);
        if !on_globe || b.south >= b.north || b.west >= b.east {
            return bad(format!("bounding box {b:?} is empty or off the globe"));
        }
        let rate = self.requests_per_driver_hour;
        if !rate.is_finite() || rate < 0.0 {
            return bad(format!(
                "requests_per_driver_hour = {} must be a finite number >= 0",
                self.requests_per_driver_hour
            ));
        }
        match self.pace {
            Pace::LinesPerSec(r) | Pace::Speedup(r) if r.is_nan() || r <= 0.0 => {
                return bad(format!("pace {:?} must be positive", self.pace));
            }
            _ => {}
        }
        self.faults
            .validate()
            .map_err(GeneratorError::InvalidConfig)
    }
}

/// The simulated city: a [`Source<String>`](sluice_engine::source::Source) and a line
/// iterator. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CityGenerator {
    cfg: GeneratorConfig,
}

impl CityGenerator {
    /// A generator for `cfg`.
    ///
    /// # Errors
    ///
    /// [`GeneratorError::InvalidConfig`] if `cfg` does not [`validate`](GeneratorConfig::validate).
    pub fn new(cfg: GeneratorConfig) -> Result<Self, GeneratorError> {
        cfg.validate()?;
        Ok(Self { cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    /// The lines of split `index` (of [`GeneratorConfig::splits`]), as fast as possible.
    ///
    /// # Panics
    ///
    /// If `index` is not below the number of splits.
    pub fn split_lines(&self, index: usize) -> SplitLines {
        assert!(
            index < self.cfg.splits,
            "split {index} of a generator with {} splits",
            self.cfg.splits
        );
        SplitLines::new(&self.cfg, index)
    }

    /// Every split's lines, merged in event-time order (ties: lower split first).
    ///
    /// Keeps to [`GeneratorConfig::pace`] by sleeping the calling thread between lines when it
    /// is ahead (meant for writing a file or standard output; [`Pace::Unlimited`], the default,
    /// never sleeps).
    pub fn lines(&self) -> Lines {
        let mut splits: Vec<SplitLines> = (0..self.cfg.splits)
            .map(|i| SplitLines::new(&self.cfg, i))
            .collect();
        let mut heads = BinaryHeap::new();
        let mut pending = Vec::with_capacity(splits.len());
        for (i, s) in splits.iter_mut().enumerate() {
            let head = s.next_timed();
            if let Some(l) = &head {
                heads.push(Reverse((l.release, i)));
            }
            pending.push(head);
        }
        Lines {
            splits,
            pending,
            heads,
            pacer: Pacer::new(self.cfg.pace, self.cfg.start_ms, 1),
        }
    }
}

/// One generated input line: a valid event kept as data, or a line of text (an injected
/// malformed line).
///
/// What [`CityGenerator`] emits as a [`Source`](sluice_engine::source::Source). A valid event
/// is serialised only when its text is needed ([`GeneratedLine::into_text`], which
/// `ridehail generate` and [`CityGenerator::lines`] use); validation checks it as data and
/// gives exactly the result that parsing its text would
/// (see [`RawLine::validate`](crate::validate::RawLine::validate)), so a run on the generator
/// equals a run on `ridehail generate`'s output without writing and re-reading every line.
#[derive(Debug, Clone, PartialEq)]
pub enum GeneratedLine {
    /// A valid event.
    Event(RideEvent),
    /// A line of text.
    Text(String),
}

impl GeneratedLine {
    /// The line as JSON Lines text (without the newline).
    pub fn into_text(self) -> String {
        match self {
            GeneratedLine::Event(e) => e.to_json(),
            GeneratedLine::Text(t) => t,
        }
    }
}

/// A line and when it is emitted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimedLine {
    /// Simulated time at which the line leaves the generator (event time, plus any injected
    /// delay).
    pub(crate) release: i64,
    /// The event time of the event it carries (or was derived from).
    pub(crate) ts: i64,
    pub(crate) line: GeneratedLine,
}

/// A delayed line in the release queue, ordered by release time and then by queueing order
/// (`seq` is unique, so the line itself is never compared).
#[derive(Debug)]
struct Delayed {
    release: i64,
    seq: u64,
    ts: i64,
    line: GeneratedLine,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}

impl Eq for Delayed {}

impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.release, self.seq).cmp(&(other.release, other.seq))
    }
}

/// The lines of one split: the simulation, with faults applied. An iterator of `String`s.
pub struct SplitLines {
    city: City,
    faults: Faults,
    fault_rng: SplitMix64,
    events: Vec<RideEvent>,
    ready: VecDeque<TimedLine>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    /// Lines this split may still emit.
    remaining: u64,
}

impl std::fmt::Debug for SplitLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitLines")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl SplitLines {
    fn new(cfg: &GeneratorConfig, index: usize) -> Self {
        let n = cfg.splits.max(1) as u64;
        let i = index as u64;
        let remaining = cfg
            .max_lines
            .map_or(u64::MAX, |m| m / n + u64::from(i < m % n));
        Self {
            city: City::new(cfg, index),
            faults: cfg.faults,
            fault_rng: SplitMix64::for_record(cfg.seed, 2 * i + 1),
            events: Vec::with_capacity(4),
            ready: VecDeque::with_capacity(8),
            delayed: BinaryHeap::new(),
            seq: 0,
            remaining,
        }
    }

    /// The next line with its times.
    pub(crate) fn next_timed(&mut self) -> Option<TimedLine> {
        loop {
            if self.remaining == 0 {
                return None;
            }
            // Held-back lines go out once the simulation reaches their release time.
            let horizon = match self.ready.front() {
                Some(l) => l.release,
                None => self.city.next_time().unwrap_or(i64::MAX),
            };
            let due = self
                .delayed
                .peek()
                .is_some_and(|Reverse(d)| d.release <= horizon);
            let line = if due {
                self.delayed.pop().map(|Reverse(d)| TimedLine {
                    release: d.release,
                    ts: d.ts,
                    line: d.line,
                })
            } else {
                self.ready.pop_front()
            };
            if let Some(line) = line {
                self.remaining -= 1;
                return Some(line);
            }
            if !self.city.step(&mut self.events) {
                if self.delayed.is_empty() {
                    return None;
                }
                continue;
            }
            let mut events = std::mem::take(&mut self.events);
            for e in events.drain(..) {
                self.inject(e);
            }
            self.events = events;
        }
    }

    /// Applies the faults to one valid event. It stays data; only a malformed copy is text.
    fn inject(&mut self, e: RideEvent) {
        let ts = e.timestamp;
        let on_time = |line| TimedLine {
            release: ts,
            ts,
            line,
        };
        if !self.faults.any() {
            self.ready.push_back(on_time(GeneratedLine::Event(e)));
            return;
        }
        let bad = (self.faults.malformed > 0.0 && self.fault_rng.chance(self.faults.malformed))
            .then(|| faults::malformed(&e.to_json(), &mut self.fault_rng));
        match self.faults.fate(&mut self.fault_rng) {
            Fate::OnTime => self.ready.push_back(on_time(GeneratedLine::Event(e))),
            Fate::Duplicate(delay) => {
                self.hold(ts, delay, GeneratedLine::Event(e.clone()));
                self.ready.push_back(on_time(GeneratedLine::Event(e)));
            }
            Fate::Delayed(delay) => self.hold(ts, delay, GeneratedLine::Event(e)),
        }
        if let Some(text) = bad {
            self.ready.push_back(on_time(GeneratedLine::Text(text)));
        }
    }

    fn hold(&mut self, ts: i64, delay: i64, line: GeneratedLine) {
        self.seq += 1;
        self.delayed.push(Reverse(Delayed {
            release: ts.saturating_add(delay),
            seq: self.seq,
            ts,
            line,
        }));
    }
}

impl Iterator for SplitLines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.next_timed().map(|l| l.line.into_text())
    }
}

/// All splits' lines merged in event-time order; see [`CityGenerator::lines`].
pub struct Lines {
    splits: Vec<SplitLines>,
    /// The next line of each split.
    pending: Vec<Option<TimedLine>>,
    /// (release time, split) of every pending line.
    heads: BinaryHeap<Reverse<(i64, usize)>>,
    pacer: Pacer,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("splits", &self.splits.len())
            .finish_non_exhaustive()
    }
}

impl Iterator for Lines {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if let ([split], Pace::Unlimited) = (&mut self.splits[..], self.pacer.pace) {
            // One split, no pacing: nothing to merge or wait for.
            return match self.pending[0].take() {
                Some(line) => Some(line.line.into_text()),
                None => split.next(),
            };
        }
        let Reverse((release, i)) = self.heads.pop()?;
        if self.pacer.pace != Pace::Unlimited {
            while let Some(wait) = self.pacer.wait(Instant::now(), release) {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            }
        }
        self.pacer.emitted(1);
        let line = self.pending[i].take()?;
        self.pending[i] = self.splits[i].next_timed();
        if let Some(l) = &self.pending[i] {
            self.heads.push(Reverse((l.release, i)));
        }
        Some(line.line.into_text())
    }
}

/// Keeps a stream of lines to a [`Pace`].
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    pace: Pace,
    sim_start: i64,
    start: Option<Instant>,
    emitted: u64,
}

impl Pacer {
    /// A pacer for one of `shares` equal shares of `pace`.
    pub(crate) fn new(pace: Pace, sim_start: i64, shares: usize) -> Self {
        let pace = match pace {
            Pace::LinesPerSec(r) => Pace::LinesPerSec(r / shares.max(1) as f64),
            p => p,
        };
        Self {
            pace,
            sim_start,
            start: None,
            emitted: 0,
        }
    }

    /// How long to wait at `now` before emitting a line released at simulated time `release`;
    /// `None`: emit it now. The clock starts at the first call.
    pub(crate) fn wait(&mut self, now: Instant, release: i64) -> Option<Duration> {
        if self.pace == Pace::Unlimited {
            return None;
        }
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        let behind = match self.pace {
            Pace::Unlimited => return None,
            // The first line is due at once, then one every 1/r seconds.
            Pace::LinesPerSec(r) => self.emitted as f64 / r - elapsed,
            Pace::Speedup(k) => (release - self.sim_start) as f64 / 1_000.0 / k - elapsed,
        };
        (behind > 0.0).then(|| Duration::from_secs_f64(behind.min(3_600.0)))
    }

    /// `n` more lines were emitted.
    pub(crate) fn emitted(&mut self, n: u64) {
        self.emitted += n;
    }
}
