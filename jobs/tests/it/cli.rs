//! The `ridehail` binary end to end: the default run, `generate | run --input -`, Ctrl-C, and
//! the errors a user meets first (bad flags, unreadable input, unwritable output).

use std::path::Path;
use std::process::Stdio;

use super::fixtures::{refused, ridehail};

fn temp_dir(name: &str) -> super::fixtures::TempDir {
    super::fixtures::temp_dir("cli", name)
}

fn summary(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary/summary.json")).expect("summary.json");
    serde_json::from_str(&text).expect("summary is JSON")
}

/// Lines in every file under `dir`, committed or not.
fn count_lines(dir: &Path) -> u64 {
    let (committed, hidden) = committed(dir);
    committed + hidden.iter().map(|p| lines_in(p)).sum::<u64>()
}

fn lines_in(file: &Path) -> u64 {
    std::fs::read_to_string(file).unwrap().lines().count() as u64
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("summary has no {k}: {v}"))
}

#[test]
fn default_run_writes_every_output_and_counts_add_up() {
    let dir = temp_dir("default");
    let out = dir.join("out");
    let status = ridehail()
        .args(["run", "--duration", "10m", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("events in"), "{stdout}");
    let s = summary(&out);
    assert!(u(&s, "events_in") > 1_000);
    assert_eq!(u(&s, "events_in"), u(&s, "valid") + u(&s, "dead_letters"));
    assert_eq!(u(&s, "valid"), u(&s, "unique") + u(&s, "duplicates"));
    assert_eq!(
        u(&s, "dead_letters"),
        0,
        "the default generator injects no faults"
    );
    // What the summary says was written is what the files hold.
    assert_eq!(count_lines(&out.join("backup")), u(&s, "unique"));
    assert_eq!(count_lines(&out.join("surge")), u(&s, "surge_windows"));
    assert_eq!(count_lines(&out.join("trips")), u(&s, "trips_summarised"));
    assert_eq!(count_lines(&out.join("shifts")), u(&s, "shifts"));
    assert!(u(&s, "surge_windows") > 0 && u(&s, "trips_summarised") > 0);
    // The backup is laid out by event hour.
    let hours = std::fs::read_dir(out.join("backup/year=2026/month=01/day=05"))
        .expect("hourly layout")
        .count();
    assert!(hours >= 1);
}

/// `--jobs` runs ingest plus the jobs named: their output and counts are those of a full run,
/// and the others write nothing.
#[test]
fn jobs_flag_runs_only_the_jobs_named() {
    let dir = temp_dir("jobs");
    let run = |out: &Path, jobs: Option<&str>| {
        let mut cmd = ridehail();
        cmd.args([
            "run",
            "--duration",
            "10m",
            "--quiet",
            "--no-checkpoints",
            "--out",
        ])
        .arg(out);
        if let Some(j) = jobs {
            cmd.args(["--jobs", j]);
        }
        let r = cmd.output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    let (all, some) = (dir.join("all"), dir.join("some"));
    run(&all, None);
    let stdout = run(&some, Some("surge,shifts"));
    assert!(
        stdout.contains("jobs: ingest, surge, shifts (only)"),
        "{stdout}"
    );
    let (a, s) = (summary(&all), summary(&some));
    for k in ["events_in", "valid", "unique", "surge_windows", "shifts"] {
        assert_eq!(u(&a, k), u(&s, k), "{k}");
    }
    assert_eq!(count_lines(&some.join("surge")), u(&a, "surge_windows"));
    assert_eq!(u(&s, "trips_summarised"), 0);
    assert_eq!(u(&s, "live_snapshots"), 0);
    for skipped in ["backup", "trips", "live-drivers"] {
        assert_eq!(count_lines(&some.join(skipped)), 0, "{skipped}");
    }
    refused(
        ridehail().args(["run", "--jobs", "surge,bogus"]),
        "possible values",
    );
}

#[test]
fn generate_piped_into_run_counts_every_line_once() {
    let dir = temp_dir("pipe");
    let out = dir.join("out");
    let mut generate = ridehail()
        .args([
            "generate",
            "--duration",
            "10m",
            "--faults",
            "typical",
            "--seed",
            "7",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines_out = generate.stdout.take().unwrap();
    let run = ridehail()
        .args(["run", "--input", "-", "--quiet", "--out"])
        .arg(&out)
        .stdin(lines_out)
        .output()
        .unwrap();
    assert!(generate.wait().unwrap().success());
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let s = summary(&out);
    // Count the generated lines independently.
    let generated = ridehail()
        .args([
            "generate",
            "--duration",
            "10m",
            "--faults",
            "typical",
            "--seed",
            "7",
        ])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&generated.stdout).lines().count() as u64;
    assert_eq!(u(&s, "events_in"), lines);
    assert_eq!(u(&s, "events_in"), u(&s, "valid") + u(&s, "dead_letters"));
    assert_eq!(u(&s, "valid"), u(&s, "unique") + u(&s, "duplicates"));
    assert!(
        u(&s, "dead_letters") > 0,
        "typical faults include malformed lines"
    );
    assert!(u(&s, "duplicates") > 0, "typical faults include duplicates");
    assert_eq!(
        count_lines(&out.join("dead-letters")),
        u(&s, "dead_letters")
    );
    assert_eq!(count_lines(&out.join("duplicates")), u(&s, "duplicates"));
    // Each dead letter points at its line: standard input, at the byte offset of the line.
    for d in read_lines(&out.join("dead-letters")) {
        let d: serde_json::Value = serde_json::from_str(&d).unwrap();
        assert_eq!(d["source"], "-", "{d}");
        let at = &generated.stdout[d["offset"].as_u64().expect("an offset") as usize..];
        let line = d["line"].as_str().unwrap();
        let text = String::from_utf8_lossy(&at[..at.len().min(line.len())]);
        assert!(text.starts_with(line), "{d}");
    }
}

/// Every line of the files under `dir`.
fn read_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        lines.extend(
            std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    lines
}

#[test]
fn bad_flags_unreadable_input_and_unwritable_output_fail_clearly() {
    let dir = temp_dir("errors");
    refused(
        ridehail().args(["run", "--parallelism", "0"]),
        "parallelism",
    );
    // More workers than key groups: refused by the flag's own check, naming the limit.
    refused(
        ridehail().args(["run", "--parallelism", "129"]),
        "must be at most 128",
    );
    refused(ridehail().args(["run", "--no-such-flag"]), "--no-such-flag");
    for (flag, value) in [
        ("--h3-resolution", "16"),
        ("--snapshot-every", "0s"),
        ("--trip-timeout", "0ms"),
        ("--shift-gap", "0m"),
        ("--checkpoint-every", "0s"),
        ("--max-line-bytes", "0"),
        ("--drivers", "0"),
    ] {
        refused(ridehail().args(["run", flag, value]), flag);
    }
    // The generator's flags with a file input: they would be ignored.
    refused(
        ridehail().args(["run", "--input", "x.jsonl", "--faults", "typical"]),
        "cannot be used with '--faults",
    );
    refused(
        ridehail()
            .args(["run", "--input"])
            .arg(dir.join("missing.jsonl"))
            .args(["--out"])
            .arg(dir.join("out")),
        "missing.jsonl",
    );
    refused(
        ridehail()
            .args(["run", "--input"])
            .arg(&*dir)
            .args(["--out"])
            .arg(dir.join("out")),
        "is a directory",
    );
    // One file under two names would be read twice.
    let twice = dir.join("twice.jsonl");
    std::fs::write(&twice, "").unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    refused(
        ridehail()
            .args(["run", "--input"])
            .arg(&twice)
            .arg("--input")
            .arg(dir.join("sub").join("..").join("twice.jsonl"))
            .args(["--out"])
            .arg(dir.join("out")),
        "is given twice",
    );
    // An output "directory" that is a file.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    refused(
        ridehail()
            .args(["run", "--duration", "1m", "--quiet", "--out"])
            .arg(&file),
        "not-a-dir",
    );
}

/// Lines in the committed files under `dir`, and the hidden (uncommitted) files left.
fn committed(dir: &Path) -> (u64, Vec<std::path::PathBuf>) {
    let (mut lines, mut hidden) = (0, Vec::new());
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.file_name().unwrap().to_string_lossy().starts_with('.') {
                hidden.push(p);
            } else {
                lines += lines_in(&p);
            }
        }
    }
    (lines, hidden)
}

