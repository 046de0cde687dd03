//! The surge job (`shared/reference/events.md`, "Surge"): per zone and 5-minute tumbling
//! event-time window, demand (rider requests) against supply (distinct available drivers), and
//! the resulting price multiplier.
//!
//! ```text
//! events ─┬─ RIDER_REQUEST ─────────────────────────────────┐ demand
//!         │                                                 ├─▶ key_by(zone) ─▶ tumbling 5 min ─▶ SurgeResult
//!         └─ driver events ─▶ key_by(driver) ─▶ in order ───┘ supply      (demand, distinct drivers)
//!                                                  └─▶ late                     └─▶ late
//! ```
//!
//! # Supply
//!
//! A driver is supply in a zone and window if, in that window, it sent a `DRIVER_AVAILABLE`
//! from the zone, or a `DRIVER_LOCATION_UPDATE` from the zone while not on a trip. Each driver
//! counts once per zone and window however often it reports (the reference counted events,
//! which counts a chatty driver many times).
//!
//! "On a trip" is keyed state per driver: `TRIP_STARTED` puts the driver on a trip;
//! `TRIP_COMPLETED`, `TRIP_CANCELLED` naming the driver, `DRIVER_OFFLINE` and
//! `DRIVER_AVAILABLE` take it off.
//!
//! # Ordering
//!
//! Whether a location update is supply depends on the trip events before it *in event time*,
//! not in arrival order. So the driver operator buffers each driver's events in keyed state and
//! releases them only when the watermark passes them (one event-time timer per driver, at its
//! earliest buffered event; when it fires, everything the watermark has passed goes out), in
//! `(timestamp, event_id)` order, updating the trip state as it goes. Any
//! arrival order within the out-of-orderness bound therefore gives the same result. The cost
//! is latency (results wait for the watermark, as windows do anyway) and a few buffered events
//! per driver.
//!
//! # Late events
//!
//! Nothing vanishes. An event is *late* when it arrives behind the watermark:
//!
//! - a late driver event cannot be put in order any more: it goes to the late output
//!   ([`SurgeOutputs::late`]) and counts as no supply; it still updates the trip state if it
//!   is the driver's newest state change in event time (so a late `TRIP_COMPLETED` does not
//!   leave the driver "on a trip" forever);
//! - a late rider request whose window has already fired goes to the late output too (one
//!   whose window is still open is counted, as windows do);
//!
//! and both are counted: the driver operator's side output [`LATE`] and the window operator's
//! `late` metric (see [`OPERATOR_DRIVERS`], [`OPERATOR_WINDOW`]).
//!
//! # Output
//!
//! One [`SurgeResult`] per zone and window with any demand or supply, serialised with serde
//! as one JSON object per line:
//!
//! ```json
//! {"zone":"872a1072bffffff","window_start":"2026-01-05T07:00:00.000Z","window_end":"2026-01-05T07:05:00.000Z","demand":7,"supply":3,"ratio":2.3333333333333335,"multiplier":2.0}
//! ```
//!
//! Window bounds are RFC 3339 strings in UTC with milliseconds, as event timestamps are
//! written: they sort chronologically as strings, and read without knowing the epoch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_engine::keys::{fast_set, FastSet};
use sluice_engine::prelude::*;
use smol_str::SmolStr;

use crate::event::{EventType, Id, RideEvent};
use crate::ingest::events_by_driver;
use crate::timestamp::format_rfc3339_ms;

/// Surge settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurgeConfig {
    /// Window length. Default 5 minutes.
    pub window: Duration,
    /// How long (event time) a driver's trip state is kept after its last change; a driver
    /// silent for longer is forgotten (and counts as not on a trip). Bounds the state of a
    /// long-running job. Default 24 hours. (Expiry is checked as of the driver's earliest event
    /// in each release, so it can be late by up to one watermark step.)
    pub driver_state_ttl: Duration,
}

impl Default for SurgeConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            driver_state_ttl: Duration::from_secs(24 * 3_600),
        }
    }
}

/// The surge of one zone in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurgeResult {
    /// The zone: `geo_zone` if the events had one, else the H3 cell (hex).
    pub zone: String,
    /// Window start, inclusive (RFC 3339, UTC).
    pub window_start: String,
    /// Window end, exclusive (RFC 3339, UTC).
    pub window_end: String,
    /// Rider requests in the zone and window.
    pub demand: u64,
    /// Distinct available drivers in the zone and window.
    pub supply: u64,
    /// `demand / max(supply, 1)`.
    pub ratio: f64,
    /// 1.0 below ratio 1.2, 1.5 below 2.0, 2.0 below 3.0, else 2.5.
    pub multiplier: f64,
}

impl SurgeResult {
    /// The result for `demand` and `supply` in `zone` and window `[start_ms, end_ms)`.
    pub fn new(zone: &str, start_ms: i64, end_ms: i64, demand: u64, supply: u64) -> Self {
        let ratio = demand as f64 / supply.max(1) as f64;
        Self {
            zone: zone.to_string(),
            window_start: format_rfc3339_ms(start_ms),
            window_end: format_rfc3339_ms(end_ms),
            demand,
            supply,
            ratio,
            multiplier: multiplier(ratio),
        }
    }
}

