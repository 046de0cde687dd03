//! What the validate, dedup, surge, ingest and generator tests share beyond `fixtures`: running
//! a whole pipeline (sources included) under a deadline, and the deterministic form of event
//! outputs.

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::prelude::*;
use sluice_engine::{Clock, ManualClock};
use sluice_jobs::event::RideEvent;

/// How long a job may take before its test fails as hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the job described on `env` and returns its metrics.
///
/// # Panics
///
/// If the job fails or does not end within the deadline.
pub fn execute(env: &StreamEnv) -> JobMetrics {
    let handle = env.start().expect("the job starts");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.join());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(metrics)) => metrics,
        Ok(Err(e)) => panic!("job failed: {e}"),
        Err(_) => panic!("job did not end within {DEADLINE:?}: a deadlock or a hang"),
    }
}

/// Events in the wire format, sorted: a deterministic form of an unordered output.
pub fn wire_lines(events: &[RideEvent]) -> Vec<String> {
    let mut lines: Vec<String> = events.iter().map(|e| e.to_json()).collect();
    lines.sort();
    lines
}

/// A clock stopped at `ms`.
pub fn clock_at(ms: i64) -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(ms))
}

/// The metrics of operator `name`.
pub fn op<'a>(metrics: &'a JobMetrics, name: &str) -> &'a sluice_engine::OperatorMetrics {
    metrics
        .operator(name)
        .unwrap_or_else(|| panic!("no operator `{name}` in {:?}", metrics.operators))
}
