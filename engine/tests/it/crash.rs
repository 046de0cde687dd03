//! The crash test: a real child process runs a keyed, windowed job with a checkpoint every
//! 100 ms, from a file into the exactly-once JSON-lines sink. The test SIGKILLs it at random
//! moments (at least [`KILLS`] times), restarts it each time (alternating parallelism 1 and 2,
//! so restores also rescale) until it finishes, and checks that the committed output equals a
//! failure-free run's exactly (no loss, no duplicate), and so do the finishing run's record
//! counts, which continue from its checkpoint's.
//!
//! The child is this test binary itself, re-run with `SLUICE_CRASH_CHILD` set on the ignored
//! test [`crash_child`]. `scripts/crash-soak.sh` repeats the whole test many times.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_connectors::LinesSource;
use sluice_engine::prelude::*;
use sluice_engine::RestoreFrom;

use super::support::{counts, parity_counting, Counted};

/// How many times the test kills the child, at least.
const KILLS: usize = 20;
/// Input lines.
const LINES: usize = 60_000;

type Line = (u32, i64, i64, i64);

/// The job: lines `ts,key,value` -> timestamps and watermarks -> key_by -> 500 ms tumbling
/// sums -> `(key, start, end, sum)` lines. `slow` makes the job take a few seconds so that
/// kills land everywhere: in processing, in checkpoints, in commits, in restores.
fn build(env: &StreamEnv, input: &Path, out: &Path, slow: bool) {
    let seen = Arc::new(AtomicU64::new(0));
    env.source(LinesSource::files([input]))
        .flat_map(|line: Result<sluice_connectors::Line, sluice_connectors::BadLine>| line.ok())
        .map(|line| {
            let mut it = line
                .split(',')
                .map(|f| f.parse::<i64>().expect("test input"));
            let (ts, key, value) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            (ts, key as u32, value)
        })
        .inspect(move |_| {
            if slow && seen.fetch_add(1, Ordering::Relaxed).is_multiple_of(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .with_watermarks(
            Watermarks::bounded_out_of_orderness(Duration::from_millis(40))
                .timestamps(|r: &(i64, u32, i64)| r.0),
        )
        .key_by(|r: &(i64, u32, i64)| r.1)
        .window(Tumbling::of(Duration::from_millis(500)))
        .aggregate(Sum)
        .map(|r| (r.key, r.window.start, r.window.end, r.value))
        .sink(parity_counting(out));
}

struct Sum;
impl Aggregate<(i64, u32, i64)> for Sum {
    type Acc = i64;
    type Out = i64;
    fn create(&self) -> i64 {
        0
    }
    fn add(&self, acc: &mut i64, v: (i64, u32, i64)) {
        *acc += v.2;
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
    fn finish(&self, acc: &i64) -> i64 {
        *acc
    }
}

/// The child: runs the job with checkpoints, restoring from the latest if there is one.
#[test]
#[ignore = "run by crash_kills_and_restarts_give_exactly_the_failure_free_output"]
fn crash_child() {
    let Ok(dir) = std::env::var("SLUICE_CRASH_CHILD") else {
        return;
    };
    let dir = Path::new(&dir);
    let p: usize = std::env::var("SLUICE_CRASH_PARALLELISM")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2);
    let env = StreamEnv::new(
        Config::default()
            .parallelism(p)
            .batch_size(256)
            .checkpoint_dir(dir.join("chk"))
            .checkpoint_every(Duration::from_millis(100))
            .restore(RestoreFrom::Latest),
    );
    build(&env, &dir.join("input.csv"), &dir.join("out"), true);
    let handle = env.start().expect("child job");
    // Tell the parent what this run restored from.
    let restored = handle.restore_info().id.map_or(0, |id| id);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("restores.log"))
        .unwrap();
    writeln!(log, "{restored}").unwrap();
    drop(log);
    let metrics = handle.join().expect("child job");
    // The run that finishes leaves its counts for the parent to compare.
    std::fs::write(
        dir.join("counts.json"),
        serde_json::to_string(&counts(&metrics)).unwrap(),
    )
    .unwrap();
}

fn write_input(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..LINES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ts = i as i64 * 2 + (x % 30) as i64;
        writeln!(f, "{ts},{},{}", (x >> 8) % 50, (x >> 20) % 1000).unwrap();
    }
}

fn committed(dir: &Path) -> Vec<Line> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        for l in std::fs::read_to_string(e.path()).unwrap().lines() {
            lines.push(serde_json::from_str::<Line>(l).unwrap());
        }
    }
    lines.sort_unstable();
    lines
}

fn spawn_child(dir: &Path, parallelism: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "it::crash::crash_child", "--ignored", "--quiet"])
        .env("SLUICE_CRASH_CHILD", dir)
        .env("SLUICE_CRASH_PARALLELISM", parallelism.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn crash_kills_and_restarts_give_exactly_the_failure_free_output() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_input(&dir.join("input.csv"));

    let reference_out = dir.join("reference");
    let env = StreamEnv::new(Config::default().parallelism(2));
    build(&env, &dir.join("input.csv"), &reference_out, false);
    let expected_counts = counts(&env.execute().unwrap());
    let expected = committed(&reference_out);
    assert!(expected.len() > 1_000, "{} results", expected.len());
    // The sink's own counters are among the counts compared below.
    let sink_counters = &expected_counts.last().unwrap().5;
    assert_eq!(
        sink_counters.iter().map(|(_, n)| n).sum::<u64>(),
        expected.len() as u64,
        "{sink_counters:?}"
    );

    let seed = std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut x = seed | 1;
    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut kills, mut runs) = (0, 0);
    loop {
        assert!(
            Instant::now() < deadline,
            "no completion after {runs} runs, {kills} kills"
        );
        let mut child = spawn_child(dir, 1 + runs % 2);
        runs += 1;
        if kills < KILLS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let after = Duration::from_millis(20 + x % 400);
            let started = Instant::now();
            while started.elapsed() < after {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "child failed on run {runs}: {status}");
        break;
    }
    assert!(kills >= KILLS, "only {kills} kills");
    let restores = std::fs::read_to_string(dir.join("restores.log")).unwrap_or_default();
    let restored: Vec<u64> = restores.lines().map(|l| l.parse().unwrap()).collect();
    let from_checkpoint = restored.iter().filter(|&&id| id > 0).count();
    eprintln!(
        "crash test: {runs} runs, {kills} kills, {from_checkpoint} restores from a checkpoint"
    );
    assert!(
        from_checkpoint >= KILLS / 2,
        "too few runs restored from a checkpoint: {restored:?}"
    );
    let got = committed(&dir.join("out"));
    assert_eq!(
        got.len(),
        expected.len(),
        "after {kills} kills: duplicates or loss"
    );
    assert_eq!(got, expected, "after {kills} kills: output differs");
    // So are the counts: the finishing run's metrics continue from its checkpoint's.
    let got_counts: Counted =
        serde_json::from_str(&std::fs::read_to_string(dir.join("counts.json")).unwrap()).unwrap();
    assert_eq!(got_counts, expected_counts, "after {kills} kills: counts");
}
