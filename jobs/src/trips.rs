//! Trip sessionization: one [`TripSummary`] per trip, the streaming form of the reference's
//! `create_trip_summary` and `apply_business_rules` (its Spark silver layer).
//!
//! Build it with [`trip_summaries`] on a stream of valid, deduplicated [`RideEvent`]s that
//! already carry event timestamps and watermarks ([`trip_summaries_with`] to share the
//! exchange by driver with other jobs).
//!
//! # Dataflow
//!
//! ```text
//! events ─┬─ trip events ── key_by trip ──▶ trips.lifecycle ── key_by driver ─┐ starts, summaries
//!         │                                                                  ├──▶ trips.locations ──▶ summaries
//!         └─ events.by_driver ── DRIVER_LOCATION_UPDATE ─────────────────────┘
//! anomalies: the side outputs of trips.lifecycle and trips.locations, merged
//! ```
//!
//! - `trips.lifecycle` (keyed by `trip_id`) runs each trip's life: `TRIP_STARTED` opens it,
//!   `TRIP_COMPLETED` or `TRIP_CANCELLED` closes it, and [`TripConfig::timeout`] of event time
//!   after the start with no end closes it as `incomplete`. It knows the trip's driver from
//!   `TRIP_STARTED`, so a `TRIP_CANCELLED` without `driver_id` is attributed to that driver; a
//!   cancel with no start before it (in event time) gives a `cancelled` summary with the cancel's
//!   own `driver_id`, if any. It sends the trip's start and its (not yet counted) summary on to:
//! - `trips.locations` (keyed by driver), which also receives every `DRIVER_LOCATION_UPDATE`:
//!   between a trip's start and its summary it counts the driver's location updates, then emits
//!   the summary with [`TripSummary::location_updates`] filled in. The location updates come from
//!   the exchange by driver that surge, shifts and live share ([`events_by_driver`]), so they
//!   cross between workers once for all four jobs. Summaries with no driver pass through it
//!   under the empty key.
//!
//! # Order independence
//!
//! Both operators buffer each key's records in keyed state and handle them only once the
//! watermark has passed them, sorted by (timestamp, kind, `event_id`): within a trip,
//! `TRIP_STARTED` comes before any other event with the same timestamp; for a driver, at one
//! instant starts come before location updates, which come before ends (so an update at exactly
//! the start or end time counts). Timeouts and the retention of finished trips are decided by
//! event timestamps, never by when a timer happened to fire. So any arrival order within the
//! watermark bound, and any parallelism, gives the same summaries.
//!
//! # Anomalies (never dropped silently)
//!
//! Events that cannot change a summary go to [`TripOutputs::anomalies`] with a reason:
//! an event for a trip whose summary was already emitted ([`AnomalyReason::AfterSummary`]: a
//! second completion, a cancel after the completion, a completion after the timeout), a second
//! `TRIP_STARTED` of an open trip ([`AnomalyReason::DuplicateStart`]), and events that arrive
//! behind the watermark ([`AnomalyReason::Late`]), which cannot be placed in event-time order any
//! more.
//!
//! # State (bounded)
//!
//! `trips.lifecycle` holds, per trip: the events not yet passed by the watermark, the open trip
//! (until its end or timeout) and, after the summary, the trip's end time for
//! [`TripConfig::finished_retention`] of event time. `trips.locations` holds, per driver, the
//! records not yet passed by the watermark and a counter per open trip (until its summary, so
//! at most the timeout). At end of input every timeout fires and all state is released: both
//! operators report `state_keys == 0`.
//!
//! Timers are explicit rather than state TTL: a TTL counts from the *write*, and a buffered
//! event is written when a timer fires, whose time depends on how the watermark advanced (and so
//! on the parallelism); explicit expiry by event timestamps keeps the output deterministic.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_engine::keys::Key;
use sluice_engine::prelude::*;
use sluice_engine::time::duration_ms;
use smol_str::SmolStr;

use crate::event::{EventType, Id, Payload, Point, RideEvent};
use crate::ingest::events_by_driver;

