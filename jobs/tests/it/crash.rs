//! The crash test applied to the `ridehail` binary: `ridehail run` with frequent checkpoints
//! is SIGKILLed at random moments (at least [`KILLS`] times) and started again with `--resume`
//! each time, until a run finishes; then every output directory's committed lines must equal
//! those of a failure-free run exactly: no loss, no duplicate, and no hidden (uncommitted) file
//! may be left. The kill moments and the checkpoint interval are scaled to how long the
//! failure-free run took (a tenth of it between checkpoints, kills anywhere up to a little
//! past its end), so the test kills mid-run and resumes from checkpoints on a slow machine, a
//! fast one, or a release build alike.
//!
//! Should a run finish before the test has killed enough, the test checks that output and starts
//! over (fresh output and checkpoint directories), so kills land everywhere, the final
//! checkpoint included, however fast the machine.
//!
//! The input is generated with faults (duplicates, malformed lines, out-of-order and late
//! events) and crosses an hour boundary, so dead letters, duplicates, the late outputs and a
//! backup hour closed and reopened by late events are compared too. Every output but `summary`
//! (per run by design: it counts what that run processed) is compared, the backup by hour
//! directory. Both runs use one worker: at two, an operator behind a second exchange (surge,
//! after dedup) merges channels from both workers, and whether an event minutes late is behind
//! their combined watermark could depend on how far one worker's channel lags the other's,
//! that is on thread timing rather than on the input.
//!
//! Two more tests do the same at two workers, without injected faults, so that nothing is late
//! and the output is a function of the input alone: to the default input (the generator), and
//! to a file, which two workers read in two stripes.
//!
//! `RIDEHAIL_CRASH_SEED` changes the kill moments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::fixtures::{refused, ridehail};

/// How many times the file test kills `ridehail run`, at least.
const KILLS: usize = 20;

/// How many times the generated test kills `ridehail run`, at least.
const KILLS_GENERATED: usize = 10;

fn temp_dir(name: &str) -> super::fixtures::TempDir {
    super::fixtures::temp_dir("crash", name)
}

fn check(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every committed line under `dir`, by path relative to it (the file name dropped: files are
/// named per worker, run and checkpoint), counted.
type Lines = BTreeMap<(String, String), usize>;

/// The committed output: per output subdirectory (all but `summary`), its lines. Hidden files
/// (in progress, pending) are skipped and counted apart.
fn committed(out: &Path) -> (BTreeMap<String, Lines>, Vec<PathBuf>) {
    fn walk(root: &Path, dir: &Path, lines: &mut Lines, hidden: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(root, &path, lines, hidden);
                continue;
            }
            if e.file_name().to_string_lossy().starts_with('.') {
                hidden.push(path);
                continue;
            }
            let rel = dir.strip_prefix(root).unwrap().display().to_string();
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                *lines.entry((rel.clone(), line.to_string())).or_default() += 1;
            }
        }
    }
    let mut all = BTreeMap::new();
    let mut hidden = Vec::new();
    for e in std::fs::read_dir(out).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        // `summary` is per run; `.checkpoints` (the default checkpoint directory) is not output.
        if name == "summary" || name.starts_with('.') || !e.file_type().unwrap().is_dir() {
            continue;
        }
        let mut lines = Lines::new();
        walk(&e.path(), &e.path(), &mut lines, &mut hidden);
        all.insert(name, lines);
    }
    (all, hidden)
}

fn total(lines: &Lines) -> usize {
    lines.values().sum()
}

/// Checks that the committed output under `out` is exactly `expected`, with nothing left
/// uncommitted.
fn compare(out: &Path, expected: &BTreeMap<String, Lines>, kills: usize) {
    let (got, hidden) = committed(out);
    assert!(
        hidden.is_empty(),
        "uncommitted files left after the last run: {hidden:?}"
    );
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, want) in expected {
        let have = &got[name];
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, n)| have.get(*k).copied().unwrap_or(0) < **n)
            .take(3)
            .collect();
        let extra: Vec<_> = have
            .iter()
            .filter(|(k, n)| want.get(*k).copied().unwrap_or(0) < **n)
            .take(3)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name} after {kills} kills: {} lines, {} expected; missing (first 3) {missing:?}, \
             extra (first 3) {extra:?}",
            total(have),
            total(want),
        );
    }
}

