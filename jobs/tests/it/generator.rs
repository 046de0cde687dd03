//! The simulated city: determinism by seed and per split, exact resumption of a source split,
//! limits, event-time order, and the demand curve.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_engine::source::{Source, SourceOutput, SourceStatus};
use sluice_jobs::event::{parse_event, EventType, RideEvent, Validation};
use sluice_jobs::generator::{CityGenerator, Faults, GeneratorConfig, DEFAULT_START_MS};
use sluice_jobs::timestamp::parse_rfc3339_ms;

use super::fixtures::NOW;

fn city(cfg: GeneratorConfig) -> CityGenerator {
    CityGenerator::new(cfg).expect("valid config")
}

fn small(splits: usize, seed: u64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        drivers: 30,
        splits,
        duration: Some(Duration::from_secs(15 * 60)),
        faults: Faults::typical(),
        ..GeneratorConfig::default()
    }
}

fn parse(line: &str) -> RideEvent {
    parse_event(line, NOW, &Validation::default()).unwrap_or_else(|e| panic!("{line}: {e:?}"))
}

#[test]
fn the_same_config_gives_the_same_lines() {
    let a: Vec<String> = city(small(1, 5)).lines().collect();
    let b: Vec<String> = city(small(1, 5)).lines().collect();
    assert!(a.len() > 3_000, "{} lines", a.len());
    assert_eq!(a, b);
    let c: Vec<String> = city(small(1, 6)).lines().collect();
    assert_ne!(a, c, "another seed, another city");
}

#[test]
fn each_split_is_deterministic_and_the_merge_is_their_union() {
    let gen = city(small(3, 5));
    let mut union = Vec::new();
    for i in 0..3 {
        let a: Vec<String> = gen.split_lines(i).collect();
        let b: Vec<String> = city(small(3, 5)).split_lines(i).collect();
        assert_eq!(a, b, "split {i}");
        assert!(a.iter().all(|l| !l.contains("\"s0-") || i == 0));
        union.extend(a);
    }
    let mut merged: Vec<String> = gen.lines().collect();
    union.sort();
    merged.sort();
    assert_eq!(merged, union);
}

#[test]
fn ids_never_collide_across_splits() {
    let gen = city(GeneratorConfig {
        faults: Faults::none(),
        ..small(4, 1)
    });
    let events: Vec<RideEvent> = gen.lines().map(|l| parse(&l)).collect();
    let ids: BTreeSet<&str> = events.iter().map(|e| &*e.event_id).collect();
    assert_eq!(ids.len(), events.len());
    for e in &events {
        let split = &e.event_id[..e.event_id.find('-').expect("prefixed")];
        for id in [e.driver_id(), e.trip_id()].into_iter().flatten() {
            assert!(id.starts_with(split), "{id} in split {split}");
        }
    }
}

#[test]
fn a_split_is_in_event_time_order_and_covers_the_duration() {
    // Three hours, so that some shifts end (DRIVER_OFFLINE) and some trips are cancelled.
    let gen = city(GeneratorConfig {
        faults: Faults::none(),
        duration: Some(Duration::from_secs(3 * 3_600)),
        ..small(2, 3)
    });
    let events: Vec<RideEvent> = gen.split_lines(1).map(|l| parse(&l)).collect();
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    assert_eq!(events[0].timestamp / 60_000, DEFAULT_START_MS / 60_000);
    let end = DEFAULT_START_MS + 3 * 3_600_000;
    assert!(events.last().expect("events").timestamp < end);
    assert!(events.last().expect("events").timestamp > end - 60_000);
    let types: BTreeSet<EventType> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(types.len(), 7, "every event type occurs: {types:?}");
}

#[test]
fn max_lines_is_shared_by_the_splits() {
    let gen = city(GeneratorConfig {
        duration: None,
        max_lines: Some(1_001),
        ..small(2, 3)
    });
    assert_eq!(gen.split_lines(0).count(), 501);
    assert_eq!(gen.split_lines(1).count(), 500);
    assert_eq!(gen.lines().count(), 1_001);
}

/// A split reopened at a position emits exactly the lines after it, with the same timestamps.
#[test]
fn a_source_split_resumes_exactly_at_its_position() {
    let gen = city(small(2, 9));
    let splits = gen.splits(4).expect("splits");
    assert_eq!(
        splits.len(),
        2,
        "one split per simulated split, whatever the parallelism"
    );
    let drain = |position: Option<u64>, limit: usize| {
        let mut reader = gen.open(&splits[1], position).expect("opens");
        let mut all = Vec::new();
        loop {
            let mut buf = Vec::new();
            let status = reader
                .poll(&mut SourceOutput::new(&mut buf, limit))
                .expect("polls");
            all.extend(buf.into_iter().map(|r| (r.timestamp, r.value)));
            if status == SourceStatus::Finished || all.len() >= limit * 10 {
                return (all, reader.position());
            }
        }
    };
    let (full, _) = drain(None, 1_000);
    let (head, position) = drain(None, 100);
    assert_eq!(position, head.len() as u64);
    let (tail, _) = drain(Some(position), 1_000);
    assert!(full.len() > head.len() + 100, "{} lines", full.len());
    assert_eq!(&full[..head.len()], &head[..]);
    assert_eq!(&full[head.len()..], &tail[..full.len() - head.len()]);
    // Record timestamps are the events' times (a malformed line: its origin's).
    for (ts, line) in &full {
        let text = line.clone().into_text();
        if let Ok(e) = parse_event(&text, NOW, &Validation::default()) {
            assert_eq!(*ts, e.timestamp, "{text}");
        }
    }
    assert!(gen
        .open(&sluice_engine::source::Split::new("other", 0), None)
        .is_err());
}

/// More requests per minute in the morning rush (around 08:00) than late in the morning.
#[test]
fn demand_follows_the_daily_curve() {
    let gen = city(GeneratorConfig {
        drivers: 40,
        duration: Some(Duration::from_secs(3 * 3_600)),
        faults: Faults::none(),
        ..GeneratorConfig::default()
    });
    let at = |t: &str| parse_rfc3339_ms(&format!("2026-01-05T{t}:00Z")).expect("valid");
    let (rush, late_morning) = ((at("07:45"), at("08:15")), (at("09:30"), at("10:00")));
    let (mut a, mut b) = (0, 0);
    for line in gen.lines().filter(|l| l.contains("RIDER_REQUEST")) {
        let t = parse(&line).timestamp;
        a += usize::from((rush.0..rush.1).contains(&t));
        b += usize::from((late_morning.0..late_morning.1).contains(&t));
    }
    assert!(a as f64 > 1.4 * b as f64, "rush {a} vs late morning {b}");
}

#[test]
fn invalid_configs_are_refused_with_reasons() {
    for (cfg, what) in [
        (
            GeneratorConfig {
                splits: 0,
                ..GeneratorConfig::default()
            },
            "splits",
        ),
        (
            GeneratorConfig {
                faults: Faults {
                    duplicate: 0.6,
                    late: 0.6,
                    ..Faults::default()
                },
                ..GeneratorConfig::default()
            },
            "exceeds 1",
        ),
        (
            GeneratorConfig {
                faults: Faults {
                    malformed: -0.1,
                    ..Faults::default()
                },
                ..GeneratorConfig::default()
            },
            "malformed",
        ),
    ] {
        let err = CityGenerator::new(cfg).expect_err("refused").to_string();
        assert!(err.contains(what), "{err}");
    }
}