/// Settings of the trip job. Every field has a default ([`TripConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TripConfig {
    /// A trip with no `TRIP_COMPLETED` / `TRIP_CANCELLED` by `start + timeout` (event time) is
    /// emitted as [`TripStatus::Incomplete`]; an end event at exactly `start + timeout` still
    /// counts. Default: 4 hours.
    pub timeout: Duration,
    /// How long (event time) after a trip's summary its id is remembered, so that later events
    /// for it go to the anomaly output instead of starting a new trip. Default: 4 hours.
    pub finished_retention: Duration,
    /// A trip whose `actual_duration` exceeds this is suspicious. Default: 4 hours.
    pub suspicious_duration: Duration,
    /// A trip whose `actual_fare` exceeds this is suspicious. Default: 500.
    pub suspicious_fare: f64,
    /// Surge was applied when `actual_fare > estimated_fare * surge_factor`. Default: 1.1.
    pub surge_factor: f64,
}

impl Default for TripConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(4 * 3600),
            finished_retention: Duration::from_secs(4 * 3600),
            suspicious_duration: Duration::from_secs(4 * 3600),
            suspicious_fare: 500.0,
            surge_factor: 1.1,
        }
    }
}

/// How a trip ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TripStatus {
    /// A `TRIP_COMPLETED` arrived.
    Completed,
    /// A `TRIP_CANCELLED` arrived.
    Cancelled,
    /// No end within [`TripConfig::timeout`] of the start.
    Incomplete,
}

/// One trip, as emitted when it ends (or times out).
///
/// Times are event-time milliseconds, written as RFC 3339 strings in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TripSummary {
    /// The trip.
    pub trip_id: String,
    /// How it ended.
    pub status: TripStatus,
    /// The driver: from `TRIP_STARTED`, else from the end event; `None` for a cancel without
    /// `driver_id` and without a start.
    pub driver_id: Option<String>,
    /// The rider: from `TRIP_STARTED`, else from a `TRIP_CANCELLED`.
    pub rider_id: Option<String>,
    /// `TRIP_STARTED` time, if a start was seen.
    #[serde(serialize_with = "crate::serde_time::rfc3339_opt")]
    pub start_time: Option<i64>,
    /// `TRIP_STARTED` location.
    pub start_location: Option<Point>,
    /// Time of the `TRIP_COMPLETED` or `TRIP_CANCELLED`; `None` when incomplete.
    #[serde(serialize_with = "crate::serde_time::rfc3339_opt")]
    pub end_time: Option<i64>,
    /// `TRIP_COMPLETED` location.
    pub end_location: Option<Point>,
    /// `actual_fare` of the completion.
    pub fare: Option<f64>,
    /// `estimated_fare` of the start.
    pub estimated_fare: Option<f64>,
    /// `actual_duration` of the completion, in seconds.
    pub duration_s: Option<f64>,
    /// The driver's `DRIVER_LOCATION_UPDATE`s with `start_time <= timestamp <= end` where `end`
    /// is the end time, or `start_time + timeout` for an incomplete trip. 0 when no start was
    /// seen.
    pub location_updates: u64,
    /// The rider's rating of the completed trip.
    pub rating: Option<f64>,
    /// `reason` of the cancel.
    pub cancel_reason: Option<String>,
    /// `duration_s` > [`TripConfig::suspicious_duration`] or `fare` >
    /// [`TripConfig::suspicious_fare`] (false where they are unknown).
    pub is_suspicious: bool,
    /// `fare > estimated_fare * surge_factor`; false when either is unknown.
    pub surge_applied: bool,
}

/// Why an event did not contribute to a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyReason {
    /// It arrived behind the watermark (more out of order than the bound allows).
    Late,
    /// Its trip's summary was already emitted (within [`TripConfig::finished_retention`]).
    AfterSummary,
    /// A second `TRIP_STARTED` for a trip that is open.
    DuplicateStart,
}

/// An event the trip job could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TripAnomaly {
    /// Why.
    pub reason: AnomalyReason,
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: EventType,
    /// Its trip, if it names one.
    pub trip_id: Option<String>,
    /// Its driver, if it names one.
    pub driver_id: Option<String>,
    /// Its timestamp.
    #[serde(serialize_with = "crate::serde_time::rfc3339")]
    pub timestamp: i64,
}