#[test]
fn killed_and_resumed_runs_give_exactly_the_failure_free_output() {
    let started = Instant::now();
    let dir = temp_dir("kill");
    let input = dir.join("input.jsonl");
    let generated = ridehail()
        .args([
            "generate",
            "--seed",
            "11",
            // Across an hour boundary: the backup closes an hour, and late events reopen it.
            "--start",
            "2026-01-05T07:54:00Z",
            "--duration",
            "12m",
            "--faults",
            "typical",
            "--out",
        ])
        .arg(&input)
        .output()
        .unwrap();
    check(&generated, "ridehail generate");

    let run = |out: &Path| {
        let mut c = ridehail();
        c.args(["run", "--quiet", "--parallelism", "1", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(out);
        c
    };
    let (expected, span) = reference_run(&run, &dir);
    for (name, lines) in &expected {
        let n = total(lines);
        let floor = if name == "shifts-late" { 0 } else { 10 };
        assert!(
            n >= floor,
            "the reference run wrote only {n} lines to {name}"
        );
    }
    assert_eq!(expected.len(), 12, "{:?}", expected.keys());
    let hours: std::collections::BTreeSet<_> = expected["backup"].keys().map(|k| &k.0).collect();
    assert_eq!(hours.len(), 2, "{hours:?}");

    let crashes = kill_and_resume(&run, &dir, span, &expected, KILLS);
    // The summary of the last run counts the whole input; the run itself read only its part.
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("out/summary/summary.json")).unwrap(),
    )
    .unwrap();
    let lines = std::fs::read_to_string(&input).unwrap().lines().count();
    assert_eq!(summary["events_in"], lines, "{summary}");
    assert!(summary["dead_letters"].as_u64().unwrap() > 0, "{summary}");
    eprintln!(
        "ridehail crash test (file, one worker): {crashes}, the last run read {} of {lines} \
         lines; {:.1} s",
        summary["events_this_run"],
        started.elapsed().as_secs_f64()
    );
}

/// The default input (the generator, one split per worker) at two workers, killed and resumed
/// ([`KILLS_GENERATED`] times at least), gives exactly the output of a run without failures.
/// No faults are injected: at two workers an injected late event may land on either side of a
/// watermark (see the module docs). A restored generator used to stall until its idle timeout
/// and then run as idle, which changed trip summaries, surge and live state; this test and the
/// pause test guard that.
#[test]
fn killed_and_resumed_generated_runs_at_two_workers_give_exactly_the_failure_free_output() {
    let dir = temp_dir("kill-generated");
    kill_two_workers(&dir, "generated", &["--seed", "5", "--events", "40000"]);
}

/// A file at two workers, read in two stripes (one per worker), killed and resumed: the
/// stripes' positions and watermarks restore as the generator's splits do.
#[test]
fn killed_and_resumed_file_runs_at_two_workers_give_exactly_the_failure_free_output() {
    let dir = temp_dir("kill-file-stripes");
    let input = dir.join("input.jsonl");
    let generated = ridehail()
        .args(["generate", "--seed", "6", "--events", "40000", "--out"])
        .arg(&input)
        .output()
        .unwrap();
    check(&generated, "ridehail generate");
    let input = input.display().to_string();
    kill_two_workers(&dir, "file in two stripes", &["--input", &input]);
}

