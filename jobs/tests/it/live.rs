//! The live job (`sluice_jobs::live`).
//!
//! Golden input `data/live.jsonl` (events `l01`..`l13`, zones given as `geo_zone`), expected
//! driver snapshots `data/live.drivers.expected.jsonl` and zone snapshots
//! `data/live.zones.expected.jsonl`. Checked by hand (interval 1 minute, idle timeout 1 hour;
//! a snapshot at boundary `B` covers the events before `B`):
//!
//! | driver | events | snapshots |
//! |---|---|---|
//! | d1 | 08:00:10 available z1, 08:00:40 update z1, 08:01:30 starts t1 in z1, 08:03:20 completes t1 in z2, 08:03:50 offline (no zone: stays z2) | 08:01 AVAILABLE (location of 08:00:40); 08:02 ON_TRIP t1; none at 08:03 (no event); 08:04 OFFLINE in z2; no expiry snapshot (already OFFLINE) |
//! | d2 | 08:00:30 starts t2 in z1 (first event) | 08:01 ON_TRIP t2; silent for an hour: 09:01 OFFLINE, trip cleared |
//! | d3 | 08:05:00 starts t3 in z2; 08:06:10 TRIP_CANCELLED t3 *without* driver_id | 08:06 ON_TRIP t3; 08:07 AVAILABLE (the cancel is resolved to d3); 09:07 OFFLINE (expiry) |
//! | d5 | 08:07:00 TRIP_CANCELLED t5 without driver_id *before* its start; 08:07:30 starts t5 in z3 | the cancel is about no driver; 08:08 ON_TRIP t5; 09:08 OFFLINE |
//! | d4 | 08:08:05 starts t4 in z3, 08:08:50 cancels t4 (with driver_id) | 08:09 AVAILABLE; 09:09 OFFLINE |
//!
//! Zones (a trip counts in its start zone): z1 08:01 -> 1 (t2), 08:02 -> 2 (t1), 08:04 -> 1 (t1
//! ended), 09:01 -> 0 (d2 expired); z2 08:06 -> 1, 08:07 -> 0; z3 08:08 -> 1 (t5; t4 started and
//! ended within 08:08-08:09, so no change at 08:09), 09:08 -> 0. The RIDER_REQUEST `l13` changes
//! nothing.

use sluice_connectors::CollectSink;
use sluice_engine::prelude::*;
use sluice_engine::JobMetrics;
use sluice_jobs::event::RideEvent;
use sluice_jobs::live::{
    live_state, DriverState, DriverStatus, LiveConfig, LiveView, StatusCounts, ZoneSnapshot,
};

use super::fixtures::{
    assert_golden, json_lines, parse_lines, read_events, run, run_at, shuffle_within_bound,
    synthetic_events,
};

struct LiveRun {
    drivers: Vec<String>,
    zones: Vec<String>,
    late: usize,
    metrics: JobMetrics,
}

fn run_live(events: Vec<RideEvent>, config: Config, live: LiveConfig) -> LiveRun {
    let ((drivers, zones, late), metrics) = run(events, config, |stream| {
        let out = live_state(stream, &live);
        let (d, z, l) = (CollectSink::new(), CollectSink::new(), CollectSink::new());
        out.drivers.sink(d.clone());
        out.zones.sink(z.clone());
        out.late.sink(l.clone());
        (d, z, l)
    });
    let drivers: Vec<DriverState> = drivers.values();
    let zones: Vec<ZoneSnapshot> = zones.values();
    LiveRun {
        drivers: json_lines(&drivers),
        zones: json_lines(&zones),
        late: late.len(),
        metrics,
    }
}

#[test]
fn live_snapshots_match_the_golden_files() {
    let out = run_live(
        read_events("live.jsonl"),
        Config::default(),
        LiveConfig::default(),
    );
    assert_eq!(out.late, 0);
    assert_golden("live.drivers.expected.jsonl", &out.drivers);
    assert_golden("live.zones.expected.jsonl", &out.zones);
}

#[test]
fn live_snapshots_do_not_depend_on_arrival_order_or_parallelism() {
    for events in [read_events("live.jsonl"), synthetic_events(7, 12)] {
        let expected = run_live(events.clone(), Config::default(), LiveConfig::default());
        assert!(!expected.zones.is_empty());
        for seed in 1..=3 {
            let shuffled = shuffle_within_bound(&events, seed);
            for p in [1, 2] {
                let got = run_live(
                    shuffled.clone(),
                    Config::default().parallelism(p),
                    LiveConfig::default(),
                );
                assert_eq!(got.late, 0, "seed {seed}, parallelism {p}");
                assert_eq!(
                    got.drivers, expected.drivers,
                    "seed {seed}, parallelism {p}"
                );
                assert_eq!(got.zones, expected.zones, "seed {seed}, parallelism {p}");
            }
        }
    }
}

