//! The trip job (`sluice_jobs::trips`).
//!
//! Golden input `data/trips.jsonl` (events `a01`..`a32`, in time order), expected summaries
//! `data/trips.expected.jsonl` and anomalies `data/trips.anomalies.expected.jsonl`. Checked by
//! hand (default config: timeout 4 h, suspicious above 4 h or 500, surge above 1.1 x estimate):
//!
//! | trip | events | expected |
//! |---|---|---|
//! | t1 | d1 starts 08:02 (est 20), completes 08:15 (21.5, 780 s, rating 5); d1 updates at 08:01 (before), 08:02 (= start), 08:05, 08:10, 08:15 (= end), 08:20 (after) | completed, `location_updates` 4 (bounds inclusive), surge false (21.5 <= 22.0), not suspicious |
//! | t1 | a second TRIP_COMPLETED `a13` at 08:16 | anomaly `after_summary`, no second summary |
//! | t2 | d2 starts 08:03 (est 10) and again 08:04 (`a06`); updates 08:04, 08:20; completes 08:30 (15.0) | completed, start 08:03, `location_updates` 2, surge true (15 > 11), no rating; `a06` anomaly `duplicate_start` |
//! | t3 | d3 09:00 (est 450) -> 09:40 (620, 2400 s) | suspicious (fare > 500), surge true (620 > 495) |
//! | t4 | d4 10:00 (est 100) -> 12:00 (100, 15000 s) | suspicious (15000 s > 14400 s), surge false (100 <= 110) |
//! | t5 | d5 starts 11:00; update 11:02; cancelled 11:05 with driver_id, reason rider_no_show | cancelled, driver d5, end 11:05, `location_updates` 1, no fare |
//! | t6 | d6 starts 11:10; TRIP_CANCELLED 11:12 *without* driver_id or rider_id | cancelled, driver d6 and rider r6 from the start |
//! | t7 | only a TRIP_CANCELLED 11:20 without driver_id, rider r7 | cancelled, driver null, start null, rider r7 |
//! | t8 | d8 starts 12:00 (est 30); updates 12:30, 16:00 (= start + 4 h), 16:30; completes 16:30 | incomplete (no end by 16:00), end null, `location_updates` 2; the 16:30 completion is anomaly `after_summary` |
//! | t9 | only a TRIP_COMPLETED 13:00 (d9, 30.0) | completed, start null, `location_updates` 0, surge false (no estimate) |
//!
//! The RIDER_REQUEST `a08` and d1's DRIVER_AVAILABLE `a01` are in no summary.

use sluice_connectors::CollectSink;
use sluice_engine::prelude::*;
use sluice_engine::JobMetrics;
use sluice_jobs::event::RideEvent;
use sluice_jobs::trips::{trip_summaries, AnomalyReason, TripAnomaly, TripConfig, TripSummary};

use super::fixtures::{
    assert_golden, json_lines, parse_lines, read_events, run, run_at, shuffle_within_bound,
    synthetic_events,
};

/// Runs the trip job; returns its summaries and anomalies as sorted JSON lines.
fn run_trips(events: Vec<RideEvent>, config: Config) -> (Vec<String>, Vec<String>, JobMetrics) {
    let ((summaries, anomalies), metrics) = run(events, config, |stream| {
        let out = trip_summaries(stream, &TripConfig::default());
        let (s, a) = (CollectSink::new(), CollectSink::new());
        out.summaries.sink(s.clone());
        out.anomalies.sink(a.clone());
        (s, a)
    });
    let summaries: Vec<TripSummary> = summaries.values();
    let anomalies: Vec<TripAnomaly> = anomalies.values();
    (json_lines(&summaries), json_lines(&anomalies), metrics)
}

#[test]
fn trip_summaries_match_the_golden_file() {
    let (summaries, anomalies, _) = run_trips(read_events("trips.jsonl"), Config::default());
    assert_golden("trips.expected.jsonl", &summaries);
    assert_golden("trips.anomalies.expected.jsonl", &anomalies);
}

#[test]
fn trip_summaries_do_not_depend_on_arrival_order_or_parallelism() {
    for events in [read_events("trips.jsonl"), synthetic_events(7, 12)] {
        let expected = run_trips(events.clone(), Config::default());
        assert!(!expected.0.is_empty());
        for seed in 1..=3 {
            let shuffled = shuffle_within_bound(&events, seed);
            for p in [1, 2] {
                let got = run_trips(shuffled.clone(), Config::default().parallelism(p));
                assert_eq!(got.0, expected.0, "summaries, seed {seed}, parallelism {p}");
                assert_eq!(got.1, expected.1, "anomalies, seed {seed}, parallelism {p}");
            }
        }
    }
}

