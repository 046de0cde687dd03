//! The ride-hailing event model and its wire format (`shared/reference/events.md`): parsing,
//! validation, geo zones, and serialisation back to JSON Lines.
//!
//! [`parse_event`] turns one input line into a valid [`RideEvent`] or a [`DeadLetter`] that
//! carries the raw line and a [`Reason`] from a fixed, documented set. It never panics, whatever
//! the input.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use crate::timestamp::parse_rfc3339_ms;

mod id;
mod scan;
mod zone;

pub use id::{EventId, Hashed, Id, IdText};
pub use zone::h3_zone;

/// 2024-01-01T00:00:00Z: events before it are rejected.
pub const EARLIEST_TIMESTAMP_MS: i64 = 1_704_067_200_000;

/// The seven event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// A rider asks for a ride.
    RiderRequest,
    /// A driver becomes available.
    DriverAvailable,
    /// A driver goes offline.
    DriverOffline,
    /// A driver's position.
    DriverLocationUpdate,
    /// A trip starts.
    TripStarted,
    /// A trip ends normally.
    TripCompleted,
    /// A trip is cancelled.
    TripCancelled,
}

impl EventType {
    /// Every event type, in a fixed order.
    pub const ALL: [EventType; 7] = [
        EventType::RiderRequest,
        EventType::DriverAvailable,
        EventType::DriverOffline,
        EventType::DriverLocationUpdate,
        EventType::TripStarted,
        EventType::TripCompleted,
        EventType::TripCancelled,
    ];

    /// The wire name, e.g. `RIDER_REQUEST`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RiderRequest => "RIDER_REQUEST",
            EventType::DriverAvailable => "DRIVER_AVAILABLE",
            EventType::DriverOffline => "DRIVER_OFFLINE",
            EventType::DriverLocationUpdate => "DRIVER_LOCATION_UPDATE",
            EventType::TripStarted => "TRIP_STARTED",
            EventType::TripCompleted => "TRIP_COMPLETED",
            EventType::TripCancelled => "TRIP_CANCELLED",
        }
    }

    fn parse(s: &str) -> Option<EventType> {
        Some(match s {
            "RIDER_REQUEST" => EventType::RiderRequest,
            "DRIVER_AVAILABLE" => EventType::DriverAvailable,
            "DRIVER_OFFLINE" => EventType::DriverOffline,
            "DRIVER_LOCATION_UPDATE" => EventType::DriverLocationUpdate,
            "TRIP_STARTED" => EventType::TripStarted,
            "TRIP_COMPLETED" => EventType::TripCompleted,
            "TRIP_CANCELLED" => EventType::TripCancelled,
            _ => return None,
        })
    }
}

/// A point on Earth, validated: latitude in [-90, 90], longitude in [-180, 180], both finite.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Degrees north.
    pub lat: f64,
    /// Degrees east.
    pub lon: f64,
}

/// What is specific to each event type.
///
/// The serde derives are for checkpoints of keyed state (which buffer events); the wire format
/// is [`RideEventData::write_json`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// `RIDER_REQUEST`
    RiderRequest {
        /// The rider.
        rider_id: Arc<str>,
        /// Pickup location.
        pickup: Point,
        /// Drop-off location, if given.
        dropoff: Option<Point>,
    },
    /// `DRIVER_AVAILABLE`
    DriverAvailable {
        /// The driver.
        driver_id: Id,
        /// Where.
        location: Point,
    },
    /// `DRIVER_OFFLINE`
    DriverOffline {
        /// The driver.
        driver_id: Id,
    },
    /// `DRIVER_LOCATION_UPDATE`
    DriverLocationUpdate {
        /// The driver.
        driver_id: Id,
        /// Where.
        location: Point,
    },
    /// `TRIP_STARTED`
    TripStarted {
        /// The trip.
        trip_id: Arc<str>,
        /// Its driver.
        driver_id: Id,
        /// Its rider.
        rider_id: Arc<str>,
        /// Where it starts.
        start: Point,
        /// Estimated duration in seconds.
        estimated_duration: Option<f64>,
        /// Estimated fare.
        estimated_fare: Option<f64>,
    },
    /// `TRIP_COMPLETED`
    TripCompleted {
        /// The trip.
        trip_id: Arc<str>,
        /// Its driver.
        driver_id: Id,
        /// Where it ends.
        end: Point,
        /// Fare charged.
        actual_fare: f64,
        /// Duration in seconds.
        actual_duration: f64,
        /// Rider's rating, 1..=5.
        rating: Option<f64>,
    },
    /// `TRIP_CANCELLED`
    TripCancelled {
        /// The trip.
        trip_id: Arc<str>,
        /// Its driver, if known.
        driver_id: Option<Id>,
        /// Its rider, if known.
        rider_id: Option<Arc<str>>,
        /// Why.
        reason: Option<Arc<str>>,
    },
}

/// A valid event: a shared handle to its [`RideEventData`], which it dereferences to
/// (`e.timestamp`, `e.payload`, `e.event_type()`, ...).
///
/// Every job reads the same events, so the stream of valid events fans out to half a dozen
/// operators and crosses workers several times: a handle makes each of those copies one
/// reference count instead of a copy of the event and of each of its strings.
///
/// The serde derives are for checkpoints of keyed state (operators buffer events until the
/// watermark passes them): they are *not* the wire format, which [`RideEventData::write_json`]
/// / [`RideEventData::to_json`] write and [`parse_event`] reads.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RideEvent(Arc<RideEventData>);

impl RideEvent {
    /// Wraps `data`.
    pub fn new(data: RideEventData) -> Self {
        Self(Arc::new(data))
    }

    /// The event's data to change (copied first if the handle is shared). Its zone is derived
    /// afresh afterwards, and it no longer has a [`raw_line`](RideEventData::raw_line).
    pub fn make_mut(&mut self) -> &mut RideEventData {
        let data = Arc::make_mut(&mut self.0);
        data.derived_zone = std::sync::OnceLock::new();
        data.raw = None;
        data
    }

    /// Records `line`, the text this event was just parsed from, as its
    /// [`raw_line`](RideEventData::raw_line). Only a handle not shared yet takes it (one fresh
    /// from [`parse_event`]); a shared one is returned as it is.
    pub fn with_raw_line(mut self, line: String) -> Self {
        if let Some(data) = Arc::get_mut(&mut self.0) {
            let trimmed = line.trim_ascii();
            data.raw = Some(if trimmed.len() == line.len() {
                line.into_boxed_str()
            } else {
                trimmed.into()
            });
        }
        self
    }
}

impl From<RideEventData> for RideEvent {
    fn from(data: RideEventData) -> Self {
        Self::new(data)
    }
}

impl std::ops::Deref for RideEvent {
    type Target = RideEventData;

    fn deref(&self) -> &RideEventData {
        &self.0
    }
}

