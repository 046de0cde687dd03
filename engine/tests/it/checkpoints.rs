//! Checkpoints: an uninterrupted run equals checkpoint, stop, restore at another parallelism
//! (1 -> 2, 2 -> 4, 4 -> 1) for tumbling windows, session windows and keyed state; corrupt and
//! truncated checkpoints fall back to the previous one; mismatched jobs are refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_connectors::{CollectSink, VecSource};
use sluice_engine::prelude::*;
use sluice_engine::{BoxError, Counter, JobHandle, RestoreFrom};

use super::support::{counts, parity_counting, Line, DEADLINE};

/// One input record: event time, key, value.
type Rec = (i64, u32, i64);

/// A replayable source over a shared vector, with a gate: it emits records up to index `gate`
/// and then waits (returns `Pending`) until the gate moves. `splits` interleaved splits; the
/// position of a split is the number of its records emitted.
#[derive(Clone)]
struct GatedSource {
    data: Arc<Vec<Rec>>,
    splits: usize,
    gate: Arc<AtomicUsize>,
    emitted: Arc<AtomicUsize>,
}

struct GatedReader {
    src: GatedSource,
    split: usize,
    /// Records of this split emitted so far.
    pos: u64,
}

impl Source<(u32, i64)> for GatedSource {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok((0..self.splits)
            .map(|i| Split::new(format!("gated-{i}"), i))
            .collect())
    }
    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<(u32, i64)>>, BoxError> {
        Ok(Box::new(GatedReader {
            src: self.clone(),
            split: split.index,
            pos: position.unwrap_or(0),
        }))
    }
}

impl SplitReader<(u32, i64)> for GatedReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, (u32, i64)>) -> Result<SourceStatus, BoxError> {
        let gate = self.src.gate.load(Ordering::Acquire);
        loop {
            let idx = self.pos as usize * self.src.splits + self.split;
            if idx >= self.src.data.len() {
                return Ok(SourceStatus::Finished);
            }
            if idx >= gate {
                return Ok(SourceStatus::Pending);
            }
            if out.is_full() {
                return Ok(SourceStatus::More);
            }
            let (ts, k, v) = self.src.data[idx];
            out.push_at(ts, (k, v));
            self.pos += 1;
            self.src.emitted.fetch_add(1, Ordering::AcqRel);
        }
    }
    fn position(&self) -> u64 {
        self.pos
    }
}

/// Input with disorder within the watermark bound, so every run computes the same results.
fn input(n: usize, keys: u32, seed: u64) -> Vec<Rec> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|i| {
            let jitter = (next() % 40) as i64;
            let ts = i as i64 * 10 + jitter;
            // Some keys go quiet for a while, so session windows close and reopen.
            let key = (next() % keys as u64) as u32;
            (ts, key, (next() % 100) as i64)
        })
        .collect()
}

const BOUND_MS: u64 = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Kind {
    Tumbling,
    Session,
    Keyed,
    /// `Keyed` with watermark alignment across the source's splits (and an idle timeout far
    /// beyond the test's length).
    AlignedKeyed,
    /// `Tumbling` with one more stateless stage after the watermarks: the same results, one
    /// more operator.
    TumblingWithStage,
}

/// Per key, sums of 100 ms event-time buckets (map state), emitted by an event-time timer at
/// the bucket's end together with the key's running total (value state). Driven by event time
/// only, so any interleaving of the input gives the same results. Counts the buckets it opens
/// with a counter of its own.
struct BucketSums {
    buckets: MapState<i64, i64>,
    total: ValueState<i64>,
    opened: Counter,
}