#[test]
fn live_state_is_released_after_drivers_expire() {
    let out = run_live(
        synthetic_events(11, 12),
        Config::default().parallelism(2),
        LiveConfig::default(),
    );
    for name in ["live.cancel_resolver", "live.drivers", "live.zones"] {
        let op = out.metrics.operator(name).expect("operator exists");
        assert_eq!(op.state_keys, 0, "{name} keeps state after end of input");
        assert_eq!(
            op.pending_timers, 0,
            "{name} keeps timers after end of input"
        );
    }
    // Without idle expiry, the drivers' states stay: one key per driver, no timers.
    let out = run_live(
        synthetic_events(11, 12),
        Config::default().parallelism(2),
        LiveConfig {
            idle_timeout: None,
            ..LiveConfig::default()
        },
    );
    let op = out.metrics.operator("live.drivers").unwrap();
    assert_eq!(op.state_keys, 12);
    assert_eq!(op.pending_timers, 0);
}

#[test]
fn the_live_view_answers_with_the_latest_snapshots() {
    let view = LiveView::new();
    let feed = view.clone();
    run_at(read_events("live.jsonl"), 2, move |stream| {
        let config = LiveConfig {
            idle_timeout: None,
            ..LiveConfig::default()
        };
        live_state(stream, &config).feed(&feed);
    });
    let d2 = view.driver("d2").expect("d2 is known");
    assert_eq!(d2.status, DriverStatus::OnTrip);
    assert_eq!(d2.current_trip.as_deref(), Some("t2"));
    assert_eq!(view.driver("d3").unwrap().status, DriverStatus::Available);
    assert_eq!(view.driver("d1").unwrap().zone.as_deref(), Some("z2"));
    assert!(view.driver("d9").is_none());
    assert_eq!(
        view.drivers_by_status(),
        StatusCounts {
            available: 2,
            on_trip: 2,
            offline: 1
        }
    );
    assert_eq!(
        (
            view.active_trips("z1"),
            view.active_trips("z2"),
            view.active_trips("z3")
        ),
        (1, 0, 1)
    );
    assert_eq!(
        view.active_trips_by_zone(),
        vec![("z1".to_string(), 1), ("z3".to_string(), 1)]
    );
    // The last boundary with a change: d4's snapshot at 08:09.
    assert_eq!(
        view.as_of().map(sluice_jobs::timestamp::format_rfc3339_ms),
        Some("2026-11-26T08:09:00.000Z".to_string())
    );
}

#[test]
fn late_events_go_to_the_late_output() {
    let events = parse_lines(&[
        r#"{"event_id":"1","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T08:00:00Z","driver_id":"d","latitude":1,"longitude":2}"#,
        r#"{"event_id":"2","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T08:05:00Z","driver_id":"e","latitude":1,"longitude":2}"#,
        r#"{"event_id":"3","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T08:01:00Z","driver_id":"d"}"#,
        r#"{"event_id":"4","event_type":"TRIP_CANCELLED","timestamp":"2026-11-26T08:02:00Z","trip_id":"t"}"#,
    ]);
    let ((drivers, late), _) = run(events, Config::default().batch_size(1), |stream| {
        let out = live_state(stream, &LiveConfig::default());
        let (d, l) = (CollectSink::new(), CollectSink::new());
        out.drivers.sink(d.clone());
        out.late.sink(l.clone());
        (d, l)
    });
    let mut late: Vec<String> = late
        .values()
        .into_iter()
        .map(|e: RideEvent| e.event_id.to_string())
        .collect();
    late.sort();
    assert_eq!(late, vec!["3".to_string(), "4".to_string()]);
    let d: Vec<DriverStatus> = drivers
        .values()
        .into_iter()
        .filter(|s: &DriverState| s.driver_id == "d")
        .map(|s| s.status)
        .collect();
    assert_eq!(
        d,
        vec![DriverStatus::Available, DriverStatus::Offline],
        "d's snapshot at 08:01, then its idle expiry; the late DRIVER_OFFLINE changed nothing"
    );
}
