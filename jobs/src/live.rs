//! Live state: where every driver is and what it is doing, and how many trips are active per
//! zone, as event-time snapshots every [`LiveConfig::snapshot_interval`], plus a [`LiveView`]
//! that keeps the latest snapshots queryable in memory. It replaces the reference's DynamoDB
//! `driver_status` and `active_trips` tables (its Lambda handler).
//!
//! Build it with [`live_state`] on valid, deduplicated [`RideEvent`]s with timestamps and
//! watermarks.
//!
//! # Snapshots: what is emitted, and when
//!
//! Event time is cut into intervals `[B - N, B)` where `N` is the snapshot interval and `B` a
//! multiple of `N` since the epoch (the *boundary*). When the watermark passes `B - 1` (so every
//! event before `B` has arrived):
//!
//! - a [`DriverState`] with `snapshot_time = B` is emitted for every driver that had at least one
//!   event in `[B - N, B)` (its state changed: at least its `last_event_time`), and for every
//!   driver that *expires* at `B` (below); it is the driver's state after all its events before
//!   `B`, applied in event-time order (ties by `event_id`);
//! - a [`ZoneSnapshot`] with `snapshot_time = B` is emitted for every zone whose number of active
//!   trips at `B` differs from that at the previous boundary.
//!
//! Both carry the record timestamp `B - 1`. A replay of the same input gives the same snapshots,
//! whatever the arrival order within the watermark bound and whatever the parallelism.
//!
//! # Driver status
//!
//! A driver's first event creates its state as `AVAILABLE` (then the event applies). Then:
//! `DRIVER_AVAILABLE` makes it `AVAILABLE`, `DRIVER_OFFLINE` makes it `OFFLINE` (both end its
//! current trip, if any); `TRIP_STARTED` makes it `ON_TRIP` with that trip; `TRIP_COMPLETED` and
//! `TRIP_CANCELLED` of its *current* trip make it `AVAILABLE` (those of another trip change
//! nothing but the location); `DRIVER_LOCATION_UPDATE` changes only the location. Every event with
//! coordinates sets `location`, every event with a zone sets `zone`.
//!
//! A `TRIP_CANCELLED` without `driver_id` is attributed to the driver of the trip's
//! `TRIP_STARTED` (operator `live.cancel_resolver`, keyed by trip, which remembers starts for
//! [`LiveConfig::start_retention`]); one with no earlier start is about no driver and is ignored.
//!
//! **Idle expiry.** A driver with no event for [`LiveConfig::idle_timeout`] is considered gone:
//! at the first boundary `B >= last_event_time + idle_timeout` a final snapshot with status
//! `OFFLINE` (and no trip) is emitted, unless it already was `OFFLINE`, and its state is dropped.
//! At end of a bounded input event time runs to the end, so every driver still known expires:
//! the last snapshots of a replay show every driver `OFFLINE` (set `idle_timeout: None` to keep
//! them as they were; state then grows with the number of distinct drivers).
//!
//! # Active trips per zone
//!
//! A trip is active from the `TRIP_STARTED` that puts its driver `ON_TRIP` until the driver
//! leaves that trip (end of the trip, another start, `AVAILABLE`, `OFFLINE`, expiry). It counts in
//! the zone of its `TRIP_STARTED` event for its whole life. The driver operator sends `+1` / `-1`
//! per zone (netted per interval) to `live.zones`, keyed by zone, which keeps the running count.
//!
//! # Late events and state
//!
//! Events behind the watermark cannot be placed in order any more: they go to
//! [`LiveOutputs::late`]. State: `live.drivers` holds one entry per driver seen within
//! `idle_timeout` (its events of the current interval and its state); `live.zones` one per zone
//! with active trips; `live.cancel_resolver` one per trip started within `start_retention`
//! (state TTL). After end of input all three report `state_keys == 0` (with the default
//! `idle_timeout`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use sluice_connectors::LineEncoder;
use sluice_engine::prelude::*;
use sluice_engine::time::duration_ms;
use sluice_engine::BoxError;