impl KeyedProcessFunction<u32, (u32, i64)> for BucketSums {
    type Out = (u32, i64, i64, i64);
    fn process(&mut self, key: &u32, v: (u32, i64), ctx: &mut Context<'_, u32, Self::Out>) {
        let end = (ctx.timestamp() / 100 + 1) * 100;
        match ctx.map(self.buckets).get_mut(key, &end) {
            Some(sum) => *sum += v.1,
            None => {
                ctx.map(self.buckets).insert(key, end, v.1);
                self.opened.add(1);
            }
        }
        ctx.register_event_timer(key, end - 1);
    }
    fn on_timer(&mut self, key: &u32, timer: Timer, ctx: &mut Context<'_, u32, Self::Out>) {
        let end = timer.time + 1;
        if let Some(sum) = ctx.map(self.buckets).remove(key, &end) {
            let total = ctx.value(self.total).get_or_insert_with(key, || 0);
            *total += sum;
            let total = *total;
            ctx.emit((*key, end, sum, total));
        }
    }
}

/// Builds the job of `kind` over `src`, writing `(key, window start, window end, value)` lines
/// into `out` through the exactly-once JSON-lines sink.
fn build(env: &StreamEnv, kind: Kind, src: GatedSource, out: &Path) {
    let strategy = Watermarks::bounded_out_of_orderness(Duration::from_millis(BOUND_MS));
    let strategy = match kind {
        Kind::AlignedKeyed => strategy
            .align_splits(Duration::from_millis(200))
            .idle_after(Duration::from_secs(3600)),
        _ => strategy,
    };
    let mut stream = env.source(src).with_watermarks(strategy);
    if kind == Kind::TumblingWithStage {
        stream = stream.map(|r: (u32, i64)| r).name("extra_stage");
    }
    let stream = stream.key_by(|r: &(u32, i64)| r.0);
    let results = match kind {
        Kind::Tumbling | Kind::TumblingWithStage => stream
            .window(Tumbling::of(Duration::from_millis(200)))
            .aggregate(SumAgg)
            .map(|r| (r.key, r.window.start, r.window.end, r.value)),
        Kind::Session => stream
            .window(Session::with_gap(Duration::from_millis(30)))
            .aggregate(SumAgg)
            .map(|r| (r.key, r.window.start, r.window.end, r.value)),
        Kind::Keyed | Kind::AlignedKeyed => {
            stream.process(|reg: &mut StateRegistry<u32>| BucketSums {
                buckets: reg.map("buckets"),
                total: reg.value("total"),
                opened: reg.counter("buckets opened"),
            })
        }
    };
    results.sink(parity_counting(out));
}

struct SumAgg;
impl Aggregate<(u32, i64)> for SumAgg {
    type Acc = i64;
    type Out = i64;
    fn create(&self) -> i64 {
        0
    }
    fn add(&self, acc: &mut i64, v: (u32, i64)) {
        *acc += v.1;
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
    fn finish(&self, acc: &i64) -> i64 {
        *acc
    }
}

/// Every committed line under `dir` (hidden in-progress and pending files excluded), sorted.
fn committed(dir: &Path) -> Vec<Line> {
    let mut lines = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return lines;
    };
    for e in entries {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        for l in std::fs::read_to_string(e.path()).unwrap().lines() {
            lines.push(serde_json::from_str::<Line>(l).unwrap());
        }
    }
    lines.sort_unstable();
    lines
}

fn source(data: &Arc<Vec<Rec>>, gate: usize) -> GatedSource {
    GatedSource {
        data: data.clone(),
        splits: 4,
        gate: Arc::new(AtomicUsize::new(gate)),
        emitted: Arc::new(AtomicUsize::new(0)),
    }
}

