//! Checkpoints and exactly-once output: a job is paused at a savepoint, cancelled, and restored
//! from the savepoint at another parallelism. Its output files, and its record counts, equal
//! those of a run without the pause.
//!
//! ```sh
//! cargo run --example checkpoints
//! ```
//!
//! What makes it exactly-once: a *replayable* source (its splits report a position, and `open`
//! resumes from one), state the engine knows of (here a window's), and a *transactional* sink
//! (`JsonLinesSink` writes hidden files and makes them visible when a checkpoint completes).
//! See `docs/guarantees.md`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice::connectors::JsonLinesSink;
use sluice::prelude::*;
use sluice::{BoxError, JobMetrics, RestoreFrom};

/// Readings `(meter, kwh)`, one per meter and second of event time, for `seconds` seconds; one
/// split per meter, whose position is the number of readings it emitted. A reader stops
/// (`Pending`) at `gate`, so the example can pause the job at a known point.
#[derive(Clone)]
struct Meters {
    meters: usize,
    seconds: u64,
    gate: Arc<AtomicU64>,
}

struct MeterReader {
    meter: usize,
    next: u64,
    src: Meters,
}

impl Source<(usize, u64)> for Meters {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok((0..self.meters)
            .map(|m| Split::new(format!("meter-{m}"), m))
            .collect())
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<(usize, u64)>>, BoxError> {
        Ok(Box::new(MeterReader {
            meter: split.index,
            next: position.unwrap_or(0),
            src: self.clone(),
        }))
    }
}

impl SplitReader<(usize, u64)> for MeterReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, (usize, u64)>) -> Result<SourceStatus, BoxError> {
        let stop = self.src.seconds.min(self.src.gate.load(Ordering::Acquire));
        while !out.is_full() && self.next < stop {
            let kwh = (self.next * 7 + self.meter as u64 * 13) % 10;
            out.push_at(self.next as i64 * 1_000, (self.meter, kwh));
            self.next += 1;
        }
        Ok(if self.next == self.src.seconds {
            SourceStatus::Finished
        } else if self.next == stop {
            SourceStatus::Pending
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> u64 {
        self.next
    }
}

struct Sum;

impl Aggregate<(usize, u64)> for Sum {
    type Acc = u64;
    type Out = u64;
    fn create(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, v: (usize, u64)) {
        *acc += v.1;
    }
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// kWh per meter and minute of event time, as JSON lines under `out`, exactly once.
fn build(env: &StreamEnv, source: Meters, out: &Path) {
    env.source(source)
        .with_watermarks(Watermarks::bounded_out_of_orderness(Duration::from_secs(1)))
        .key_by(|r: &(usize, u64)| r.0)
        .window(Tumbling::of(Duration::from_secs(60)))
        .aggregate(Sum)
        .map(|r| (r.key, r.window.start / 60_000, r.value))
        .sink(JsonLinesSink::new(out));
}

/// The committed lines under `dir`, sorted (hidden files are work in progress).
fn committed(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir).expect("output directory") {
        let path = entry.expect("directory entry").path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden {
            let text = std::fs::read_to_string(&path).expect("output file");
            lines.extend(text.lines().map(String::from));
        }
    }
    lines.sort();
    lines
}

fn records_in(m: &JobMetrics) -> Vec<(String, u64)> {
    m.operators
        .iter()
        .map(|o| (o.name.clone(), o.records_in))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir =
        std::env::temp_dir().join(format!("sluice-example-checkpoints-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let meters = |gate| Meters {
        meters: 4,
        seconds: 3_600,
        gate: Arc::new(AtomicU64::new(gate)),
    };

    // A run without interruption, for comparison (no checkpoints).
    let env = StreamEnv::new(Config::default().parallelism(2));
    build(&env, meters(u64::MAX), &dir.join("reference"));
    let reference = env.execute()?;

    // The same job with checkpoints, paused when every meter has sent 20 minutes of readings:
    // a savepoint, then cancel.
    let (out, checkpoints) = (dir.join("out"), dir.join("checkpoints"));
    let source = meters(1_200);
    let env = StreamEnv::new(
        Config::default()
            .parallelism(2)
            .checkpoint_dir(&checkpoints),
    );
    build(&env, source.clone(), &out);
    let handle = env.start()?;
    while handle.metrics().operators[0].records_out < 4 * 1_200 && !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let savepoint = handle.savepoint()?;
    handle.cancel();
    let _ = handle.join();
    println!(
        "paused at {}: {} lines committed so far",
        savepoint.display(),
        committed(&out).len()
    );

    // Restored from the savepoint at one worker, with the gate open: it continues where the
    // savepoint was taken, and its counts continue from the savepoint's.
    let env = StreamEnv::new(
        Config::default()
            .parallelism(1)
            .checkpoint_dir(&checkpoints)
            .restore(RestoreFrom::Path(savepoint)),
    );
    build(&env, meters(u64::MAX), &out);
    let resumed = env.execute()?;
    let source = &resumed.operators[0];
    println!(
        "resumed: read {} readings itself, {} in all (the savepoint had counted {})",
        source.records_out - source.restored.records_out,
        source.records_out,
        source.restored.records_out
    );

    let (got, want) = (committed(&out), committed(&dir.join("reference")));
    println!(
        "{} lines, the same as without the pause: {}; the same counts: {}",
        got.len(),
        got == want,
        records_in(&resumed) == records_in(&reference)
    );
    assert_eq!(got, want);
    assert_eq!(records_in(&resumed), records_in(&reference));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
