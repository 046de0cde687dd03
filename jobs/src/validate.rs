//! The validate job: raw lines in, valid [`RideEvent`]s out, and every line that is not a
//! valid event to a dead-letter side output as a [`DeadLetter`].
//!
//! The rules are those of `shared/reference/events.md`, implemented by
//! [`parse_event`]; this module puts them in a pipeline. Input is either the
//! raw lines of [`LinesSource`](sluice_connectors::LinesSource) (`Result<Line, BadLine>`:
//! lines that were not even text arrive as [`BadLine`]s), plain `String`s, or the
//! [generator](crate::generator)'s [`GeneratedLine`]s (valid events as data, checked by
//! [`accept_event`] with the result their text would give); all implement [`RawLine`].
//!
//! The one guarantee: **every input line becomes exactly one valid event or exactly one dead
//! letter**, whatever its bytes; nothing panics and nothing is dropped. So
//! `lines in = events + dead letters`, which the operator's metrics show (`validate`: records in,
//! records out, side output `dead_letters`).
//!
//! # Clock
//!
//! The future-skew rule compares timestamps with [`ValidateConfig::clock`]: the wall clock
//! ([`SystemClock`]) by default, a [`ManualClock`](sluice_engine::ManualClock) (or any
//! [`Clock`]) for replays and tests. It is read once per line.
//!
//! # Watermarks
//!
//! Valid events are emitted with their own timestamp ([`RideEventData::timestamp`](crate::event::RideEventData::timestamp)) as the record
//! timestamp; dead letters keep the input record's (none, for files). Validation generates no
//! watermarks: see [`crate::ingest`] for where they are assigned.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use sluice_connectors::{CollectSink, VecSource};
//! use sluice_engine::{Config, ManualClock, StreamEnv};
//! use sluice_jobs::event::Reason;
//! use sluice_jobs::validate::{validate, ValidateConfig};
//!
//! let lines = vec![
//!     r#"{"event_id":"e1","event_type":"DRIVER_OFFLINE","timestamp":"2026-01-05T07:00:00Z","driver_id":"d1"}"#.to_string(),
//!     r#"{"event_id":"e2","event_type":"DRIVER_OFFLINE"}"#.to_string(),
//! ];
//! let cfg = ValidateConfig {
//!     clock: Arc::new(ManualClock::new(1_767_596_400_000)),
//!     ..ValidateConfig::default()
//! };
//! let env = StreamEnv::new(Config::default());
//! let (events, dead) = (CollectSink::new(), CollectSink::new());
//! let out = validate(env.source(VecSource::new(lines)), &cfg);
//! out.events.sink(events.clone());
//! out.dead_letters.sink(dead.clone());
//! env.execute()?;
//! assert_eq!(&*events.values()[0].event_id, "e1");
//! assert_eq!(dead.values()[0].reason, Reason::MissingField);
//! # Ok::<(), sluice_engine::JobError>(())
//! ```

use std::sync::Arc;

use sluice_connectors::{BadLine, BadLineReason, Line, DEFAULT_MAX_LINE_BYTES};
use sluice_engine::prelude::*;
use sluice_engine::{Clock, SystemClock};

use crate::event::{accept_event, parse_event, DeadLetter, Reason, RideEvent, Validation};
use crate::generator::GeneratedLine;

/// How much of a too-long line a dead letter keeps (as [`LinesSource`](sluice_connectors::LinesSource)
/// does).
const TOO_LONG_HEAD: usize = 1024;