fn join(handle: JobHandle) -> Result<JobMetrics, JobError> {
    let deadline = Instant::now() + DEADLINE;
    while !handle.is_finished() {
        if Instant::now() > deadline {
            handle.cancel();
            panic!("job did not end within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    handle.join()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The output of an uninterrupted run (no checkpointing: the sink writes plain part files), and
/// its metrics.
fn reference(kind: Kind, data: &Arc<Vec<Rec>>, tmp: &Path) -> (Vec<Line>, JobMetrics) {
    let out = tmp.join(format!("reference-{kind:?}"));
    let env = StreamEnv::new(Config::default().parallelism(2));
    build(&env, kind, source(data, usize::MAX), &out);
    let metrics = join(env.start().unwrap()).unwrap();
    (committed(&out), metrics)
}

/// Runs at `p1` until the gate, takes a savepoint, cancels; restores at `p2` and finishes.
/// Returns the committed output of both runs together, and the restored run's metrics.
fn interrupted(
    kind: Kind,
    data: &Arc<Vec<Rec>>,
    p1: usize,
    p2: usize,
    tmp: &Path,
) -> (Vec<Line>, JobMetrics) {
    let out = tmp.join(format!("out-{kind:?}-{p1}-{p2}"));
    let chk = tmp.join(format!("chk-{kind:?}-{p1}-{p2}"));
    let gate = data.len() * 2 / 5;
    let src = source(data, gate);
    let env = StreamEnv::new(Config::default().parallelism(p1).checkpoint_dir(&chk));
    build(&env, kind, src.clone(), &out);
    let handle = env.start().unwrap();
    wait_for("the source to reach the gate", || {
        src.emitted.load(Ordering::Acquire) >= gate
    });
    let savepoint = handle.savepoint().unwrap();
    assert!(savepoint.join("_metadata").exists());
    let before = committed(&out);
    assert!(!before.is_empty(), "the first run committed nothing");
    handle.cancel();
    assert!(matches!(join(handle), Err(JobError::Cancelled)));

    let env = StreamEnv::new(
        Config::default()
            .parallelism(p2)
            .checkpoint_dir(&chk)
            .restore(RestoreFrom::Path(savepoint.clone())),
    );
    build(&env, kind, source(data, usize::MAX), &out);
    let handle = env.start().unwrap();
    assert_eq!(handle.restore_info().restored.as_deref(), Some(&*savepoint));
    let metrics = join(handle).unwrap();
    assert!(metrics.checkpoints.restored_id.is_some());
    (committed(&out), metrics)
}

fn check_rescaling(kind: Kind) {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(20_000, 40, 7));
    let (expected, expected_metrics) = reference(kind, &data, tmp.path());
    assert!(
        expected.len() > 100,
        "{kind:?}: too few results to compare: {expected:?}"
    );
    for (p1, p2) in [(1, 2), (2, 4), (4, 1)] {
        let (got, metrics) = interrupted(kind, &data, p1, p2, tmp.path());
        assert_eq!(
            got.len(),
            expected.len(),
            "{kind:?} {p1}->{p2}: result count (duplicates or loss)"
        );
        assert_eq!(got, expected, "{kind:?} {p1}->{p2}: results differ");
        // The restored run's counts continue from the savepoint's: every operator's equal an
        // uninterrupted run's, and the source's restored part is what the first run had read.
        assert_eq!(
            counts(&metrics),
            counts(&expected_metrics),
            "{kind:?} {p1}->{p2}: record counts"
        );
        let sink = metrics.operators.last().unwrap();
        assert_eq!(
            sink.counter("even keys") + sink.counter("odd keys"),
            expected.len() as u64,
            "{kind:?} {p1}->{p2}: the sink's own counters"
        );
        assert!(sink.restored.counters.iter().any(|(_, n)| *n > 0));
        if matches!(kind, Kind::Keyed | Kind::AlignedKeyed) {
            let f = metrics
                .operators
                .iter()
                .find(|o| o.counter("buckets opened") > 0);
            let f = f.expect("the process function's counter");
            assert!(f.restored.counters[0].1 > 0, "{:?}", f.restored);
        }
        let src = &metrics.operators[0];
        assert_eq!(src.records_out, data.len() as u64);
        assert!(
            src.restored.records_out > 0 && src.restored.records_out < src.records_out,
            "{kind:?} {p1}->{p2}: restored part {:?} of {}",
            src.restored,
            src.records_out
        );
    }
}

#[test]
fn tumbling_windows_restore_exactly_at_another_parallelism() {
    check_rescaling(Kind::Tumbling);
}

#[test]
fn session_windows_restore_exactly_at_another_parallelism() {
    check_rescaling(Kind::Session);
}

#[test]
fn keyed_state_and_timers_restore_exactly_at_another_parallelism() {
    check_rescaling(Kind::Keyed);
}

/// Restored splits publish their watermark for alignment at once. They used to wait for the
/// other instances' initial (minimal) watermarks until the idle timeout made them idle, and
/// downstream then ran ahead of their data (here: an hour's stall, so the job misses its
/// deadline; in the ridehail run 30 s and wrong trip summaries).
#[test]
fn aligned_sources_restore_exactly_at_another_parallelism() {
    check_rescaling(Kind::AlignedKeyed);
}

/// Runs a job that takes a checkpoint at 40% of the input and another at 70% (output was
/// committed in between), then cancels it. Returns the checkpoint directory and the ids of the
/// two checkpoints (newest first).
fn run_with_checkpoints(tmp: &Path, data: &Arc<Vec<Rec>>) -> (PathBuf, u64, u64) {
    let chk = tmp.join("chk");
    let out = tmp.join("out");
    let src = source(data, data.len() * 2 / 5);
    let env = StreamEnv::new(Config::default().parallelism(2).checkpoint_dir(&chk));
    build(&env, Kind::Tumbling, src.clone(), &out);
    let handle = env.start().unwrap();
    let mut taken = Vec::new();
    for gate in [data.len() * 2 / 5, data.len() * 7 / 10] {
        src.gate.store(gate, Ordering::Release);
        wait_for("the gate", || src.emitted.load(Ordering::Acquire) >= gate);
        taken.push(handle.checkpoint().unwrap());
    }
    let between = committed(&out).len();
    handle.cancel();
    let _ = join(handle);
    let ids: Vec<u64> = taken
        .iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            sluice_engine::checkpoint::checkpoint_id(&name)
                .unwrap_or_else(|| panic!("a checkpoint on request is a regular one: {name}"))
        })
        .collect();
    assert!(between > 0, "no output was committed");
    (chk, ids[1], ids[0])
}

fn restore_latest(chk: &Path, data: &Arc<Vec<Rec>>, out: &Path) -> JobHandle {
    let env = StreamEnv::new(
        Config::default()
            .parallelism(2)
            .checkpoint_dir(chk)
            .restore(RestoreFrom::Latest),
    );
    build(&env, Kind::Tumbling, source(data, usize::MAX), out);
    env.start().unwrap()
}

fn damage(chk: &Path, id: u64, file: &str, how: impl Fn(&mut Vec<u8>)) {
    let path = chk.join(format!("chk-{id:010}")).join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    how(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
}

/// A checkpoint on request followed by a cancel pauses a job: restored from the latest
/// checkpoint, it finishes with the output of an uninterrupted run.
#[test]
fn a_checkpoint_on_request_then_cancel_pauses_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(5_000, 10, 5));
    let (chk, newest, _) = run_with_checkpoints(tmp.path(), &data);
    let handle = restore_latest(&chk, &data, &tmp.path().join("out"));
    assert_eq!(handle.restore_info().id, Some(newest));
    join(handle).unwrap();
    assert_eq!(
        committed(&tmp.path().join("out")),
        reference(Kind::Tumbling, &data, tmp.path()).0
    );
}

