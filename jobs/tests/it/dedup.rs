//! The dedup job: golden file (repeats, a repeat beyond the horizon, same content under another
//! id), and independence of arrival order and parallelism within the horizon.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_connectors::{CollectSink, SplitMix64};
use sluice_engine::prelude::*;
use sluice_jobs::dedup::{self, dedup, DedupConfig};
use sluice_jobs::event::RideEvent;

use super::fixtures::{
    assert_golden, read_events, run, run_at, shuffle_within_bound, synthetic_events,
};
use super::pipelines::{op, wire_lines};

/// `tests/data/dedup.jsonl` with a 2-minute horizon, one record per batch so that the
/// watermark moves between records as it would live:
///
/// - `e1` arrives three times at 07:00:00 and `e2` twice: the repeats are duplicates;
/// - after `e6` (07:03:00) the watermark is 07:02:54.999, past `e1`'s 07:00:00 + 2 min, so `e1`
///   is forgotten and its fourth copy passes as unique (documented behaviour of the horizon);
/// - `e7` has `e6`'s content under another id: unique (dedup is by id only);
/// - `e6` repeated: a duplicate.
///
/// So 12 in = 8 unique + 4 duplicates.
#[test]
fn golden_dedup() {
    let cfg = DedupConfig {
        horizon: Duration::from_secs(120),
    };
    let ((unique, dups), metrics) = run(
        read_events("dedup.jsonl"),
        Config::default().batch_size(1),
        |s| {
            let out = dedup(s, &cfg);
            let (u, d) = (CollectSink::new(), CollectSink::new());
            out.unique.sink(u.clone());
            out.duplicates.sink(d.clone());
            (u, d)
        },
    );
    assert_golden("dedup.expected.jsonl", &wire_lines(&unique.values()));
    assert_golden(
        "dedup.duplicates.expected.jsonl",
        &wire_lines(&dups.values()),
    );
    let m = op(&metrics, dedup::OPERATOR);
    assert_eq!((m.records_in, m.records_out), (12, 8));
    assert_eq!(m.side_output(dedup::DUPLICATES), 4);
    assert_eq!(m.state_keys, 0, "every id is forgotten at the end");
}

/// Synthetic events plus repeats (each within the watermark bound of its original), shuffled
/// within the bound, at 1, 2 and 4 workers: the unique events are exactly the originals and the
/// duplicates exactly the repeats.
#[test]
fn dedup_is_independent_of_arrival_order_and_parallelism() {
    let originals = synthetic_events(7, 12);
    let mut rng = SplitMix64::new(99);
    let mut input = originals.clone();
    let mut repeats = 0;
    for e in &originals {
        for _ in 0..rng.below(3).saturating_sub(1) {
            input.push(e.clone());
            repeats += 1;
        }
    }
    assert!(repeats > 100, "{repeats} repeats");
    input.sort_by_key(|e| e.timestamp);
    let counts = |events: &[RideEvent]| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for e in events {
            *m.entry(e.event_id.to_string()).or_insert(0) += 1;
        }
        m
    };
    let mut expected_dups = counts(&input);
    expected_dups.retain(|_, n| {
        *n -= 1;
        *n > 0
    });
    for (seed, parallelism) in [(1, 1), (2, 2), (3, 4)] {
        let shuffled = shuffle_within_bound(&input, seed);
        let ((unique, dups), _) = run_at(shuffled, parallelism, |s| {
            let out = dedup(s, &DedupConfig::default());
            let (u, d) = (CollectSink::new(), CollectSink::new());
            out.unique.sink(u.clone());
            out.duplicates.sink(d.clone());
            (u, d)
        });
        assert_eq!(
            wire_lines(&unique.values()),
            wire_lines(&originals),
            "unique events at {parallelism} workers"
        );
        assert_eq!(counts(&dups.values()), expected_dups);
    }
}
