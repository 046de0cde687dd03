//! Snapshot and restore time for a large keyed state, printing one line per figure.
//!
//! ```sh
//! cargo bench --bench checkpoint                 # 1,000,000 keys, 3 rounds, p = 1 and 2
//! cargo bench --bench checkpoint -- 2000000 5    # KEYS ROUNDS
//! ```
//!
//! The job: a gated source emits one record for each of `KEYS` distinct keys, then holds its
//! input open (`Pending`); `key_by` feeds a keyed process function that keeps a
//! `ValueState<u64>` per key (a running sum) and emits nothing. Once every key has state:
//!
//! - **snapshot**: the wall time of `JobHandle::savepoint()` (trigger, barrier, every instance
//!   serialising its key groups, the coordinator writing and fsyncing the files), the
//!   coordinator's own `checkpoints.last_duration`, and `last_bytes`;
//! - the job is cancelled, and a new one started with `restore(RestoreFrom::Path(savepoint))`;
//! - **restore**: the time from just before `env.start()` until it returns (finding, reading,
//!   checksumming and decoding the savepoint) and until every worker has built its operators
//!   (keyed state is restored when a worker builds its keyed operator, before its source opens
//!   its splits: the bench records the time of the last `open`);
//! - the gate then opens with nothing left to read, so the restored job finishes; its final
//!   checkpoint (taken as it ends) must be as big as the savepoint, which checks that the state
//!   came back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice::prelude::*;
use sluice::{BoxError, JobHandle, RestoreFrom};

/// A bijection on `u64` (the splitmix64 finaliser), so keys are distinct and spread.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Emits `(mix(i), i)` for `i` in `0..n`, split `s` of `splits` taking `i = s, s + splits, ...`;
/// then returns `Pending` until `open` is set, and `Finished` after. The position of a split is
/// the number of its records emitted. Records the time of every split `open` in `opened`.
#[derive(Clone)]
struct GatedSource {
    n: u64,
    splits: usize,
    open: Arc<AtomicBool>,
    opened: Arc<Mutex<Vec<Instant>>>,
}

impl GatedSource {
    fn new(n: u64, splits: usize) -> GatedSource {
        GatedSource {
            n,
            splits,
            open: Arc::new(AtomicBool::new(false)),
            opened: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The time of the last split `open`, once `count` splits have opened.
    fn all_opened(&self, count: usize) -> Option<Instant> {
        let opened = self.opened.lock().expect("opened");
        (opened.len() >= count).then(|| *opened.iter().max().expect("non-empty"))
    }
}

struct GatedReader {
    src: GatedSource,
    split: u64,
    pos: u64,
}

impl Source<(u64, u64)> for GatedSource {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok((0..self.splits)
            .map(|i| Split::new(format!("gated-{i}"), i))
            .collect())
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<(u64, u64)>>, BoxError> {
        self.opened.lock().expect("opened").push(Instant::now());
        Ok(Box::new(GatedReader {
            src: self.clone(),
            split: split.index as u64,
            pos: position.unwrap_or(0),
        }))
    }
}

impl SplitReader<(u64, u64)> for GatedReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, (u64, u64)>) -> Result<SourceStatus, BoxError> {
        let stride = self.src.splits as u64;
        loop {
            let i = self.pos * stride + self.split;
            if i >= self.src.n {
                return Ok(if self.src.open.load(Ordering::Acquire) {
                    SourceStatus::Finished
                } else {
                    SourceStatus::Pending
                });
            }
            if out.is_full() {
                return Ok(SourceStatus::More);
            }
            out.push((mix(i), i));
            self.pos += 1;
        }
    }

    fn position(&self) -> u64 {
        self.pos
    }
}

/// A running sum per key in a `ValueState<u64>`; emits nothing.
struct RunningSum {
    sum: ValueState<u64>,
}

impl KeyedProcessFunction<u64, (u64, u64)> for RunningSum {
    type Out = u64;
    fn process(&mut self, key: &u64, v: (u64, u64), ctx: &mut Context<'_, u64, u64>) {
        *ctx.value(self.sum).get_or_insert_with(key, || 0) += v.1;
    }
}

/// Discards everything.
struct Discard;

impl Sink<u64> for Discard {
    fn open(&self, _cx: &SinkContext) -> Result<Box<dyn SinkWriter<u64>>, BoxError> {
        Ok(Box::new(Discard))
    }
}