#[test]
fn a_corrupted_checkpoint_is_detected_and_the_previous_one_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(5_000, 10, 3));
    let (chk, newest, previous) = run_with_checkpoints(tmp.path(), &data);
    damage(&chk, newest, "state.bin", |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x5a;
    });
    let handle = restore_latest(&chk, &data, &tmp.path().join("out"));
    let info = handle.restore_info().clone();
    assert_eq!(info.id, Some(previous), "{info:?}");
    assert_eq!(info.skipped.len(), 1);
    assert!(info.skipped[0].1.contains("checksum"), "{info:?}");
    join(handle).unwrap();
    // What the skipped checkpoint had committed was rolled back and written again: no
    // duplicates, no loss.
    assert_eq!(
        committed(&tmp.path().join("out")),
        reference(Kind::Tumbling, &data, tmp.path()).0
    );
}

#[test]
fn a_truncated_checkpoint_is_detected_and_the_previous_one_is_used() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(5_000, 10, 4));
    let (chk, newest, previous) = run_with_checkpoints(tmp.path(), &data);
    damage(&chk, newest, "state.bin", |b| b.truncate(b.len() - 7));
    let handle = restore_latest(&chk, &data, &tmp.path().join("out"));
    let info = handle.restore_info().clone();
    assert_eq!(info.id, Some(previous), "{info:?}");
    assert!(info.skipped[0].1.contains("truncated"), "{info:?}");
    join(handle).unwrap();
    assert_eq!(
        committed(&tmp.path().join("out")),
        reference(Kind::Tumbling, &data, tmp.path()).0
    );
}

