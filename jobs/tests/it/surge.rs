//! The surge job: a hand-computed golden file that hits every multiplier tier, independence of
//! arrival order (within the bound) and parallelism, and late events.

use sluice_connectors::CollectSink;
use sluice_engine::prelude::*;
use sluice_jobs::event::{h3_zone, Point, RideEvent};
use sluice_jobs::surge::{self, multiplier, surge, SurgeConfig, SurgeResult};

use super::fixtures::{
    assert_golden, json_lines, parse_lines, read_events, run, run_at, shuffle_within_bound,
};
use super::pipelines::{op, wire_lines};

/// Runs surge over `events`; returns results and late events.
fn run_surge(
    events: Vec<RideEvent>,
    config: Config,
) -> (Vec<SurgeResult>, Vec<RideEvent>, JobMetrics) {
    let ((results, late), metrics) = run(events, config, |s| {
        let out = surge(s, &SurgeConfig::default());
        let (r, l) = (CollectSink::new(), CollectSink::new());
        out.results.sink(r.clone());
        out.late.sink(l.clone());
        (r, l)
    });
    (results.values(), late.values(), metrics)
}

/// `tests/data/surge.jsonl`, computed by hand. Windows W1 = [07:00, 07:05) and W2 = [07:05,
/// 07:10) of 2026-01-05. One record per batch, one worker, so that the watermark moves between
/// records and the two late events at the end are late (the watermark is 07:09:04.999 when they
/// arrive).
///
/// W1:
/// - zone-a: demand 2 (a-req1, a-req2). Supply: dA1 is chatty (2 DRIVER_AVAILABLE and 3
///   location updates) but counts once; dA2 sends one update and was never on a trip: 2.
///   2 / 2 = 1.0 -> 1.0. (The late request at 07:03:00 and the late update from dA3 at 07:02:00
///   are not counted.)
/// - zone-b: demand 3. Supply: dB1 (available), dB2 (update): 2. dB3 started trip t3 at
///   07:00:30, so its update at 07:02:30 is not supply. 3 / 2 = 1.5 -> 1.5.
/// - zone-c: demand 5. Supply: dC1 (available), dC2 (update): 2. dC3 started trip t1 at
///   07:01:00; its update at 07:01:03 *arrives before* that start (3 s out of order) but comes
///   after it in event time, so it is not supply, nor is the one at 07:02:30.
///   5 / 2 = 2.5 -> 2.0. (Counting the early update would give 5 / 3 = 1.67 -> 1.5.)
/// - zone-d: demand 3. Supply 0: dD1 is on trip t2 since 07:01:20 (updates at 07:02:00 and
///   07:03:20). 3 / max(0, 1) = 3.0 -> 2.5.
/// - the H3 cell of (40.758, -73.9855), no geo_zone: demand 1, supply 1 (dE1): 1.0 -> 1.0.
///
/// W2:
/// - zone-a: demand 1 (a-req3); supply 1 (dA1's update at 07:09:30): 1.0 -> 1.0.
/// - zone-b: demand 0; supply 1: dB3 completed t3 at 07:05:30, so its update at 07:06:00 is
///   supply. 0.0 -> 1.0.
/// - zone-c: demand 1; supply 0 (dC3 still on t1 at 07:09:00): 1.0 -> 1.0.
/// - zone-d: demand 4; supply 1: t2 was cancelled at 07:07:00 naming dD1, so its update at
///   07:07:30 is supply. 4.0 -> 2.5.
///
/// Late: the request at 07:03:00 (W1 had fired: window late metric 1) and dA3's update at
/// 07:02:00 (behind the driver operator's watermark: its late side output 1).
#[test]
fn golden_surge_hand_computed() {
    let (results, late, metrics) =
        run_surge(read_events("surge.jsonl"), Config::default().batch_size(1));
    assert_golden("surge.expected.jsonl", &json_lines(&results));
    assert_golden("surge.late.expected.jsonl", &wire_lines(&late));

    let h3 = h3_zone(
        Point {
            lat: 40.758,
            lon: -73.9855,
        },
        7,
    );
    let tier = |zone: &str, start: &str| {
        let r = results
            .iter()
            .find(|r| r.zone == zone && r.window_start == format!("2026-01-05T{start}:00.000Z"))
            .unwrap_or_else(|| panic!("no result for {zone} at {start}"));
        (r.demand, r.supply, r.multiplier)
    };
    assert_eq!(tier("zone-a", "07:00"), (2, 2, 1.0));
    assert_eq!(tier("zone-b", "07:00"), (3, 2, 1.5));
    assert_eq!(tier("zone-c", "07:00"), (5, 2, 2.0));
    assert_eq!(tier("zone-d", "07:00"), (3, 0, 2.5));
    assert_eq!(tier(&h3, "07:00"), (1, 1, 1.0));
    assert_eq!(tier("zone-a", "07:05"), (1, 1, 1.0));
    assert_eq!(tier("zone-b", "07:05"), (0, 1, 1.0));
    assert_eq!(tier("zone-c", "07:05"), (1, 0, 1.0));
    assert_eq!(tier("zone-d", "07:05"), (4, 1, 2.5));
    assert_eq!(results.len(), 9);

    let ids: Vec<&str> = late.iter().map(|e| &*e.event_id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&"late-req") && ids.contains(&"late-loc"));
    assert_eq!(op(&metrics, surge::OPERATOR_WINDOW).late, 1);
    assert_eq!(
        op(&metrics, surge::OPERATOR_DRIVERS).side_output(surge::LATE),
        1
    );
}

