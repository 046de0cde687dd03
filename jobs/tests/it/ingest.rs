//! Ingestion of the simulated city with injected faults, at 1 and 2 workers: lines in = valid +
//! dead letters, valid = unique + duplicates, every rider request counted once by surge or
//! reported late, and the unique events are exactly those of the same city without faults.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_connectors::CollectSink;
use sluice_engine::prelude::*;
use sluice_jobs::dedup;
use sluice_jobs::event::{DeadLetter, EventType, Reason, RideEvent};
use sluice_jobs::generator::{CityGenerator, Faults, GeneratorConfig};
use sluice_jobs::ingest::{ingest_generator, IngestConfig};
use sluice_jobs::surge::{surge, SurgeConfig, SurgeResult};
use sluice_jobs::validate::{self, ValidateConfig};

use super::fixtures::NOW;
use super::pipelines::{clock_at, execute, op, wire_lines};

/// Plenty of every fault, so that a short run has some of each.
fn faults() -> Faults {
    Faults {
        duplicate: 0.03,
        malformed: 0.02,
        out_of_order: 0.1,
        late: 0.01,
        ..Faults::default()
    }
}

fn city(splits: usize, faults: Faults) -> CityGenerator {
    CityGenerator::new(GeneratorConfig {
        drivers: 40,
        splits,
        duration: Some(Duration::from_secs(20 * 60)),
        faults,
        ..GeneratorConfig::default()
    })
    .expect("valid config")
}

struct Run {
    lines: u64,
    events: Vec<RideEvent>,
    dead: Vec<DeadLetter>,
    duplicates: Vec<RideEvent>,
    results: Vec<SurgeResult>,
    late: Vec<RideEvent>,
    metrics: JobMetrics,
}

/// Generator -> ingest -> surge at `parallelism` workers, one split per worker.
fn run(parallelism: usize, faults: Faults) -> Run {
    let env = StreamEnv::new(Config::default().parallelism(parallelism));
    let cfg = IngestConfig {
        validate: ValidateConfig {
            clock: clock_at(NOW),
            source: "generator".into(),
            ..ValidateConfig::default()
        },
        ..IngestConfig::default()
    };
    let ingested = ingest_generator(&env, city(parallelism, faults), &cfg);
    let out = surge(ingested.events.clone(), &SurgeConfig::default());
    let (events, dead, dups, results, late) = (
        CollectSink::new(),
        CollectSink::new(),
        CollectSink::new(),
        CollectSink::new(),
        CollectSink::new(),
    );
    ingested.events.sink(events.clone());
    ingested.dead_letters.sink(dead.clone());
    ingested.duplicates.sink(dups.clone());
    out.results.sink(results.clone());
    out.late.sink(late.clone());
    let metrics = execute(&env);
    Run {
        lines: op(&metrics, "source").records_out,
        events: events.values(),
        dead: dead.values(),
        duplicates: dups.values(),
        results: results.values(),
        late: late.values(),
        metrics,
    }
}

fn requests(events: &[RideEvent]) -> usize {
    events
        .iter()
        .filter(|e| e.event_type() == EventType::RiderRequest)
        .count()
}

#[test]
fn counts_add_up_with_faults_at_one_and_two_workers() {
    for parallelism in [1, 2] {
        let r = run(parallelism, faults());
        let expected_lines: usize = (0..parallelism)
            .map(|i| city(parallelism, faults()).split_lines(i).count())
            .sum();
        assert_eq!(
            r.lines, expected_lines as u64,
            "the source emits every line"
        );
        let valid = (r.events.len() + r.duplicates.len()) as u64;
        assert_eq!(
            valid + r.dead.len() as u64,
            r.lines,
            "lines = valid + dead letters"
        );
        let v = op(&r.metrics, validate::OPERATOR);
        assert_eq!(v.records_in, r.lines);
        assert_eq!(v.records_out, valid);
        assert_eq!(v.side_output(validate::DEAD_LETTERS), r.dead.len() as u64);
        let d = op(&r.metrics, dedup::OPERATOR);
        assert_eq!(d.records_in, valid, "valid = unique + duplicates");
        assert_eq!(d.records_out, r.events.len() as u64);
        assert_eq!(d.side_output(dedup::DUPLICATES), r.duplicates.len() as u64);

        // Every fault shows.
        assert!(!r.duplicates.is_empty() && !r.late.is_empty());
        let reasons: BTreeSet<Reason> = r.dead.iter().map(|d| d.reason).collect();
        assert!(
            reasons.len() >= 7,
            "malformed lines of many kinds: {reasons:?}"
        );
        assert!(!reasons.contains(&Reason::TimestampInFuture));

        // Surge counts each unique request in exactly one window, or reports it late.
        let counted: u64 = r.results.iter().map(|s| s.demand).sum();
        assert_eq!(
            counted as usize + requests(&r.late),
            requests(&r.events),
            "requests: counted + late = unique"
        );
    }
}

#[test]
fn without_faults_nothing_is_dead_duplicated_or_late() {
    for parallelism in [1, 2] {
        let r = run(parallelism, Faults::none());
        assert!(r.lines > 5_000, "{} lines", r.lines);
        assert!(
            r.dead.is_empty(),
            "dead letters: {:?}",
            &r.dead[..r.dead.len().min(3)]
        );
        assert!(r.duplicates.is_empty());
        assert!(r.late.is_empty(), "{} late events", r.late.len());
        assert_eq!(r.events.len() as u64, r.lines);
        assert!(
            r.results.iter().any(|s| s.multiplier > 1.0),
            "the rush hour surges"
        );
    }
}

/// Faults draw from their own random stream: the city behind the faulty lines is the same.
#[test]
fn unique_events_with_faults_are_the_events_without() {
    for parallelism in [1, 2] {
        let clean = run(parallelism, Faults::none());
        let faulty = run(parallelism, faults());
        assert_eq!(wire_lines(&faulty.events), wire_lines(&clean.events));
        // Results differ only where late events were left out.
        assert!(faulty.results.len() <= clean.results.len() + 1);
    }
}