#[test]
fn when_no_checkpoint_is_readable_the_job_refuses_to_start_over() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(5_000, 10, 10));
    let (chk, newest, previous) = run_with_checkpoints(tmp.path(), &data);
    for id in std::fs::read_dir(&chk).unwrap().filter_map(|e| {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        name.strip_prefix("chk-")
            .and_then(|n| n.parse::<u64>().ok())
    }) {
        damage(&chk, id, "state.bin", |b| b.truncate(b.len() / 2));
    }
    assert!(newest > previous);
    let env = StreamEnv::new(
        Config::default()
            .checkpoint_dir(&chk)
            .restore(RestoreFrom::Latest),
    );
    build(
        &env,
        Kind::Tumbling,
        source(&data, usize::MAX),
        &tmp.path().join("out"),
    );
    let err = env.start().unwrap_err();
    assert!(err.to_string().contains("no checkpoint"), "{err}");
}

#[test]
fn a_corrupted_metadata_file_is_detected_too() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(5_000, 10, 9));
    let (chk, newest, previous) = run_with_checkpoints(tmp.path(), &data);
    damage(&chk, newest, "_metadata", |b| {
        let last = b.len() - 1;
        b[last] ^= 1;
    });
    let handle = restore_latest(&chk, &data, &tmp.path().join("out"));
    assert_eq!(handle.restore_info().id, Some(previous));
    join(handle).unwrap();
}

#[test]
fn a_checkpoint_without_metadata_does_not_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(5_000, 10, 5));
    let (chk, newest, previous) = run_with_checkpoints(tmp.path(), &data);
    std::fs::remove_file(chk.join(format!("chk-{newest:010}")).join("_metadata")).unwrap();
    let handle = restore_latest(&chk, &data, &tmp.path().join("out"));
    assert_eq!(handle.restore_info().id, Some(previous));
    assert!(handle.restore_info().skipped.is_empty());
    join(handle).unwrap();
}

/// A checkpoint restores into a job that gained a stateless operator (at another parallelism
/// too): operators are matched by name, as Flink matches them by uid. The ridehail run spreads
/// lines over the workers only at some parallelisms, and its resume at another one used to be
/// refused for that.
#[test]
fn a_job_with_another_stateless_stage_restores_by_operator_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(5_000, 10, 5));
    let (chk, newest, _) = run_with_checkpoints(tmp.path(), &data);
    let out = tmp.path().join("out");
    let env = StreamEnv::new(
        Config::default()
            .parallelism(1)
            .checkpoint_dir(&chk)
            .restore(RestoreFrom::Latest),
    );
    build(
        &env,
        Kind::TumblingWithStage,
        source(&data, usize::MAX),
        &out,
    );
    let handle = env.start().unwrap();
    assert_eq!(handle.restore_info().id, Some(newest));
    join(handle).unwrap();
    assert_eq!(
        committed(&out),
        reference(Kind::Tumbling, &data, tmp.path()).0
    );
}