#[test]
fn trip_state_is_released_when_trips_end() {
    let (summaries, anomalies, metrics) =
        run_trips(synthetic_events(11, 12), Config::default().parallelism(2));
    let count = |v: &[String], pat: &str| v.iter().filter(|l| l.contains(pat)).count();
    assert!(summaries.len() > 50, "a workload worth checking");
    for status in ["\"completed\"", "\"cancelled\"", "\"incomplete\""] {
        assert!(
            count(&summaries, status) > 0,
            "the workload has {status} trips"
        );
    }
    for reason in ["after_summary", "duplicate_start"] {
        assert!(
            count(&anomalies, reason) > 0,
            "the workload has {reason} events"
        );
    }
    for name in ["trips.lifecycle", "trips.locations"] {
        let op = metrics.operator(name).expect("operator exists");
        assert_eq!(op.state_keys, 0, "{name} keeps state after end of input");
        assert_eq!(
            op.pending_timers, 0,
            "{name} keeps timers after end of input"
        );
        assert_eq!(
            op.late, 0,
            "{name}: nothing is late in a time-ordered input"
        );
    }
}

#[test]
fn late_trip_events_go_to_the_anomaly_output_not_to_a_summary() {
    // One record per batch: the watermark follows every record, so the last two are late.
    let events = parse_lines(&[
        r#"{"event_id":"s","event_type":"TRIP_STARTED","timestamp":"2026-11-26T08:00:00Z","trip_id":"t","driver_id":"d","rider_id":"r","start_lat":1,"start_lon":2}"#,
        r#"{"event_id":"c","event_type":"TRIP_COMPLETED","timestamp":"2026-11-26T08:10:00Z","trip_id":"t","driver_id":"d","end_lat":1,"end_lon":3,"actual_fare":9,"actual_duration":600}"#,
        r#"{"event_id":"x","event_type":"DRIVER_LOCATION_UPDATE","timestamp":"2026-11-26T08:20:00Z","driver_id":"d","latitude":1,"longitude":2}"#,
        r#"{"event_id":"late-c","event_type":"TRIP_COMPLETED","timestamp":"2026-11-26T08:10:30Z","trip_id":"t","driver_id":"d","end_lat":1,"end_lon":3,"actual_fare":9,"actual_duration":630}"#,
        r#"{"event_id":"late-u","event_type":"DRIVER_LOCATION_UPDATE","timestamp":"2026-11-26T08:05:00Z","driver_id":"d","latitude":1,"longitude":2}"#,
    ]);
    let ((summaries, anomalies), _) = run(events, Config::default().batch_size(1), |stream| {
        let out = trip_summaries(stream, &TripConfig::default());
        let (s, a) = (CollectSink::new(), CollectSink::new());
        out.summaries.sink(s.clone());
        out.anomalies.sink(a.clone());
        (s, a)
    });
    let summaries: Vec<TripSummary> = summaries.values();
    assert_eq!(summaries.len(), 1, "one summary per trip");
    assert_eq!(
        summaries[0].location_updates, 0,
        "the late update is not counted"
    );
    let mut late: Vec<(String, AnomalyReason)> = anomalies
        .values()
        .into_iter()
        .map(|a: TripAnomaly| (a.event_id, a.reason))
        .collect();
    late.sort();
    assert_eq!(
        late,
        vec![
            ("late-c".to_string(), AnomalyReason::Late),
            ("late-u".to_string(), AnomalyReason::Late)
        ]
    );
}

#[test]
fn the_timeout_is_configurable() {
    // With a 10-minute timeout t1 (13 minutes long) is incomplete and its completion an anomaly.
    let ((summaries, anomalies), _) = run_at(read_events("trips.jsonl"), 1, |stream| {
        let config = TripConfig {
            timeout: std::time::Duration::from_secs(600),
            ..TripConfig::default()
        };
        let out = trip_summaries(stream, &config);
        let (s, a) = (CollectSink::new(), CollectSink::new());
        out.summaries.sink(s.clone());
        out.anomalies.sink(a.clone());
        (s, a)
    });
    let t1 = summaries
        .values()
        .into_iter()
        .find(|s: &TripSummary| s.trip_id == "t1")
        .expect("t1 summarised");
    assert_eq!(t1.status, sluice_jobs::trips::TripStatus::Incomplete);
    assert_eq!(
        t1.location_updates, 3,
        "08:02, 08:05 and 08:10 are within start + 10 min"
    );
    assert!(anomalies
        .values()
        .iter()
        .any(|a: &TripAnomaly| a.event_id == "a11" && a.reason == AnomalyReason::AfterSummary));
}
