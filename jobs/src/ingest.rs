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
//! - **Files** ([`ingest_files`]) and **the generator** ([`ingest_generator`]): the source
//!   attaches each valid event's time (a file's lines are validated on the worker that reads
//!   them, inside the source), so the strategy is applied *to the source*
//!   ([`EventTimeConfig::source_strategy`], [`EventTimeConfig::generator_strategy`]) and the
//!   engine tracks a watermark *per split* (a file, a stripe of one, a sub-city): splits that
//!   run at different speeds do not make each other's events late, and they are *aligned*, so
//!   no split runs more than [`FILE_SPLIT_DRIFT`] (a minute; [`GENERATOR_SPLIT_DRIFT`], ten
//!   seconds, for sub-cities) of event time ahead of the others and nothing downstream buffers
//!   the difference (two files on two workers, read unaligned, once took 4x the time and 1
//!   GB). Validation keeps the timestamps; no second watermark operator is added (it would
//!   replace the per-split watermarks). Dead letters carry no timestamp and do not move the
//!   watermark.
//! - **Lines from standard input, or any stream of lines** ([`ingest_lines`]): watermarks are
//!   assigned *right after validation* by [`with_event_time`], on each worker, from the valid
//!   events' timestamps. Such a watermark covers everything that worker reads.
//!
//! Either way: bounded out-of-orderness ([`EventTimeConfig::max_out_of_orderness`], default
//! 5 s), and idleness after [`EventTimeConfig::idle_after`] (default 30 s of processing time
//! without events, so that a quiet input does not stall a live job).
//!
//! Either way dedup, and everything after it, sees the same event time and watermarks.

use std::path::PathBuf;
use std::time::Duration;

use sluice_connectors::{BadLine, Line, LinesSource};
use sluice_engine::prelude::*;
use sluice_engine::record::Record;
use sluice_engine::source::{Source, SourceOutput, SourceStatus, Split, SplitReader};
use sluice_engine::watermark::{FromSource, TimestampAssigner, WatermarkStrategy};
use sluice_engine::BoxError;

use crate::dedup::{dedup, DedupConfig};
use crate::event::{DeadLetter, Id, RideEvent};
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

    /// The watermark strategy for a source that attaches event timestamps itself
    /// ([`ingest_files`]' source; the generator's has
    /// [`generator_strategy`](Self::generator_strategy)): applied to the source, it tracks
    /// watermarks per split. Splits run on their own workers; aligned, their event time never
    /// drifts more than [`FILE_SPLIT_DRIFT`] apart, so nothing downstream buffers hours of
    /// skew.
    pub fn source_strategy(&self) -> WatermarkStrategy<FromSource> {
        self.aligned(FILE_SPLIT_DRIFT)
    }

    /// [`source_strategy`](Self::source_strategy) for the generator's sub-cities, aligned to
    /// [`GENERATOR_SPLIT_DRIFT`].
    pub fn generator_strategy(&self) -> WatermarkStrategy<FromSource> {
        self.aligned(GENERATOR_SPLIT_DRIFT)
    }

    fn aligned(&self, max_drift: Duration) -> WatermarkStrategy<FromSource> {
        self.idle(Watermarks::bounded_out_of_orderness(
            self.max_out_of_orderness,
        ))
        .align_splits(max_drift)
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

/// How far (event time) one stripe of the input files may run ahead of the slowest.
pub const FILE_SPLIT_DRIFT: Duration = Duration::from_secs(60);

/// How far (event time) one of the generator's sub-cities may run ahead of the slowest. They
/// generate at the same pace, so a tight bound costs them little waiting, and it keeps short
/// what every operator downstream buffers until the watermark (a driver's events from both
/// workers, to be put in order): 3M generated events at two workers took less wall time with
/// 10 s than with 60 s in 7 of 8 alternating pairs (decision 29). Files keep
/// [`FILE_SPLIT_DRIFT`]: their stripes measured no better with 10 s.
pub const GENERATOR_SPLIT_DRIFT: Duration = Duration::from_secs(10);

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

/// The name of [`events_by_driver`]'s exchange.
pub const BY_DRIVER: &str = "events.by_driver";

/// The events that name a driver, keyed by driver
/// ([`RideEventData::driver_key`](crate::event::RideEventData::driver_key)): one exchange for
/// the jobs' operators keyed by driver. Surge's supply, trips' location counts, driver shifts
/// and live driver state each take it whole, part of it or add to it
/// ([`surge_with`](crate::surge::surge_with),
/// [`trip_summaries_with`](crate::trips::trip_summaries_with),
/// [`driver_shifts_with`](crate::shifts::driver_shifts_with),
/// [`live_state_with`](crate::live::live_state_with)), so an event crosses between workers
/// once for the four instead of once per job (decisions 20 and 30). The exchange is named
/// [`BY_DRIVER`].
pub fn events_by_driver(events: Stream<RideEvent>) -> KeyedStream<Id, RideEvent> {
    events
        .filter(|e| e.driver_id().is_some())
        .name("events.with_driver")
        .key_by(driver_key_of)
        .name(BY_DRIVER)
}

/// The key of an event that names a driver, for the exchanges by driver: its
/// [`driver_key`](crate::event::RideEventData::driver_key). Both exchanges (this module's and
/// live's resolved cancels) see only events that name one; the empty id for any other keeps
/// the key function total.
pub(crate) fn driver_key_of(e: &RideEvent) -> Id {
    e.driver_key().unwrap_or_else(|| Id::from(""))
}

/// Ingests raw lines (from standard input, say): validate, then event time and watermarks,
/// then dedup.
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
        .with_watermarks(cfg.event_time.generator_strategy());
    validated_and_deduped(lines, cfg)
}