impl fmt::Debug for RideEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a [`RideEvent`] holds.
///
/// Its geo zone ([`zone`](Self::zone)) is the input's `geo_zone` if it had one, else the H3
/// cell of its coordinates, computed on first use and kept: most events are location updates
/// of drivers on a trip, whose zone no job needs, and an H3 lookup costs more than the rest of
/// validating an event.
///
/// Checkpoints store its fields as a struct of `event_id`, `timestamp`, `geo_zone` (an
/// option), `h3_resolution` and `payload`, as they were stored before [`ZoneSource`] held the
/// middle two.
#[derive(Debug, Deserialize)]
#[serde(from = "EventFields")]
pub struct RideEventData {
    /// The deduplication key (its hash is computed where dedup keys by it: an [`EventId`]).
    pub event_id: SmolStr,
    /// Event time, ms since the epoch.
    pub timestamp: i64,
    /// The input's `geo_zone` field, or the resolution to derive the zone at.
    pub zone_source: ZoneSource,
    /// Type-specific fields.
    pub payload: Payload,
    /// The derived zone, once computed (a function of the fields above, so neither compared nor
    /// checkpointed).
    derived_zone: std::sync::OnceLock<Option<Arc<str>>>,
    /// The line the event was read from, when it was read as text (a file, standard input):
    /// what the backup stores ([`raw_line`](Self::raw_line)). Neither compared nor
    /// checkpointed, and dropped by a copy or [`RideEvent::make_mut`]: a changed event is no
    /// longer its line.
    raw: Option<Box<str>>,
}

/// Where an event's zone ([`RideEventData::zone`]) comes from.
///
/// One field for the two cases, 16 bytes (a resolution fits beside the niche of the zone's
/// pointer): with separate fields for the given zone and the resolution an event took 8 bytes
/// more, which is what room the driver id's hash needs in [`Payload`] without moving the
/// event's allocation into a costlier size class of the allocator (decision 28).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneSource {
    /// The input's `geo_zone` field.
    Given(Arc<str>),
    /// None given: the H3 cell of the event's coordinates at this resolution (0..=15, from
    /// [`Validation::h3_resolution`]), derived on first use.
    H3(u8),
}

/// [`RideEventData`] as checkpoints store it (see there), read back.
#[derive(Deserialize)]
struct EventFields {
    event_id: SmolStr,
    timestamp: i64,
    geo_zone: Option<Arc<str>>,
    h3_resolution: u8,
    payload: Payload,
}

/// [`EventFields`] borrowed from an event, to write a checkpoint without copying it.
#[derive(Serialize)]
#[serde(rename = "RideEventData")]
struct EventFieldsRef<'a> {
    event_id: &'a SmolStr,
    timestamp: i64,
    geo_zone: Option<&'a Arc<str>>,
    h3_resolution: u8,
    payload: &'a Payload,
}

impl Serialize for RideEventData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (geo_zone, h3_resolution) = match &self.zone_source {
            ZoneSource::Given(z) => (Some(z), Validation::default().h3_resolution),
            ZoneSource::H3(r) => (None, *r),
        };
        EventFieldsRef {
            event_id: &self.event_id,
            timestamp: self.timestamp,
            geo_zone,
            h3_resolution,
            payload: &self.payload,
        }
        .serialize(s)
    }
}

impl From<EventFields> for RideEventData {
    fn from(f: EventFields) -> Self {
        let mut e = RideEventData::new(f.event_id, f.timestamp, f.payload);
        e.zone_source = match f.geo_zone {
            Some(z) => ZoneSource::Given(z),
            None => ZoneSource::H3(f.h3_resolution),
        };
        e
    }
}

/// A copy derives its zone afresh (it is usually made to be changed).
impl Clone for RideEventData {
    fn clone(&self) -> Self {
        Self {
            event_id: self.event_id.clone(),
            timestamp: self.timestamp,
            zone_source: self.zone_source.clone(),
            payload: self.payload.clone(),
            derived_zone: std::sync::OnceLock::new(),
            raw: None,
        }
    }
}

/// Events are equal when their fields are (whether a zone was derived yet does not matter).
impl PartialEq for RideEventData {
    fn eq(&self, other: &Self) -> bool {
        self.event_id == other.event_id
            && self.timestamp == other.timestamp
            && self.zone_source == other.zone_source
            && self.payload == other.payload
    }
}

impl RideEventData {
    /// An event with no `geo_zone`, whose zone is derived at the default resolution.
    pub fn new(event_id: SmolStr, timestamp: i64, payload: Payload) -> Self {
        Self {
            event_id,
            timestamp,
            zone_source: ZoneSource::H3(Validation::default().h3_resolution),
            payload,
            derived_zone: std::sync::OnceLock::new(),
            raw: None,
        }
    }

    /// The line the event was read from (without surrounding whitespace), if it was read as
    /// text and not changed since; `None` for events made as data (the generator's).
    pub fn raw_line(&self) -> Option<&str> {
        self.raw.as_deref()
    }

    /// The event's geo zone: its `geo_zone` if given, else the H3 cell of its coordinates at
    /// the resolution of its [`zone_source`](Self::zone_source), or `None` for an event with
    /// neither.
    ///
    /// A derived zone is computed on the first call and kept: change the coordinates or the
    /// resolution of a value before that, or through [`RideEvent::make_mut`] or a clone,
    /// which derive it afresh.
    pub fn zone(&self) -> Option<&Arc<str>> {
        match &self.zone_source {
            ZoneSource::Given(z) => Some(z),
            ZoneSource::H3(r) => self
                .derived_zone
                .get_or_init(|| self.point().map(|p| h3_zone(p, *r)))
                .as_ref(),
        }
    }

    /// The input's `geo_zone` field, if it had one.
    pub fn geo_zone(&self) -> Option<&Arc<str>> {
        match &self.zone_source {
            ZoneSource::Given(z) => Some(z),
            ZoneSource::H3(_) => None,
        }
    }