impl TripAnomaly {
    fn of(reason: AnomalyReason, e: &RideEvent) -> Self {
        Self {
            reason,
            event_id: e.event_id.to_string(),
            event_type: e.event_type(),
            trip_id: e.trip_id().map(str::to_string),
            driver_id: e.driver_id().map(str::to_string),
            timestamp: e.timestamp,
        }
    }
}

/// The streams [`trip_summaries`] produces.
#[derive(Debug, Clone)]
pub struct TripOutputs {
    /// One summary per trip.
    pub summaries: Stream<TripSummary>,
    /// Events that did not contribute to a summary.
    pub anomalies: Stream<TripAnomaly>,
}

/// Wires the trip job onto `events`, which must be valid, deduplicated and carry timestamps and
/// watermarks (see the [module docs](self) for the dataflow and semantics).
///
/// Operators: `trips.lifecycle` (keyed by trip) and `trips.locations` (keyed by driver), whose
/// side output `trip_anomalies` feeds [`TripOutputs::anomalies`].
///
/// # Watermarks
///
/// Summaries are emitted once the watermark passes their end (or timeout), with that time as
/// their timestamp; nothing is emitted behind the watermark.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sluice_connectors::{CollectSink, VecSource};
/// use sluice_engine::prelude::*;
/// use sluice_jobs::event::{parse_event, RideEvent, Validation};
/// use sluice_jobs::trips::{trip_summaries, TripConfig, TripStatus};
///
/// let now = 1_795_680_000_000; // 2026-11-26T06:40:00Z
/// let lines = [
///     r#"{"event_id":"1","event_type":"TRIP_STARTED","timestamp":"2026-11-26T06:00:00Z","trip_id":"t","driver_id":"d","rider_id":"r","start_lat":1,"start_lon":2,"estimated_fare":10}"#,
///     r#"{"event_id":"2","event_type":"DRIVER_LOCATION_UPDATE","timestamp":"2026-11-26T06:05:00Z","driver_id":"d","latitude":1,"longitude":2}"#,
///     r#"{"event_id":"3","event_type":"TRIP_COMPLETED","timestamp":"2026-11-26T06:20:00Z","trip_id":"t","driver_id":"d","end_lat":1,"end_lon":3,"actual_fare":12,"actual_duration":1200}"#,
/// ];
/// let events: Vec<RideEvent> =
///     lines.iter().map(|l| parse_event(l, now, &Validation::default()).unwrap()).collect();
///
/// let env = StreamEnv::new(Config::default());
/// let stream = env.source(VecSource::new(events)).with_watermarks(
///     Watermarks::bounded_out_of_orderness(Duration::from_secs(5)).timestamps(|e: &RideEvent| e.timestamp),
/// );
/// let out = trip_summaries(stream, &TripConfig::default());
/// let summaries = CollectSink::new();
/// out.summaries.sink(summaries.clone());
/// env.execute()?;
///
/// let s = &summaries.values()[0];
/// assert_eq!((s.status, s.location_updates, s.surge_applied), (TripStatus::Completed, 1, true));
/// # Ok::<(), sluice_engine::JobError>(())
/// ```
pub fn trip_summaries(events: Stream<RideEvent>, config: &TripConfig) -> TripOutputs {
    trip_summaries_with(events.clone(), events_by_driver(events), config)
}