use crate::event::{key, Id, JsonWriter, Payload, Point, RideEvent};
use crate::ingest::events_by_driver;

/// Settings of the live job. Every field has a default ([`LiveConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveConfig {
    /// `N`: snapshots are taken at every multiple of it (event time). Default: 1 minute
    /// (at least 1 ms).
    pub snapshot_interval: Duration,
    /// A driver with no event for this long is reported `OFFLINE` and forgotten; `None`: never.
    /// Raised to `snapshot_interval` if shorter. Default: 1 hour.
    pub idle_timeout: Option<Duration>,
    /// How long (event time) the driver of a `TRIP_STARTED` is remembered to resolve a
    /// `TRIP_CANCELLED` without `driver_id`. Default: 4 hours.
    pub start_retention: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            snapshot_interval: Duration::from_secs(60),
            idle_timeout: Some(Duration::from_secs(3600)),
            start_retention: Duration::from_secs(4 * 3600),
        }
    }
}

/// What a driver is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DriverStatus {
    /// Online and free.
    Available,
    /// On a trip.
    OnTrip,
    /// Offline (said so, or silent for the idle timeout).
    Offline,
}

/// A driver's state at a snapshot boundary. Times are event-time milliseconds (RFC 3339 strings
/// in JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriverState {
    /// The boundary `B` this is the state at (after every event before it).
    #[serde(serialize_with = "crate::serde_time::rfc3339")]
    pub snapshot_time: i64,
    /// The driver.
    pub driver_id: String,
    /// Its status.
    pub status: DriverStatus,
    /// Its last known position.
    pub location: Option<Point>,
    /// Its last known zone.
    pub zone: Option<String>,
    /// The trip it is on (when `ON_TRIP`).
    pub current_trip: Option<String>,
    /// The time of its last event.
    #[serde(serialize_with = "crate::serde_time::rfc3339")]
    pub last_event_time: i64,
}

impl DriverState {
    /// Appends the state's JSON object: the same text as its `Serialize` with `serde_json` (a
    /// test compares them), written by hand because snapshots are the largest output after the
    /// backup (one per driver per interval).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut w = JsonWriter { out };
        w.raw("{\"snapshot_time\":\"");
        w.timestamp(self.snapshot_time);
        w.raw("\"");
        w.str(key!("driver_id"), &self.driver_id);
        w.raw(key!("status"));
        w.raw(match self.status {
            DriverStatus::Available => "\"AVAILABLE\"",
            DriverStatus::OnTrip => "\"ON_TRIP\"",
            DriverStatus::Offline => "\"OFFLINE\"",
        });
        match self.location {
            Some(p) => {
                w.num(",\"location\":{\"lat\":", p.lat);
                w.num(key!("lon"), p.lon);
                w.raw("}");
            }
            None => w.raw(",\"location\":null"),
        }
        w.str_or_null(key!("zone"), self.zone.as_deref());
        w.str_or_null(key!("current_trip"), self.current_trip.as_deref());
        w.raw(",\"last_event_time\":\"");
        w.timestamp(self.last_event_time);
        w.raw("\"}");
    }
}

/// [`DriverState::write_json`] as a line encoder, for `live.drivers`' sink.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriverStateJson;

impl LineEncoder<DriverState> for DriverStateJson {
    #[inline]
    fn encode(&self, value: &DriverState, line: &mut Vec<u8>) -> Result<(), BoxError> {
        value.write_json(line);
        Ok(())
    }
}

/// The number of active trips in a zone at a snapshot boundary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ZoneSnapshot {
    /// The boundary `B`.
    #[serde(serialize_with = "crate::serde_time::rfc3339")]
    pub snapshot_time: i64,
    /// The zone (as events name it: `geo_zone`, or the H3 cell).
    pub zone: String,
    /// Trips active at `B` that started in the zone.
    pub active_trips: u64,
}

/// The streams [`live_state`] produces.
#[derive(Debug, Clone)]
pub struct LiveOutputs {
    /// Driver snapshots.
    pub drivers: Stream<DriverState>,
    /// Active trips per zone, when they change.
    pub zones: Stream<ZoneSnapshot>,
    /// Events that arrived behind the watermark.
    pub late: Stream<RideEvent>,
}