    /// Whether the event has a zone (a `geo_zone`, or coordinates), without computing it.
    pub fn has_zone(&self) -> bool {
        self.geo_zone().is_some() || self.point().is_some()
    }

    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self.payload {
            Payload::RiderRequest { .. } => EventType::RiderRequest,
            Payload::DriverAvailable { .. } => EventType::DriverAvailable,
            Payload::DriverOffline { .. } => EventType::DriverOffline,
            Payload::DriverLocationUpdate { .. } => EventType::DriverLocationUpdate,
            Payload::TripStarted { .. } => EventType::TripStarted,
            Payload::TripCompleted { .. } => EventType::TripCompleted,
            Payload::TripCancelled { .. } => EventType::TripCancelled,
        }
    }

    /// The driver the event is about, if any.
    pub fn driver_id(&self) -> Option<&str> {
        match &self.payload {
            Payload::DriverAvailable { driver_id, .. }
            | Payload::DriverOffline { driver_id }
            | Payload::DriverLocationUpdate { driver_id, .. }
            | Payload::TripStarted { driver_id, .. }
            | Payload::TripCompleted { driver_id, .. } => Some(driver_id),
            Payload::TripCancelled { driver_id, .. } => driver_id.as_deref(),
            Payload::RiderRequest { .. } => None,
        }
    }

    /// [`driver_id`](Self::driver_id) as a key: an [`Id`] (shares the string; hashes it once).
    pub fn driver_key(&self) -> Option<Id> {
        match &self.payload {
            Payload::DriverAvailable { driver_id, .. }
            | Payload::DriverOffline { driver_id }
            | Payload::DriverLocationUpdate { driver_id, .. }
            | Payload::TripStarted { driver_id, .. }
            | Payload::TripCompleted { driver_id, .. } => Some(driver_id.clone()),
            Payload::TripCancelled { driver_id, .. } => driver_id.clone(),
            Payload::RiderRequest { .. } => None,
        }
    }

    /// [`trip_id`](Self::trip_id) as a key (see [`driver_key`](Self::driver_key)), or the empty
    /// string if the event names no trip.
    pub fn trip_key(&self) -> Id {
        match &self.payload {
            Payload::TripStarted { trip_id, .. }
            | Payload::TripCompleted { trip_id, .. }
            | Payload::TripCancelled { trip_id, .. } => Id::from(&**trip_id),
            _ => Id::from(""),
        }
    }

    /// The trip the event is about, if any.
    pub fn trip_id(&self) -> Option<&str> {
        match &self.payload {
            Payload::TripStarted { trip_id, .. }
            | Payload::TripCompleted { trip_id, .. }
            | Payload::TripCancelled { trip_id, .. } => Some(trip_id),
            _ => None,
        }
    }

    /// The event's main coordinates (pickup, location, start or end), if it has any.
    pub fn point(&self) -> Option<Point> {
        match &self.payload {
            Payload::RiderRequest { pickup, .. } => Some(*pickup),
            Payload::DriverAvailable { location, .. }
            | Payload::DriverLocationUpdate { location, .. } => Some(*location),
            Payload::TripStarted { start, .. } => Some(*start),
            Payload::TripCompleted { end, .. } => Some(*end),
            Payload::DriverOffline { .. } | Payload::TripCancelled { .. } => None,
        }
    }

    /// Serialises the event in the wire format (one JSON object, no newline).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        self.write_json(&mut out);
        // Whole UTF-8 strings and ASCII only were written, so this never allocates again.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Appends the event in the wire format to `out`: byte for byte what `serde_json` writes
    /// for the wire struct (fields in its declaration order, absent ones skipped, non-finite
    /// numbers as `null`), at a fraction of the cost, since the generator and the sinks write
    /// one per event. The unit test `fast_json_matches_serde_json` holds the two together.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut w = JsonWriter { out };
        w.str("{\"event_id\":", &self.event_id);
        w.raw(",\"event_type\":\"");
        w.raw(self.event_type().as_str());
        w.raw("\",\"timestamp\":\"");
        w.timestamp(self.timestamp);
        w.raw("\"");
        if let Some(z) = self.geo_zone() {
            w.str(key!("geo_zone"), z);
        }
        match &self.payload {
            Payload::RiderRequest {
                rider_id,
                pickup,
                dropoff,
            } => {
                w.str(key!("rider_id"), rider_id);
                w.num(key!("pickup_lat"), pickup.lat);
                w.num(key!("pickup_lon"), pickup.lon);
                if let Some(d) = dropoff {
                    w.num(key!("dropoff_lat"), d.lat);
                    w.num(key!("dropoff_lon"), d.lon);
                }
            }
            Payload::DriverAvailable {
                driver_id,
                location,
            }
            | Payload::DriverLocationUpdate {
                driver_id,
                location,
            } => {
                w.str(key!("driver_id"), driver_id);
                w.num(key!("latitude"), location.lat);
                w.num(key!("longitude"), location.lon);
            }
            Payload::DriverOffline { driver_id } => w.str(key!("driver_id"), driver_id),
            Payload::TripStarted {
                trip_id,
                driver_id,
                rider_id,
                start,
                estimated_duration,
                estimated_fare,
            } => {
                w.str(key!("rider_id"), rider_id);
                w.str(key!("driver_id"), driver_id);
                w.str(key!("trip_id"), trip_id);
                w.num(key!("start_lat"), start.lat);
                w.num(key!("start_lon"), start.lon);
                w.opt_num(key!("estimated_duration"), *estimated_duration);
                w.opt_num(key!("estimated_fare"), *estimated_fare);
            }
            Payload::TripCompleted {
                trip_id,
                driver_id,
                end,
                actual_fare,
                actual_duration,
                rating,
            } => {
                w.str(key!("driver_id"), driver_id);
                w.str(key!("trip_id"), trip_id);
                w.num(key!("end_lat"), end.lat);
                w.num(key!("end_lon"), end.lon);
                w.num(key!("actual_fare"), *actual_fare);
                w.num(key!("actual_duration"), *actual_duration);
                w.opt_num(key!("rating"), *rating);
            }
            Payload::TripCancelled {
                trip_id,
                driver_id,
                rider_id,
                reason,
            } => {
                if let Some(r) = rider_id {
                    w.str(key!("rider_id"), r);
                }
                if let Some(d) = driver_id {
                    w.str(key!("driver_id"), d);
                }
                w.str(key!("trip_id"), trip_id);
                if let Some(r) = reason {
                    w.str(key!("reason"), r);
                }
            }
        }
        w.raw("}");
    }

    /// The event as its wire struct (borrowing the event's strings), with its timestamp
    /// already formatted: the reference [`write_json`](Self::write_json) is tested against.
    #[cfg(test)]
    fn wire<'a>(&'a self, timestamp: Cow<'a, str>) -> Wire<'a> {
        let mut w = Wire {
            event_id: Some(Cow::Borrowed(&self.event_id)),
            event_type: Some(Cow::Borrowed(self.event_type().as_str())),
            timestamp: Some(timestamp),
            geo_zone: self.geo_zone().map(|z| Cow::Borrowed(&**z)),
            ..Wire::default()
        };
        fn b(s: &str) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(s))
        }
        match &self.payload {
            Payload::RiderRequest {
                rider_id,
                pickup,
                dropoff,
            } => {
                w.rider_id = b(rider_id);
                w.pickup_lat = Some(pickup.lat);
                w.pickup_lon = Some(pickup.lon);
                w.dropoff_lat = dropoff.map(|p| p.lat);
                w.dropoff_lon = dropoff.map(|p| p.lon);
            }
            Payload::DriverAvailable {
                driver_id,
                location,
            }
            | Payload::DriverLocationUpdate {
                driver_id,
                location,
            } => {
                w.driver_id = b(driver_id);
                w.latitude = Some(location.lat);
                w.longitude = Some(location.lon);
            }
            Payload::DriverOffline { driver_id } => w.driver_id = b(driver_id),
            Payload::TripStarted {
                trip_id,
                driver_id,
                rider_id,
                start,
                estimated_duration,
                estimated_fare,
            } => {
                w.trip_id = b(trip_id);
                w.driver_id = b(driver_id);
                w.rider_id = b(rider_id);
                w.start_lat = Some(start.lat);
                w.start_lon = Some(start.lon);
                w.estimated_duration = *estimated_duration;
                w.estimated_fare = *estimated_fare;
            }
            Payload::TripCompleted {
                trip_id,
                driver_id,
                end,
                actual_fare,
                actual_duration,
                rating,
            } => {
                w.trip_id = b(trip_id);
                w.driver_id = b(driver_id);
                w.end_lat = Some(end.lat);
                w.end_lon = Some(end.lon);
                w.actual_fare = Some(*actual_fare);
                w.actual_duration = Some(*actual_duration);
                w.rating = *rating;
            }
            Payload::TripCancelled {
                trip_id,
                driver_id,
                rider_id,
                reason,
            } => {
                w.trip_id = b(trip_id);
                w.driver_id = driver_id.as_deref().and_then(b);
                w.rider_id = rider_id.as_deref().and_then(b);
                w.reason = reason.as_deref().and_then(b);
            }
        }
        w
    }
}