/// The crash test of `ridehail run --parallelism 2 ARGS`, with [`KILLS_GENERATED`] kills.
fn kill_two_workers(dir: &Path, what: &str, args: &[&str]) {
    let started = Instant::now();
    let run = |out: &Path| {
        let mut c = ridehail();
        c.args(["run", "--quiet", "--parallelism", "2"])
            .args(args)
            .arg("--out")
            .arg(out);
        c
    };
    let (expected, span) = reference_run(&run, dir);
    for name in [
        "backup",
        "surge",
        "trips",
        "shifts",
        "live-drivers",
        "live-zones",
    ] {
        let n = expected.get(name).map_or(0, total);
        assert!(n >= 10, "the reference run wrote only {n} lines to {name}");
    }
    let crashes = kill_and_resume(&run, dir, span, &expected, KILLS_GENERATED);
    eprintln!(
        "ridehail crash test ({what}, two workers): {crashes}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs `run` once without failures into `dir/reference`; returns its committed output and how
/// long it took (ms).
fn reference_run(
    run: &dyn Fn(&Path) -> std::process::Command,
    dir: &Path,
) -> (BTreeMap<String, Lines>, u64) {
    let reference = dir.join("reference");
    let timer = Instant::now();
    check(&run(&reference).output().unwrap(), "the reference run");
    let span = timer.elapsed().as_millis().max(20) as u64;
    let (expected, hidden) = committed(&reference);
    assert!(hidden.is_empty(), "{hidden:?}");
    (expected, span)
}

/// The counts of a run's summary (`out/summary/summary.json`): everything but this run's own
/// wall time, speed, share of the input and checkpoint ids.
fn summary_counts(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary/summary.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let o = v.as_object_mut().unwrap();
    for own in [
        "wall_secs",
        "events_per_sec",
        "events_this_run",
        "resumed_from",
        "paused_at",
    ] {
        assert!(o.remove(own).is_some(), "no `{own}` in {text}");
    }
    v
}

/// A [`Report`](sluice_jobs::ridehail::Report)'s counts, as [`summary_counts`] takes them.
fn report_counts(r: &sluice_jobs::ridehail::Report) -> serde_json::Value {
    let mut r = r.clone();
    (r.wall_secs, r.events_per_sec, r.events_this_run) = (0.0, 0.0, 0);
    (r.resumed_from, r.paused_at) = (None, None);
    serde_json::to_value(r).unwrap()
}

/// What [`kill_and_resume`] did.
struct Crashes {
    runs: usize,
    kills: usize,
    restored: usize,
    cycles: Vec<usize>,
    checkpoint_every: String,
    span: u64,
}

impl std::fmt::Display for Crashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} runs, {} kills (per cycle: {:?}), {} resumed from a checkpoint (longest \
             finished run: {} ms, checkpoints every {})",
            self.runs, self.kills, self.cycles, self.restored, self.span, self.checkpoint_every
        )
    }
}

/// Runs `run` (a `ridehail run` writing to the directory it is given) with checkpoints and
/// `--resume`, SIGKILLs it at random moments until it has been killed `wanted` times and at
/// least `wanted / 2` runs have resumed from a checkpoint, and checks after each cycle (runs
/// until one finishes) that the committed output under `dir/out` is exactly `expected`. Kill
/// moments and the checkpoint interval scale with `span`, the failure-free run's duration (see
/// the module docs); kill moments also follow the longest run that finished since, so that a
/// machine slowed down by other tests still kills after checkpoints, not only before the first.
fn kill_and_resume(
    run: &dyn Fn(&Path) -> std::process::Command,
    dir: &Path,
    mut span: u64,
    expected: &BTreeMap<String, Lines>,
    wanted: usize,
) -> Crashes {
    let checkpoint_every = format!("{}ms", (span / 10).max(2));
    let out = dir.join("out");
    let checkpoints = dir.join("checkpoints");
    let seed = std::env::var("RIDEHAIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let deadline = Instant::now() + Duration::from_secs(180);
    let (mut kills, mut runs, mut restored) = (0, 0, 0);
    // Kills per cycle. A cycle: runs with --resume, killed at random moments, until one
    // finishes; then the output is checked. Should a run finish before the test has killed
    // enough, it starts over with another cycle (a fresh output and checkpoint directory), so
    // the kill count cannot fall short however fast the machine.
    let mut cycles: Vec<usize> = Vec::new();
    let enough = |kills: usize, restored: usize| kills >= wanted && restored >= wanted / 2;
    while !enough(kills, restored) {
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_dir_all(&checkpoints);
        let (mut cycle_runs, mut cycle_kills) = (0, 0);
        let last = loop {
            assert!(
                Instant::now() < deadline,
                "not done after {runs} runs: {kills} kills, {restored} resumed from a checkpoint"
            );
            let log = dir.join(format!("run-{runs}.stderr"));
            let mut child = run(&out)
                .arg("--checkpoint-dir")
                .arg(&checkpoints)
                .args(["--checkpoint-every", &checkpoint_every, "--resume"])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let began = Instant::now();
            runs += 1;
            cycle_runs += 1;
            let mut killed = false;
            if !enough(kills, restored) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Kills land anywhere: in start-up and restore, processing, checkpoints,
                // commits, the final checkpoint.
                let after = Duration::from_millis(span / 20 + x % (span + span / 10));
                let t = Instant::now();
                while t.elapsed() < after && child.try_wait().unwrap().is_none() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap(); // SIGKILL
                    kills += 1;
                    cycle_kills += 1;
                    killed = true;
                }
            }
            let status = child.wait().unwrap();
            let stderr = std::fs::read_to_string(&log).unwrap();
            if stderr.contains("resuming from checkpoint") {
                restored += 1;
            }
            if !killed {
                assert!(status.success(), "run {runs} failed: {status}\n{stderr}");
                span = span.max(began.elapsed().as_millis() as u64);
                break stderr;
            }
        };
        // The last run resumed, or there was nothing to resume: every earlier run of the cycle
        // was killed before its first checkpoint completed (it then starts from the beginning,
        // over what the killed runs left behind).
        assert!(
            last.contains("resuming from checkpoint")
                || last.contains("no checkpoint in")
                || cycle_runs == 1,
            "the last run neither resumed nor found nothing to resume: {last}"
        );
        compare(&out, expected, cycle_kills);
        // The counts are exactly-once too: the last run's summary counts the whole input, as
        // the failure-free run's does.
        assert_eq!(
            summary_counts(&out),
            summary_counts(&dir.join("reference")),
            "summary after {cycle_kills} kills"
        );
        cycles.push(cycle_kills);
    }
    Crashes {
        runs,
        kills,
        restored,
        cycles,
        checkpoint_every,
        span,
    }
}