/// [`trip_summaries`] with the driver events already keyed by driver (`by_driver`, from
/// [`events_by_driver`] of the same `events`), to share that exchange with the other jobs: the
/// location updates, nearly every event, then reach `trips.locations` without an exchange of
/// their own.
pub fn trip_summaries_with(
    events: Stream<RideEvent>,
    by_driver: KeyedStream<Id, RideEvent>,
    config: &TripConfig,
) -> TripOutputs {
    let tag = OutputTag::<TripAnomaly>::new("trip_anomalies");
    let params = Params::new(config);
    let lifecycle_tag = tag.clone();
    let lifecycle = events
        .clone()
        .filter(|e| e.trip_id().is_some())
        .name("trips.trip_events")
        .key_by(|e: &RideEvent| e.trip_key())
        .name("trips.by_trip")
        .process(move |reg| TripLifecycle {
            slot: reg.value("trip"),
            params,
            anomalies: lifecycle_tag.clone(),
        })
        .name("trips.lifecycle");
    let locations = by_driver
        .filter(|e| e.event_type() == EventType::DriverLocationUpdate)
        .name("trips.location_events")
        .map_values(DriverItem::location)
        .name("trips.location_items");
    let locations_tag = tag.clone();
    let summaries = lifecycle
        .clone()
        .key_by(DriverItem::key)
        .name("trips.by_driver")
        .union([locations])
        .name("trips.driver_items")
        .process(move |reg| TripLocations {
            slot: reg.value("driver"),
            anomalies: locations_tag.clone(),
        })
        .name("trips.locations");
    let anomalies = lifecycle
        .side_output(&tag)
        .union([summaries.side_output(&tag)])
        .name("trips.anomalies");
    TripOutputs {
        summaries,
        anomalies,
    }
}

/// The configuration in milliseconds, as the operators use it.
#[derive(Debug, Clone, Copy)]
struct Params {
    timeout: i64,
    retention: i64,
    suspicious_duration_s: f64,
    suspicious_fare: f64,
    surge_factor: f64,
}

impl Params {
    fn new(c: &TripConfig) -> Self {
        Self {
            timeout: duration_ms(c.timeout),
            retention: duration_ms(c.finished_retention),
            suspicious_duration_s: c.suspicious_duration.as_secs_f64(),
            suspicious_fare: c.suspicious_fare,
            surge_factor: c.surge_factor,
        }
    }
}

/// Moves `key`'s single timer to `next` (deleting the one it replaces).
fn rearm<K: Key, O>(
    ctx: &mut Context<'_, K, O>,
    key: &K,
    armed: &mut Option<Timestamp>,
    next: Option<Timestamp>,
) {
    if *armed != next {
        if let Some(t) = armed.take() {
            ctx.delete_event_timer(key, t);
        }
        if let Some(t) = next {
            ctx.register_event_timer(key, t);
        }
        *armed = next;
    }
}

// ---------------------------------------------------------------------------------------------
// trips.lifecycle: keyed by trip id
// ---------------------------------------------------------------------------------------------

/// A started trip, until it ends or times out.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenTrip {
    driver_id: Id,
    rider_id: Arc<str>,
    start_time: Timestamp,
    start_location: Point,
    estimated_fare: Option<f64>,
}

/// Everything `trips.lifecycle` keeps for one trip.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TripSlot {
    /// Events the watermark has not passed yet, unsorted.
    pending: Vec<RideEvent>,
    open: Option<OpenTrip>,
    /// When the trip's summary was emitted (its end time, or start + timeout), while remembered.
    finished_at: Option<Timestamp>,
    /// The key's one timer: at the earliest of the pending events, the timeout and the end of
    /// the retention.
    armed: Option<Timestamp>,
}

impl TripSlot {
    fn next_wakeup(&self, p: &Params) -> Option<Timestamp> {
        let pending = self.pending.iter().map(|e| e.timestamp).min();
        let timeout = self
            .open
            .as_ref()
            .map(|o| o.start_time.saturating_add(p.timeout));
        let forget = self.finished_at.map(|t| t.saturating_add(p.retention));
        [pending, timeout, forget].into_iter().flatten().min()
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.open.is_none() && self.finished_at.is_none()
    }
}

/// Processing order within a trip: time, then `TRIP_STARTED` first, then event id.
fn trip_order(e: &RideEvent) -> (Timestamp, u8, &str) {
    let rank = u8::from(e.event_type() != EventType::TripStarted);
    (e.timestamp, rank, &e.event_id)
}

struct TripLifecycle {
    slot: ValueState<TripSlot>,
    params: Params,
    anomalies: OutputTag<TripAnomaly>,
}

type LifecycleCx<'a> = Context<'a, Id, DriverItem>;

