//! The dedup job: drops repeated events by [`RideEventData::event_id`](crate::event::RideEventData::event_id) within an event-time
//! horizon, sending the repeats to a `duplicates` side output.
//!
//! `key_by(event_id)` and a keyed function that remembers each id in a
//! [`value_with_ttl`](sluice_engine::StateRegistry::value_with_ttl) state: the first occurrence
//! passes, and every later one within the horizon goes to the side output, so
//! `valid = unique + duplicates`.
//!
//! # Horizon
//!
//! An id is remembered for [`DedupConfig::horizon`] (default 1 hour) of *event time* after its
//! first occurrence: its state expires once the watermark passes `first timestamp + horizon`
//! (repeats do not extend it). A repeat that arrives later than that is not recognised and
//! passes as unique; a replay of the same input expires exactly the same ids, since processing
//! time plays no part. Memory is one entry per id seen within the horizon.
//!
//! # Watermarks
//!
//! Needs event time and watermarks upstream (see [`crate::ingest`]); without any, nothing
//! expires before the end of input. Late events (behind the watermark) are deduplicated like
//! any other and passed on; whether they are too late is for the consumer to decide.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use sluice_connectors::{CollectSink, VecSource};
//! use sluice_engine::{Config, StreamEnv, Watermarks};
//! use sluice_jobs::dedup::{dedup, DedupConfig};
//! use sluice_jobs::event::{parse_event, RideEvent, Validation};
//!
//! let line = |id: &str| format!(r#"{{"event_id":"{id}","event_type":"DRIVER_OFFLINE","timestamp":"2026-01-05T07:00:00Z","driver_id":"d1"}}"#);
//! let events: Vec<RideEvent> = ["a", "b", "a"]
//!     .iter()
//!     .map(|id| parse_event(&line(id), i64::MAX, &Validation::default()).unwrap())
//!     .collect();
//! let env = StreamEnv::new(Config::default());
//! let (unique, dups) = (CollectSink::new(), CollectSink::new());
//! let stream = env.source(VecSource::new(events)).with_watermarks(
//!     Watermarks::bounded_out_of_orderness(Duration::from_secs(5)).timestamps(|e: &RideEvent| e.timestamp),
//! );
//! let out = dedup(stream, &DedupConfig::default());
//! out.unique.sink(unique.clone());
//! out.duplicates.sink(dups.clone());
//! env.execute()?;
//! assert_eq!(unique.len(), 2);
//! assert_eq!(&*dups.values()[0].event_id, "a");
//! # Ok::<(), sluice_engine::JobError>(())
//! ```

use std::time::Duration;

use sluice_engine::prelude::*;

use crate::event::{EventId, RideEvent};

/// Deduplication settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupConfig {
    /// How long (event time) an id is remembered after its first occurrence. Default 1 hour.
    pub horizon: Duration,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            horizon: Duration::from_secs(3_600),
        }
    }
}

/// The outputs of [`dedup`].
#[derive(Debug, Clone)]
pub struct Deduped {
    /// First occurrences.
    pub unique: Stream<RideEvent>,
    /// Later occurrences of an id within the horizon.
    pub duplicates: Stream<RideEvent>,
}

/// The name of the dedup operator (in metrics and errors).
pub const OPERATOR: &str = "dedup";

/// The name of the duplicates side output (in metrics).
pub const DUPLICATES: &str = "duplicates";

/// Deduplicates `events` by `event_id` (see the module docs). The keyed operator is named
/// [`OPERATOR`]; its side output [`DUPLICATES`].
pub fn dedup(events: Stream<RideEvent>, cfg: &DedupConfig) -> Deduped {
    let tag = OutputTag::<RideEvent>::new(DUPLICATES);
    let (horizon, fn_tag) = (cfg.horizon, tag.clone());
    let unique = events
        .key_by(|e: &RideEvent| EventId::new(e.event_id.clone()))
        .name("dedup_key_by")
        .process(move |reg| Dedup {
            seen: reg.value_with_ttl("seen", horizon),
            duplicates: fn_tag.clone(),
        })
        .name(OPERATOR);
    Deduped {
        duplicates: unique.side_output(&tag),
        unique,
    }
}

struct Dedup {
    /// Ids seen within the horizon.
    seen: ValueState<()>,
    duplicates: OutputTag<RideEvent>,
}

impl KeyedProcessFunction<EventId, RideEvent> for Dedup {
    type Out = RideEvent;

    fn process(
        &mut self,
        id: &EventId,
        event: RideEvent,
        ctx: &mut Context<'_, EventId, RideEvent>,
    ) {
        if ctx.value(self.seen).set_if_absent(id, ()) {
            ctx.emit(event);
        } else {
            ctx.output(&self.duplicates, event);
        }
    }
}
