//! What the trip, shift and live tests share: reading event files, running a job under a
//! deadline, shuffling within the watermark bound, golden files, and a seeded synthetic workload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use sluice_connectors::{SplitMix64, VecSource};
use sluice_engine::prelude::*;
use sluice_jobs::event::{parse_event, RideEvent, Validation};
use sluice_jobs::timestamp::{format_rfc3339_ms as ts, parse_rfc3339_ms};

/// The clock every input is validated against: 2026-11-27T00:00:00Z.
pub const NOW: i64 = 1_795_737_600_000;

/// The watermark bound of every test job.
pub const BOUND: Duration = Duration::from_secs(5);

/// How long a job may take before its test fails as hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// The `ridehail` binary of this build.
pub fn ridehail() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_ridehail"))
}

/// Runs `cmd`, which must fail and say `needle` on standard error.
pub fn refused(cmd: &mut std::process::Command, needle: &str) {
    let r = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "should have failed: {err}");
    assert!(err.contains(needle), "{err}");
}

/// A fresh, empty directory `ridehail-<kind>-<pid>-<name>` under the system's temporary
/// directory, removed when dropped, unless the test is failing (then it stays, to look at).
pub fn temp_dir(kind: &str, name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("ridehail-{kind}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// See [`temp_dir`]. Derefs to its path.
pub struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `jobs/tests/data/<name>`.
pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Parses JSON lines into events, panicking on an invalid one (test inputs are valid).
pub fn parse_lines<S: AsRef<str>>(lines: &[S]) -> Vec<RideEvent> {
    lines
        .iter()
        .map(|l| {
            parse_event(l.as_ref(), NOW, &Validation::default())
                .unwrap_or_else(|e| panic!("invalid test event {}: {e:?}", l.as_ref()))
        })
        .collect()
}

/// The events of `jobs/tests/data/<name>`, in file order.
pub fn read_events(name: &str) -> Vec<RideEvent> {
    let text = std::fs::read_to_string(data_path(name)).expect("test input exists");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    parse_lines(&lines)
}

/// Builds a job over `events` (timestamps from the events, watermarks [`BOUND`] behind) at
/// `parallelism`, lets `build` wire it and attach sinks, runs it, and returns what `build`
/// returned with the job's metrics.
///
/// # Panics
///
/// If the job fails or does not end within the deadline.
pub fn run<S>(
    events: Vec<RideEvent>,
    config: Config,
    build: impl FnOnce(Stream<RideEvent>) -> S,
) -> (S, JobMetrics) {
    let env = StreamEnv::new(config);
    let stream = env.source(VecSource::new(events)).with_watermarks(
        Watermarks::bounded_out_of_orderness(BOUND).timestamps(|e: &RideEvent| e.timestamp),
    );
    let sinks = build(stream);
    let handle = env.start().expect("the job starts");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(metrics)) => (sinks, metrics),
        Ok(Err(e)) => panic!("job failed: {e}"),
        Err(_) => panic!("job did not end within {DEADLINE:?}: a deadlock or a hang"),
    }
}

/// [`run`] with the default configuration at `parallelism` workers.
pub fn run_at<S>(
    events: Vec<RideEvent>,
    parallelism: usize,
    build: impl FnOnce(Stream<RideEvent>) -> S,
) -> (S, JobMetrics) {
    run(events, Config::default().parallelism(parallelism), build)
}

/// Each value as one line of JSON, sorted: a deterministic form of an unordered output.
pub fn json_lines<T: Serialize>(values: &[T]) -> Vec<String> {
    let mut lines: Vec<String> = values
        .iter()
        .map(|v| serde_json::to_string(v).expect("outputs serialise"))
        .collect();
    lines.sort();
    lines
}

/// Compares `actual` with `jobs/tests/data/<name>`, line by line. With `SLUICE_BLESS=1` in the
/// environment it writes the file instead (then check the result by hand before committing).
pub fn assert_golden(name: &str, actual: &[String]) {
    let path = data_path(name);
    let mut text = actual.join("\n");
    text.push('\n');
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &text).expect("golden file written");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with SLUICE_BLESS=1 to create it)",
            path.display()
        )
    });
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.iter().map(String::as_str).collect();
    assert_eq!(
        actual,
        expected,
        "output differs from {} (left: actual, right: expected)",
        path.display()
    );
}

/// `events` reordered at random, but never by more than the watermark bound: every event comes
/// after all events more than [`BOUND`] older than it, so none is late.
pub fn shuffle_within_bound(events: &[RideEvent], seed: u64) -> Vec<RideEvent> {
    let bound = BOUND.as_millis() as u64;
    let mut rng = SplitMix64::new(seed);
    let mut keyed: Vec<(i64, RideEvent)> = events
        .iter()
        .map(|e| (e.timestamp + rng.below(bound) as i64, e.clone()))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, e)| e).collect()
}

