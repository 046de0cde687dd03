//! The simulation of one split: a sub-city with its own drivers, riders and trips, advanced by a
//! discrete-event loop over a time-ordered agenda.
//!
//! Everything random is drawn from one [`SplitMix64`] seeded from `(seed, split)`, and agenda
//! entries with equal times run in the order they were scheduled, so a split's event sequence
//! depends only on the configuration and the split's index.
//!
//! The life of a driver: offline -> `DRIVER_AVAILABLE` (shift starts) -> cruising with a
//! `DRIVER_LOCATION_UPDATE` every ~15 s (now and then a `DRIVER_AVAILABLE` heartbeat instead) ->
//! matched to a request: drives to the pickup, updates every ~5 s -> `TRIP_STARTED` ->
//! `TRIP_COMPLETED` (or `TRIP_CANCELLED`, before or after the start) -> `DRIVER_AVAILABLE` again,
//! or `DRIVER_OFFLINE` when the shift is over.
//!
//! Riders: requests arrive as a Poisson process whose rate follows [`demand_factor`]; a request
//! is matched to the nearest available driver of the split, or waits (first come, first served)
//! until a driver frees up, and is cancelled with reason `no_driver_available` if none does
//! within a few minutes.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use sluice_connectors::SplitMix64;

use crate::event::{Id, Payload, Point, RideEvent, RideEventData};

use super::{BoundingBox, GeneratorConfig};

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// Metres per degree of latitude.
const M_PER_DEG_LAT: f64 = 111_320.0;
/// Straight-line distance times this is the street distance.
const ROAD_FACTOR: f64 = 1.3;
/// Speeds in metres per second: cruising for fares, and with a passenger or to a pickup.
const CRUISE_SPEED: f64 = 6.0;
const TRIP_SPEED: f64 = 7.0;
/// Location-update intervals: available, and busy (to a pickup or on a trip).
const IDLE_TICK: (i64, i64) = (12 * SECOND, 18 * SECOND);
const BUSY_TICK: (i64, i64) = (4 * SECOND, 6 * SECOND);
/// Share of an available driver's periodic updates that are `DRIVER_AVAILABLE` heartbeats.
const HEARTBEAT_SHARE: f64 = 0.08;
/// Share of drivers online at the start; the others start a shift within the first two hours.
const ONLINE_AT_START: f64 = 0.85;
/// Shift and break lengths.
const SHIFT: (i64, i64) = (2 * HOUR, 8 * HOUR);
const BREAK: (i64, i64) = (20 * MINUTE, 2 * HOUR);
/// How long a rider waits for a driver before giving up.
const PATIENCE: (i64, i64) = (2 * MINUTE, 5 * MINUTE);
/// Cancellation probabilities: while the driver is on the way, and during the trip.
const CANCEL_BEFORE_START: f64 = 0.08;
const CANCEL_AFTER_START: f64 = 0.01;
/// Riders per driver in the pool request ids are drawn from.
const RIDERS_PER_DRIVER: u64 = 25;

/// Hotspots as fractions of the bounding box (south-north, west-east) and their weights; for the
/// default box they sit on Midtown, the Financial District, the Upper East Side, Union Square
/// and Harlem.
const HOTSPOTS: [(f64, f64, f64); 5] = [
    (0.54, 0.40, 0.35),
    (0.07, 0.10, 0.20),
    (0.73, 0.69, 0.20),
    (0.35, 0.33, 0.15),
    (0.95, 0.83, 0.10),
];
/// Share of pickups (and cruising targets) drawn near a hotspot rather than anywhere.
const HOTSPOT_SHARE: f64 = 0.65;

/// Demand by hour of day (00..=24, linearly interpolated): rush hours peak at 08:00 and 18:00.
const DEMAND_BY_HOUR: [f64; 25] = [
    0.35, 0.25, 0.20, 0.20, 0.25, 0.40, 0.70, 1.80, 2.00, 1.30, 0.90, 0.90, 1.00, 1.00, 0.90, 1.00,
    1.30, 1.90, 2.00, 1.30, 1.00, 0.90, 0.70, 0.50, 0.35,
];