impl TripLifecycle {
    /// Applies what happens strictly before `limit`: the timeout, then forgetting the finished
    /// trip.
    fn advance(
        &self,
        trip_id: &str,
        slot: &mut TripSlot,
        limit: Timestamp,
        ctx: &mut LifecycleCx<'_>,
    ) {
        if let Some(open) = &slot.open {
            let deadline = open.start_time.saturating_add(self.params.timeout);
            if deadline < limit {
                let open = slot.open.take();
                let summary = summarize(&self.params, trip_id, open, None, deadline);
                emit_summary(ctx, deadline, summary);
                slot.finished_at = Some(deadline);
            }
        }
        if let Some(at) = slot.finished_at {
            if at.saturating_add(self.params.retention) < limit {
                slot.finished_at = None;
            }
        }
    }

    fn apply(&self, trip_id: &Id, slot: &mut TripSlot, e: RideEvent, ctx: &mut LifecycleCx<'_>) {
        if slot.finished_at.is_some() {
            ctx.output(
                &self.anomalies,
                TripAnomaly::of(AnomalyReason::AfterSummary, &e),
            );
            return;
        }
        match &e.payload {
            Payload::TripStarted {
                driver_id,
                rider_id,
                start,
                estimated_fare,
                ..
            } => {
                if slot.open.is_some() {
                    ctx.output(
                        &self.anomalies,
                        TripAnomaly::of(AnomalyReason::DuplicateStart, &e),
                    );
                    return;
                }
                slot.open = Some(OpenTrip {
                    driver_id: driver_id.clone(),
                    rider_id: rider_id.clone(),
                    start_time: e.timestamp,
                    start_location: *start,
                    estimated_fare: *estimated_fare,
                });
                ctx.emit_at(
                    e.timestamp,
                    DriverItem {
                        driver: Some(driver_id.clone()),
                        ts: e.timestamp,
                        rank: RANK_START,
                        event_id: e.event_id.clone(),
                        kind: DriverKind::Start {
                            trip_id: trip_id.text().clone(),
                        },
                    },
                );
            }
            Payload::TripCompleted { .. } | Payload::TripCancelled { .. } => {
                let open = slot.open.take();
                let summary = summarize(&self.params, trip_id, open, Some(&e), e.timestamp);
                emit_summary(ctx, e.timestamp, summary);
                slot.finished_at = Some(e.timestamp);
            }
            _ => {}
        }
    }
}

impl KeyedProcessFunction<Id, RideEvent> for TripLifecycle {
    type Out = DriverItem;

    fn process(&mut self, key: &Id, e: RideEvent, ctx: &mut LifecycleCx<'_>) {
        if e.timestamp <= ctx.watermark() {
            ctx.output(&self.anomalies, TripAnomaly::of(AnomalyReason::Late, &e));
            return;
        }
        let mut slot = ctx.value(self.slot).remove(key).unwrap_or_default();
        let next = slot.armed.map_or(e.timestamp, |t| t.min(e.timestamp));
        slot.pending.push(e);
        rearm(ctx, key, &mut slot.armed, Some(next));
        ctx.value(self.slot).set(key, slot);
    }

    fn on_timer(&mut self, key: &Id, timer: Timer, ctx: &mut LifecycleCx<'_>) {
        let Some(mut slot) = ctx.value(self.slot).remove(key) else {
            return;
        };
        if slot.armed == Some(timer.time) {
            slot.armed = None;
        }
        // Everything up to the watermark has arrived: handle it in event-time order.
        let upto = ctx.watermark();
        let (mut due, rest): (Vec<RideEvent>, Vec<RideEvent>) = std::mem::take(&mut slot.pending)
            .into_iter()
            .partition(|e| e.timestamp <= upto);
        slot.pending = rest;
        due.sort_by(|a, b| trip_order(a).cmp(&trip_order(b)));
        for e in due {
            self.advance(key, &mut slot, e.timestamp, ctx);
            self.apply(key, &mut slot, e, ctx);
        }
        self.advance(key, &mut slot, upto.saturating_add(1), ctx);
        let next = slot.next_wakeup(&self.params);
        rearm(ctx, key, &mut slot.armed, next);
        if !slot.is_empty() {
            ctx.value(self.slot).set(key, slot);
        }
    }
}