/// Why a line became a dead letter. The string forms (see [`Reason::as_str`]) are what the
/// dead-letter output and the run summary show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The line is not valid UTF-8.
    NotUtf8,
    /// The line is longer than the configured limit.
    TooLong,
    /// The line is empty or whitespace.
    Empty,
    /// The line is not valid JSON.
    NotJson,
    /// The line is JSON but not an object.
    NotObject,
    /// A required field is missing or null.
    MissingField,
    /// A field has the wrong type (or an out-of-range number).
    WrongType,
    /// `event_type` is not one of the seven types.
    UnknownEventType,
    /// `event_id` is empty or longer than 128 bytes.
    InvalidEventId,
    /// A latitude or longitude out of range.
    InvalidCoordinates,
    /// The timestamp does not parse.
    InvalidTimestamp,
    /// The timestamp is before 2024-01-01.
    TimestampTooOld,
    /// The timestamp is further ahead of the job's clock than the allowed skew.
    TimestampInFuture,
    /// A negative fare or duration.
    NegativeAmount,
    /// A rating outside 1..=5.
    InvalidRating,
}

impl Reason {
    /// Every reason, in a fixed order.
    pub const ALL: [Reason; 15] = [
        Reason::NotUtf8,
        Reason::TooLong,
        Reason::Empty,
        Reason::NotJson,
        Reason::NotObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownEventType,
        Reason::InvalidEventId,
        Reason::InvalidCoordinates,
        Reason::InvalidTimestamp,
        Reason::TimestampTooOld,
        Reason::TimestampInFuture,
        Reason::NegativeAmount,
        Reason::InvalidRating,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotUtf8 => "not_utf8",
            Reason::TooLong => "too_long",
            Reason::Empty => "empty",
            Reason::NotJson => "not_json",
            Reason::NotObject => "not_object",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::UnknownEventType => "unknown_event_type",
            Reason::InvalidEventId => "invalid_event_id",
            Reason::InvalidCoordinates => "invalid_coordinates",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::TimestampTooOld => "timestamp_too_old",
            Reason::TimestampInFuture => "timestamp_in_future",
            Reason::NegativeAmount => "negative_amount",
            Reason::InvalidRating => "invalid_rating",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An input line that is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The raw line (lossily decoded if it was not UTF-8; cut to the first KiB if too long).
    pub line: String,
    /// Why it was rejected.
    pub reason: Reason,
    /// Details: which field, what was wrong.
    pub detail: String,
    /// Where it came from (a file path, `-` for standard input, `generator`).
    pub source: String,
    /// Byte offset of the line in its source, if known.
    pub offset: Option<u64>,
}

/// Validation settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validation {
    /// How far ahead of the clock a timestamp may be (ms). Default 5 minutes.
    pub max_future_skew_ms: i64,
    /// H3 resolution for derived zones. Default 7.
    pub h3_resolution: u8,
}

impl Default for Validation {
    fn default() -> Self {
        Self {
            max_future_skew_ms: 5 * 60 * 1000,
            h3_resolution: 7,
        }
    }
}

/// The wire format: every field optional so that "missing" and "wrong type" can be told apart.
/// Unknown fields are ignored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    event_type: Option<Cow<'a, str>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    geo_zone: Option<Cow<'a, str>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    rider_id: Option<Cow<'a, str>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    driver_id: Option<Cow<'a, str>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    trip_id: Option<Cow<'a, str>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    reason: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pickup_lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pickup_lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropoff_lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropoff_lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    longitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_lat: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_lon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_fare: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actual_fare: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actual_duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rating: Option<f64>,
}

/// `,"name":`, the separator and key of a field after the first.
macro_rules! key {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}
pub(crate) use key;

/// Writes the fields of one JSON object; each method takes the field's separator and key,
/// written as they are.
pub(crate) struct JsonWriter<'a> {
    pub(crate) out: &'a mut Vec<u8>,
}

impl JsonWriter<'_> {
    pub(crate) fn raw(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn timestamp(&mut self, ms: i64) {
        crate::timestamp::with_rfc3339_ms(ms, |t| self.out.extend_from_slice(t));
    }

    /// A string field: copied as is when nothing needs escaping (ids and names almost
    /// always), else escaped by `serde_json`. Inlined, as [`num`](Self::num) is.
    #[inline]
    pub(crate) fn str(&mut self, key: &str, s: &str) {
        self.raw(key);
        // Eight bytes at a time, as the scanner reads strings.
        if scan::string_end(s.as_bytes()).is_none() {
            self.out.push(b'"');
            self.raw(s);
            self.out.push(b'"');
        } else if serde_json::to_writer(&mut *self.out, s).is_err() {
            self.raw("null");
        }
    }

    /// A number field, as `serde_json` writes it: [`write_micros`] for the numbers devices and
    /// fares have (at most six decimals), `serde_json`'s own float formatter for the rest.
    /// Inlined, so that the key's length is known where it is copied.
    #[inline]
    pub(crate) fn num(&mut self, key: &str, v: f64) {
        use serde_json::ser::Formatter;
        self.raw(key);
        if write_micros(self.out, v) {
            return;
        }
        if !v.is_finite()
            || serde_json::ser::CompactFormatter
                .write_f64(self.out, v)
                .is_err()
        {
            self.raw("null");
        }
    }

    fn opt_num(&mut self, key: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.num(key, v);
        }
    }

    /// A string field, or `null` (as `serde_json` writes `None`).
    pub(crate) fn str_or_null(&mut self, key: &str, s: Option<&str>) {
        match s {
            Some(s) => self.str(key, s),
            None => {
                self.raw(key);
                self.raw("null");
            }
        }
    }
}

/// `THREE_DIGITS[i]`: the three decimal digits of `i` (below 1,000), then how many of them are
/// trailing zeros (3 for 0).
const THREE_DIGITS: [[u8; 4]; 1_000] = {
    let mut t = [[0u8; 4]; 1_000];
    let mut i = 0;
    while i < 1_000 {
        let d = [(i / 100) as u8, (i / 10 % 10) as u8, (i % 10) as u8];
        let zeros = if i == 0 {
            3
        } else if i % 100 == 0 {
            2
        } else if i % 10 == 0 {
            1
        } else {
            0
        };
        t[i] = [b'0' + d[0], b'0' + d[1], b'0' + d[2], zeros];
        i += 1;
    }
    t
};

