//! The shift job (`sluice_jobs::shifts`).
//!
//! Golden input `data/shifts.jsonl` (events `s01`..`s20`), expected
//! `data/shifts.expected.jsonl`. Checked by hand (gap 30 minutes):
//!
//! | driver | events | expected shifts |
//! |---|---|---|
//! | d1 | 08:00 available, 08:10 start t1, 08:20 update, 08:40 t1 completed (25.0, 1800 s), 09:00 update; 45 min silence; 09:45 available, 09:50 start t2, 10:05 t2 completed (12.3, 900 s), 10:10 offline | 08:00-09:00: 60 min, 5 events, 1 trip, 25.0, 30 min on trip, utilisation 0.5; 09:45-10:10: 25 min, 4 events, 1 trip, 12.3, 15 min, utilisation 0.6 |
//! | d2 | 08:00 available, 08:30 update (exactly the gap: same shift), 09:00:00.001 update (gap + 1 ms: new shift) | 08:00-08:30: 30 min, 2 events, utilisation 0; 09:00:00.001: zero length, 1 event, utilisation 0 (not a division by zero) |
//! | d3 | 08:00 available, 08:10 ta completed (0.1, 300 s), 08:20 tb completed (0.2, 300 s), 08:20 offline | 08:00-08:20: 20 min, 4 events, 2 trips, earnings exactly 0.3 (not 0.30000000000000004), 10 min on trip, utilisation 0.5 |
//! | d4 | 11:00 update, 11:10 t4 completed (9.0, 1200 s: it started before d4's first event) | 11:00-11:10: 10 min, 20 min on trip, utilisation 2.0 (not clamped) |
//!
//! The RIDER_REQUEST `s05` and the TRIP_CANCELLED without driver `s10` name no driver: in no
//! shift.

use sluice_connectors::CollectSink;
use sluice_engine::prelude::*;
use sluice_engine::JobMetrics;
use sluice_jobs::event::RideEvent;
use sluice_jobs::shifts::{driver_shifts, ShiftConfig, ShiftSummary};

use super::fixtures::{
    assert_golden, json_lines, parse_lines, read_events, run, shuffle_within_bound,
    synthetic_events,
};

fn run_shifts(events: Vec<RideEvent>, config: Config) -> (Vec<String>, usize, JobMetrics) {
    let ((shifts, late), metrics) = run(events, config, |stream| {
        let out = driver_shifts(stream, &ShiftConfig::default());
        let (s, l) = (CollectSink::new(), CollectSink::new());
        out.shifts.sink(s.clone());
        out.late.sink(l.clone());
        (s, l)
    });
    let shifts: Vec<ShiftSummary> = shifts.values();
    (json_lines(&shifts), late.len(), metrics)
}

#[test]
fn driver_shifts_match_the_golden_file() {
    let (shifts, late, _) = run_shifts(read_events("shifts.jsonl"), Config::default());
    assert_eq!(late, 0);
    assert_golden("shifts.expected.jsonl", &shifts);
}

#[test]
fn driver_shifts_do_not_depend_on_arrival_order_or_parallelism() {
    for events in [read_events("shifts.jsonl"), synthetic_events(7, 12)] {
        let (expected, _, _) = run_shifts(events.clone(), Config::default());
        assert!(!expected.is_empty());
        for seed in 1..=3 {
            let shuffled = shuffle_within_bound(&events, seed);
            for p in [1, 2] {
                let (got, late, _) = run_shifts(shuffled.clone(), Config::default().parallelism(p));
                assert_eq!(late, 0, "seed {seed}, parallelism {p}");
                assert_eq!(got, expected, "seed {seed}, parallelism {p}");
            }
        }
    }
}

#[test]
fn shift_state_is_released_when_shifts_close() {
    let (shifts, _, metrics) =
        run_shifts(synthetic_events(11, 12), Config::default().parallelism(2));
    assert!(shifts.len() > 12, "drivers take breaks longer than the gap");
    let op = metrics.operator("shifts.window").expect("operator exists");
    assert_eq!(op.state_keys, 0);
    assert_eq!(op.pending_timers, 0);
}

#[test]
fn events_behind_a_closed_shift_go_to_the_late_output() {
    let events = parse_lines(&[
        r#"{"event_id":"1","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T08:00:00Z","driver_id":"d","latitude":1,"longitude":2}"#,
        r#"{"event_id":"2","event_type":"DRIVER_AVAILABLE","timestamp":"2026-11-26T09:00:00Z","driver_id":"e","latitude":1,"longitude":2}"#,
        r#"{"event_id":"3","event_type":"DRIVER_OFFLINE","timestamp":"2026-11-26T08:10:00Z","driver_id":"d"}"#,
    ]);
    let ((shifts, late), metrics) = run(events, Config::default().batch_size(1), |stream| {
        let out = driver_shifts(stream, &ShiftConfig::default());
        let (s, l) = (CollectSink::new(), CollectSink::new());
        out.shifts.sink(s.clone());
        out.late.sink(l.clone());
        (s, l)
    });
    assert_eq!(
        shifts.len(),
        2,
        "d's shift was emitted once, without the late event"
    );
    let late: Vec<RideEvent> = late.values();
    assert_eq!(late.len(), 1);
    assert_eq!(&*late[0].event_id, "3");
    assert_eq!(metrics.operator("shifts.window").unwrap().late, 1);
}