fn emit_summary(ctx: &mut LifecycleCx<'_>, ts: Timestamp, summary: TripSummary) {
    ctx.emit_at(
        ts,
        DriverItem {
            driver: summary.driver_id.as_deref().map(Id::from),
            ts,
            rank: RANK_END,
            event_id: SmolStr::default(),
            kind: DriverKind::End(Box::new(summary)),
        },
    );
}

/// The summary of a trip that ends with `end` (`None`: it timed out at `at`).
fn summarize(
    p: &Params,
    trip_id: &str,
    open: Option<OpenTrip>,
    end: Option<&RideEvent>,
    at: Timestamp,
) -> TripSummary {
    let mut s = TripSummary {
        trip_id: trip_id.to_string(),
        status: TripStatus::Incomplete,
        driver_id: None,
        rider_id: None,
        start_time: None,
        start_location: None,
        end_time: None,
        end_location: None,
        fare: None,
        estimated_fare: None,
        duration_s: None,
        location_updates: 0,
        rating: None,
        cancel_reason: None,
        is_suspicious: false,
        surge_applied: false,
    };
    if let Some(o) = open {
        s.driver_id = Some(o.driver_id.to_string());
        s.rider_id = Some(o.rider_id.to_string());
        s.start_time = Some(o.start_time);
        s.start_location = Some(o.start_location);
        s.estimated_fare = o.estimated_fare;
    }
    match end.map(|e| &e.payload) {
        Some(Payload::TripCompleted {
            driver_id,
            end,
            actual_fare,
            actual_duration,
            rating,
            ..
        }) => {
            s.status = TripStatus::Completed;
            s.driver_id.get_or_insert_with(|| driver_id.to_string());
            s.end_time = Some(at);
            s.end_location = Some(*end);
            s.fare = Some(*actual_fare);
            s.duration_s = Some(*actual_duration);
            s.rating = *rating;
        }
        Some(Payload::TripCancelled {
            driver_id,
            rider_id,
            reason,
            ..
        }) => {
            s.status = TripStatus::Cancelled;
            if s.driver_id.is_none() {
                s.driver_id = driver_id.as_deref().map(str::to_string);
            }
            if s.rider_id.is_none() {
                s.rider_id = rider_id.as_deref().map(str::to_string);
            }
            s.end_time = Some(at);
            s.cancel_reason = reason.as_deref().map(str::to_string);
        }
        _ => {}
    }
    s.is_suspicious = s.duration_s.is_some_and(|d| d > p.suspicious_duration_s)
        || s.fare.is_some_and(|f| f > p.suspicious_fare);
    s.surge_applied = match (s.fare, s.estimated_fare) {
        (Some(fare), Some(est)) => fare > est * p.surge_factor,
        _ => false,
    };
    s
}

// ---------------------------------------------------------------------------------------------
// trips.locations: keyed by driver
// ---------------------------------------------------------------------------------------------

const RANK_START: u8 = 0;
const RANK_LOCATION: u8 = 1;
const RANK_END: u8 = 2;