/// The surge multiplier of a demand/supply ratio.
pub fn multiplier(ratio: f64) -> f64 {
    if ratio < 1.2 {
        1.0
    } else if ratio < 2.0 {
        1.5
    } else if ratio < 3.0 {
        2.0
    } else {
        2.5
    }
}

/// The outputs of [`surge`].
#[derive(Debug, Clone)]
pub struct SurgeOutputs {
    /// One result per zone and window, emitted when the watermark passes the window's end.
    pub results: Stream<SurgeResult>,
    /// Events that arrived too late to be counted (see the module docs).
    pub late: Stream<RideEvent>,
}

/// The name of the per-driver operator (in metrics and errors).
pub const OPERATOR_DRIVERS: &str = "surge_drivers";
/// The name of the window operator.
pub const OPERATOR_WINDOW: &str = "surge_window";
/// The name of the driver operator's side output of late events.
pub const LATE: &str = "late_driver_events";

/// Computes surge from `events`: valid, deduplicated events with event time and watermarks
/// (what [`crate::ingest`] produces). See the module docs.
///
/// # Watermarks
///
/// Results for a window come out when the watermark reaches its end; supply waits for the
/// watermark before it is counted (see "Ordering").
pub fn surge(events: Stream<RideEvent>, cfg: &SurgeConfig) -> SurgeOutputs {
    surge_with(events.clone(), events_by_driver(events), cfg)
}

/// [`surge`] with the driver events already keyed by driver (`by_driver`, from
/// [`events_by_driver`] of the same `events`), to share that exchange with the other jobs.
pub fn surge_with(
    events: Stream<RideEvent>,
    by_driver: KeyedStream<Id, RideEvent>,
    cfg: &SurgeConfig,
) -> SurgeOutputs {
    let demand = events
        .filter(|e| e.event_type() == EventType::RiderRequest && e.has_zone())
        .map(|e| Signal {
            supply: false,
            event: e,
        })
        .name("surge_demand");
    let late_tag = OutputTag::<RideEvent>::new(LATE);
    let (ttl, fn_tag) = (cfg.driver_state_ttl, late_tag.clone());
    let window = cfg.window;
    let window_ms = sluice_engine::time::duration_ms(window).max(1);
    // Every driver event (a rider request names no driver).
    let supply = by_driver
        .process(move |reg| DriverSupply {
            pending: reg.value("pending"),
            trip: reg.value_with_ttl("trip", ttl),
            counted: reg.value_with_ttl("counted", window),
            window: window_ms,
            late: fn_tag.clone(),
            due: Vec::new(),
        })
        .name(OPERATOR_DRIVERS);
    let late_drivers = supply.side_output(&late_tag);
    let window_late = OutputTag::<Signal>::new("late_signals");
    let windows = demand
        .union([supply])
        .key_by(|s: &Signal| Id::from(s.event.zone().map_or("", |z| &**z)))
        .name("surge_key_by_zone")
        .window(Tumbling::of(cfg.window))
        .late_data(&window_late)
        .aggregate(DemandSupply)
        .name(OPERATOR_WINDOW);
    let late_signals = windows.side_output(&window_late).map(|s| s.event);
    let results = windows
        .map(|r: WindowResult<Id, (u64, u64)>| {
            SurgeResult::new(&r.key, r.window.start, r.window.end, r.value.0, r.value.1)
        })
        .name("surge_results");
    SurgeOutputs {
        results,
        late: late_drivers.union([late_signals]),
    }
}

/// A window input: a rider request (demand) or a driver that is available (supply), with the
/// event it comes from (so that a late one can be reported as the event).
#[derive(Debug, Clone)]
struct Signal {
    supply: bool,
    event: RideEvent,
}

/// Counts demand and distinct drivers.
struct DemandSupply;

impl Aggregate<Signal> for DemandSupply {
    type Acc = (u64, FastSet<String>);
    type Out = (u64, u64);

    fn create(&self) -> Self::Acc {
        (0, fast_set())
    }

    fn add(&self, acc: &mut Self::Acc, s: Signal) {
        if s.supply {
            if let Some(d) = s.event.driver_id() {
                if !acc.1.contains(d) {
                    acc.1.insert(d.to_string());
                }
            }
        } else {
            acc.0 += 1;
        }
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) {
        acc.0 += other.0;
        acc.1.extend(other.1);
    }

    fn finish(&self, acc: &Self::Acc) -> (u64, u64) {
        (acc.0, acc.1.len() as u64)
    }
}

/// A driver's last change of trip state: on a trip or not, as of which event.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TripState {
    on_trip: bool,
    at: (i64, SmolStr),
}

