//! The whole run as a library call (`ridehail::start`) over files: one file read at two workers
//! is read in two stripes, and gives exactly the output of one worker; two files of consecutive
//! times give the output of the two as one.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_jobs::generator::{CityGenerator, GeneratorConfig};
use sluice_jobs::ridehail::{start, Input, RunConfig, OUTPUT_DIRS};

use super::fixtures::temp_dir;
use super::pipelines::op;

/// Every committed output line, sorted, per output directory (the per-run summary aside).
fn outputs(out: &Path) -> Vec<(String, Vec<String>)> {
    OUTPUT_DIRS
        .iter()
        .filter(|d| **d != "summary")
        .map(|d| {
            let mut lines = Vec::new();
            let mut dirs = vec![out.join(d)];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten() {
                    let path = entry.unwrap().path();
                    let name = path.file_name().unwrap().to_string_lossy().to_string();
                    if path.is_dir() {
                        dirs.push(path);
                    } else if name.starts_with("part-") {
                        let text = std::fs::read_to_string(&path).unwrap();
                        lines.extend(text.lines().map(str::to_string));
                    }
                }
            }
            lines.sort();
            (d.to_string(), lines)
        })
        .collect()
}

/// `lines` generated events, one per line.
fn generated(lines: u64) -> Vec<String> {
    CityGenerator::new(GeneratorConfig {
        duration: None,
        max_lines: Some(lines),
        ..GeneratorConfig::default()
    })
    .unwrap()
    .lines()
    .map(|l| l + "\n")
    .collect()
}

/// Runs every job over `files` at `parallelism` workers, with checkpoints (so that the run
/// marker says how the input was split); returns the outputs and the marker.
fn run_files(
    dir: &Path,
    name: &str,
    files: &[std::path::PathBuf],
    parallelism: usize,
) -> (Vec<(String, Vec<String>)>, String) {
    let mut cfg = RunConfig::new(Input::Files(files.to_vec()));
    cfg.out = dir.join(format!("out-{name}-{parallelism}"));
    cfg.checkpoint_dir = Some(dir.join(format!("chk-{name}-{parallelism}")));
    cfg.parallelism = parallelism;
    let running = start(&cfg).expect("starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running.handle().is_finished() {
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
    let metrics = running.handle().metrics();
    assert!(
        metrics.operator("spread_lines").is_none(),
        "files are read in stripes, not spread"
    );
    let by_driver = |e: &&sluice_engine::metrics::ExchangeMetrics| e.name.contains("driver");
    let names: Vec<_> = metrics
        .exchanges
        .iter()
        .filter(by_driver)
        .map(|e| &e.name)
        .collect();
    assert_eq!(
        names,
        [
            sluice_jobs::ingest::BY_DRIVER,
            "trips.by_driver",
            "live.resolved_by_driver"
        ],
        "surge, shifts and live share one exchange by driver"
    );
    let lines: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert_eq!(op(&metrics, "validate").records_in, lines as u64);
    let report = running.finish().expect("the run ends");
    assert_eq!(report.valid, lines as u64);
    let marker =
        std::fs::read_to_string(dir.join(format!("chk-{name}-{parallelism}/ridehail-run.json")))
            .unwrap();
    (outputs(&cfg.out), marker)
}

#[test]
fn one_file_at_two_workers_is_read_in_stripes_and_gives_the_output_of_one() {
    let dir = temp_dir("run", "stripes");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, generated(20_000).concat()).unwrap();
    let (one, marker) = run_files(&dir, "one", std::slice::from_ref(&input), 1);
    assert!(marker.contains("\"splits\": 1"), "{marker}");
    let (two, marker) = run_files(&dir, "one", std::slice::from_ref(&input), 2);
    assert!(
        marker.contains("\"splits\": 2"),
        "one file, two stripes: {marker}"
    );
    let lines_in = |d: &str| one.iter().find(|(n, _)| n == d).map(|(_, l)| l.len());
    assert_eq!(lines_in("backup"), Some(20_000));
    for d in ["surge", "trips", "live-drivers"] {
        assert!(lines_in(d) > Some(0), "{d} has output");
    }
    assert_eq!(one, two);
}