impl LiveOutputs {
    /// Feeds the driver and zone snapshots into `view` (fan-out: the streams stay usable).
    pub fn feed(&self, view: &LiveView) {
        self.drivers.clone().sink(view.clone());
        self.zones.clone().sink(view.clone());
    }
}

/// Wires the live job onto `events` (valid, deduplicated, with timestamps and watermarks). See
/// the [module docs](self) for exactly what is emitted and when.
///
/// Operators: `live.cancel_resolver` (keyed by trip), `live.drivers` (keyed by driver; side
/// outputs `zone_deltas` and `live_late`) and `live.zones` (keyed by zone).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sluice_connectors::VecSource;
/// use sluice_engine::prelude::*;
/// use sluice_jobs::event::{parse_event, RideEvent, Validation};
/// use sluice_jobs::live::{live_state, DriverStatus, LiveConfig, LiveView};
///
/// let now = 1_795_680_000_000; // 2026-11-26T06:40:00Z
/// let lines = [
///     r#"{"event_id":"1","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T06:00:10Z","driver_id":"d","latitude":1,"longitude":2,"geo_zone":"z"}"#,
///     r#"{"event_id":"2","event_type":"TRIP_STARTED","timestamp":"2026-11-26T06:00:40Z","trip_id":"t","driver_id":"d","rider_id":"r","start_lat":1,"start_lon":2,"geo_zone":"z"}"#,
/// ];
/// let events: Vec<RideEvent> =
///     lines.iter().map(|l| parse_event(l, now, &Validation::default()).unwrap()).collect();
///
/// let env = StreamEnv::new(Config::default());
/// let stream = env.source(VecSource::new(events)).with_watermarks(
///     Watermarks::bounded_out_of_orderness(Duration::from_secs(5)).timestamps(|e: &RideEvent| e.timestamp),
/// );
/// let view = LiveView::new();
/// let config = LiveConfig { idle_timeout: None, ..LiveConfig::default() };
/// live_state(stream, &config).feed(&view);
/// env.execute()?;
///
/// assert_eq!(view.driver("d").unwrap().status, DriverStatus::OnTrip);
/// assert_eq!(view.active_trips("z"), 1);
/// assert_eq!(view.drivers_by_status().on_trip, 1);
/// # Ok::<(), sluice_engine::JobError>(())
/// ```
pub fn live_state(events: Stream<RideEvent>, config: &LiveConfig) -> LiveOutputs {
    live_state_with(events.clone(), events_by_driver(events), config)
}

/// [`live_state`] with the driver events already keyed by driver (`by_driver`, from
/// [`events_by_driver`] of the same `events`), to share that exchange with the other jobs.
pub fn live_state_with(
    events: Stream<RideEvent>,
    by_driver: KeyedStream<Id, RideEvent>,
    config: &LiveConfig,
) -> LiveOutputs {
    let interval = duration_ms(config.snapshot_interval).max(1);
    let idle = config.idle_timeout.map(|d| duration_ms(d).max(interval));
    let retention = config.start_retention;
    let late = OutputTag::<RideEvent>::new("live_late");
    let deltas = OutputTag::<ZoneDelta>::new("zone_deltas");

    let resolver_late = late.clone();
    let resolved = events
        .filter(|e| {
            matches!(
                e.payload,
                Payload::TripStarted { .. }
                    | Payload::TripCancelled {
                        driver_id: None,
                        ..
                    }
            )
        })
        .name("live.resolver_events")
        .key_by(|e: &RideEvent| e.trip_key())
        .name("live.by_trip")
        .process(move |reg| CancelResolver {
            started: reg.value_with_ttl("started", retention),
            pending: reg.list("cancels"),
            late: resolver_late.clone(),
        })
        .name("live.cancel_resolver");

    let (drivers_late, drivers_deltas) = (late.clone(), deltas.clone());
    // The resolved cancels join the driver events on their driver's worker.
    let drivers = by_driver
        .union([resolved
            .clone()
            .key_by(crate::ingest::driver_key_of)
            .name("live.resolved_by_driver")])
        .name("live.merge")
        .process(move |reg| DriverLive {
            slot: reg.value("driver"),
            interval,
            idle,
            late: drivers_late.clone(),
            deltas: drivers_deltas.clone(),
        })
        .name("live.drivers");

    let zones = drivers
        .side_output(&deltas)
        .key_by(|d: &ZoneDelta| Id::from(&*d.zone))
        .name("live.by_zone")
        .process(move |reg| ZoneCount {
            slot: reg.value("zone"),
            interval,
        })
        .name("live.zones");

    let late = resolved
        .side_output(&late)
        .union([drivers.side_output(&late)])
        .name("live.late");
    LiveOutputs {
        drivers,
        zones,
        late,
    }
}