/// Orders each driver's events by event time and turns them into supply signals.
struct DriverSupply {
    /// Events waiting for the watermark, sorted by `(timestamp, event_id)`. Events mostly
    /// arrive in order, so inserting is usually an append and releasing pops from the front:
    /// each event is moved O(1) times.
    pending: ValueState<VecDeque<RideEvent>>,
    trip: ValueState<TripState>,
    /// The zone and window (start) of the driver's last supply signal: the window counts
    /// distinct drivers, so a repeat in the same zone and window is not sent again. Most
    /// events are location updates of drivers who stay in a zone for minutes.
    counted: ValueState<(Arc<str>, i64)>,
    /// Window length (ms), as the window operator assigns windows.
    window: i64,
    late: OutputTag<RideEvent>,
    /// Scratch space for the events a timer releases.
    due: Vec<RideEvent>,
}

impl DriverSupply {
    /// Applies `e`'s trip-state change, if it has one and is newer than the last applied one;
    /// returns the new state if it was applied.
    fn update_trip(
        &self,
        driver: &Id,
        e: &RideEvent,
        ctx: &mut Context<'_, Id, Signal>,
    ) -> Option<bool> {
        let on_trip = match e.event_type() {
            EventType::TripStarted => true,
            EventType::TripCompleted
            | EventType::TripCancelled
            | EventType::DriverOffline
            | EventType::DriverAvailable => false,
            EventType::DriverLocationUpdate | EventType::RiderRequest => return None,
        };
        let trip = ctx.value(self.trip);
        let newer = match trip.get(driver) {
            None => true,
            Some(last) => (e.timestamp, &*e.event_id) > (last.at.0, &*last.at.1),
        };
        if !newer {
            return None;
        }
        trip.set(
            driver,
            TripState {
                on_trip,
                at: (e.timestamp, e.event_id.clone()),
            },
        );
        Some(on_trip)
    }
}

impl KeyedProcessFunction<Id, RideEvent> for DriverSupply {
    type Out = Signal;

    fn process(&mut self, driver: &Id, e: RideEvent, ctx: &mut Context<'_, Id, Signal>) {
        if e.timestamp <= ctx.watermark() {
            self.update_trip(driver, &e, ctx);
            ctx.output(&self.late, e);
            return;
        }
        let pending = ctx
            .value(self.pending)
            .get_or_insert_with(driver, VecDeque::new);
        let ts = e.timestamp;
        let at = if pending.back().is_none_or(|b| order(b) <= order(&e)) {
            pending.push_back(e);
            pending.len() - 1
        } else {
            let at = pending.partition_point(|p| order(p) <= order(&e));
            pending.insert(at, e);
            at
        };
        // One timer per driver, at its earliest pending event (see `on_timer`); an event behind
        // the front needs none.
        if at == 0 {
            ctx.register_event_timer(driver, ts);
        }
    }

    fn on_timer(&mut self, driver: &Id, _timer: Timer, ctx: &mut Context<'_, Id, Signal>) {
        // Release, in order, every event the watermark has passed: no event at or before it
        // can arrive on time any more. (The watermark has moved past this timer's time, often
        // past several of the driver's events: one timer releases them all.) Then one timer
        // for the new front, if any.
        let upto = ctx.watermark();
        let mut due = std::mem::take(&mut self.due);
        let mut next = None;
        let drained = match ctx.value(self.pending).get_mut(driver) {
            Some(pending) => {
                while pending.front().is_some_and(|e| e.timestamp <= upto) {
                    due.extend(pending.pop_front());
                }
                next = pending.front().map(|e| e.timestamp);
                pending.is_empty()
            }
            None => false,
        };
        if let Some(t) = next {
            ctx.register_event_timer(driver, t);
        }
        if drained {
            ctx.value(self.pending).remove(driver);
        }
        // Read once, then kept up to date here: most released events are location updates,
        // which only read it.
        let mut on_trip =
            !due.is_empty() && ctx.value(self.trip).get(driver).is_some_and(|s| s.on_trip);
        for e in due.drain(..) {
            if let Some(now) = self.update_trip(driver, &e, ctx) {
                on_trip = now;
            }
            let supply = match e.event_type() {
                EventType::DriverAvailable => true,
                EventType::DriverLocationUpdate => !on_trip,
                _ => false,
            };
            // Only supply needs the zone (looked up here, not for every event).
            if !supply {
                continue;
            }
            let Some(zone) = e.zone() else {
                continue;
            };
            // Signals are never late at the window (each leaves here when the watermark reaches
            // its own time, before the watermark moves on), so the first of a driver in a zone
            // and window is the one the window counts, and a repeat changes nothing.
            let window = e.timestamp - e.timestamp.rem_euclid(self.window);
            let counted = ctx.value(self.counted);
            if counted
                .get(driver)
                .is_some_and(|(z, w)| *w == window && z == zone)
            {
                continue;
            }
            counted.set(driver, (zone.clone(), window));
            ctx.emit_at(
                e.timestamp,
                Signal {
                    supply: true,
                    event: e,
                },
            );
        }
        self.due = due;
    }
}

/// The order in which a driver's events are released.
fn order(e: &RideEvent) -> (i64, &str) {
    (e.timestamp, &e.event_id)
}
