//! Window throughput, one run at a time, printing one line: events/s, results and a checksum.
//!
//! ```sh
//! cargo bench --bench windows_throughput -- tumbling 50000000 2
//! cargo bench --bench windows_throughput -- hand-sliding 50000000
//! ```
//!
//! The first argument is the workload (`tumbling`, `sliding`, `session`, `dedup`), optionally
//! prefixed `hand-` for the hand-written single-threaded loop; then the number of events and the
//! number of workers, and optionally the event-time step per event in microseconds (default
//! 100). The checksum of a sluice run equals the hand-written loop's for the same
//! workload and event count, whatever the worker count.
//!
//! With `SLUICE_CHECKPOINT_EVERY_MS=N` in the environment a sluice run takes a checkpoint every
//! `N` ms, into a fresh directory under the system's temporary directory (removed afterwards),
//! and prints a second line: checkpoints completed, the size and duration of the last one taken
//! while the job ran, the longest duration, and the size and duration of the final checkpoint
//! taken as the job ends. `SLUICE_CHECKPOINT_EVERY_MS=0` turns checkpointing on with no
//! periodic checkpoints (only the final one), to see what being ready for them costs.
//!
//! ```sh
//! SLUICE_CHECKPOINT_EVERY_MS=1000 cargo bench --bench windows_throughput -- tumbling 200000000 2
//! ```

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Kind;
use sluice::Config;

/// A checkpoint directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("sluice-bench-chk-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the checkpoint directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let usage =
        "usage: windows_throughput [hand-]{tumbling|sliding|session|dedup} EVENTS [WORKERS]";
    let Some(name) = args.first() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (hand, kind_name) = match name.strip_prefix("hand-") {
        Some(k) => (true, k),
        None => (false, name.as_str()),
    };
    let Some(kind) = Kind::parse(kind_name) else {
        eprintln!("unknown workload `{name}`\n{usage}");
        std::process::exit(2);
    };
    let events: u64 = args
        .get(1)
        .map(|s| s.replace('_', "").parse().expect("EVENTS must be a number"))
        .unwrap_or(10_000_000);
    let workers: usize = args
        .get(2)
        .map(|s| s.parse().expect("WORKERS must be a number"))
        .unwrap_or(1);
    let mut w = kind.workload(events);
    // Optional: event-time step per event in microseconds (default 100). A smaller step packs
    // more live keys into the dedup TTL: 60 us and 12M events give 10M live ids.
    if let Some(step) = args.get(3) {
        w.step_us = step.parse().expect("STEP_US must be a number");
    }
    let every_ms: Option<u64> = std::env::var("SLUICE_CHECKPOINT_EVERY_MS")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .expect("SLUICE_CHECKPOINT_EVERY_MS must be a number of milliseconds")
        });
    let chk_dir = (!hand)
        .then_some(every_ms)
        .flatten()
        .map(|_| TempDir::new());
    let start = Instant::now();
    let (summary, run) = if hand {
        (kind.run_hand(w), None)
    } else {
        let mut config = Config::default().parallelism(workers);
        if let (Some(ms), Some(dir)) = (every_ms, &chk_dir) {
            config = config.checkpoint_dir(&dir.0);
            if ms > 0 {
                config = config.checkpoint_every(Duration::from_millis(ms));
            }
        }
        // Polled while running in both cases, so that runs with and without checkpoints
        // differ only in the checkpoints.
        let run = kind.run_sluice_with(w, config, true);
        (run.summary, Some(run))
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name} events={events} workers={} secs={secs:.3} events_per_sec={:.0} results={} checksum={:016x}",
        if hand { 1 } else { workers },
        events as f64 / secs,
        summary.results,
        summary.checksum
    );
    if let (Some(run), Some(ms)) = (run, every_ms) {
        // `completed` counts the final checkpoint taken when the job finishes; `periodic` those
        // taken while it ran, whose last size and duration, and longest duration, follow.
        let ms_of = |d: Duration| d.as_secs_f64() * 1e3;
        let c = &run.metrics.checkpoints;
        let periodic = &run.checkpoints;
        let last = periodic.last().unwrap_or(c);
        let max = periodic
            .iter()
            .map(|p| p.last_duration)
            .max()
            .unwrap_or_default();
        println!(
            "  checkpoints every_ms={ms} completed={} periodic={} last_bytes={} last_ms={:.1} max_ms={:.1} final_bytes={} final_ms={:.1}",
            c.completed,
            periodic.len(),
            last.last_bytes,
            ms_of(last.last_duration),
            ms_of(max),
            c.last_bytes,
            ms_of(c.last_duration),
        );
    }
    drop(chk_dir);
}