/// The demand multiplier at `ms` (UTC, taken as the city's local time): 1.0 is an ordinary
/// daytime hour; it rises to 2.0 in the rush hours (07:00-09:00 and 17:00-19:00, peaking at
/// 08:00 and 18:00) and falls to 0.2 at night.
pub fn demand_factor(ms: i64) -> f64 {
    let ms_of_day = ms.rem_euclid(24 * HOUR);
    let hour = (ms_of_day / HOUR) as usize;
    let frac = (ms_of_day % HOUR) as f64 / HOUR as f64;
    DEMAND_BY_HOUR[hour] + (DEMAND_BY_HOUR[hour + 1] - DEMAND_BY_HOUR[hour]) * frac
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DriverState {
    Offline,
    Available,
    /// Driving to the pickup of this trip.
    EnRoute(u64),
    /// With the rider of this trip.
    OnTrip(u64),
}

#[derive(Debug)]
struct Driver {
    id: Id,
    lat: f64,
    lon: f64,
    /// Where the driver is heading (a cruising target, a pickup or a drop-off).
    target: (f64, f64),
    /// Event time of the last position update.
    moved_at: i64,
    state: DriverState,
    /// Bumped when the driver goes offline, so that ticks scheduled before are ignored.
    epoch: u32,
    shift_end: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TripState {
    Waiting,
    EnRoute,
    OnTrip,
}

#[derive(Debug)]
struct Trip {
    id: Arc<str>,
    rider: Arc<str>,
    pickup: (f64, f64),
    dropoff: (f64, f64),
    driver: Option<u32>,
    state: TripState,
    started_at: i64,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    /// A driver's periodic update.
    Tick { driver: u32, epoch: u32 },
    /// A driver starts a shift.
    Online { driver: u32 },
    /// A driver's shift is due to end (it ends after the current trip, if any).
    ShiftEnd { driver: u32, epoch: u32 },
    /// The next rider request arrives.
    Request,
    /// The driver reaches the pickup: the trip starts.
    Arrive { trip: u64 },
    /// The trip reaches its drop-off.
    Finish { trip: u64 },
    /// Rider or driver cancels.
    Cancel { trip: u64 },
    /// The rider stops waiting for a match.
    GiveUp { trip: u64 },
}

/// An agenda entry.
#[derive(Debug)]
struct Entry {
    time: i64,
    seq: u64,
    action: Action,
}

impl Entry {
    /// Entries run in this order: by time, then in the order they were scheduled.
    fn order(&self) -> (i64, u64) {
        (self.time, self.seq)
    }
}

/// Seconds ahead covered by the agenda's buckets (a driver's next tick is always inside).
const BUCKETS: i64 = 64;

/// The agenda: a calendar queue that yields entries in [`Entry::order`]. Entries of the current
/// second sit in a vector sorted latest first (the next one is popped off the end), and those
/// scheduled for it once it has begun (a rider's next request, say) in a small heap beside it,
/// instead of being inserted into the vector in order (which moved half of it); entries of
/// the next [`BUCKETS`] seconds in unsorted per-second buckets (most entries are driver ticks a
/// few seconds ahead: one push each, sorted once when their second comes); later ones (shift
/// changes, trip ends) in an overflow heap. Much cheaper than one binary heap of everything.
#[derive(Debug)]
struct Agenda {
    /// The second whose entries are in `current`.
    second: i64,
    current: Vec<Entry>,
    /// Entries for `second` (or before) pushed after `current` was filled.
    soon: BinaryHeap<Reverse<Later>>,
    /// Ring of buckets: bucket `s % BUCKETS` holds second `s`, for `second < s < second +
    /// BUCKETS`.
    buckets: Vec<Vec<Entry>>,
    in_buckets: usize,
    later: BinaryHeap<Reverse<Later>>,
}

/// An overflow entry, ordered for the heap.
#[derive(Debug)]
struct Later(Entry);

impl PartialEq for Later {
    fn eq(&self, other: &Self) -> bool {
        self.0.order() == other.0.order()
    }
}
impl Eq for Later {}
impl PartialOrd for Later {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Later {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.order().cmp(&other.0.order())
    }
}

impl Agenda {
    fn new(start: i64) -> Self {
        Self {
            second: start.div_euclid(1_000),
            current: Vec::new(),
            soon: BinaryHeap::new(),
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            in_buckets: 0,
            later: BinaryHeap::new(),
        }
    }

    fn push(&mut self, e: Entry) {
        let s = e.time.div_euclid(1_000);
        if s <= self.second {
            self.soon.push(Reverse(Later(e)));
        } else if s < self.second + BUCKETS {
            self.buckets[s.rem_euclid(BUCKETS) as usize].push(e);
            self.in_buckets += 1;
        } else {
            self.later.push(Reverse(Later(e)));
        }
        self.settle();
    }

    fn peek_time(&self) -> Option<i64> {
        let soon = self.soon.peek().map(|Reverse(Later(e))| e.time);
        match (self.current.last().map(|e| e.time), soon) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pop(&mut self) -> Option<Entry> {
        let from_soon = match (self.current.last(), self.soon.peek()) {
            (Some(c), Some(Reverse(Later(s)))) => s.order() < c.order(),
            (None, soon) => soon.is_some(),
            (Some(_), None) => false,
        };
        let e = if from_soon {
            self.soon.pop().map(|Reverse(Later(e))| e)
        } else {
            self.current.pop()
        };
        self.settle();
        e
    }

    /// Advances `second` until `current` holds the earliest entries (or everything is empty).
    fn settle(&mut self) {
        while self.current.is_empty()
            && self.soon.is_empty()
            && (self.in_buckets > 0 || !self.later.is_empty())
        {
            self.second = match self.later.peek() {
                // Nothing soon: jump to the next later entry's second.
                Some(Reverse(Later(e))) if self.in_buckets == 0 => e.time.div_euclid(1_000),
                _ => self.second + 1,
            };
            let bucket = &mut self.buckets[self.second.rem_euclid(BUCKETS) as usize];
            self.in_buckets -= bucket.len();
            self.current.append(bucket);
            let horizon = self.second + BUCKETS;
            while let Some(Reverse(Later(e))) = self.later.peek() {
                let s = e.time.div_euclid(1_000);
                if s >= horizon {
                    break;
                }
                let Some(Reverse(Later(e))) = self.later.pop() else {
                    break;
                };
                if s <= self.second {
                    self.current.push(e);
                } else {
                    self.buckets[s.rem_euclid(BUCKETS) as usize].push(e);
                    self.in_buckets += 1;
                }
            }
            self.current.sort_unstable_by_key(|e| Reverse(e.order()));
        }
    }
}

/// One split's city: drivers, open trips, waiting riders and the agenda.
pub(crate) struct City {
    rng: SplitMix64,
    bbox: BoundingBox,
    m_per_deg_lon: f64,
    /// Requests per second at demand factor 1.0.
    base_request_rate: f64,
    /// Actions at or after this time are not run (`i64::MAX`: never stop).
    end: i64,
    prefix: String,
    /// The next event's id: `prefix`, `e`, then `next_event` in decimal.
    event_id: String,
    drivers: Vec<Driver>,
    trips: HashMap<u64, Trip>,
    waiting: VecDeque<u64>,
    agenda: Agenda,
    seq: u64,
    next_trip: u64,
    next_event: u64,
    riders: u64,
}

impl City {
    /// The city of split `index` of `cfg.splits`.
    pub(crate) fn new(cfg: &GeneratorConfig, index: usize) -> Self {
        let n = cfg.splits.max(1);
        let drivers = cfg.drivers / n + usize::from(index < cfg.drivers % n);
        let bbox = cfg.city;
        let mid_lat = (bbox.south + bbox.north) / 2.0;
        let end = cfg.duration.map_or(i64::MAX, |d| {
            cfg.start_ms
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        });
        let mut city = City {
            rng: SplitMix64::for_record(cfg.seed, 2 * index as u64),
            bbox,
            m_per_deg_lon: M_PER_DEG_LAT * mid_lat.to_radians().cos(),
            base_request_rate: cfg.requests_per_driver_hour * drivers as f64 / 3_600.0,
            end,
            prefix: format!("s{index}-"),
            event_id: format!("s{index}-e0"),
            drivers: Vec::with_capacity(drivers),
            trips: HashMap::new(),
            waiting: VecDeque::new(),
            agenda: Agenda::new(cfg.start_ms),
            seq: 0,
            next_trip: 0,
            next_event: 0,
            riders: (drivers as u64 * RIDERS_PER_DRIVER).max(1),
        };
        let start = cfg.start_ms;
        for i in 0..drivers {
            let (lat, lon) = city.somewhere();
            city.drivers.push(Driver {
                id: Id::from(format!("{}d{i}", city.prefix).as_str()),
                lat,
                lon,
                target: (lat, lon),
                moved_at: start,
                state: DriverState::Offline,
                epoch: 0,
                shift_end: start,
            });
            let delay = if city.rng.chance(ONLINE_AT_START) {
                city.between(0, 2 * MINUTE)
            } else {
                city.between(2 * MINUTE, 2 * HOUR)
            };
            city.schedule(start + delay, Action::Online { driver: i as u32 });
        }
        city.schedule(start, Action::Request);
        city
    }

    /// The time of the next action, or `None` when the simulation is over.
    pub(crate) fn next_time(&self) -> Option<i64> {
        self.agenda.peek_time().filter(|&t| t < self.end)
    }

    /// Runs the next action, appending the events it produces (all at its time) to `out`.
    /// Returns `false` when the simulation is over.
    pub(crate) fn step(&mut self, out: &mut Vec<RideEvent>) -> bool {
        if self.next_time().is_none() {
            return false;
        }
        let Some(Entry { time, action, .. }) = self.agenda.pop() else {
            return false;
        };
        match action {
            Action::Tick { driver, epoch } => self.tick(time, driver, epoch, out),
            Action::Online { driver } => self.online(time, driver, out),
            Action::ShiftEnd { driver, epoch } => {
                let d = &self.drivers[driver as usize];
                if d.epoch == epoch && d.state == DriverState::Available {
                    self.offline(time, driver, out);
                }
            }
            Action::Request => self.request(time, out),
            Action::Arrive { trip } => self.arrive(time, trip, out),
            Action::Finish { trip } => self.finish(time, trip, out),
            Action::Cancel { trip } => self.cancel(time, trip, out),
            Action::GiveUp { trip } => self.give_up(time, trip, out),
        }
        true
    }

    // -----------------------------------------------------------------------------------------
    // Actions
    // -----------------------------------------------------------------------------------------

    fn tick(&mut self, now: i64, driver: u32, epoch: u32, out: &mut Vec<RideEvent>) {
        let i = driver as usize;
        let state = self.drivers[i].state;
        if self.drivers[i].epoch != epoch || state == DriverState::Offline {
            return;
        }
        let speed = if state == DriverState::Available {
            CRUISE_SPEED
        } else {
            TRIP_SPEED
        };
        let arrived = self.advance(i, now, speed);
        let interval = if state == DriverState::Available {
            if arrived {
                self.drivers[i].target = self.somewhere();
            }
            IDLE_TICK
        } else {
            BUSY_TICK
        };
        let d = &self.drivers[i];
        let (driver_id, location) = (d.id.clone(), point(d.lat, d.lon));
        let payload = if state == DriverState::Available && self.rng.chance(HEARTBEAT_SHARE) {
            Payload::DriverAvailable {
                driver_id,
                location,
            }
        } else {
            Payload::DriverLocationUpdate {
                driver_id,
                location,
            }
        };
        self.emit(now, payload, out);
        let next = now + self.between(interval.0, interval.1);
        self.schedule(next, Action::Tick { driver, epoch });
    }

    fn online(&mut self, now: i64, driver: u32, out: &mut Vec<RideEvent>) {
        let i = driver as usize;
        let shift = self.between(SHIFT.0, SHIFT.1);
        let target = self.somewhere();
        let d = &mut self.drivers[i];
        d.state = DriverState::Available;
        d.moved_at = now;
        d.target = target;
        d.shift_end = now + shift;
        let epoch = d.epoch;
        self.available(now, driver, out);
        self.schedule(now + shift, Action::ShiftEnd { driver, epoch });
        let first = now + self.between(IDLE_TICK.0, IDLE_TICK.1);
        self.schedule(first, Action::Tick { driver, epoch });
    }

    fn offline(&mut self, now: i64, driver: u32, out: &mut Vec<RideEvent>) {
        let d = &mut self.drivers[driver as usize];
        d.state = DriverState::Offline;
        d.epoch = d.epoch.wrapping_add(1);
        let driver_id = d.id.clone();
        self.emit(now, Payload::DriverOffline { driver_id }, out);
        let back = now + self.between(BREAK.0, BREAK.1);
        self.schedule(back, Action::Online { driver });
    }

    fn request(&mut self, now: i64, out: &mut Vec<RideEvent>) {
        let no = self.next_trip;
        self.next_trip += 1;
        let rider: Arc<str> = format!("{}r{}", self.prefix, self.rng.below(self.riders)).into();
        let pickup = self.somewhere();
        let dropoff = self.somewhere();
        self.emit(
            now,
            Payload::RiderRequest {
                rider_id: rider.clone(),
                pickup: point(pickup.0, pickup.1),
                dropoff: Some(point(dropoff.0, dropoff.1)),
            },
            out,
        );
        self.trips.insert(
            no,
            Trip {
                id: format!("{}t{no}", self.prefix).into(),
                rider,
                pickup,
                dropoff,
                driver: None,
                state: TripState::Waiting,
                started_at: 0,
            },
        );
        match self.nearest_available(pickup) {
            Some(driver) => self.assign(now, no, driver),
            None => {
                self.waiting.push_back(no);
                let patience = self.between(PATIENCE.0, PATIENCE.1);
                self.schedule(now + patience, Action::GiveUp { trip: no });
            }
        }
        let rate = self.base_request_rate * demand_factor(now);
        if rate > 0.0 {
            // Exponential inter-arrival times at the current rate (which changes slowly).
            let gap_s = -(1.0 - self.rng.next_f64()).ln() / rate;
            let gap = ((gap_s * 1_000.0) as i64).max(1);
            self.schedule(now.saturating_add(gap), Action::Request);
        }
    }

    fn arrive(&mut self, now: i64, no: u64, out: &mut Vec<RideEvent>) {
        let Some(trip) = self.trips.get_mut(&no) else {
            return;
        };
        let Some(driver) = trip.driver.filter(|_| trip.state == TripState::EnRoute) else {
            return;
        };
        trip.state = TripState::OnTrip;
        trip.started_at = now;
        let (pickup, dropoff) = (trip.pickup, trip.dropoff);
        let (trip_id, rider_id) = (trip.id.clone(), trip.rider.clone());
        let d = &mut self.drivers[driver as usize];
        (d.lat, d.lon) = pickup;
        d.moved_at = now;
        d.target = dropoff;
        d.state = DriverState::OnTrip(no);
        let driver_id = d.id.clone();
        let metres = self.distance(pickup, dropoff) * ROAD_FACTOR;
        let duration = (metres / TRIP_SPEED) as i64 * SECOND + self.between(MINUTE, 4 * MINUTE);
        let estimate = duration as f64 / 1_000.0 * self.rng.range_f64(0.85, 1.15);
        let estimated_fare = cents(fare(metres, duration) * self.rng.range_f64(0.9, 1.1));
        self.emit(
            now,
            Payload::TripStarted {
                trip_id,
                driver_id,
                rider_id,
                start: point(pickup.0, pickup.1),
                estimated_duration: Some(estimate.round()),
                estimated_fare: Some(estimated_fare),
            },
            out,
        );
        if self.rng.chance(CANCEL_AFTER_START) {
            let at = now + self.between(MINUTE, duration.max(MINUTE + 1));
            self.schedule(at, Action::Cancel { trip: no });
        } else {
            self.schedule(now + duration, Action::Finish { trip: no });
        }
    }

    fn finish(&mut self, now: i64, no: u64, out: &mut Vec<RideEvent>) {
        let Some(trip) = self.trips.remove(&no) else {
            return;
        };
        let Some(driver) = trip.driver.filter(|_| trip.state == TripState::OnTrip) else {
            return;
        };
        let d = &mut self.drivers[driver as usize];
        (d.lat, d.lon) = trip.dropoff;
        d.moved_at = now;
        let driver_id = d.id.clone();
        let metres = self.distance(trip.pickup, trip.dropoff) * ROAD_FACTOR;
        let duration = now - trip.started_at;
        let rating = self.rating();
        self.emit(
            now,
            Payload::TripCompleted {
                trip_id: trip.id,
                driver_id,
                end: point(trip.dropoff.0, trip.dropoff.1),
                actual_fare: fare(metres, duration),
                actual_duration: (duration / SECOND) as f64,
                rating,
            },
            out,
        );
        self.release(now, driver, out);
    }

    fn cancel(&mut self, now: i64, no: u64, out: &mut Vec<RideEvent>) {
        let Some(trip) = self.trips.get(&no) else {
            return;
        };
        let (Some(driver), TripState::EnRoute | TripState::OnTrip) = (trip.driver, trip.state)
        else {
            return;
        };
        let trip = self.trips.remove(&no).expect("present");
        let reason = match trip.state {
            TripState::EnRoute if self.rng.chance(0.7) => "rider_cancelled",
            TripState::EnRoute => "driver_cancelled",
            _ => "trip_aborted",
        };
        let d = &mut self.drivers[driver as usize];
        let driver_id = d.id.clone();
        self.emit(
            now,
            Payload::TripCancelled {
                trip_id: trip.id,
                driver_id: Some(driver_id),
                rider_id: Some(trip.rider),
                reason: Some(reason.into()),
            },
            out,
        );
        self.release(now, driver, out);
    }

    fn give_up(&mut self, now: i64, no: u64, out: &mut Vec<RideEvent>) {
        if self.trips.get(&no).map(|t| t.state) != Some(TripState::Waiting) {
            return;
        }
        let trip = self.trips.remove(&no).expect("present");
        self.emit(
            now,
            Payload::TripCancelled {
                trip_id: trip.id,
                driver_id: None,
                rider_id: Some(trip.rider),
                reason: Some("no_driver_available".into()),
            },
            out,
        );
        // Its entry in `waiting` is skipped when it comes up.
    }

    // -----------------------------------------------------------------------------------------
    // Helpers
    // -----------------------------------------------------------------------------------------

    /// A driver is done with a trip: available again (and matched to a waiting rider, if any),
    /// or offline if the shift is over.
    fn release(&mut self, now: i64, driver: u32, out: &mut Vec<RideEvent>) {
        let d = &mut self.drivers[driver as usize];
        d.state = DriverState::Available;
        if now >= d.shift_end {
            self.offline(now, driver, out);
        } else {
            self.drivers[driver as usize].target = self.somewhere();
            self.available(now, driver, out);
        }
    }

    /// Emits `DRIVER_AVAILABLE` and hands the driver the longest-waiting request, if any.
    fn available(&mut self, now: i64, driver: u32, out: &mut Vec<RideEvent>) {
        let d = &self.drivers[driver as usize];
        let payload = Payload::DriverAvailable {
            driver_id: d.id.clone(),
            location: point(d.lat, d.lon),
        };
        self.emit(now, payload, out);
        while let Some(no) = self.waiting.pop_front() {
            if self.trips.get(&no).map(|t| t.state) == Some(TripState::Waiting) {
                self.assign(now, no, driver);
                break;
            }
        }
    }

    /// Sends `driver` to the pickup of trip `no`, scheduling its arrival (or a cancellation on
    /// the way).
    fn assign(&mut self, now: i64, no: u64, driver: u32) {
        let Some(trip) = self.trips.get_mut(&no) else {
            return;
        };
        trip.driver = Some(driver);
        trip.state = TripState::EnRoute;
        let pickup = trip.pickup;
        let d = &mut self.drivers[driver as usize];
        d.state = DriverState::EnRoute(no);
        d.target = pickup;
        let from = (d.lat, d.lon);
        let metres = self.distance(from, pickup) * ROAD_FACTOR;
        let drive = ((metres / TRIP_SPEED) as i64 * SECOND).max(MINUTE);
        let arrival = now + self.between(2 * SECOND, 15 * SECOND) + drive;
        if self.rng.chance(CANCEL_BEFORE_START) {
            let at = self.between(now + SECOND, arrival);
            self.schedule(at, Action::Cancel { trip: no });
        } else {
            self.schedule(arrival, Action::Arrive { trip: no });
        }
    }

    fn nearest_available(&self, to: (f64, f64)) -> Option<u32> {
        let mut best: Option<(f64, u32)> = None;
        for (i, d) in self.drivers.iter().enumerate() {
            if d.state != DriverState::Available {
                continue;
            }
            let dist = self.distance((d.lat, d.lon), to);
            if best.is_none_or(|(b, _)| dist < b) {
                best = Some((dist, i as u32));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Moves driver `i` toward its target at `speed` for the time since it last moved; returns
    /// whether it got there.
    fn advance(&mut self, i: usize, now: i64, speed: f64) -> bool {
        let m_lon = self.m_per_deg_lon;
        let d = &mut self.drivers[i];
        let dt = (now - d.moved_at).max(0) as f64 / 1_000.0;
        d.moved_at = now;
        let dy = (d.target.0 - d.lat) * M_PER_DEG_LAT;
        let dx = (d.target.1 - d.lon) * m_lon;
        let dist = (dx * dx + dy * dy).sqrt();
        let step = speed * dt / ROAD_FACTOR;
        if dist <= step {
            (d.lat, d.lon) = d.target;
            true
        } else {
            let f = step / dist;
            d.lat += dy * f / M_PER_DEG_LAT;
            d.lon += dx * f / m_lon;
            false
        }
    }

    /// Straight-line distance in metres (equirectangular; fine at city scale).
    fn distance(&self, a: (f64, f64), b: (f64, f64)) -> f64 {
        let dy = (b.0 - a.0) * M_PER_DEG_LAT;
        let dx = (b.1 - a.1) * self.m_per_deg_lon;
        (dx * dx + dy * dy).sqrt()
    }

    /// A random point of the city: near a hotspot most of the time, else anywhere.
    fn somewhere(&mut self) -> (f64, f64) {
        let b = self.bbox;
        let (fy, fx) = if self.rng.chance(HOTSPOT_SHARE) {
            let mut pick = self.rng.next_f64();
            let mut spot = HOTSPOTS[0];
            for h in HOTSPOTS {
                spot = h;
                if pick < h.2 {
                    break;
                }
                pick -= h.2;
            }
            // About 1 km around the hotspot (a sum of uniforms: roughly normal, bounded).
            let jitter = |rng: &mut SplitMix64| {
                (rng.next_f64() + rng.next_f64() + rng.next_f64() - 1.5) * 0.12
            };
            (
                spot.0 + jitter(&mut self.rng),
                spot.1 + jitter(&mut self.rng),
            )
        } else {
            (self.rng.next_f64(), self.rng.next_f64())
        };
        let lat = b.south + (b.north - b.south) * fy.clamp(0.0, 1.0);
        let lon = b.west + (b.east - b.west) * fx.clamp(0.0, 1.0);
        (lat, lon)
    }

    fn rating(&mut self) -> Option<f64> {
        if self.rng.chance(0.25) {
            return None;
        }
        let u = self.rng.next_f64();
        Some(if u < 0.62 {
            5.0
        } else if u < 0.87 {
            4.0
        } else if u < 0.95 {
            3.0
        } else if u < 0.98 {
            2.0
        } else {
            1.0
        })
    }

    /// A uniform time in `low..high` (or `low`).
    fn between(&mut self, low: i64, high: i64) -> i64 {
        if high <= low {
            return low;
        }
        low + self.rng.below((high - low) as u64) as i64
    }

    fn schedule(&mut self, time: i64, action: Action) {
        self.seq += 1;
        self.agenda.push(Entry {
            time,
            seq: self.seq,
            action,
        });
    }

    fn emit(&mut self, time: i64, payload: Payload, out: &mut Vec<RideEvent>) {
        out.push(RideEvent::new(RideEventData::new(
            self.event_id.as_str().into(),
            time,
            payload,
        )));
        self.next_event += 1;
        increment_decimal(&mut self.event_id, self.prefix.len() + 1);
    }
}

/// Adds one to the decimal number that ends `s` from byte `from` on, in place, as an odometer
/// turns: cheaper than writing the number afresh for every event.
fn increment_decimal(s: &mut String, from: usize) {
    let mut nines = 0;
    while s.len() > from && s.ends_with('9') {
        s.pop();
        nines += 1;
    }
    // A digit below 9, or none left (a new leading 1).
    let last = if s.len() > from { s.pop() } else { None };
    s.push(last.map_or('1', |d| char::from(d as u8 + 1)));
    s.extend(std::iter::repeat_n('0', nines));
}

/// Coordinates rounded to 6 decimals (about 10 cm), as a device would report them.
fn point(lat: f64, lon: f64) -> Point {
    Point {
        lat: (lat * 1e6).round() / 1e6,
        lon: (lon * 1e6).round() / 1e6,
    }
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Base fare plus per-kilometre and per-minute rates.
fn fare(metres: f64, duration_ms: i64) -> f64 {
    cents(2.55 + 1.75 * metres / 1_000.0 + 0.35 * duration_ms as f64 / 60_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agenda_yields_entries_in_order() {
        // Against a heap of everything: pushes at random distances (the current second, the
        // buckets' range, beyond it) interleaved with pops, as the city's actions schedule
        // others while it runs.
        let mut agenda = Agenda::new(5_000);
        let mut model = BinaryHeap::new();
        let mut rng = SplitMix64::for_record(11, 0);
        let (mut now, mut seq) = (5_000i64, 0u64);
        let mut popped = 0;
        for round in 0..40_000 {
            if round < 30_000 && rng.below(3) > 0 {
                let ahead = match rng.below(4) {
                    0 => rng.below(1_000) as i64,
                    1 | 2 => rng.below(BUCKETS as u64 * 1_000) as i64,
                    _ => rng.below(1_000_000) as i64,
                };
                seq += 1;
                let action = Action::Tick {
                    driver: seq as u32,
                    epoch: 0,
                };
                agenda.push(Entry {
                    time: now + ahead,
                    seq,
                    action,
                });
                model.push(Reverse((now + ahead, seq)));
            } else {
                assert_eq!(agenda.peek_time(), model.peek().map(|Reverse((t, _))| *t));
                let got = agenda.pop().map(|e| e.order());
                let want = model.pop().map(|Reverse(o)| o);
                assert_eq!(got, want, "pop {popped}");
                if let Some((t, _)) = got {
                    now = t;
                    popped += 1;
                }
            }
        }
        while let Some(Reverse(want)) = model.pop() {
            assert_eq!(agenda.pop().map(|e| e.order()), Some(want));
        }
        assert!(agenda.pop().is_none() && agenda.peek_time().is_none());
        assert!(popped > 5_000, "{popped}");
    }

    #[test]
    fn decimals() {
        let mut s = String::from("s1-e0");
        for n in 0..120_000u64 {
            assert_eq!(s, format!("s1-e{n}"));
            increment_decimal(&mut s, 4);
        }
        let mut s = String::from("x99999");
        increment_decimal(&mut s, 1);
        assert_eq!(s, "x100000");
    }

    #[test]
    fn demand_peaks_in_the_rush_hours() {
        let h = |x: i64| demand_factor(x * HOUR);
        assert_eq!(h(8), 2.0);
        assert_eq!(h(18), 2.0);
        assert!(h(3) < 0.3 && h(12) == 1.0);
        assert!((demand_factor(7 * HOUR + 30 * MINUTE) - 1.9).abs() < 1e-9);
        assert_eq!(demand_factor(-HOUR), demand_factor(23 * HOUR));
    }

    #[test]
    fn a_trip_goes_through_its_whole_life() {
        let cfg = GeneratorConfig {
            drivers: 3,
            duration: Some(std::time::Duration::from_secs(3 * 3_600)),
            ..GeneratorConfig::default()
        };
        let mut city = City::new(&cfg, 0);
        let mut out = Vec::new();
        while city.step(&mut out) {}
        let count = |t: crate::event::EventType| out.iter().filter(|e| e.event_type() == t).count();
        use crate::event::EventType::*;
        for t in [
            RiderRequest,
            DriverAvailable,
            DriverLocationUpdate,
            TripStarted,
            TripCompleted,
            TripCancelled,
        ] {
            assert!(count(t) > 0, "no {t:?} in {} events", out.len());
        }
        assert!(out.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    }
}