/// Writes `v` in plain decimal notation if it is a whole number of millionths between 0.001
/// and 10^9 in magnitude (the coordinates, fares and durations of events are); `false`, writing
/// nothing, for any other value.
///
/// The text is then the one `serde_json`'s shortest-round-trip formatter writes, at a fraction
/// of the cost: `k / 10^6` (IEEE division rounds correctly) equal to `v` means the decimal
/// `k / 10^6` reads back as `v`, and no shorter decimal does, since a shorter one would be
/// another multiple of 10^-6, while below 10^9 a double's rounding interval is narrower than
/// 10^-6. Trailing zeros go, and a whole number keeps `.0`, as `serde_json` writes them. The
/// test `micros_are_written_as_serde_json_writes_them` compares the two.
fn write_micros(out: &mut Vec<u8>, v: f64) -> bool {
    use crate::timestamp::two_digits;
    let a = v.abs();
    if !(1e-3..1e9).contains(&a) {
        return false;
    }
    // Rounds to the nearest whole number of millionths (a cast truncates; `a` is positive).
    // Below 10^15: signed, where converting to and from `f64` is one instruction each.
    let k = (a * 1e6 + 0.5) as i64;
    if k as f64 / 1e6 != a {
        return false;
    }
    // Sign and whole part (below 10^9), '.', six decimals; then the trailing zeros go.
    let mut buf = [0u8; 24];
    let mut n = usize::from(v < 0.0);
    buf[0] = b'-';
    let whole = k / 1_000_000;
    // Coordinates have two or three whole digits, fares and durations few more.
    if whole < 100 {
        let d = two_digits(whole);
        let skip = usize::from(whole < 10);
        buf[n..n + 2].copy_from_slice(&d);
        buf[n] = d[skip];
        n += 2 - skip;
    } else if whole < 1_000 {
        buf[n] = b'0' + (whole / 100) as u8;
        buf[n + 1..n + 3].copy_from_slice(&two_digits(whole % 100));
        n += 3;
    } else {
        let width = (4..9).find(|&d| whole < 10i64.pow(d)).unwrap_or(9) as usize;
        let mut rest = whole;
        for at in (n..n + width).rev() {
            buf[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        n += width;
    }
    buf[n] = b'.';
    // Two groups of three decimals, each from a table that also knows its trailing zeros.
    let frac = (k % 1_000_000) as u32;
    let (high, low) = (
        THREE_DIGITS[(frac / 1_000) as usize],
        THREE_DIGITS[(frac % 1_000) as usize],
    );
    buf[n + 1..n + 5].copy_from_slice(&high);
    buf[n + 4..n + 8].copy_from_slice(&low);
    // Trailing zeros go, but at least one decimal stays (`12.0`, as serde_json writes a whole
    // number).
    let zeros = if low[3] < 3 {
        low[3]
    } else {
        3 + high[3].min(2)
    };
    let end = n + 7 - usize::from(zeros);
    // The whole buffer, then cut: a copy of fixed length needs no call to `memcpy`.
    let start = out.len();
    out.extend_from_slice(&buf);
    out.truncate(start + end);
    true
}

/// A rejection before the line is wrapped into a [`DeadLetter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Why.
    pub reason: Reason,
    /// Details.
    pub detail: String,
}

fn invalid(reason: Reason, detail: impl Into<String>) -> Invalid {
    Invalid {
        reason,
        detail: detail.into(),
    }
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, Invalid> {
    v.ok_or_else(|| {
        invalid(
            Reason::MissingField,
            format!("`{field}` is missing or null"),
        )
    })
}

// The value rules of events.md, shared by `parse_event` (which words the dead letter) and
// `accept_event` (which only needs the verdict).

fn event_id_ok(id: &str) -> bool {
    (1..=128).contains(&id.len())
}

/// Also false for NaN and infinities.
fn lat_ok(lat: f64) -> bool {
    (-90.0..=90.0).contains(&lat)
}

fn lon_ok(lon: f64) -> bool {
    (-180.0..=180.0).contains(&lon)
}

fn amount_ok(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

fn rating_ok(r: f64) -> bool {
    (1.0..=5.0).contains(&r)
}

fn point(lat: Option<f64>, lon: Option<f64>, lat_f: &str, lon_f: &str) -> Result<Point, Invalid> {
    let (lat, lon) = (required(lat, lat_f)?, required(lon, lon_f)?);
    if !lat_ok(lat) {
        return Err(invalid(
            Reason::InvalidCoordinates,
            format!("`{lat_f}` = {lat} is outside [-90, 90]"),
        ));
    }
    if !lon_ok(lon) {
        return Err(invalid(
            Reason::InvalidCoordinates,
            format!("`{lon_f}` = {lon} is outside [-180, 180]"),
        ));
    }
    Ok(Point { lat, lon })
}

fn optional_point(
    lat: Option<f64>,
    lon: Option<f64>,
    lat_f: &str,
    lon_f: &str,
) -> Result<Option<Point>, Invalid> {
    match (lat, lon) {
        (None, None) => Ok(None),
        _ => point(lat, lon, lat_f, lon_f).map(Some),
    }
}

fn amount(v: Option<f64>, field: &str) -> Result<Option<f64>, Invalid> {
    match v {
        Some(x) if !amount_ok(x) => Err(invalid(
            Reason::NegativeAmount,
            format!("`{field}` = {x} is negative"),
        )),
        other => Ok(other),
    }
}

/// Bound on each per-thread interning table ([`intern`], [`h3_zone`]); a full table is cleared.
const MAX_INTERNED: usize = 1 << 16;

/// A required id field (rider, trip), interned.
fn string(v: Option<Cow<'_, str>>, field: &str) -> Result<Arc<str>, Invalid> {
    Ok(intern(&required(v, field)?).into_text())
}

/// An optional id field, interned.
fn opt_string(v: Option<Cow<'_, str>>) -> Option<Arc<str>> {
    v.map(|c| intern(&c).into_text())
}

/// A required driver id with its hash: inline when short (no table, no reference count), else
/// interned.
fn driver(v: Option<Cow<'_, str>>) -> Result<Id, Invalid> {
    Ok(driver_id(&required(v, "driver_id")?))
}

/// [`driver`]'s id of `s`.
fn driver_id(s: &str) -> Id {
    if s.len() <= INLINE_ID {
        Id::from(s)
    } else {
        let shared = intern(s);
        let hash = shared.hash_value();
        Id::with_hash(SmolStr::from(shared.into_text()), hash)
    }
}

/// The longest id a [`SmolStr`] holds inline.
const INLINE_ID: usize = 23;

/// One shared string per distinct rider or trip id (or long driver id), per thread: a trip's
/// id recurs in each of its events, so most ids are already known, which saves an allocation
/// per id. Bounded (cleared when full); long strings are not interned.
fn intern(s: &str) -> Hashed<Arc<str>> {
    const MAX_LEN: usize = 64;
    thread_local! {
        static IDS: std::cell::RefCell<hashbrown::HashTable<Hashed<Arc<str>>>> =
            const { std::cell::RefCell::new(hashbrown::HashTable::new()) };
    }
    if s.len() > MAX_LEN {
        return Hashed::new(Arc::from(s));
    }
    let hash = Id::hash_of(s);
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if let Some(id) = ids.find(hash, |id| **id == *s) {
            return id.clone();
        }
        if ids.len() >= MAX_INTERNED {
            ids.clear();
        }
        let id = Hashed::with_hash(Arc::from(s), hash);
        ids.insert_unique(hash, id.clone(), Hashed::hash_value);
        id
    })
}

/// Parses and validates one line against the clock reading `now_ms`.
///
/// # Errors
///
/// An [`Invalid`] with the reason and a human-readable detail.
pub fn parse_event(line: &str, now_ms: i64, cfg: &Validation) -> Result<RideEvent, Invalid> {
    if line.trim().is_empty() {
        return Err(invalid(Reason::Empty, "empty line"));
    }
    if !line.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(line) {
            Ok(_) => invalid(Reason::NotObject, "the line is JSON but not an object"),
            Err(e) => invalid(Reason::NotJson, e.to_string()),
        });
    }
    let mut w = Wire::default();
    if scan::scan(line, &mut w).is_none() {
        w = serde_json::from_str(line).map_err(classify_json_error)?;
    }
    // Unique per event: not interned (inline up to 23 bytes).
    let event_id = SmolStr::from(required(w.event_id, "event_id")?.as_ref());
    if !event_id_ok(&event_id) {
        return Err(invalid(
            Reason::InvalidEventId,
            format!("`event_id` must be 1..=128 bytes, got {}", event_id.len()),
        ));
    }
    let type_name = required(w.event_type, "event_type")?;
    let Some(event_type) = EventType::parse(&type_name) else {
        return Err(invalid(
            Reason::UnknownEventType,
            format!("unknown `event_type` {type_name:?}"),
        ));
    };
    let ts_text = required(w.timestamp, "timestamp")?;
    let Some(timestamp) = parse_rfc3339_ms(&ts_text) else {
        return Err(invalid(
            Reason::InvalidTimestamp,
            format!("`timestamp` {ts_text:?} is not RFC 3339"),
        ));
    };
    if timestamp < EARLIEST_TIMESTAMP_MS {
        return Err(invalid(
            Reason::TimestampTooOld,
            format!("`timestamp` {ts_text:?} is before 2024-01-01"),
        ));
    }
    if timestamp > now_ms.saturating_add(cfg.max_future_skew_ms) {
        return Err(invalid(
            Reason::TimestampInFuture,
            format!(
                "`timestamp` {ts_text:?} is {} s ahead of the clock (limit {} s)",
                (timestamp - now_ms) / 1000,
                cfg.max_future_skew_ms / 1000
            ),
        ));
    }
    let payload = match event_type {
        EventType::RiderRequest => Payload::RiderRequest {
            rider_id: string(w.rider_id, "rider_id")?,
            pickup: point(w.pickup_lat, w.pickup_lon, "pickup_lat", "pickup_lon")?,
            dropoff: optional_point(w.dropoff_lat, w.dropoff_lon, "dropoff_lat", "dropoff_lon")?,
        },
        EventType::DriverAvailable => Payload::DriverAvailable {
            driver_id: driver(w.driver_id)?,
            location: point(w.latitude, w.longitude, "latitude", "longitude")?,
        },
        EventType::DriverOffline => Payload::DriverOffline {
            driver_id: driver(w.driver_id)?,
        },
        EventType::DriverLocationUpdate => Payload::DriverLocationUpdate {
            driver_id: driver(w.driver_id)?,
            location: point(w.latitude, w.longitude, "latitude", "longitude")?,
        },
        EventType::TripStarted => Payload::TripStarted {
            trip_id: string(w.trip_id, "trip_id")?,
            driver_id: driver(w.driver_id)?,
            rider_id: string(w.rider_id, "rider_id")?,
            start: point(w.start_lat, w.start_lon, "start_lat", "start_lon")?,
            estimated_duration: amount(w.estimated_duration, "estimated_duration")?,
            estimated_fare: amount(w.estimated_fare, "estimated_fare")?,
        },
        EventType::TripCompleted => {
            let rating = w.rating;
            if let Some(r) = rating {
                if !rating_ok(r) {
                    return Err(invalid(
                        Reason::InvalidRating,
                        format!("`rating` = {r} is outside 1..=5"),
                    ));
                }
            }
            Payload::TripCompleted {
                trip_id: string(w.trip_id, "trip_id")?,
                driver_id: driver(w.driver_id)?,
                end: point(w.end_lat, w.end_lon, "end_lat", "end_lon")?,
                actual_fare: required(amount(w.actual_fare, "actual_fare")?, "actual_fare")?,
                actual_duration: required(
                    amount(w.actual_duration, "actual_duration")?,
                    "actual_duration",
                )?,
                rating,
            }
        }
        EventType::TripCancelled => Payload::TripCancelled {
            trip_id: string(w.trip_id, "trip_id")?,
            driver_id: w.driver_id.map(|c| driver_id(&c)),
            rider_id: opt_string(w.rider_id),
            reason: opt_string(w.reason),
        },
    };
    let mut event = RideEventData::new(event_id, timestamp, payload);
    event.zone_source = match w.geo_zone {
        Some(z) => ZoneSource::Given(Arc::from(z.as_ref())),
        None => ZoneSource::H3(cfg.h3_resolution),
    };
    Ok(RideEvent::new(event))
}

