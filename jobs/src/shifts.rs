//! Driver shifts: session windows over each driver's activity, the streaming form of the
//! reference's `create_driver_metrics` ("session windows (driver shift analysis)" in its Flink
//! use cases).
//!
//! A *shift* is a maximal run of a driver's events (any event naming the driver: availability,
//! location updates, trip events, going offline) with no silence longer than
//! [`ShiftConfig::gap`]. It is computed with the engine's session windows
//! (`.window(Session::with_gap(gap))`) and an incremental [`Aggregate`], so a shift's state is one
//! small accumulator whatever its length, and out-of-order events that bridge two shifts merge
//! them.
//!
//! # What a [`ShiftSummary`] says
//!
//! - `shift_start` / `shift_end`: the first and last event time of the shift. Two events exactly
//!   `gap` apart are in the same shift (the engine's sessions merge when they touch); further apart,
//!   they are in different shifts.
//! - `trips_completed`, `earnings`: the `TRIP_COMPLETED` events in the shift and the sum of their
//!   `actual_fare`.
//! - `minutes_on_trip`: the sum of `actual_duration` (seconds, / 60) of those `TRIP_COMPLETED`
//!   events, the duration the platform billed. A trip counts in the shift in which it completes.
//!   This needs only the completion (no pairing with `TRIP_STARTED` across shifts) and is a plain,
//!   mergeable sum.
//! - `utilisation`: `minutes_on_trip / shift_minutes`, or 0 when the shift has zero length (a single
//!   event). Not clamped: a value above 1 means the billed durations exceed the driver's observed
//!   activity (a trip started before the driver's first event, or inconsistent data), which is
//!   worth seeing rather than hiding.
//!
//! Sums are exact and independent of arrival order: fares are added in millionths and durations
//! in milliseconds, as integers, and converted once at the end (floating-point sums would depend
//! on the order sessions merge in).
//!
//! # Watermarks and state
//!
//! A shift is emitted once the watermark passes `shift_end + gap`, with timestamp
//! `shift_end + gap - 1`. Events behind every open session of their driver are late: they go to
//! [`ShiftOutputs::late`] (and the operator's `late` metric). The operator `shifts.window` keeps
//! one accumulator per open shift and nothing once it fired: `state_keys` is the number of drivers
//! with an open shift, 0 after end of input.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_engine::prelude::*;
use sluice_engine::window::WindowResult;

use crate::event::{Id, Payload, RideEvent};
use crate::ingest::events_by_driver;

/// Settings of the shift job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShiftConfig {
    /// The longest silence within a shift. Default: 30 minutes.
    pub gap: Duration,
}

impl Default for ShiftConfig {
    fn default() -> Self {
        Self {
            gap: Duration::from_secs(30 * 60),
        }
    }
}

/// One shift of one driver. Times are event-time milliseconds (RFC 3339 strings in JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShiftSummary {
    /// The driver.
    pub driver_id: String,
    /// First event of the shift.
    #[serde(serialize_with = "crate::serde_time::rfc3339")]
    pub shift_start: i64,
    /// Last event of the shift.
    #[serde(serialize_with = "crate::serde_time::rfc3339")]
    pub shift_end: i64,
    /// `(shift_end - shift_start)` in minutes.
    pub shift_minutes: f64,
    /// Events of the driver in the shift.
    pub events: u64,
    /// `TRIP_COMPLETED` events in the shift.
    pub trips_completed: u64,
    /// Sum of their `actual_fare`.
    pub earnings: f64,
    /// Sum of their `actual_duration`, in minutes.
    pub minutes_on_trip: f64,
    /// `minutes_on_trip / shift_minutes`; 0 for a zero-length shift.
    pub utilisation: f64,
}

/// The streams [`driver_shifts`] produces.
#[derive(Debug, Clone)]
pub struct ShiftOutputs {
    /// One summary per shift.
    pub shifts: Stream<ShiftSummary>,
    /// Events that arrived after their shift was emitted.
    pub late: Stream<RideEvent>,
}