/// A seeded day-part of `drivers` drivers over four hours from 2026-11-26T08:00Z, in time order:
/// availability, a location update every minute on the minute, trips (mostly completed, some
/// cancelled with or without `driver_id`, some never ended, a few started twice), breaks both
/// shorter and longer than the shift gap, rider requests. Location updates and trip starts share
/// the minute grid, so ties in event time are common.
pub fn synthetic_events(seed: u64, drivers: usize) -> Vec<RideEvent> {
    let base = parse_rfc3339_ms("2026-11-26T08:00:00Z").expect("valid");
    let end = base + 4 * 3_600_000;
    let minute = 60_000;
    let mut rng = SplitMix64::new(seed);
    let mut lines: Vec<(i64, String)> = Vec::new();
    let mut id = 0u64;
    let mut next_id = || {
        id += 1;
        format!("e{id:06}")
    };
    let zones = ["z0", "z1", "z2", "z3"];
    let mut trip_no = 0;
    for d in 0..drivers {
        let driver = format!("d{d:02}");
        let mut t = base + rng.below(10) as i64 * minute;
        while t < end {
            let zone = zones[rng.below(zones.len() as u64) as usize];
            let (lat, lon) = (40.7 + rng.next_f64() * 0.1, -74.0 + rng.next_f64() * 0.1);
            lines.push((t, json!({"event_id": next_id(), "event_type": "DRIVER_AVAILABLE", "timestamp": ts(t), "driver_id": driver, "latitude": lat, "longitude": lon, "geo_zone": zone}).to_string()));
            for _ in 0..1 + rng.below(4) {
                // Idle, with location updates on the minute.
                for _ in 0..rng.below(6) {
                    t += minute;
                    lines.push((t, json!({"event_id": next_id(), "event_type": "DRIVER_LOCATION_UPDATE", "timestamp": ts(t), "driver_id": driver, "latitude": lat, "longitude": lon, "geo_zone": zone}).to_string()));
                }
                trip_no += 1;
                let trip = format!("t{trip_no:04}");
                let estimated = 5.0 + (rng.below(4000) as f64) / 100.0;
                t += minute;
                lines.push((t, json!({"event_id": next_id(), "event_type": "TRIP_STARTED", "timestamp": ts(t), "trip_id": trip, "driver_id": driver, "rider_id": format!("r{trip_no}"), "start_lat": lat, "start_lon": lon, "estimated_fare": estimated, "geo_zone": zone}).to_string()));
                if rng.chance(0.05) {
                    lines.push((t + 1_500, json!({"event_id": next_id(), "event_type": "TRIP_STARTED", "timestamp": ts(t + 1_500), "trip_id": trip, "driver_id": driver, "rider_id": format!("r{trip_no}"), "start_lat": lat, "start_lon": lon, "geo_zone": zone}).to_string()));
                }
                let minutes = 3 + rng.below(35) as i64;
                let outcome = rng.below(100);
                let on_trip = if outcome < 10 { 2 } else { minutes };
                for m in 0..=on_trip {
                    let at = t + m * minute;
                    lines.push((at, json!({"event_id": next_id(), "event_type": "DRIVER_LOCATION_UPDATE", "timestamp": ts(at), "driver_id": driver, "latitude": lat, "longitude": lon, "geo_zone": zone}).to_string()));
                }
                t += on_trip * minute;
                match outcome {
                    0..=4 => lines.push((t, json!({"event_id": next_id(), "event_type": "TRIP_CANCELLED", "timestamp": ts(t), "trip_id": trip, "driver_id": driver, "reason": "rider_no_show"}).to_string())),
                    5..=9 => lines.push((t, json!({"event_id": next_id(), "event_type": "TRIP_CANCELLED", "timestamp": ts(t), "trip_id": trip, "reason": "changed_mind"}).to_string())),
                    10..=13 => {} // never ends: incomplete after the timeout
                    _ => {
                        let fare = estimated * (0.8 + rng.next_f64() * 0.7);
                        let fare = (fare * 100.0).round() / 100.0;
                        let mut v = json!({"event_id": next_id(), "event_type": "TRIP_COMPLETED", "timestamp": ts(t), "trip_id": trip, "driver_id": driver, "end_lat": lat, "end_lon": lon, "actual_fare": fare, "actual_duration": minutes * 60, "geo_zone": zones[rng.below(zones.len() as u64) as usize]});
                        if rng.chance(0.5) {
                            v["rating"] = json!(1 + rng.below(5));
                        }
                        lines.push((t, v.to_string()));
                        if rng.chance(0.05) {
                            // A duplicate completion with its own event id, a minute later.
                            v["event_id"] = json!(next_id());
                            v["timestamp"] = json!(ts(t + minute));
                            lines.push((t + minute, v.to_string()));
                        }
                    }
                }
                if rng.chance(0.3) {
                    lines.push((t, json!({"event_id": next_id(), "event_type": "RIDER_REQUEST", "timestamp": ts(t), "rider_id": format!("q{trip_no}"), "pickup_lat": lat, "pickup_lon": lon, "geo_zone": zone}).to_string()));
                }
            }
            t += minute;
            lines.push((t, json!({"event_id": next_id(), "event_type": "DRIVER_OFFLINE", "timestamp": ts(t), "driver_id": driver}).to_string()));
            // A break: some within the shift gap, some beyond it.
            t += (10 + rng.below(50) as i64) * minute;
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    let lines: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    parse_lines(&lines)
}