#[test]
fn resume_needs_checkpoints_and_the_same_run() {
    let dir = temp_dir("resume-errors");
    refused(
        ridehail()
            .args(["run", "--duration", "1m", "--quiet", "--resume"])
            .args(["--no-checkpoints", "--out"])
            .arg(dir.join("out")),
        "--no-checkpoints",
    );
    assert!(
        !dir.join("out").exists(),
        "nothing is written on a usage error"
    );
    refused(
        ridehail()
            .args(["run", "--duration", "1m", "--checkpoint-every", "1s"])
            .args(["--no-checkpoints", "--out"])
            .arg(dir.join("out")),
        "cannot be used with",
    );
    refused(
        ridehail()
            .args(["run", "--input", "-", "--resume", "--checkpoint-dir"])
            .arg(dir.join("chk"))
            .stdin(Stdio::null()),
        "standard input",
    );

    // A finished run with checkpoints, then resumes of it: into another directory, with other
    // jobs, from checkpoints of an older state layout; and as it was.
    let run = |out: &str, resume: bool, extra: &[&str]| {
        let mut c = ridehail();
        c.args(["run", "--duration", "2m", "--quiet", "--out"])
            .arg(dir.join(out))
            .args(resume.then_some("--resume"))
            .args(extra)
            .arg("--checkpoint-dir")
            .arg(dir.join("chk"));
        c
    };
    check(
        &run("a", false, &[]).output().unwrap(),
        "a run with checkpoints",
    );
    refused(&mut run("b", true, &[]), "another output directory");
    refused(
        &mut run("a", true, &["--jobs", "surge"]),
        "another set of jobs",
    );
    // Checkpoints of a build whose state had another layout (keys hashed otherwise).
    let marker = dir.join("chk").join("ridehail-run.json");
    let current = std::fs::read(&marker).unwrap();
    let mut older: serde_json::Value = serde_json::from_slice(&current).unwrap();
    older.as_object_mut().unwrap().remove("state");
    std::fs::write(&marker, older.to_string()).unwrap();
    refused(&mut run("a", true, &[]), "another state layout");
    std::fs::write(&marker, current).unwrap();

    // Resuming the finished run changes nothing and says where it resumed from.
    let (before, _) = committed(&dir.join("a"));
    let r = run("a", true, &[]).output().unwrap();
    check(&r, "resuming a finished run");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("resuming from checkpoint"), "{err}");
    assert!(
        String::from_utf8_lossy(&r.stdout).contains("resumed from checkpoint"),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let (after, hidden) = committed(&dir.join("a"));
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(before, after);
}