/// Wires the shift job onto `events` (valid, deduplicated, with timestamps and watermarks).
///
/// Operators: `shifts.by_driver` (the exchange), `shifts.window` (the session windows, with the
/// side output `shift_late`) and `shifts.summaries`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sluice_connectors::{CollectSink, VecSource};
/// use sluice_engine::prelude::*;
/// use sluice_jobs::event::{parse_event, RideEvent, Validation};
/// use sluice_jobs::shifts::{driver_shifts, ShiftConfig};
///
/// let now = 1_795_680_000_000; // 2026-11-26T06:40:00Z
/// let lines = [
///     r#"{"event_id":"1","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T05:00:00Z","driver_id":"d","latitude":1,"longitude":2}"#,
///     r#"{"event_id":"2","event_type":"TRIP_COMPLETED","timestamp":"2026-11-26T05:30:00Z","trip_id":"t","driver_id":"d","end_lat":1,"end_lon":3,"actual_fare":12,"actual_duration":1200}"#,
///     r#"{"event_id":"3","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T06:00:00Z","driver_id":"d"}"#,
/// ];
/// let events: Vec<RideEvent> =
///     lines.iter().map(|l| parse_event(l, now, &Validation::default()).unwrap()).collect();
///
/// let env = StreamEnv::new(Config::default());
/// let stream = env.source(VecSource::new(events)).with_watermarks(
///     Watermarks::bounded_out_of_orderness(Duration::from_secs(5)).timestamps(|e: &RideEvent| e.timestamp),
/// );
/// let shifts = CollectSink::new();
/// driver_shifts(stream, &ShiftConfig::default()).shifts.sink(shifts.clone());
/// env.execute()?;
///
/// let s = &shifts.values()[0];
/// assert_eq!((s.shift_minutes, s.minutes_on_trip, s.utilisation), (60.0, 20.0, 20.0 / 60.0));
/// # Ok::<(), sluice_engine::JobError>(())
/// ```
pub fn driver_shifts(events: Stream<RideEvent>, config: &ShiftConfig) -> ShiftOutputs {
    driver_shifts_with(events_by_driver(events), config)
}

/// [`driver_shifts`] of the driver events already keyed by driver ([`events_by_driver`]), to
/// share that exchange with the other jobs.
pub fn driver_shifts_with(
    by_driver: KeyedStream<Id, RideEvent>,
    config: &ShiftConfig,
) -> ShiftOutputs {
    let late = OutputTag::<RideEvent>::new("shift_late");
    let windows = by_driver
        .window(Session::with_gap(config.gap))
        .late_data(&late)
        .aggregate(ShiftAggregate)
        .name("shifts.window");
    let late = windows.side_output(&late);
    let shifts = windows
        .map(|r: WindowResult<Id, ShiftAcc>| r.value.summary(r.key.to_string()))
        .name("shifts.summaries");
    ShiftOutputs { shifts, late }
}

/// The accumulator of one shift: exact integer sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ShiftAcc {
    first: i64,
    last: i64,
    events: u64,
    trips: u64,
    fare_micros: i64,
    trip_ms: i64,
}

impl ShiftAcc {
    fn summary(&self, driver_id: String) -> ShiftSummary {
        let length_ms = self.last.saturating_sub(self.first);
        ShiftSummary {
            driver_id,
            shift_start: self.first,
            shift_end: self.last,
            shift_minutes: length_ms as f64 / 60_000.0,
            events: self.events,
            trips_completed: self.trips,
            earnings: self.fare_micros as f64 / 1e6,
            minutes_on_trip: self.trip_ms as f64 / 60_000.0,
            utilisation: if length_ms > 0 {
                self.trip_ms as f64 / length_ms as f64
            } else {
                0.0
            },
        }
    }
}

struct ShiftAggregate;

impl Aggregate<RideEvent> for ShiftAggregate {
    type Acc = ShiftAcc;
    type Out = ShiftAcc;

    fn create(&self) -> ShiftAcc {
        ShiftAcc {
            first: i64::MAX,
            last: i64::MIN,
            events: 0,
            trips: 0,
            fare_micros: 0,
            trip_ms: 0,
        }
    }

    fn add(&self, acc: &mut ShiftAcc, e: RideEvent) {
        acc.first = acc.first.min(e.timestamp);
        acc.last = acc.last.max(e.timestamp);
        acc.events += 1;
        if let Payload::TripCompleted {
            actual_fare,
            actual_duration,
            ..
        } = e.payload
        {
            acc.trips += 1;
            // `as` saturates for absurd values; the sums saturate too rather than wrap.
            acc.fare_micros = acc
                .fare_micros
                .saturating_add((actual_fare * 1e6).round() as i64);
            acc.trip_ms = acc
                .trip_ms
                .saturating_add((actual_duration * 1e3).round() as i64);
        }
    }

    fn merge(&self, acc: &mut ShiftAcc, other: ShiftAcc) {
        acc.first = acc.first.min(other.first);
        acc.last = acc.last.max(other.last);
        acc.events += other.events;
        acc.trips += other.trips;
        acc.fare_micros = acc.fare_micros.saturating_add(other.fare_micros);
        acc.trip_ms = acc.trip_ms.saturating_add(other.trip_ms);
    }

    fn finish(&self, acc: &ShiftAcc) -> ShiftAcc {
        *acc
    }
}