/// The boundary that ends the interval holding `ts`.
fn boundary_after(ts: Timestamp, interval: i64) -> Timestamp {
    (ts - ts.rem_euclid(interval)).saturating_add(interval)
}

/// The smallest boundary `>= ts`.
fn boundary_at_or_after(ts: Timestamp, interval: i64) -> Timestamp {
    match ts.rem_euclid(interval) {
        0 => ts,
        r => (ts - r).saturating_add(interval),
    }
}

// ---------------------------------------------------------------------------------------------
// live.cancel_resolver: keyed by trip
// ---------------------------------------------------------------------------------------------

struct CancelResolver {
    /// The trip's driver and start time, from its earliest `TRIP_STARTED`.
    started: ValueState<(Id, Timestamp)>,
    /// `TRIP_CANCELLED`s without a driver, until the watermark passes them.
    pending: ListState<RideEvent>,
    late: OutputTag<RideEvent>,
}

impl KeyedProcessFunction<Id, RideEvent> for CancelResolver {
    type Out = RideEvent;

    fn process(&mut self, key: &Id, e: RideEvent, ctx: &mut Context<'_, Id, RideEvent>) {
        if let Payload::TripStarted { driver_id, .. } = &e.payload {
            // Written with the start's own timestamp, so the TTL counts from the start.
            let table = ctx.value(self.started);
            if table.get(key).is_none_or(|(_, t)| e.timestamp < *t) {
                table.set(key, (driver_id.clone(), e.timestamp));
            }
            return;
        }
        if e.timestamp <= ctx.watermark() {
            ctx.output(&self.late, e);
            return;
        }
        let ts = e.timestamp;
        ctx.list(self.pending).push(key, e);
        ctx.register_event_timer(key, ts);
    }

