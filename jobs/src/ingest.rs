//! Ingestion: from raw lines to valid, deduplicated events with event time and watermarks, with
//! the dead letters and duplicates on the side. The front half of every ride-hailing job:
//!
//! ```text
//! lines ─▶ validate ─▶ event time + watermarks ─▶ dedup ─▶ events (to surge, trips, ...)
//!             └─▶ dead letters                     └─▶ duplicates
//! ```
//!
//! # Where the watermarks are assigned
//!
//! Event time is the event's own `timestamp`, known only once a line is parsed, so:
//!
//! - **Lines from files or standard input** ([`ingest_lines`]): watermarks are assigned
//!   *right after validation* by [`with_event_time`], on each worker, from the valid events'
//!   timestamps: bounded out-of-orderness ([`EventTimeConfig::max_out_of_orderness`], default
//!   5 s), and idleness after [`EventTimeConfig::idle_after`] (default 30 s of processing time
//!   without events, so that a quiet input does not stall a live job). Dead letters do not
//!   move the watermark. Such a watermark covers everything that worker reads: when one worker
//!   reads several files, they should be roughly aligned in time, or the ones behind become
//!   late.
//! - **The generator** ([`ingest_generator`]): its source attaches each line's event time, so
//!   the strategy is applied *to the source* ([`EventTimeConfig::source_strategy`]) and the
//!   engine tracks a watermark *per split*: splits that run at different speeds on one worker
//!   do not make each other's events late. Validation keeps the timestamps; no second
//!   watermark operator is added (it would replace the per-split watermarks).
//!
//! Either way dedup, and everything after it, sees the same event time and watermarks.

use std::time::Duration;

use sluice_engine::prelude::*;
use sluice_engine::watermark::{FromSource, TimestampAssigner, WatermarkStrategy};

use crate::dedup::{dedup, DedupConfig};
use crate::event::{DeadLetter, RideEvent};
use crate::generator::CityGenerator;
use crate::validate::{validate, RawLine, ValidateConfig};

/// Event-time settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTimeConfig {
    /// How far out of order events may arrive and still be on time. Default 5 s.
    pub max_out_of_orderness: Duration,
    /// Processing time without events after which an input stops holding back the watermark;
    /// `None` for never. Default 30 s.
    pub idle_after: Option<Duration>,
}

impl Default for EventTimeConfig {
    fn default() -> Self {
        Self {
            max_out_of_orderness: Duration::from_secs(5),
            idle_after: Some(Duration::from_secs(30)),
        }
    }
}

impl EventTimeConfig {
    /// The watermark strategy for a stream of events: timestamps from
    /// [`RideEventData::timestamp`](crate::event::RideEventData::timestamp).
    pub fn events_strategy(&self) -> WatermarkStrategy<impl TimestampAssigner<RideEvent>> {
        self.idle(Watermarks::bounded_out_of_orderness(
            self.max_out_of_orderness,
        ))
        .timestamps(|e: &RideEvent| e.timestamp)
    }

    /// The watermark strategy for a source that attaches event timestamps itself (the
    /// generator): applied to the source, it tracks watermarks per split.
    pub fn source_strategy(&self) -> WatermarkStrategy<FromSource> {
        // Splits run on their own workers; aligned, their event time never drifts more than a
        // minute apart, so nothing downstream buffers hours of skew.
        self.idle(Watermarks::bounded_out_of_orderness(
            self.max_out_of_orderness,
        ))
        .align_splits(std::time::Duration::from_secs(60))
    }

    fn idle<A>(&self, s: WatermarkStrategy<A>) -> WatermarkStrategy<A> {
        match self.idle_after {
            Some(d) => s.idle_after(d),
            None => s,
        }
    }
}

/// Assigns event time and watermarks to validated events (see the module docs).
pub fn with_event_time(events: Stream<RideEvent>, cfg: &EventTimeConfig) -> Stream<RideEvent> {
    events
        .with_watermarks(cfg.events_strategy())
        .name("event_time")
}

/// Settings of the whole ingestion.
#[derive(Debug, Clone, Default)]
pub struct IngestConfig {
    /// Validation (rules, clock, dead-letter source name).
    pub validate: ValidateConfig,
    /// Event time and watermarks.
    pub event_time: EventTimeConfig,
    /// Deduplication.
    pub dedup: DedupConfig,
}

/// The outputs of ingestion.
#[derive(Debug, Clone)]
pub struct Ingested {
    /// Valid first occurrences, with event time and watermarks.
    pub events: Stream<RideEvent>,
    /// Lines that are not valid events.
    pub dead_letters: Stream<DeadLetter>,
    /// Repeated events.
    pub duplicates: Stream<RideEvent>,
}

/// Ingests raw lines (from a [`LinesSource`](sluice_connectors::LinesSource), say): validate,
/// then event time and watermarks, then dedup.
pub fn ingest_lines<I: RawLine>(lines: Stream<I>, cfg: &IngestConfig) -> Ingested {
    let valid = validate(lines, &cfg.validate);
    let deduped = dedup(with_event_time(valid.events, &cfg.event_time), &cfg.dedup);
    Ingested {
        events: deduped.unique,
        dead_letters: valid.dead_letters,
        duplicates: deduped.duplicates,
    }
}

/// Ingests the simulated city: the generator as source with per-split watermarks, then
/// validate and dedup.
pub fn ingest_generator(env: &StreamEnv, city: CityGenerator, cfg: &IngestConfig) -> Ingested {
    let lines = env
        .source(city)
        .with_watermarks(cfg.event_time.source_strategy());
    let valid = validate(lines, &cfg.validate);
    let deduped = dedup(valid.events, &cfg.dedup);
    Ingested {
        events: deduped.unique,
        dead_letters: valid.dead_letters,
        duplicates: deduped.duplicates,
    }
}
