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

mod common;

use std::time::Instant;

use common::Kind;

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
    let start = Instant::now();
    let summary = if hand {
        kind.run_hand(w)
    } else {
        kind.run_sluice(w, workers)
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name} events={events} workers={} secs={secs:.3} events_per_sec={:.0} results={} checksum={:016x}",
        if hand { 1 } else { workers },
        events as f64 / secs,
        summary.results,
        summary.checksum
    );
}