/// Runs `cfg` to the end, pausing it ([`Interrupt`](sluice_jobs::ridehail::Interrupt)) once
/// its `events_in` (which a resumed run continues) passes each of `pauses` and resuming it after
/// each, the `i`-th part at `parallelism[i]` (the last one for the parts after); returns how
/// many pauses took effect, and the report of the last part.
fn run_with_pauses(
    cfg: &sluice_jobs::ridehail::RunConfig,
    pauses: &[u64],
    parallelism: &[usize],
) -> (usize, sluice_jobs::ridehail::Report) {
    use sluice_jobs::ridehail;
    let mut cfg = cfg.clone();
    // Part `i` starts after `i` pauses.
    for (i, &at) in pauses.iter().chain([&u64::MAX]).enumerate() {
        cfg.resume = i > 0;
        cfg.parallelism = parallelism[i.min(parallelism.len() - 1)];
        let running = ridehail::start(&cfg).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !running.handle().is_finished() && running.events_in() < at {
            assert!(Instant::now() < deadline, "the run did not progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        let interrupt = running.interrupt();
        let took = at != u64::MAX && interrupt.interrupt().is_ok();
        let report = running.finish().unwrap();
        assert_eq!(report.paused_at.is_some(), took, "{report:?}");
        if !took {
            return (i, report);
        }
    }
    unreachable!("the last part runs to the end")
}

/// The generator as input (the default run), paused and resumed three times, gives exactly the
/// output of a run without pauses: at one worker with injected faults, at two without (at two,
/// injected late events may land on either side of a watermark, see the module docs). A
/// restored generator used to wait for the idle timeout (watermark alignment with nothing
/// published yet) and then run as idle, so that trip summaries, surge and live state after the
/// pause differed.
#[test]
fn generated_runs_paused_and_resumed_give_exactly_the_uninterrupted_output() {
    use sluice_jobs::generator::{Faults, GeneratorConfig};
    use sluice_jobs::ridehail::{Input, RunConfig};
    for (parallelism, faults) in [(1, Faults::typical()), (2, Faults::none())] {
        let dir = temp_dir(&format!("pause-{parallelism}"));
        let lines = 60_000;
        let mut cfg = RunConfig::new(Input::Generator(GeneratorConfig {
            duration: None,
            max_lines: Some(lines),
            faults,
            ..GeneratorConfig::default()
        }));
        cfg.parallelism = parallelism;
        cfg.out = dir.join("reference");
        let reference = sluice_jobs::ridehail::run(&cfg).unwrap();
        let (expected, _) = committed(&cfg.out);
        cfg.out = dir.join("paused");
        cfg.checkpoint_dir = Some(dir.join("checkpoints"));
        let (paused, last) =
            run_with_pauses(&cfg, &[lines / 5, lines / 2, lines * 4 / 5], &[parallelism]);
        assert!(paused >= 1, "no pause took effect");
        compare(&cfg.out, &expected, paused);
        assert_eq!(report_counts(&last), report_counts(&reference));
        assert!(last.events_this_run < last.events_in, "{last:?}");
    }
}

/// A run paused at two workers resumes at one and then at four with the output of an
/// uninterrupted run at two, on generated input and on a file. The generator makes one
/// sub-city per worker by default, so its input depends on the parallelism of the run's start:
/// a resume keeps the recorded number of sub-cities (it used to refuse the resume as "another
/// input"). A file read at fewer workers than it is parsed on is spread over them by a stage
/// that exists only then: the engine matches operators by name (it used to refuse the
/// checkpoint as "a different job").
#[test]
fn runs_resume_at_another_parallelism() {
    use sluice_jobs::generator::{CityGenerator, GeneratorConfig};
    use sluice_jobs::ridehail::{Input, RunConfig};
    let dir = temp_dir("rescale");
    let lines = 60_000;
    let generator = GeneratorConfig {
        duration: None,
        max_lines: Some(lines),
        ..GeneratorConfig::default()
    };
    let file = dir.join("input.jsonl");
    let text: String = CityGenerator::new(generator)
        .unwrap()
        .lines()
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    for (name, input) in [
        ("generated", Input::Generator(generator)),
        ("file", Input::Files(vec![file.clone()])),
    ] {
        let mut cfg = RunConfig::new(input);
        cfg.out = dir.join(format!("{name}-reference"));
        let reference = sluice_jobs::ridehail::run(&cfg).unwrap();
        let (expected, _) = committed(&cfg.out);
        cfg.out = dir.join(format!("{name}-rescaled"));
        let checkpoints = dir.join(format!("{name}-checkpoints"));
        cfg.checkpoint_dir = Some(checkpoints.clone());
        let (paused, last) = run_with_pauses(&cfg, &[lines / 3, lines * 2 / 3], &[2, 1, 4]);
        assert_eq!(paused, 2, "{name}: both pauses should take effect");
        compare(&cfg.out, &expected, paused);
        // Counts restored at another parallelism add up to the uninterrupted run's too.
        assert_eq!(report_counts(&last), report_counts(&reference), "{name}");
        // Sub-cities or stripes, one per worker of the first run.
        let marker = std::fs::read_to_string(checkpoints.join("ridehail-run.json")).unwrap();
        assert!(marker.contains("\"splits\": 2"), "{name}: {marker}");
    }
}