#[test]
fn restoring_into_a_different_job_is_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(2_000, 10, 6));
    let (chk, _, _) = run_with_checkpoints(tmp.path(), &data);
    let env = StreamEnv::new(
        Config::default()
            .checkpoint_dir(&chk)
            .restore(RestoreFrom::Latest),
    );
    build(
        &env,
        Kind::Keyed,
        source(&data, usize::MAX),
        &tmp.path().join("o"),
    );
    let err = env.start().unwrap_err();
    assert!(matches!(err, JobError::Checkpoint(_)), "{err}");
    // The tumbling window's state has nowhere to go in a job without it.
    assert!(err.to_string().contains("different job"), "{err}");
    assert!(err.to_string().contains("has state"), "{err}");
}

#[test]
fn periodic_checkpoints_complete_and_keep_only_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(20_000, 20, 8));
    let chk = tmp.path().join("chk");
    let out = tmp.path().join("out");
    let src = source(&data, data.len() / 2);
    let env = StreamEnv::new(
        Config::default()
            .parallelism(2)
            .checkpoint_dir(&chk)
            .checkpoint_every(Duration::from_millis(5))
            .retain_checkpoints(2),
    );
    build(&env, Kind::Tumbling, src.clone(), &out);
    let handle = env.start().unwrap();
    wait_for("five checkpoints", || {
        handle.metrics().checkpoints.completed >= 5
    });
    src.gate.store(usize::MAX, Ordering::Release);
    let metrics = join(handle).unwrap();
    assert!(
        metrics.checkpoints.completed >= 6,
        "{:?}",
        metrics.checkpoints
    );
    let kept: Vec<_> = std::fs::read_dir(&chk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    // The output, committed by the checkpoints and the final one, equals a plain run's.
    assert_eq!(
        committed(&out),
        reference(Kind::Tumbling, &data, tmp.path()).0
    );
    // No in-progress or pending file is left behind.
    let hidden: HashMap<String, ()> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .map(|n| (n, ()))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

/// A checkpoint requested once the job's work is done (but before `join`) is refused at once:
/// it used to wait for a checkpoint that could no longer start, and a caller that would join
/// afterwards waited forever.
#[test]
fn a_checkpoint_requested_after_the_work_is_done_is_refused_not_awaited() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(1_000, 10, 6));
    let env = StreamEnv::new(
        Config::default()
            .parallelism(2)
            .checkpoint_dir(tmp.path().join("chk")),
    );
    build(
        &env,
        Kind::Keyed,
        source(&data, usize::MAX),
        &tmp.path().join("out"),
    );
    let handle = env.start().unwrap();
    wait_for("the workers to finish", || handle.is_finished());
    let control = handle.control();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(control.checkpoint());
    });
    let answer = rx
        .recv_timeout(DEADLINE)
        .expect("checkpoint() returned within the deadline");
    assert!(answer.is_err(), "{answer:?}");
    join(handle).unwrap();
}

/// A job restored from its final checkpoint has nothing to do, and must not write a new
/// checkpoint: one would hold none of the transactions that committed the output, and the
/// next restore of it rolled back the final checkpoint's files (named `cfinal`, not by id) as
/// uncommitted. A finished run resumed twice lost its whole output (found by the ridehail crash
/// soak: a kill after the final checkpoint, then one after the restored run's checkpoint).
#[test]
fn restoring_a_finished_job_again_and_again_keeps_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Arc::new(input(5_000, 20, 8));
    let (chk, out) = (tmp.path().join("chk"), tmp.path().join("out"));
    let env = StreamEnv::new(Config::default().parallelism(2).checkpoint_dir(&chk));
    build(&env, Kind::Tumbling, source(&data, usize::MAX), &out);
    let first = join(env.start().unwrap()).unwrap();
    let expected = committed(&out);
    assert!(expected.len() > 100, "{} results", expected.len());
    let last_id = first.checkpoints.last_id;
    for (round, p) in [(1, 2), (2, 1), (3, 2)] {
        let env = StreamEnv::new(
            Config::default()
                .parallelism(p)
                .checkpoint_dir(&chk)
                .restore(RestoreFrom::Latest),
        );
        build(&env, Kind::Tumbling, source(&data, usize::MAX), &out);
        let handle = env.start().unwrap();
        assert!(handle.restore_info().finished, "round {round}");
        // Refused ("nothing left to do", or "ended" if the job is already over).
        let refused = handle.control().checkpoint();
        assert!(refused.is_err(), "round {round}: {refused:?}");
        let metrics = join(handle).unwrap();
        assert_eq!(committed(&out), expected, "round {round}: output");
        assert_eq!(counts(&metrics), counts(&first), "round {round}: counts");
        assert_eq!(metrics.checkpoints.completed, 0, "round {round}");
        let newest = std::fs::read_dir(&chk)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name();
                sluice_engine::checkpoint::checkpoint_id(name.to_str()?)
            })
            .max();
        assert_eq!(newest, Some(last_id), "round {round}: no new checkpoint");
    }
}