/// The fast path of validating an event that is already data (the generator's): `Ok` with
/// the valid event, exactly as [`parse_event`] would return it for the event's JSON text, when
/// that is certain; otherwise the data back, for the caller to serialise and parse (so that
/// every dead letter is worded by [`parse_event`], and anything unusual is decided there).
///
/// `max_line_bytes`: the caller's line limit; an event whose text might exceed it is given
/// back.
pub fn accept_event(
    mut e: RideEvent,
    now_ms: i64,
    cfg: &Validation,
    max_line_bytes: usize,
) -> Result<RideEvent, RideEvent> {
    /// 9999-12-31T23:59:59.999Z: later times have no four-digit year.
    const LATEST_TIMESTAMP_MS: i64 = 253_402_300_799_999;
    let point_ok = |p: &Point| lat_ok(p.lat) && lon_ok(p.lon);
    let mut text_bytes = e.event_id.len() + e.geo_zone().map_or(0, |z| z.len());
    let payload_ok = match &e.payload {
        Payload::RiderRequest {
            rider_id,
            pickup,
            dropoff,
        } => {
            text_bytes += rider_id.len();
            point_ok(pickup) && dropoff.as_ref().is_none_or(point_ok)
        }
        Payload::DriverAvailable {
            driver_id,
            location,
        }
        | Payload::DriverLocationUpdate {
            driver_id,
            location,
        } => {
            text_bytes += driver_id.len();
            point_ok(location)
        }
        Payload::DriverOffline { driver_id } => {
            text_bytes += driver_id.len();
            true
        }
        Payload::TripStarted {
            trip_id,
            driver_id,
            rider_id,
            start,
            estimated_duration,
            estimated_fare,
        } => {
            text_bytes += trip_id.len() + driver_id.len() + rider_id.len();
            point_ok(start)
                && estimated_duration.is_none_or(amount_ok)
                && estimated_fare.is_none_or(amount_ok)
        }
        Payload::TripCompleted {
            trip_id,
            driver_id,
            end,
            actual_fare,
            actual_duration,
            rating,
        } => {
            text_bytes += trip_id.len() + driver_id.len();
            point_ok(end)
                && amount_ok(*actual_fare)
                && amount_ok(*actual_duration)
                && rating.is_none_or(rating_ok)
        }
        Payload::TripCancelled {
            trip_id,
            driver_id,
            rider_id,
            reason,
        } => {
            text_bytes += trip_id.len() + driver_id.as_ref().map_or(0, |d| d.len());
            for s in [rider_id, reason].into_iter().flatten() {
                text_bytes += s.len();
            }
            true
        }
    };
    // Escaping makes a string at most six times longer; numbers and keys take well under 1 KiB.
    let fits = text_bytes.saturating_mul(6).saturating_add(1024) <= max_line_bytes;
    let ok = payload_ok
        && fits
        && event_id_ok(&e.event_id)
        && (EARLIEST_TIMESTAMP_MS..=LATEST_TIMESTAMP_MS).contains(&e.timestamp)
        && e.timestamp <= now_ms.saturating_add(cfg.max_future_skew_ms);
    if !ok {
        return Err(e);
    }
    if matches!(e.zone_source, ZoneSource::H3(r) if r != cfg.h3_resolution) {
        e.make_mut().zone_source = ZoneSource::H3(cfg.h3_resolution);
    }
    Ok(e)
}