/// Files read side by side are aligned in event time. Two files, the first and second half of
/// one input, give the output of the whole: before, one watermark over everything a worker
/// read let the second file's times make the first's events late at one worker, and at two
/// workers everything downstream buffered the gap (the 3M-event input split in two: 4x the
/// time, 1 GB).
#[test]
fn files_of_consecutive_times_read_together_give_the_output_of_one() {
    let dir = temp_dir("run", "two-files");
    let lines = generated(20_000);
    let whole = dir.join("whole.jsonl");
    std::fs::write(&whole, lines.concat()).unwrap();
    let halves = [dir.join("first.jsonl"), dir.join("second.jsonl")];
    std::fs::write(&halves[0], lines[..10_000].concat()).unwrap();
    std::fs::write(&halves[1], lines[10_000..].concat()).unwrap();
    let (expected, _) = run_files(&dir, "whole", std::slice::from_ref(&whole), 1);
    for parallelism in [1, 2, 3] {
        let (got, marker) = run_files(&dir, "halves", &halves, parallelism);
        let stripes = if parallelism == 3 { 3 } else { 1 };
        assert!(
            marker.contains(&format!("\"splits\": {stripes}")),
            "{marker}"
        );
        for ((dir, want), (_, have)) in expected.iter().zip(&got) {
            assert!(want == have, "{dir} differs at {parallelism} workers");
        }
    }
}