impl SinkWriter<u64> for Discard {
    fn write(&mut self, batch: &mut Vec<Record<u64>>) -> Result<(), BoxError> {
        batch.clear();
        Ok(())
    }
}

fn start(config: Config, src: &GatedSource) -> (JobHandle, Duration) {
    let env = StreamEnv::new(config);
    env.source(src.clone())
        .key_by(|r: &(u64, u64)| r.0)
        .process(|reg| RunningSum {
            sum: reg.value("sum"),
        })
        .sink(Discard);
    let t = Instant::now();
    let handle = env.start().expect("the job starts");
    (handle, t.elapsed())
}

fn state_keys(handle: &JobHandle) -> u64 {
    handle
        .metrics()
        .operators
        .iter()
        .map(|o| o.state_keys)
        .sum()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("sluice-bench-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One round at parallelism `p`: load, snapshot, cancel, restore, finish.
fn round(keys: u64, p: usize) {
    let tmp = TempDir::new("checkpoint");
    let config = || Config::default().parallelism(p).checkpoint_dir(&tmp.0);

    // Load every key, with the source held open afterwards.
    let src = GatedSource::new(keys, p);
    let t = Instant::now();
    let (handle, _) = start(config(), &src);
    wait_for("every key to have state", || state_keys(&handle) >= keys);
    let load = t.elapsed();
    println!(
        "load     {keys} keys p={p}: {:.3} s ({:.1} M records/s)",
        load.as_secs_f64(),
        keys as f64 / load.as_secs_f64() / 1e6
    );

    // Snapshot.
    let t = Instant::now();
    let savepoint = handle.savepoint().expect("the savepoint completes");
    let wall = t.elapsed();
    let c = handle.metrics().checkpoints;
    println!(
        "snapshot {keys} keys p={p}: {:.3} s ({:.1} MB; coordinator last_duration {:.3} s; {:.1} MB on disk)",
        wall.as_secs_f64(),
        mb(c.last_bytes),
        c.last_duration.as_secs_f64(),
        mb(dir_bytes(&savepoint)),
    );
    handle.cancel();
    assert!(matches!(handle.join(), Err(JobError::Cancelled)));

    // Restore at the same parallelism, with nothing left to read.
    let src = GatedSource::new(keys, p);
    let t = Instant::now();
    let (handle, started) = start(config().restore(RestoreFrom::Path(savepoint.clone())), &src);
    assert_eq!(
        handle.restore_info().restored.as_deref(),
        Some(&*savepoint),
        "restored from the savepoint"
    );
    let mut ready = None;
    wait_for("every worker to build its operators", || {
        ready = src.all_opened(p);
        ready.is_some()
    });
    let ready = ready.expect("ready") - t;
    println!(
        "restore  {keys} keys p={p}: {:.3} s (start() returned after {:.3} s)",
        ready.as_secs_f64(),
        started.as_secs_f64(),
    );

    // Finish: the final checkpoint holds the restored state.
    src.open.store(true, Ordering::Release);
    let t = Instant::now();
    let metrics = handle.join().expect("the restored job finishes");
    let c = &metrics.checkpoints;
    assert!(c.restored_id.is_some());
    println!(
        "finish   {keys} keys p={p}: {:.3} s (final checkpoint {:.1} MB in {:.3} s)",
        t.elapsed().as_secs_f64(),
        mb(c.last_bytes),
        c.last_duration.as_secs_f64(),
    );
    let saved = dir_bytes(&savepoint);
    let final_dir = std::fs::read_dir(&tmp.0)
        .expect("checkpoint directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chk-"))
        })
        .max()
        .expect("a final checkpoint");
    let restored = dir_bytes(&final_dir);
    assert!(
        restored.abs_diff(saved) < saved / 100 + 1024,
        "the restored job's final checkpoint ({restored} bytes) should hold the savepoint's \
         state ({saved} bytes)"
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let keys: u64 = args
        .first()
        .map(|s| s.replace('_', "").parse().expect("KEYS must be a number"))
        .unwrap_or(1_000_000);
    let rounds: usize = args
        .get(1)
        .map(|s| s.parse().expect("ROUNDS must be a number"))
        .unwrap_or(3);
    for p in [1, 2] {
        for _ in 0..rounds {
            round(keys, p);
        }
    }
}