/// Ingests JSON Lines files, each read as `stripes` splits (see
/// [`LinesSource::stripes`]): the lines are validated on the worker that reads them, and the
/// source tracks a watermark per split and keeps them aligned (see the module docs). Lines
/// longer than [`ValidateConfig::max_line_bytes`] are dead letters; every dead letter names its
/// file ([`ValidateConfig::inputs`] is set from `paths`) and byte offset.
///
/// With `stripes` at least the parallelism divided by the number of files, every worker
/// reads and parses, and no line crosses between workers before dedup. Checkpoints restore
/// only into a job with the same files and stripes (the split ids hold both), at any
/// parallelism.
pub fn ingest_files(
    env: &StreamEnv,
    paths: &[PathBuf],
    stripes: usize,
    cfg: &IngestConfig,
) -> Ingested {
    let mut validate = cfg.validate.clone();
    validate.inputs = paths.iter().map(|p| p.display().to_string()).collect();
    let source = ValidatingSource {
        lines: LinesSource::files(paths.iter().cloned())
            .max_line_bytes(validate.max_line_bytes)
            .stripes(stripes),
        cfg: validate.clone(),
    };
    let checked = env
        .source(source)
        .with_watermarks(cfg.event_time.source_strategy());
    validated_and_deduped(
        checked,
        &IngestConfig {
            validate,
            ..cfg.clone()
        },
    )
}

/// Validation (a no-op for lines checked at the source) and dedup, for a stream whose
/// watermarks the source tracks.
fn validated_and_deduped<I: RawLine>(lines: Stream<I>, cfg: &IngestConfig) -> Ingested {
    let valid = validate(lines, &cfg.validate);
    let deduped = dedup(valid.events, &cfg.dedup);
    Ingested {
        events: deduped.unique,
        dead_letters: valid.dead_letters,
        duplicates: deduped.duplicates,
    }
}

/// A line validated where it was read, by [`ingest_files`]' source: the event (with its time as
/// the record's timestamp) or its dead letter (with none).
#[derive(Debug, Clone)]
pub struct Checked(pub Result<RideEvent, DeadLetter>);

impl RawLine for Checked {
    fn into_raw(self) -> Result<String, BadLine> {
        Ok(match self.0 {
            Ok(event) => event.to_json(),
            Err(dead) => dead.line,
        })
    }

    /// The result found at the source.
    fn validate(self, _now_ms: i64, _cfg: &ValidateConfig) -> Result<RideEvent, DeadLetter> {
        self.0
    }
}

/// A [`LinesSource`] whose lines are validated as they are read.
struct ValidatingSource {
    lines: LinesSource,
    cfg: ValidateConfig,
}

impl Source<Checked> for ValidatingSource {
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError> {
        self.lines.splits(parallelism)
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<Checked>>, BoxError> {
        Ok(Box::new(ValidatingReader {
            lines: self.lines.open(split, position)?,
            buf: Vec::new(),
            cfg: self.cfg.clone(),
        }))
    }
}

struct ValidatingReader {
    lines: Box<dyn SplitReader<Result<Line, BadLine>>>,
    /// The lines of one poll, reused.
    buf: Vec<Record<Result<Line, BadLine>>>,
    cfg: ValidateConfig,
}

impl SplitReader<Checked> for ValidatingReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, Checked>) -> Result<SourceStatus, BoxError> {
        let status = self
            .lines
            .poll(&mut SourceOutput::new(&mut self.buf, out.remaining()))?;
        // Once per poll, as the validation operator does per batch: the skew rule allows
        // minutes, a poll takes well under a millisecond.
        let now = self.cfg.clock.now();
        for line in self.buf.drain(..) {
            match line.value.validate(now, &self.cfg) {
                Ok(event) => out.push_at(event.timestamp, Checked(Ok(event))),
                Err(dead) => out.push(Checked(Err(dead))),
            }
        }
        Ok(status)
    }

    fn position(&self) -> u64 {
        self.lines.position()
    }
}