    fn on_timer(&mut self, key: &Id, timer: Timer, ctx: &mut Context<'_, Id, RideEvent>) {
        // Every start at or before the cancel has arrived; state is seen as of the cancel's time.
        let (mut due, rest): (Vec<RideEvent>, Vec<RideEvent>) = ctx
            .list(self.pending)
            .take(key)
            .into_iter()
            .partition(|e| e.timestamp <= timer.time);
        for e in rest {
            ctx.list(self.pending).push(key, e);
        }
        let started = ctx.value(self.started).get(key).cloned();
        due.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
        for mut e in due {
            let ts = e.timestamp;
            match (&started, &mut e.make_mut().payload) {
                (Some((driver, start)), Payload::TripCancelled { driver_id, .. })
                    if *start <= ts =>
                {
                    *driver_id = Some(driver.clone());
                    ctx.emit_at(ts, e);
                }
                // A cancel before any start: about no driver.
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// live.drivers: keyed by driver
// ---------------------------------------------------------------------------------------------

/// `+1` / `-1` active trips in a zone, from `live.drivers` to `live.zones`.
#[derive(Debug, Clone)]
struct ZoneDelta {
    zone: Arc<str>,
    delta: i64,
}

/// A driver's current state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Current {
    status: DriverStatus,
    location: Option<Point>,
    /// The latest event with a zone: the driver's zone is its zone, looked up only when a
    /// snapshot needs it (most events are location updates, and an H3 lookup is costly).
    zoned: Option<RideEvent>,
    /// The current trip and the zone it counts in.
    trip: Option<(Arc<str>, Arc<str>)>,
    last_event_time: Timestamp,
}

impl Current {
    fn end_trip(&mut self, deltas: &mut Vec<(Arc<str>, i64)>) {
        if let Some((_, zone)) = self.trip.take() {
            deltas.push((zone, -1));
        }
    }

    /// Applies `e`, which it keeps as [`zoned`](Self::zoned) if it has a zone: moved, not
    /// cloned (a clone and its drop are two atomic operations on the event's count, for
    /// nearly every event).
    fn apply(&mut self, e: RideEvent, deltas: &mut Vec<(Arc<str>, i64)>) {
        self.last_event_time = e.timestamp;
        if let Some(p) = e.point() {
            self.location = Some(p);
        }
        match &e.payload {
            Payload::DriverAvailable { .. } => {
                self.end_trip(deltas);
                self.status = DriverStatus::Available;
            }
            Payload::DriverOffline { .. } => {
                self.end_trip(deltas);
                self.status = DriverStatus::Offline;
            }
            Payload::TripStarted { trip_id, .. } => {
                if self.trip.as_ref().is_none_or(|(t, _)| t != trip_id) {
                    self.end_trip(deltas);
                    let zone = e.zone().cloned().unwrap_or(Arc::from("unknown"));
                    deltas.push((zone.clone(), 1));
                    self.trip = Some((trip_id.clone(), zone));
                }
                self.status = DriverStatus::OnTrip;
            }
            Payload::TripCompleted { trip_id, .. } | Payload::TripCancelled { trip_id, .. } => {
                if self.trip.as_ref().is_some_and(|(t, _)| t == trip_id) {
                    self.end_trip(deltas);
                    self.status = DriverStatus::Available;
                }
            }
            Payload::DriverLocationUpdate { .. } | Payload::RiderRequest { .. } => {}
        }
        if e.has_zone() {
            self.zoned = Some(e);
        }
    }

    fn snapshot(&self, driver_id: &str, boundary: Timestamp) -> DriverState {
        DriverState {
            snapshot_time: boundary,
            driver_id: driver_id.to_string(),
            status: self.status,
            location: self.location,
            zone: self
                .zoned
                .as_ref()
                .and_then(|e| e.zone())
                .map(|z| z.to_string()),
            current_trip: self.trip.as_ref().map(|(t, _)| t.to_string()),
            last_event_time: self.last_event_time,
        }
    }
}

/// Everything `live.drivers` keeps for one driver.
#[derive(Debug, Default, Serialize, Deserialize)]
struct DriverSlot {
    /// Events the watermark has not passed yet, unsorted.
    pending: Vec<RideEvent>,
    current: Option<Current>,
    /// The timer registered for idle expiry, if any.
    expiry_timer: Option<Timestamp>,
    /// The interval timer registered for the last event added to `pending` since the last
    /// timer of this driver fired (`None` after any firing, and after a restore: then the
    /// next event registers its timer again, which is harmless).
    #[serde(skip)]
    armed: Option<Timestamp>,
}

struct DriverLive {
    slot: ValueState<DriverSlot>,
    interval: i64,
    idle: Option<i64>,
    late: OutputTag<RideEvent>,
    deltas: OutputTag<ZoneDelta>,
}

type DriversCx<'a> = Context<'a, Id, DriverState>;

impl DriverLive {
    /// The timer that handles the interval holding `ts`: its boundary minus one.
    fn interval_timer(&self, ts: Timestamp) -> Timestamp {
        boundary_after(ts, self.interval) - 1
    }

    /// Keeps the expiry timer at the boundary where the driver would expire now.
    fn rearm_expiry(&self, key: &Id, slot: &mut DriverSlot, ctx: &mut DriversCx<'_>) {
        let want = match (self.idle, &slot.current) {
            (Some(idle), Some(cur)) => Some(
                boundary_at_or_after(cur.last_event_time.saturating_add(idle), self.interval) - 1,
            ),
            _ => None,
        };
        if slot.expiry_timer == want {
            return;
        }
        if let Some(old) = slot.expiry_timer.take() {
            // The same (key, time) is one timer: keep it if a pending event's interval needs it.
            if !slot
                .pending
                .iter()
                .any(|e| self.interval_timer(e.timestamp) == old)
            {
                ctx.delete_event_timer(key, old);
            }
        }
        if let Some(t) = want {
            ctx.register_event_timer(key, t);
        }
        slot.expiry_timer = want;
    }
}

impl KeyedProcessFunction<Id, RideEvent> for DriverLive {
    type Out = DriverState;

    fn process(&mut self, key: &Id, e: RideEvent, ctx: &mut DriversCx<'_>) {
        if e.timestamp <= ctx.watermark() {
            ctx.output(&self.late, e);
            return;
        }
        let timer = self.interval_timer(e.timestamp);
        let slot = ctx
            .value(self.slot)
            .get_or_insert_with(key, DriverSlot::default);
        slot.pending.push(e);
        // A timer registered since the driver's last firing has not fired: an event in the
        // same interval as the one before needs no registration (most of a driver's events
        // come in order, several per interval).
        if slot.armed != Some(timer) {
            slot.armed = Some(timer);
            ctx.register_event_timer(key, timer);
        }
    }

    fn on_timer(&mut self, key: &Id, timer: Timer, ctx: &mut DriversCx<'_>) {
        let Some(mut slot) = ctx.value(self.slot).remove(key) else {
            return;
        };
        slot.armed = None;
        // Every timer sits at a boundary minus one: interval ends and expiries alike.
        let boundary = timer.time.saturating_add(1);
        if slot.expiry_timer == Some(timer.time) {
            slot.expiry_timer = None;
        }
        // In order, and the due ones (up to the timer) first: they go, the rest stay, in place.
        // No two pending events share an id (dedup is upstream), so the order is total and an
        // unstable sort gives the same result without the stable sort's scratch allocation
        // (at two workers a driver's events arrive from both, interleaved, and a pending list
        // is often longer than the 20 the stable sort handles in place).
        slot.pending
            .sort_unstable_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
        let due = slot.pending.partition_point(|e| e.timestamp <= timer.time);

        let had_events = due > 0;
        let mut deltas = Vec::new();
        for e in slot.pending.drain(..due) {
            slot.current
                .get_or_insert(Current {
                    status: DriverStatus::Available,
                    location: None,
                    zoned: None,
                    trip: None,
                    last_event_time: e.timestamp,
                })
                .apply(e, &mut deltas);
        }

        let expired = match (self.idle, &slot.current) {
            (Some(idle), Some(cur)) => boundary.saturating_sub(cur.last_event_time) >= idle,
            _ => false,
        };
        if expired {
            let mut cur = slot.current.take().expect("checked above");
            let was_offline = cur.status == DriverStatus::Offline;
            cur.end_trip(&mut deltas);
            cur.status = DriverStatus::Offline;
            if had_events || !was_offline {
                ctx.emit(cur.snapshot(key, boundary));
            }
        } else if had_events {
            if let Some(cur) = &slot.current {
                ctx.emit(cur.snapshot(key, boundary));
            }
        }

        // Net the interval's changes per zone, in zone order.
        deltas.sort();
        let mut i = 0;
        while i < deltas.len() {
            let zone = deltas[i].0.clone();
            let mut net = 0;
            while i < deltas.len() && deltas[i].0 == zone {
                net += deltas[i].1;
                i += 1;
            }
            if net != 0 {
                ctx.output(&self.deltas, ZoneDelta { zone, delta: net });
            }
        }

        self.rearm_expiry(key, &mut slot, ctx);
        if slot.current.is_some() || !slot.pending.is_empty() {
            ctx.value(self.slot).set(key, slot);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// live.zones: keyed by zone
// ---------------------------------------------------------------------------------------------

/// Everything `live.zones` keeps for one zone.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ZoneSlot {
    active: i64,
    /// Net deltas per interval timer not yet reached.
    pending: Vec<(Timestamp, i64)>,
}

struct ZoneCount {
    slot: ValueState<ZoneSlot>,
    interval: i64,
}

type ZonesCx<'a> = Context<'a, Id, ZoneSnapshot>;

impl KeyedProcessFunction<Id, ZoneDelta> for ZoneCount {
    type Out = ZoneSnapshot;

    fn process(&mut self, key: &Id, d: ZoneDelta, ctx: &mut ZonesCx<'_>) {
        let timer = boundary_after(ctx.timestamp(), self.interval) - 1;
        let slot = ctx
            .value(self.slot)
            .get_or_insert_with(key, ZoneSlot::default);
        match slot.pending.iter_mut().find(|(t, _)| *t == timer) {
            Some((_, n)) => *n += d.delta,
            None => slot.pending.push((timer, d.delta)),
        }
        ctx.register_event_timer(key, timer);
    }

    fn on_timer(&mut self, key: &Id, timer: Timer, ctx: &mut ZonesCx<'_>) {
        let Some(mut slot) = ctx.value(self.slot).remove(key) else {
            return;
        };
        let mut net = 0;
        slot.pending.retain(|&(t, n)| {
            if t <= timer.time {
                net += n;
            }
            t > timer.time
        });
        if net != 0 {
            slot.active += net;
            ctx.emit(ZoneSnapshot {
                snapshot_time: timer.time.saturating_add(1),
                zone: key.to_string(),
                active_trips: u64::try_from(slot.active).unwrap_or(0),
            });
        }
        if slot.active != 0 || !slot.pending.is_empty() {
            ctx.value(self.slot).set(key, slot);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The in-memory view
// ---------------------------------------------------------------------------------------------

/// Drivers per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct StatusCounts {
    /// `AVAILABLE` drivers.
    pub available: u64,
    /// `ON_TRIP` drivers.
    pub on_trip: u64,
    /// `OFFLINE` drivers (said so, or expired).
    pub offline: u64,
}

impl StatusCounts {
    fn slot(&mut self, s: DriverStatus) -> &mut u64 {
        match s {
            DriverStatus::Available => &mut self.available,
            DriverStatus::OnTrip => &mut self.on_trip,
            DriverStatus::Offline => &mut self.offline,
        }
    }
}

#[derive(Debug, Default)]
struct ViewInner {
    drivers: HashMap<String, DriverState>,
    /// Zone -> (snapshot time, active trips); zones with no active trips are absent.
    zones: HashMap<String, (i64, u64)>,
    counts: StatusCounts,
    as_of: Option<i64>,
}

impl ViewInner {
    fn apply_driver(&mut self, s: DriverState) {
        self.as_of = self.as_of.max(Some(s.snapshot_time));
        if let Some(old) = self.drivers.get(&s.driver_id) {
            if old.snapshot_time > s.snapshot_time {
                return;
            }
            *self.counts.slot(old.status) -= 1;
        }
        *self.counts.slot(s.status) += 1;
        self.drivers.insert(s.driver_id.clone(), s);
    }

    fn apply_zone(&mut self, z: ZoneSnapshot) {
        self.as_of = self.as_of.max(Some(z.snapshot_time));
        if self
            .zones
            .get(&z.zone)
            .is_some_and(|&(t, _)| t > z.snapshot_time)
        {
            return;
        }
        if z.active_trips == 0 {
            self.zones.remove(&z.zone);
        } else {
            self.zones.insert(z.zone, (z.snapshot_time, z.active_trips));
        }
    }
}

/// The latest live state, queryable while the job runs: feed it with [`LiveOutputs::feed`] (it
/// is a [`Sink`] of [`DriverState`] and of [`ZoneSnapshot`]).
///
/// Clones share the same state. Each worker's sink applies a whole batch under one write lock
/// (never a lock per record); queries take a read lock and copy out what they return. For each
/// driver and zone the snapshot with the latest `snapshot_time` wins. A driver stays in the view
/// after it expires, as `OFFLINE`; zones with no active trips are dropped.
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    inner: Arc<RwLock<ViewInner>>,
}

impl LiveView {
    /// An empty view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest snapshot of driver `id`.
    pub fn driver(&self, id: &str) -> Option<DriverState> {
        self.inner.read().drivers.get(id).cloned()
    }

    /// Trips active in `zone` at the latest snapshot (0 for an unknown zone).
    pub fn active_trips(&self, zone: &str) -> u64 {
        self.inner.read().zones.get(zone).map_or(0, |&(_, n)| n)
    }

    /// Every zone with active trips, sorted by zone.
    pub fn active_trips_by_zone(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .inner
            .read()
            .zones
            .iter()
            .map(|(z, &(_, n))| (z.clone(), n))
            .collect();
        v.sort();
        v
    }

    /// How many known drivers have each status.
    pub fn drivers_by_status(&self) -> StatusCounts {
        self.inner.read().counts
    }

    /// The latest snapshot time applied, if any.
    pub fn as_of(&self) -> Option<i64> {
        self.inner.read().as_of
    }
}

struct ViewWriter {
    inner: Arc<RwLock<ViewInner>>,
}

impl Sink<DriverState> for LiveView {
    fn open(&self, _cx: &SinkContext) -> Result<Box<dyn SinkWriter<DriverState>>, BoxError> {
        Ok(Box::new(ViewWriter {
            inner: self.inner.clone(),
        }))
    }
}

impl Sink<ZoneSnapshot> for LiveView {
    fn open(&self, _cx: &SinkContext) -> Result<Box<dyn SinkWriter<ZoneSnapshot>>, BoxError> {
        Ok(Box::new(ViewWriter {
            inner: self.inner.clone(),
        }))
    }
}

impl SinkWriter<DriverState> for ViewWriter {
    fn write(&mut self, batch: &mut Vec<Record<DriverState>>) -> Result<(), BoxError> {
        let mut inner = self.inner.write();
        for r in batch.drain(..) {
            inner.apply_driver(r.value);
        }
        Ok(())
    }
}

impl SinkWriter<ZoneSnapshot> for ViewWriter {
    fn write(&mut self, batch: &mut Vec<Record<ZoneSnapshot>>) -> Result<(), BoxError> {
        let mut inner = self.inner.write();
        for r in batch.drain(..) {
            inner.apply_zone(r.value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written line is the `serde_json` one, for every shape a state takes.
    #[test]
    fn driver_state_json_is_what_serde_writes() {
        let ids = [
            "d1",
            "s0-d94",
            "quote\"d",
            "back\\slash",
            "tab\tand\u{1}",
            "ünï€😀",
            "",
        ];
        let points = [
            None,
            Some(Point {
                lat: 40.734799,
                lon: -73.991707,
            }),
            Some(Point {
                lat: 0.0,
                lon: -180.0,
            }),
            Some(Point {
                lat: -89.999_999_9,
                lon: 1e-7,
            }),
            Some(Point {
                lat: 12.0,
                lon: 179.5,
            }),
        ];
        let times = [
            0,
            1_767_596_460_000,
            1_767_596_445_512,
            -1,
            253_402_300_800_000,
        ];
        let mut checked = 0;
        for (i, id) in ids.iter().enumerate() {
            for (j, location) in points.iter().enumerate() {
                for status in [
                    DriverStatus::Available,
                    DriverStatus::OnTrip,
                    DriverStatus::Offline,
                ] {
                    let state = DriverState {
                        snapshot_time: times[(i + j) % times.len()],
                        driver_id: id.to_string(),
                        status,
                        location: *location,
                        zone: (j % 2 == 0).then(|| format!("872a1{id}")),
                        current_trip: (i % 3 != 0).then(|| format!("t-{id}")),
                        last_event_time: times[(i * 3 + j) % times.len()],
                    };
                    let mut line = Vec::new();
                    state.write_json(&mut line);
                    assert_eq!(
                        String::from_utf8(line).unwrap(),
                        serde_json::to_string(&state).unwrap()
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 105);
    }
}