/// A named pipe (as `--input <(command)` gives) cannot seek, so it is read whole by one worker
/// at any parallelism. Read in stripes, the first stripe stopped after its first block (a
/// pipe's length is 0) and the run ended early without an error: 398 of 20,000 events.
#[cfg(unix)]
#[test]
fn a_named_pipe_is_read_whole_at_two_workers() {
    let dir = temp_dir("run", "pipe");
    let pipe = dir.join("events.pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let lines = generated(20_000).concat();
    let writer = {
        let pipe = pipe.clone();
        std::thread::spawn(move || std::fs::write(pipe, lines))
    };
    let mut cfg = RunConfig::new(Input::Files(vec![pipe]));
    cfg.out = dir.join("out");
    cfg.parallelism = 2;
    let report = sluice_jobs::ridehail::run(&cfg).expect("the run ends");
    assert_eq!((report.events_in, report.valid), (20_000, 20_000));
    writer.join().unwrap().unwrap();
}

/// Settings without meaning are refused before anything is written, naming the setting: they
/// used to run as something else (an H3 resolution above 15 as 15, a zero snapshot interval as
/// one millisecond, a zero line limit with every line a dead letter).
#[test]
fn settings_out_of_range_are_refused_before_the_run_starts() {
    let dir = temp_dir("run", "invalid-config");
    let base = || {
        let mut cfg = RunConfig::new(Input::Generator(GeneratorConfig::default()));
        cfg.out = dir.join("out");
        cfg
    };
    type Change = Box<dyn Fn(&mut RunConfig)>;
    let cases: [(&str, Change); 9] = [
        ("parallelism", Box::new(|c| c.parallelism = 0)),
        ("max_line_bytes", Box::new(|c| c.max_line_bytes = 0)),
        (
            "h3_resolution",
            Box::new(|c| c.validation.h3_resolution = 16),
        ),
        ("shifts.gap", Box::new(|c| c.shifts.gap = Duration::ZERO)),
        (
            "trips.timeout",
            Box::new(|c| c.trips.timeout = Duration::ZERO),
        ),
        (
            "live.snapshot_interval",
            Box::new(|c| c.live.snapshot_interval = Duration::ZERO),
        ),
        (
            "surge.window",
            Box::new(|c| c.surge.window = Duration::ZERO),
        ),
        (
            "checkpoint_every",
            Box::new(|c| {
                c.checkpoint_dir = Some(c.out.join(".checkpoints"));
                c.checkpoint_every = Duration::ZERO;
            }),
        ),
        (
            "drivers",
            Box::new(|c| {
                c.input = Input::Generator(GeneratorConfig {
                    drivers: 0,
                    ..GeneratorConfig::default()
                })
            }),
        ),
    ];
    for (what, change) in cases {
        let mut cfg = base();
        change(&mut cfg);
        let err = start(&cfg).err().expect(what).to_string();
        assert!(err.contains(what), "{what}: {err}");
        assert!(
            !cfg.out.exists(),
            "{what}: the run wrote {}",
            cfg.out.display()
        );
    }
    // A zero dedup horizon is valid: ids are remembered until the watermark passes them.
    let mut cfg = base();
    cfg.dedup.horizon = Duration::ZERO;
    assert!(cfg.validate().is_ok());
}

/// A second run on the output or checkpoint directory of a running one is refused before it
/// clears or writes anything; once the first has ended, the directory is free again.
#[test]
fn a_directory_in_use_by_a_run_is_refused_to_a_second_one() {
    use sluice_jobs::generator::Pace;
    let dir = temp_dir("run", "locked");
    let mut cfg = RunConfig::new(Input::Generator(GeneratorConfig {
        duration: None,
        max_lines: Some(1_000_000),
        // Slow enough to be running while the second run tries.
        pace: Pace::LinesPerSec(2_000.0),
        ..GeneratorConfig::default()
    }));
    cfg.out = dir.join("out");
    cfg.checkpoint_dir = Some(dir.join("checkpoints"));
    let first = start(&cfg).unwrap();

    let mut same_out = cfg.clone();
    same_out.checkpoint_dir = Some(dir.join("other-checkpoints"));
    let err = start(&same_out).err().expect("refused").to_string();
    assert!(err.contains("in use by another run"), "{err}");
    let mut same_checkpoints = cfg.clone();
    same_checkpoints.out = dir.join("other-out");
    let err = start(&same_checkpoints).err().expect("refused").to_string();
    assert!(err.contains("checkpoint directory"), "{err}");
    assert!(err.contains("in use by another run"), "{err}");

    // The first run goes on undisturbed; stopped, it frees both directories.
    first.interrupt().interrupt().unwrap();
    first.finish().unwrap();
    let mut again = cfg.clone();
    again.input = Input::Generator(GeneratorConfig {
        duration: None,
        max_lines: Some(1_000),
        ..GeneratorConfig::default()
    });
    let report = start(&again).unwrap().finish().unwrap();
    assert_eq!(report.events_in, 1_000);
}

/// The backup stores each valid event read from a file as the line it came in: fields the
/// jobs do not know, the order of the keys and the spacing are kept (surrounding whitespace and
/// a CRLF's `\r` aside). It used to write every event in the wire format, dropping unknown
/// fields. Invalid lines are dead letters, not backed up.
#[test]
fn the_backup_stores_the_lines_of_valid_events_as_they_were_read() {
    let dir = temp_dir("run", "raw-backup");
    let lines = [
        r#"{"event_id":"a1","event_type":"DRIVER_AVAILABLE","timestamp":"2026-01-05T07:00:00Z","driver_id":"d1","latitude":40.75,"longitude":-73.98}"#,
        r#"{ "timestamp": "2026-01-05T07:00:01.5Z", "event_type": "DRIVER_LOCATION_UPDATE", "event_id": "a2", "driver_id": "d1", "latitude": 40.7501, "longitude": -73.9802, "app_version": "4.2.0" }"#,
        r#"   {"event_id":"a3","event_type":"RIDER_REQUEST","timestamp":"2026-01-05T07:00:02Z","rider_id":"r1","pickup_lat":40.7,"pickup_lon":-73.9,"extra":{"nested":[1,2]}}   "#,
        r#"{"event_id":"bad","event_type":"DRIVER_AVAILABLE","timestamp":"2026-01-05T07:00:03Z"}"#,
    ];
    let input = dir.join("in.jsonl");
    std::fs::write(
        &input,
        format!("{}\r\n{}\n{}\n{}\n", lines[0], lines[1], lines[2], lines[3]),
    )
    .unwrap();
    let mut cfg = RunConfig::new(Input::Files(vec![input]));
    cfg.out = dir.join("out");
    let report = sluice_jobs::ridehail::run(&cfg).expect("the run ends");
    assert_eq!((report.valid, report.dead_letters), (3, 1));
    let backup = outputs(&cfg.out)
        .into_iter()
        .find(|(d, _)| d == "backup")
        .unwrap()
        .1;
    let mut expected: Vec<String> = lines[..3].iter().map(|l| l.trim().to_string()).collect();
    expected.sort();
    assert_eq!(backup, expected);
}

/// A finished run resumed again and again keeps its output and its counts: the resumed runs
/// have nothing to do and take no checkpoint. They used to take one without the final
/// checkpoint's transactions, and the next resume deleted the whole committed output as
/// uncommitted.
#[test]
fn a_finished_run_resumed_twice_keeps_its_output() {
    let dir = temp_dir("run", "resume-finished");
    let mut cfg = RunConfig::new(Input::Generator(GeneratorConfig {
        duration: None,
        max_lines: Some(20_000),
        ..GeneratorConfig::default()
    }));
    cfg.out = dir.join("out");
    cfg.checkpoint_dir = Some(dir.join("chk"));
    let first = sluice_jobs::ridehail::run(&cfg).expect("the run ends");
    let expected = outputs(&cfg.out);
    let lines_in = |d: &str| {
        expected
            .iter()
            .find(|(n, _)| n == d)
            .map_or(0, |(_, l)| l.len())
    };
    assert_eq!(lines_in("backup"), 20_000);
    assert!(lines_in("trips") > 0 && lines_in("live-drivers") > 0);
    cfg.resume = true;
    for round in 1..=2 {
        let report = sluice_jobs::ridehail::run(&cfg).expect("the resumed run ends");
        assert!(report.resumed_from.is_some(), "round {round}");
        assert_eq!(report.events_in, first.events_in, "round {round}");
        assert_eq!(report.events_this_run, 0, "round {round}");
        assert_eq!(outputs(&cfg.out), expected, "round {round}: output");
    }
}