/// Sends odd numbers to a side output and passes the rest.
struct SplitOdd(OutputTag<u64>);

impl ProcessFunction<u64> for SplitOdd {
    type Out = u64;
    fn process(&mut self, v: u64, ctx: &mut ProcessContext<'_, u64>) {
        if v % 2 == 1 {
            ctx.output(&self.0, v);
        } else {
            ctx.emit(v);
        }
    }
}

/// Every kind of operator reports to checkpoints, the stateless ones with their counts only: a
/// job with a map, a filter, a flat_map, a union, a process function with a side output, a
/// key_by, a keyed reduce, a tumbling window and sinks finishes with checkpointing on at two
/// workers (an operator that did not report would fail the final checkpoint), and a job
/// restored from that final checkpoint has nothing left to do and reports the same counts.
#[test]
fn every_kind_of_operator_reports_its_counts_to_the_final_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let chk = tmp.path().join("chk");
    let build = |env: &StreamEnv| {
        let odd = OutputTag::<u64>::new("odd");
        let items: Vec<(i64, u64)> = (0..10_000u64).map(|v| (v as i64, v)).collect();
        let nums = env
            .source(VecSource::with_timestamps(items).splits(4))
            .with_watermarks(Watermarks::bounded_out_of_orderness(Duration::from_millis(
                5,
            )));
        let small = nums.clone().filter(|v| v % 3 != 0).map(|v| v / 2);
        let big = nums.flat_map(|v| [v, v + 1]);
        let tag = odd.clone();
        let split = small.union([big]).process(move || SplitOdd(tag.clone()));
        split.side_output(&odd).sink(CollectSink::new());
        let keyed = split.key_by(|v: &u64| v % 7);
        keyed.clone().reduce(|a, b| a + b).sink(CollectSink::new());
        keyed
            .window(Tumbling::of(Duration::from_millis(100)))
            .count()
            .sink(CollectSink::new());
    };
    let env = StreamEnv::new(Config::default().parallelism(2).checkpoint_dir(&chk));
    build(&env);
    let first = env.execute().unwrap();
    assert!(first.checkpoints.completed >= 1, "{:?}", first.checkpoints);
    let side = first
        .operators
        .iter()
        .map(|o| o.side_output("odd"))
        .sum::<u64>();
    assert!(side > 0, "nothing reached the side output");

    let env = StreamEnv::new(
        Config::default()
            .parallelism(1)
            .checkpoint_dir(&chk)
            .restore(RestoreFrom::Latest),
    );
    build(&env);
    let handle = env.start().unwrap();
    assert!(handle.restore_info().finished);
    let restored = join(handle).unwrap();
    assert_eq!(counts(&restored), counts(&first));
    for o in &restored.operators {
        assert_eq!(
            (o.restored.records_in, o.restored.records_out),
            (o.records_in, o.records_out),
            "{}: everything was restored, nothing processed again",
            o.name
        );
    }
}