/// The golden input without its two late events, shuffled within the watermark bound, at 1, 2
/// and 4 workers: the same results as the golden file (which the late events did not change).
#[test]
fn surge_is_independent_of_arrival_order_and_parallelism() {
    let events: Vec<RideEvent> = read_events("surge.jsonl")
        .into_iter()
        .filter(|e| !e.event_id.starts_with("late-"))
        .collect();
    let (expected, _, _) = run_surge(events.clone(), Config::default());
    for (seed, parallelism) in [(11, 1), (12, 2), (13, 4), (14, 2)] {
        let shuffled = shuffle_within_bound(&events, seed);
        let ((results, late), _) = run_at(shuffled, parallelism, |s| {
            let out = surge(s, &SurgeConfig::default());
            let (r, l) = (CollectSink::new(), CollectSink::new());
            out.results.sink(r.clone());
            out.late.sink(l.clone());
            (r, l)
        });
        assert_eq!(json_lines(&results.values()), json_lines(&expected));
        assert!(late.is_empty(), "nothing is late within the bound");
    }
    assert_golden("surge.expected.jsonl", &json_lines(&expected));
}

/// A driver who moves between zones within a window is supply in each zone it reported from,
/// once per zone, and again in the next window: the driver operator sends a driver's first
/// signal per zone and window only, which must not lose any (regression test for that
/// suppression).
#[test]
fn a_driver_moving_between_zones_is_supply_in_each_once_per_window() {
    let line = |id: &str, time: &str, driver: &str, zone: &str| {
        format!(
            r#"{{"event_id":"{id}","event_type":"DRIVER_LOCATION_UPDATE","timestamp":"2026-01-05T07:{time}Z","driver_id":"{driver}","latitude":40.75,"longitude":-73.98,"geo_zone":"{zone}"}}"#
        )
    };
    let lines = [
        line("1", "00:10", "d1", "x"),
        line("2", "00:20", "d1", "y"),
        line("3", "00:30", "d1", "x"),
        line("4", "00:40", "d1", "y"),
        line("5", "00:50", "d2", "y"),
        line("6", "04:59", "d2", "y"),
        line("7", "05:00", "d1", "y"),
        line("8", "06:00", "d1", "y"),
        line("9", "07:00", "d2", "x"),
    ];
    for parallelism in [1, 2] {
        let ((results, _), _) = run_at(parse_lines(&lines), parallelism, |s| {
            let out = surge(s, &SurgeConfig::default());
            let (r, l) = (CollectSink::new(), CollectSink::new());
            out.results.sink(r.clone());
            out.late.sink(l.clone());
            (r, l)
        });
        let mut got: Vec<(String, String, u64)> = results
            .values()
            .iter()
            .map(|r| (r.window_start[11..16].to_string(), r.zone.clone(), r.supply))
            .collect();
        got.sort();
        let want = [
            ("07:00", "x", 1),
            ("07:00", "y", 2),
            ("07:05", "x", 1),
            ("07:05", "y", 1),
        ];
        let want: Vec<(String, String, u64)> = want
            .iter()
            .map(|(w, z, n)| (w.to_string(), z.to_string(), *n))
            .collect();
        assert_eq!(got, want, "at {parallelism} workers");
    }
}

/// One timer releases all of a driver's events the watermark has passed, and none beyond: an
/// update still ahead of the watermark when an earlier event is released must wait, because a
/// trip start before it in event time may still arrive (regression test for releasing a
/// driver's whole buffer at once).
#[test]
fn a_driver_update_ahead_of_the_watermark_waits_for_earlier_trip_events() {
    let line = |id: &str, kind: &str, time: &str, extra: &str| {
        format!(
            r#"{{"event_id":"{id}","event_type":"{kind}","timestamp":"2026-01-05T07:{time}Z","driver_id":"d1","geo_zone":"x",{extra}}}"#
        )
    };
    let at = r#""latitude":40.75,"longitude":-73.98"#;
    let lines = [
        line("avail", "DRIVER_AVAILABLE", "04:58", at),
        // Watermark 07:05:01 (bound 5 s) once this arrives: "avail" is released, this is not.
        line("loc", "DRIVER_LOCATION_UPDATE", "05:06", at),
        // On time (after the watermark), and before "loc" in event time: "loc" is on a trip.
        line(
            "start",
            "TRIP_STARTED",
            "05:03",
            r#""trip_id":"t1","rider_id":"r1","start_lat":40.75,"start_lon":-73.98"#,
        ),
    ];
    let events = parse_lines(&lines);
    let (results, late, _) = run_surge(events, Config::default().batch_size(1));
    assert!(late.is_empty());
    let supply: Vec<(&str, u64)> = results
        .iter()
        .map(|r| (&r.window_start[11..16], r.supply))
        .collect();
    assert_eq!(
        supply,
        [("07:00", 1)],
        "the update at 07:05:06 is not supply"
    );
}

#[test]
fn multiplier_tiers_have_the_documented_bounds() {
    for (ratio, m) in [
        (0.0, 1.0),
        (1.19, 1.0),
        (1.2, 1.5),
        (1.99, 1.5),
        (2.0, 2.0),
        (2.99, 2.0),
        (3.0, 2.5),
        (100.0, 2.5),
    ] {
        assert_eq!(multiplier(ratio), m, "ratio {ratio}");
    }
    let r = SurgeResult::new("z", 0, 300_000, 7, 0);
    assert_eq!((r.ratio, r.multiplier), (7.0, 2.5));
    assert_eq!(r.window_end, "1970-01-01T00:05:00.000Z");
}