/// Sends SIGINT to `child` once `ready` holds (polled), as Ctrl-C would; panics if the child
/// exits first or `ready` takes more than a minute.
fn interrupt_when(child: &mut std::process::Child, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be interrupted"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "not ready in a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let sent = std::process::Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Ctrl-C with checkpoints on a file pauses the run (a checkpoint, then exit 0), and `--resume`
/// finishes it. On standard input, which no resume could read again, it drains instead: the
/// input ends there, and everything read is committed, nothing left hidden.
#[test]
fn ctrl_c_pauses_a_file_run_and_drains_standard_input() {
    let dir = temp_dir("ctrl-c");
    let input = dir.join("in.jsonl");
    let generated = ridehail()
        .args(["generate", "--events", "100000", "--out"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(generated.status.success());

    // A file: pause, then resume.
    let out = dir.join("file");
    let run = |resume: bool| {
        let mut c = ridehail();
        c.args(["run", "--quiet", "--checkpoint-every", "50ms", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if resume {
            c.arg("--resume");
        }
        c
    };
    let mut child = run(false).spawn().unwrap();
    interrupt_when(&mut child, || committed(&out.join("backup")).0 > 0);
    let paused = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&paused.stderr);
    assert!(paused.status.success(), "{stderr}");
    assert!(stderr.contains("paused at checkpoint"), "{stderr}");
    let paused_in = u(&summary(&out), "events_in");
    assert!(paused_in < 100_000, "the pause did not stop the run early");
    let resumed = run(true).output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("resuming from checkpoint"), "{stderr}");
    let (backup, hidden) = committed(&out.join("backup"));
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(backup, 100_000, "every event backed up once");

    // Standard input: drain.
    let out = dir.join("stdin");
    let mut child = ridehail()
        .args([
            "run",
            "--quiet",
            "--checkpoint-every",
            "50ms",
            "--input",
            "-",
            "--out",
        ])
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let text = std::fs::read(&input).unwrap();
    let half = text[..text.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    std::io::Write::write_all(&mut stdin, &text[..half]).unwrap();
    // The pipe stays open: without Ctrl-C the run would wait for more.
    interrupt_when(&mut child, || committed(&out.join("backup")).0 > 0);
    let drained = child.wait_with_output().unwrap();
    drop(stdin);
    let stderr = String::from_utf8_lossy(&drained.stderr);
    assert!(drained.status.success(), "{stderr}");
    assert!(stderr.contains("draining"), "{stderr}");
    assert!(!stderr.contains("paused at"), "{stderr}");
    let s = summary(&out);
    let (backup, hidden) = committed(&out.join("backup"));
    assert!(hidden.is_empty(), "uncommitted after draining: {hidden:?}");
    assert!(u(&s, "events_in") > 0);
    assert_eq!(u(&s, "events_in"), u(&s, "valid") + u(&s, "dead_letters"));
    assert_eq!(backup, u(&s, "unique"), "{s}");
    let (trips, hidden) = committed(&out.join("trips"));
    assert!(hidden.is_empty(), "{hidden:?}");
    assert_eq!(trips, u(&s, "trips_summarised"), "{s}");
}