fn classify_json_error(e: serde_json::Error) -> Invalid {
    let msg = e.to_string();
    let reason = if msg.starts_with("invalid type")
        || msg.starts_with("invalid value")
        || msg.contains("number out of range")
    {
        Reason::WrongType
    } else {
        Reason::NotJson
    };
    invalid(reason, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::format_rfc3339_ms;

    const NOW: i64 = 1_795_680_930_000; // 2026-11-26T08:15:30Z

    fn parse(line: &str) -> Result<RideEvent, Invalid> {
        parse_event(line, NOW, &Validation::default())
    }

    fn reason(line: &str) -> Reason {
        parse(line).expect_err("should be invalid").reason
    }

    /// The block size of mimalloc's size class for a request of `bytes` (its `_mi_bin` and
    /// `_mi_bin_size` for small sizes: eight-byte words, then four classes per power of two).
    fn mimalloc_class(bytes: usize) -> usize {
        let words = bytes.div_ceil(8);
        if words <= 8 {
            return words * 8;
        }
        // The class is the top three bits of `words - 1`; its blocks fit the largest member.
        let w = words - 1;
        let low = w.ilog2() - 2;
        let largest = ((w >> low) << low) | ((1 << low) - 1);
        (largest + 1) * 8
    }

    #[test]
    fn mimalloc_classes_are_the_documented_ones() {
        let classes: Vec<usize> = [64, 72, 80, 96, 112, 128, 130, 160, 192, 200, 224, 225, 256]
            .into_iter()
            .map(mimalloc_class)
            .collect();
        assert_eq!(
            classes,
            [64, 80, 80, 96, 112, 128, 160, 160, 192, 224, 224, 256, 256]
        );
    }

    /// Every event is one allocation: its `Arc` (two counts, then the data), eight-byte
    /// aligned. The `ridehail` binary's allocator, mimalloc 3, serves an aligned request on
    /// its fast path only while the request plus `align - 1` bytes stays in the request's size
    /// class; past that, every allocation takes the over-allocating slow path. Measured when a
    /// change grew the data from 200 to 208 bytes (216 -> 224 with the counts, the top of the
    /// 224-byte class): 300K generated events went from 2 to 309K slow-path calls, about 135
    /// instructions each, 2% of the run (decision 28). This keeps a change of layout from
    /// paying that silently.
    #[test]
    fn an_event_allocation_stays_on_the_allocators_fast_path() {
        let request = 16 + std::mem::size_of::<RideEventData>();
        assert_eq!(std::mem::align_of::<RideEventData>(), 8);
        assert_eq!(
            mimalloc_class(request),
            mimalloc_class(request + 7),
            "an event's allocation ({request} bytes) is within 7 bytes of the top of its \
             mimalloc size class: see decision 28"
        );
    }

    #[test]
    fn checkpoints_store_an_event_as_before_its_zone_source() {
        // Field names, order and types as the derive wrote them when `geo_zone` and
        // `h3_resolution` were fields of their own (bincode, which checkpoints use, writes the
        // same fields in the same order, without names).
        let mut e = RideEventData::new(
            "e-1".into(),
            NOW,
            Payload::DriverOffline {
                driver_id: Id::from("d1"),
            },
        );
        let fields = |geo: &str, res: u8| {
            format!(
                r#"{{"event_id":"e-1","timestamp":{NOW},"geo_zone":{geo},"h3_resolution":{res},"payload":{{"DriverOffline":{{"driver_id":"d1"}}}}}}"#
            )
        };
        for (source, json) in [
            (ZoneSource::H3(7), fields("null", 7)),
            (ZoneSource::H3(9), fields("null", 9)),
            (ZoneSource::Given("z".into()), fields(r#""z""#, 7)),
        ] {
            e.zone_source = source;
            assert_eq!(serde_json::to_string(&e).unwrap(), json);
            assert_eq!(serde_json::from_str::<RideEventData>(&json).unwrap(), e);
        }
    }

    #[test]
    fn parses_every_event_type_and_round_trips() {
        let lines = [
            r#"{"event_id":"e1","event_type":"RIDER_REQUEST","timestamp":"2026-11-26T08:00:00Z","rider_id":"r1","pickup_lat":40.7,"pickup_lon":-74.0}"#,
            r#"{"event_id":"e2","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T08:00:00.5Z","driver_id":"d1","latitude":40.7,"longitude":-74.0,"geo_zone":"z9"}"#,
            r#"{"event_id":"e3","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T08:00:00","driver_id":"d1"}"#,
            r#"{"event_id":"e4","event_type":"DRIVER_LOCATION_UPDATE","timestamp":"2026-11-26T08:00:00Z","driver_id":"d1","latitude":0,"longitude":0}"#,
            r#"{"event_id":"e5","event_type":"TRIP_STARTED","timestamp":"2026-11-26T08:00:00Z","trip_id":"t1","driver_id":"d1","rider_id":"r1","start_lat":1.5,"start_lon":2.5,"estimated_fare":12.5}"#,
            r#"{"event_id":"e6","event_type":"TRIP_COMPLETED","timestamp":"2026-11-26T08:00:00Z","trip_id":"t1","driver_id":"d1","end_lat":1,"end_lon":2,"actual_fare":14,"actual_duration":600,"rating":5,"extra":"ignored"}"#,
            r#"{"event_id":"e7","event_type":"TRIP_CANCELLED","timestamp":"2026-11-26T08:00:00Z","trip_id":"t2"}"#,
        ];
        for line in lines {
            let e = parse(line).unwrap_or_else(|err| panic!("{line}: {err:?}"));
            let again = parse(&e.to_json()).expect("round trip");
            assert_eq!(e, again);
        }
        let e = parse(lines[1]).unwrap();
        assert_eq!(e.zone().map(|z| &**z), Some("z9"));
        let e = parse(lines[0]).unwrap();
        assert_eq!(e.zone().map(|z| z.len()), Some(15), "an H3 cell in hex");
        assert_eq!(parse(lines[2]).unwrap().zone(), None);
    }

    #[test]
    fn every_rule_of_events_md_has_its_reason() {
        let ok =
            r#""event_id":"e","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T08:00:00Z""#;
        assert_eq!(reason(""), Reason::Empty);
        assert_eq!(reason("{not json"), Reason::NotJson);
        assert_eq!(reason("[1,2]"), Reason::NotObject);
        assert_eq!(reason("42"), Reason::NotObject);
        assert_eq!(reason(&format!("{{{ok}}}")), Reason::MissingField);
        assert_eq!(
            reason(&format!("{{{ok},\"driver_id\":null}}")),
            Reason::MissingField
        );
        assert_eq!(
            reason(&format!("{{{ok},\"driver_id\":7}}")),
            Reason::WrongType
        );
        assert_eq!(
            reason(r#"{"event_id":"e","event_type":"NOPE","timestamp":"2026-11-26T08:00:00Z"}"#),
            Reason::UnknownEventType
        );
        assert_eq!(
            reason(
                r#"{"event_id":"","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T08:00:00Z","driver_id":"d"}"#
            ),
            Reason::InvalidEventId
        );
        let long_id = "x".repeat(129);
        assert_eq!(
            reason(&format!(
                r#"{{"event_id":"{long_id}","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T08:00:00Z","driver_id":"d"}}"#
            )),
            Reason::InvalidEventId
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","event_type":"DRIVER_OFFLINE","timestamp":"yesterday","driver_id":"d"}"#
            ),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","event_type":"DRIVER_OFFLINE","timestamp":"2023-12-31T23:59:59Z","driver_id":"d"}"#
            ),
            Reason::TimestampTooOld
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T08:21:00Z","driver_id":"d"}"#
            ),
            Reason::TimestampInFuture
        );
        assert!(parse(r#"{"event_id":"e","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T08:20:00Z","driver_id":"d"}"#).is_ok());
        assert_eq!(
            reason(
                r#"{"event_id":"e","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T08:00:00Z","driver_id":"d","latitude":91,"longitude":0}"#
            ),
            Reason::InvalidCoordinates
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T08:00:00Z","driver_id":"d","latitude":0,"longitude":-180.5}"#
            ),
            Reason::InvalidCoordinates
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T08:00:00Z","driver_id":"d","latitude":1e999,"longitude":0}"#
            ),
            Reason::WrongType
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","event_type":"TRIP_COMPLETED","timestamp":"2026-11-26T08:00:00Z","trip_id":"t","driver_id":"d","end_lat":1,"end_lon":2,"actual_fare":-1,"actual_duration":600}"#
            ),
            Reason::NegativeAmount
        );
        assert_eq!(
            reason(
                r#"{"event_id":"e","event_type":"TRIP_COMPLETED","timestamp":"2026-11-26T08:00:00Z","trip_id":"t","driver_id":"d","end_lat":1,"end_lon":2,"actual_fare":1,"actual_duration":600,"rating":6}"#
            ),
            Reason::InvalidRating
        );
    }

    #[test]
    fn micros_are_written_as_serde_json_writes_them() {
        let mut values = vec![
            0.001,
            0.0015,
            0.000999,
            1.0,
            -1.0,
            12.5,
            40.762233,
            -73.98586,
            100.0,
            0.1,
            0.2,
            0.3,
            999_999_999.999_999,
            1e9,
            1e-3,
            -1e-3,
            123_456.000_001,
            0.000_001,
            5e-4,
            2.55,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
        ];
        // Millionths in every range the fast path takes (and a bit past it), and their
        // neighbours, which are not whole millionths.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = 3 + (x % 14) as u32;
            let k = (x >> 8) % 10u64.pow(digits);
            let v = k as f64 / 1e6 * if x & 1 == 0 { 1.0 } else { -1.0 };
            values.extend([v, f64::from_bits(v.to_bits() + 1), v * 1.000_000_1]);
        }
        let mut fast_hits = 0;
        for v in values {
            let mut ours = Vec::new();
            // Nothing written when the fast path declines: the full writer decides then.
            let fast = write_micros(&mut ours, v);
            fast_hits += usize::from(fast);
            if !fast {
                JsonWriter { out: &mut ours }.num("", v);
            }
            let theirs = serde_json::to_string(&v).expect("serialises");
            assert_eq!(String::from_utf8(ours).expect("ascii"), theirs, "{v:e}");
        }
        assert!(fast_hits > 150_000, "the fast path took {fast_hits} values");
    }

    #[test]
    fn fast_json_matches_serde_json() {
        let p = Point {
            lat: 40.123456,
            lon: -73.9,
        };
        let odd = "quote \" backslash \\ tab \t nul \u{0} del \u{7f} é 🚕";
        let mut events = vec![
            Payload::RiderRequest {
                rider_id: odd.into(),
                pickup: p,
                dropoff: Some(Point {
                    lat: 0.0,
                    lon: -0.0,
                }),
            },
            Payload::RiderRequest {
                rider_id: "".into(),
                pickup: Point {
                    lat: 1e-7,
                    lon: 180.0,
                },
                dropoff: None,
            },
            Payload::DriverAvailable {
                driver_id: "d".into(),
                location: p,
            },
            Payload::DriverOffline {
                driver_id: "d\n".into(),
            },
            Payload::DriverLocationUpdate {
                driver_id: "d".into(),
                location: Point {
                    lat: f64::NAN,
                    lon: f64::INFINITY,
                },
            },
            Payload::TripStarted {
                trip_id: "t".into(),
                driver_id: "d".into(),
                rider_id: "r".into(),
                start: p,
                estimated_duration: Some(600.0),
                estimated_fare: None,
            },
            Payload::TripCompleted {
                trip_id: "t".into(),
                driver_id: "d".into(),
                end: p,
                actual_fare: 12.34,
                actual_duration: 1e21,
                rating: Some(5.0),
            },
            Payload::TripCancelled {
                trip_id: "t".into(),
                driver_id: None,
                rider_id: Some(odd.into()),
                reason: Some("no_driver_available".into()),
            },
        ]
        .into_iter()
        .map(|payload| RideEventData::new("e-1".into(), NOW, payload))
        .collect::<Vec<_>>();
        let mut zoned = events[0].clone();
        zoned.zone_source = ZoneSource::Given(Arc::from("zone \"7\""));
        zoned.timestamp = -62_167_219_200_001; // a year the fast timestamp path leaves alone
        events.push(zoned);
        for e in &events {
            let ts = format_rfc3339_ms(e.timestamp);
            let serde = serde_json::to_string(&e.wire(ts.into())).unwrap();
            assert_eq!(e.to_json(), serde);
        }
    }

    #[test]
    fn reasons_have_distinct_names() {
        let mut names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