/// What `trips.locations` sees of a driver: trip starts and summaries from `trips.lifecycle`,
/// and location updates.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DriverItem {
    /// The driver of a start or summary, which routes it (`None` for a summary with no
    /// driver, and for a location update, which arrives keyed by its driver).
    driver: Option<Id>,
    ts: Timestamp,
    /// Order at equal timestamps: start, location, end.
    rank: u8,
    event_id: SmolStr,
    kind: DriverKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum DriverKind {
    Start {
        trip_id: SmolStr,
    },
    Location,
    /// Checkpointed as [`SummaryState`]: raw milliseconds, not the JSON output's strings.
    End(#[serde(with = "boxed_summary")] Box<TripSummary>),
}

/// How a [`TripSummary`] buffered in keyed state is checkpointed: its fields as they are (times
/// as `i64` milliseconds), unlike its [`Serialize`] impl, which writes the JSON output (RFC 3339
/// strings). A field added to [`TripSummary`] but not here fails to compile.
#[derive(Serialize, Deserialize)]
#[serde(remote = "TripSummary")]
struct SummaryState {
    trip_id: String,
    status: TripStatus,
    driver_id: Option<String>,
    rider_id: Option<String>,
    start_time: Option<i64>,
    start_location: Option<Point>,
    end_time: Option<i64>,
    end_location: Option<Point>,
    fare: Option<f64>,
    estimated_fare: Option<f64>,
    duration_s: Option<f64>,
    location_updates: u64,
    rating: Option<f64>,
    cancel_reason: Option<String>,
    is_suspicious: bool,
    surge_applied: bool,
}

/// `#[serde(with = "boxed_summary")]`: a `Box<TripSummary>` as [`SummaryState`].
mod boxed_summary {
    use serde::{Deserializer, Serializer};

    use super::{SummaryState, TripSummary};

    pub(super) fn serialize<S: Serializer>(s: &TripSummary, ser: S) -> Result<S::Ok, S::Error> {
        SummaryState::serialize(s, ser)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Box<TripSummary>, D::Error> {
        SummaryState::deserialize(d).map(Box::new)
    }
}

impl DriverItem {
    /// The key of `trips.locations`: the driver's, as [`events_by_driver`] keys it; the empty
    /// id for a summary with no driver, which passes through (no trip of its is open under
    /// that key: a trip whose start was seen has a driver).
    fn key(&self) -> Id {
        self.driver.clone().unwrap_or_else(|| Id::from(""))
    }

    fn location(e: RideEvent) -> Self {
        Self {
            // It arrives keyed by its driver, and only its time is kept.
            driver: None,
            ts: e.timestamp,
            rank: RANK_LOCATION,
            event_id: e.event_id.clone(),
            kind: DriverKind::Location,
        }
    }
}

/// Everything `trips.locations` keeps for one driver.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DriverSlot {
    /// Starts and summaries the watermark has not passed yet, unsorted.
    pending: Vec<DriverItem>,
    /// The times of the location updates the watermark has not passed yet, unsorted: all that
    /// counting needs of them (updates at one time commute), 8 bytes each instead of an item.
    locations: Vec<Timestamp>,
    /// Open trips (usually at most one) and their location updates so far.
    open: Vec<(SmolStr, u64)>,
    armed: Option<Timestamp>,
}

/// Counts `n` location updates for every trip in `open`.
fn count(open: &mut [(SmolStr, u64)], n: usize) {
    for (_, count) in open {
        *count += n as u64;
    }
}

impl DriverSlot {
    /// When the driver's next item is due.
    fn next_due(&self) -> Option<Timestamp> {
        let item = self.pending.first().map(|i| i.ts);
        let location = self.locations.first().copied();
        item.into_iter().chain(location).min()
    }
}

struct TripLocations {
    slot: ValueState<DriverSlot>,
    anomalies: OutputTag<TripAnomaly>,
}

type LocationsCx<'a> = Context<'a, Id, TripSummary>;

impl KeyedProcessFunction<Id, DriverItem> for TripLocations {
    type Out = TripSummary;

    fn process(&mut self, key: &Id, item: DriverItem, ctx: &mut LocationsCx<'_>) {
        // Starts and summaries come from `trips.lifecycle`, never behind the watermark; only a
        // location update can be late.
        if matches!(item.kind, DriverKind::Location) && item.ts <= ctx.watermark() {
            ctx.output(
                &self.anomalies,
                TripAnomaly {
                    reason: AnomalyReason::Late,
                    event_id: item.event_id.to_string(),
                    event_type: EventType::DriverLocationUpdate,
                    trip_id: None,
                    driver_id: Some(key.to_string()),
                    timestamp: item.ts,
                },
            );
            return;
        }
        // In place: one lookup for the usual update that arrives after the armed timer.
        let slot = ctx
            .value(self.slot)
            .get_or_insert_with(key, DriverSlot::default);
        let mut armed = slot.armed;
        let next = armed.map_or(item.ts, |t| t.min(item.ts));
        match item.kind {
            DriverKind::Location => slot.locations.push(item.ts),
            _ => slot.pending.push(item),
        }
        if armed != Some(next) {
            rearm(ctx, key, &mut armed, Some(next));
            if let Some(slot) = ctx.value(self.slot).get_mut(key) {
                slot.armed = armed;
            }
        }
    }

    fn on_timer(&mut self, key: &Id, timer: Timer, ctx: &mut LocationsCx<'_>) {
        let Some(mut slot) = ctx.value(self.slot).remove(key) else {
            return;
        };
        if slot.armed == Some(timer.time) {
            slot.armed = None;
        }
        let upto = ctx.watermark();
        // Sort in place and release the due prefixes (no reallocation of the rest). Items equal
        // in (ts, rank) commute; the event id makes the order total all the same, so that an
        // unstable sort (no scratch allocation, unlike the stable one past 20 items) gives one
        // order whatever the arrival order.
        slot.pending
            .sort_unstable_by(|a, b| (a.ts, a.rank, &a.event_id).cmp(&(b.ts, b.rank, &b.event_id)));
        slot.locations.sort_unstable();
        let n_due = slot.pending.partition_point(|i| i.ts <= upto);
        let due_locations = &slot.locations[..slot.locations.partition_point(|&t| t <= upto)];
        // The due updates, merged with the due items in (time, rank) order: an update at an
        // item's time comes after a start and before an end. `counted`: the updates before the
        // item at hand.
        let mut counted = 0;
        for item in slot.pending.drain(..n_due) {
            let before = counted
                + due_locations[counted..].partition_point(|&t| {
                    t < item.ts || (t == item.ts && RANK_LOCATION < item.rank)
                });
            count(&mut slot.open, before - counted);
            counted = before;
            match item.kind {
                DriverKind::Start { trip_id } => {
                    if !slot.open.iter().any(|(t, _)| *t == trip_id) {
                        slot.open.push((trip_id, 0));
                    }
                }
                // `process` keeps an update as its time only; were one pending, it counts here.
                DriverKind::Location => count(&mut slot.open, 1),
                DriverKind::End(mut summary) => {
                    if let Some(i) = slot.open.iter().position(|(t, _)| **t == *summary.trip_id) {
                        summary.location_updates = slot.open.swap_remove(i).1;
                    }
                    ctx.emit_at(item.ts, *summary);
                }
            }
        }
        count(&mut slot.open, due_locations.len() - counted);
        let n_due_locations = due_locations.len();
        slot.locations.drain(..n_due_locations);
        let next = slot.next_due();
        rearm(ctx, key, &mut slot.armed, next);
        if !slot.pending.is_empty() || !slot.locations.is_empty() || !slot.open.is_empty() {
            ctx.value(self.slot).set(key, slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> TripSummary {
        TripSummary {
            trip_id: "t".into(),
            status: TripStatus::Completed,
            driver_id: Some("d".into()),
            rider_id: None,
            start_time: Some(1_795_680_000_123),
            start_location: Some(Point {
                lat: 1.5,
                lon: -2.5,
            }),
            end_time: Some(-62_167_219_200_001),
            end_location: None,
            fare: Some(12.34),
            estimated_fare: None,
            duration_s: Some(600.0),
            location_updates: 3,
            rating: Some(5.0),
            cancel_reason: Some("x".into()),
            is_suspicious: false,
            surge_applied: true,
        }
    }

    #[test]
    fn buffered_summaries_checkpoint_as_raw_fields() {
        let item = DriverItem {
            driver: Some("d".into()),
            ts: 7,
            rank: RANK_END,
            event_id: "".into(),
            kind: DriverKind::End(Box::new(summary())),
        };
        let json = serde_json::to_string(&item).unwrap();
        assert!(json.contains("\"start_time\":1795680000123"), "{json}");
        let back: DriverItem = serde_json::from_str(&json).unwrap();
        match back.kind {
            DriverKind::End(s) => assert_eq!(*s, summary()),
            other => panic!("{other:?}"),
        }
        // The output format is untouched: times as RFC 3339 strings.
        let out = serde_json::to_string(&summary()).unwrap();
        assert!(
            out.contains("\"start_time\":\"2026-11-26T08:00:00.123Z\""),
            "{out}"
        );
    }
}
