//! The whole run as a library call (`ridehail::start`) over files: one file read at two workers
//! is spread over both for parsing, and gives exactly the output of one worker.

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

#[test]
fn one_file_at_two_workers_is_parsed_on_both_and_gives_the_output_of_one() {
    let dir = temp_dir("run", "spread");
    let input = dir.join("in.jsonl");
    let city = CityGenerator::new(GeneratorConfig {
        duration: None,
        max_lines: Some(20_000),
        ..GeneratorConfig::default()
    })
    .unwrap();
    let mut text = city.lines().collect::<Vec<_>>().join("\n");
    text.push('\n');
    std::fs::write(&input, text).unwrap();

    let mut results = Vec::new();
    for parallelism in [1, 2] {
        let mut cfg = RunConfig::new(Input::Files(vec![input.clone()]));
        cfg.out = dir.join(format!("out-{parallelism}"));
        cfg.parallelism = parallelism;
        let running = start(&cfg).expect("starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !running.handle().is_finished() {
            assert!(Instant::now() < deadline, "the run did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        let metrics = running.handle().metrics();
        let spread = metrics.operator("spread_lines");
        if parallelism == 1 {
            assert!(spread.is_none(), "nothing to spread to at one worker");
        } else {
            assert_eq!(spread.map(|m| m.records_in), Some(20_000));
        }
        assert_eq!(op(&metrics, "validate").records_in, 20_000);
        let report = running.finish().expect("the run ends");
        assert_eq!(report.valid, 20_000);
        results.push(outputs(&cfg.out));
    }
    let lines_in = |d: &str| {
        results[0]
            .iter()
            .find(|(n, _)| n == d)
            .map(|(_, l)| l.len())
    };
    assert_eq!(lines_in("backup"), Some(20_000));
    for d in ["surge", "trips", "live-drivers"] {
        assert!(lines_in(d) > Some(0), "{d} has output");
    }
    assert_eq!(results[0], results[1]);
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