/// Validation settings for the pipeline.
#[derive(Clone)]
pub struct ValidateConfig {
    /// The rules' parameters (future skew, H3 resolution). Default [`Validation::default`].
    pub validation: Validation,
    /// The longest acceptable line in bytes, for `String` input (a
    /// [`LinesSource`](sluice_connectors::LinesSource) enforces its own limit). Default
    /// [`DEFAULT_MAX_LINE_BYTES`] (64 KiB).
    pub max_line_bytes: usize,
    /// [`DeadLetter::source`] of lines that do not say where they came from (every `String`,
    /// and [`Line`]s whose input has no name in [`inputs`](Self::inputs)). Default `"input"`;
    /// the binary sets `-` (standard input) or `generator`.
    pub source: String,
    /// The names of a [`LinesSource`](sluice_connectors::LinesSource)'s inputs (its file
    /// paths, in order), by [`Line::input`]: the dead letter of a [`Line`] names its file and
    /// the line's byte offset there. Default empty.
    pub inputs: Vec<String>,
    /// The clock of the future-skew rule. Default the wall clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        Self {
            validation: Validation::default(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            source: "input".to_string(),
            inputs: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for ValidateConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidateConfig")
            .field("validation", &self.validation)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("source", &self.source)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

/// A raw input line: what [`validate`] accepts.
pub trait RawLine: Data {
    /// The line's text, or why the source could not even read it as text.
    fn into_raw(self) -> Result<String, BadLine>;

    /// Validates the line against the clock reading `now_ms`. By default [`validate_line`] of
    /// [`into_raw`](Self::into_raw); a line type that holds more than text (the generator's
    /// events, as data) may take a faster path, but must give the same result.
    ///
    /// # Errors
    ///
    /// The line's [`DeadLetter`] if it is not a valid event.
    fn validate(self, now_ms: i64, cfg: &ValidateConfig) -> Result<RideEvent, DeadLetter> {
        validate_line(self.into_raw(), now_ms, cfg)
    }
}

/// The generator's events are checked as data ([`accept_event`]); anything that might not be
/// valid, and every malformed line, goes the way of text.
impl RawLine for GeneratedLine {
    fn into_raw(self) -> Result<String, BadLine> {
        Ok(self.into_text())
    }

    fn validate(self, now_ms: i64, cfg: &ValidateConfig) -> Result<RideEvent, DeadLetter> {
        match self {
            GeneratedLine::Event(e) => accept_event(e, now_ms, &cfg.validation, cfg.max_line_bytes)
                .or_else(|e| validate_line(Ok(e.to_json()), now_ms, cfg)),
            GeneratedLine::Text(t) => validate_line(Ok(t), now_ms, cfg),
        }
    }
}

impl RawLine for String {
    fn into_raw(self) -> Result<String, BadLine> {
        Ok(self)
    }
}

/// A [`LinesSource`](sluice_connectors::LinesSource)'s lines: a dead letter says where its
/// line was (the file by [`ValidateConfig::inputs`], and the byte offset).
impl RawLine for Result<Line, BadLine> {
    fn into_raw(self) -> Result<String, BadLine> {
        self.map(|line| line.text)
    }

    fn validate(self, now_ms: i64, cfg: &ValidateConfig) -> Result<RideEvent, DeadLetter> {
        let line = match self {
            Ok(line) => line,
            Err(bad) => return validate_line(Err(bad), now_ms, cfg),
        };
        let (offset, input) = (line.offset, line.input);
        validate_line(Ok(line.text), now_ms, cfg).map_err(|mut dead| {
            dead.offset = Some(offset);
            if let Some(name) = usize::try_from(input).ok().and_then(|i| cfg.inputs.get(i)) {
                dead.source.clone_from(name);
            }
            dead
        })
    }
}

impl RawLine for Result<String, BadLine> {
    fn into_raw(self) -> Result<String, BadLine> {
        self
    }
}

/// The outputs of [`validate`].
#[derive(Debug, Clone)]
pub struct Validated {
    /// Valid events, each with its event time as record timestamp.
    pub events: Stream<RideEvent>,
    /// One dead letter per invalid line.
    pub dead_letters: Stream<DeadLetter>,
}

/// The name of the validation operator (in metrics and errors).
pub const OPERATOR: &str = "validate";

/// The name of the dead-letter side output (in metrics).
pub const DEAD_LETTERS: &str = "dead_letters";

/// Validates every line of `lines`: valid events on [`Validated::events`], everything else on
/// [`Validated::dead_letters`]. The operator is named [`OPERATOR`]; its side output
/// [`DEAD_LETTERS`].
///
/// # Watermarks
///
/// None generated; records keep (valid events: get) their event time. See [`crate::ingest`].
pub fn validate<I: RawLine>(lines: Stream<I>, cfg: &ValidateConfig) -> Validated {
    let tag = OutputTag::<DeadLetter>::new(DEAD_LETTERS);
    let (cfg, fn_tag) = (cfg.clone(), tag.clone());
    let events = lines
        .process(move || ValidateFn {
            cfg: cfg.clone(),
            dead: fn_tag.clone(),
            now: None,
        })
        .name(OPERATOR);
    Validated {
        dead_letters: events.side_output(&tag),
        events,
    }
}

/// Validates one raw line against the clock reading `now_ms`: the function behind
/// [`validate`], for use outside a pipeline. Never panics.
///
/// # Errors
///
/// The line's [`DeadLetter`] if it is not a valid event.
pub fn validate_line(
    raw: Result<String, BadLine>,
    now_ms: i64,
    cfg: &ValidateConfig,
) -> Result<RideEvent, DeadLetter> {
    let line = match raw {
        Ok(line) => line,
        Err(bad) => {
            let reason = match bad.reason {
                BadLineReason::Empty => Reason::Empty,
                BadLineReason::NotUtf8 => Reason::NotUtf8,
                BadLineReason::TooLong { .. } => Reason::TooLong,
                _ => Reason::NotJson,
            };
            return Err(DeadLetter {
                detail: bad.reason.to_string(),
                line: bad.line,
                reason,
                source: bad.source,
                offset: Some(bad.offset),
            });
        }
    };
    let dead = |line: String, reason: Reason, detail: String| DeadLetter {
        line,
        reason,
        detail,
        source: cfg.source.clone(),
        offset: None,
    };
    if line.len() > cfg.max_line_bytes {
        let detail = format!(
            "line of {} bytes exceeds the limit of {}",
            line.len(),
            cfg.max_line_bytes
        );
        return Err(dead(
            head(&line, TOO_LONG_HEAD).to_string(),
            Reason::TooLong,
            detail,
        ));
    }
    match parse_event(&line, now_ms, &cfg.validation) {
        // The line goes on with the event, for the backup to store as it came.
        Ok(event) => Ok(event.with_raw_line(line)),
        Err(invalid) => Err(dead(line, invalid.reason, invalid.detail)),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn head(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct ValidateFn {
    cfg: ValidateConfig,
    dead: OutputTag<DeadLetter>,
    /// The clock, read once per batch (reading it per line was 3-5% of a run's time): the
    /// future-skew rule allows minutes, a batch takes well under a millisecond.
    now: Option<i64>,
}

impl<I: RawLine> ProcessFunction<I> for ValidateFn {
    type Out = RideEvent;

    fn start_batch(&mut self) {
        self.now = Some(self.cfg.clock.now());
    }

    fn process(&mut self, line: I, ctx: &mut ProcessContext<'_, RideEvent>) {
        let now = self.now.unwrap_or_else(|| self.cfg.clock.now());
        match line.validate(now, &self.cfg) {
            Ok(event) => ctx.emit_at(event.timestamp, event),
            Err(dead) => ctx.output(&self.dead, dead),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RideEventData, ZoneSource};

    fn bad(reason: BadLineReason) -> BadLine {
        BadLine {
            line: "\u{fffd}x".into(),
            offset: 17,
            source: "in.jsonl".into(),
            reason,
        }
    }

    #[test]
    fn bad_lines_map_onto_reasons_and_keep_their_origin() {
        let cfg = ValidateConfig::default();
        for (r, expected) in [
            (BadLineReason::Empty, Reason::Empty),
            (BadLineReason::NotUtf8, Reason::NotUtf8),
            (BadLineReason::TooLong { len: 9, limit: 8 }, Reason::TooLong),
            (BadLineReason::InvalidJson("eof".into()), Reason::NotJson),
        ] {
            let d = validate_line(Err(bad(r)), 0, &cfg).unwrap_err();
            assert_eq!(d.reason, expected);
            assert_eq!((d.source.as_str(), d.offset), ("in.jsonl", Some(17)));
        }
    }

    /// The generator's events validated as data give exactly what their text gives, valid or
    /// not; and the data path is the one taken for valid events.
    #[test]
    fn generated_events_as_data_validate_exactly_as_their_text() {
        use crate::event::{Payload, Point};
        use crate::generator::{CityGenerator, Faults, GeneratorConfig};

        let now = 1_795_737_600_000; // 2026-11-27
        let city = CityGenerator::new(GeneratorConfig {
            duration: None,
            max_lines: Some(20_000),
            faults: Faults::typical(),
            ..GeneratorConfig::default()
        })
        .unwrap();
        let mut lines: Vec<GeneratedLine> = Vec::new();
        let mut split = city.split_lines(0);
        while let Some(l) = split.next_timed() {
            lines.push(l.line);
        }
        let events: Vec<RideEventData> = lines
            .iter()
            .filter_map(|l| match l {
                GeneratedLine::Event(e) => Some(RideEventData::clone(e)),
                GeneratedLine::Text(_) => None,
            })
            .collect();
        assert!(lines.len() > events.len(), "malformed lines among them");
        let fast = events
            .iter()
            .filter(|e| {
                let e = RideEvent::new((*e).clone());
                accept_event(e, now, &Validation::default(), 65_536).is_ok()
            })
            .count();
        assert_eq!(
            fast,
            events.len(),
            "every generated event takes the data path"
        );

        // Perturbed copies of one event of each type: invalid ones, and odd valid ones.
        let mut odd = Vec::new();
        // Twenty of each type; drivers go offline only at the end of their shifts, hours
        // later, so offline events are made from available ones.
        let mut samples: Vec<RideEventData> = Vec::new();
        for t in crate::event::EventType::ALL {
            let of_type = events.iter().filter(|e| e.event_type() == t).take(20);
            samples.extend(of_type.cloned());
        }
        let offline: Vec<RideEventData> = samples
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::DriverAvailable { driver_id, .. } => Some(RideEventData::new(
                    e.event_id.clone(),
                    e.timestamp,
                    Payload::DriverOffline {
                        driver_id: driver_id.clone(),
                    },
                )),
                _ => None,
            })
            .collect();
        samples.extend(offline);
        for t in crate::event::EventType::ALL {
            assert!(samples.iter().any(|e| e.event_type() == t), "no {t:?}");
        }
        for e in &samples {
            type Perturb<'a> = Box<dyn Fn(&mut RideEventData) + 'a>;
            let mut variants: Vec<Perturb> = vec![
                Box::new(|e| e.event_id = "".into()),
                Box::new(|e| e.event_id = "x".repeat(129).into()),
                Box::new(|e| e.event_id = "q\"uote\n".into()),
                Box::new(|e| e.timestamp = 1_704_067_199_999),
                Box::new(|e| e.timestamp = now + 301_000),
                Box::new(|e| e.timestamp = i64::MAX),
                Box::new(|e| e.zone_source = ZoneSource::H3(9)),
                Box::new(|e| e.zone_source = ZoneSource::Given("z".into())),
                Box::new(|e| e.zone_source = ZoneSource::Given("z\u{7f}\"".into())),
            ];
            let bad_point = |p: &mut Point, k: u8| match k {
                0 => p.lat = f64::NAN,
                1 => p.lat = 90.5,
                2 => p.lon = -180.000_1,
                _ => p.lon = f64::INFINITY,
            };
            for k in 0..4u8 {
                variants.push(Box::new(move |e| match &mut e.payload {
                    Payload::RiderRequest { pickup, .. } => bad_point(pickup, k),
                    Payload::DriverAvailable { location, .. }
                    | Payload::DriverLocationUpdate { location, .. } => bad_point(location, k),
                    Payload::TripStarted {
                        start,
                        estimated_fare,
                        ..
                    } => {
                        bad_point(start, k);
                        *estimated_fare = Some(-1.0);
                    }
                    Payload::TripCompleted {
                        rating,
                        actual_fare,
                        ..
                    } => {
                        *rating = [Some(0.0), Some(f64::NAN), Some(5.5), None][usize::from(k)];
                        *actual_fare = [-0.0, 1e300, f64::NAN, -2.0][usize::from(k)];
                    }
                    Payload::TripCancelled { reason, .. } => *reason = Some("\u{1}".into()),
                    Payload::DriverOffline { driver_id } => *driver_id = "é".into(),
                }));
            }
            for v in &variants {
                let mut e = e.clone();
                v(&mut e);
                odd.push(GeneratedLine::Event(RideEvent::new(e)));
            }
        }
        for (max_line_bytes, lines) in [(65_536, &lines), (65_536, &odd), (120, &lines)] {
            let cfg = ValidateConfig {
                max_line_bytes,
                ..ValidateConfig::default()
            };
            for l in lines.iter() {
                let as_data = l.clone().validate(now, &cfg);
                let as_text = validate_line(Ok(l.clone().into_text()), now, &cfg);
                assert_eq!(as_data, as_text, "{l:?}");
            }
        }
    }

    #[test]
    fn too_long_strings_keep_a_head_cut_on_a_char_boundary() {
        let cfg = ValidateConfig {
            max_line_bytes: 10,
            ..ValidateConfig::default()
        };
        let line = "é".repeat(1_000); // 2 bytes each
        let d = validate_line(Ok(line), 0, &cfg).unwrap_err();
        assert_eq!(d.reason, Reason::TooLong);
        assert_eq!(d.line.len(), 1_024);
        assert_eq!(d.source, "input");
        assert_eq!(head("aé", 2), "a");
    }
}
