//! End-to-end tests of the connectors: real jobs through `StreamEnv`, at one and two workers.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_connectors::{
    BadLine, BadLineReason, CollectSink, GeneratorSource, JsonLinesSink, JsonLinesSource,
    LinesSource,
};
use sluice_engine::source::{Source, Split, SplitReader};
use sluice_engine::{BoxError, Config, JobError, StreamEnv};

const PARALLELISMS: [usize; 2] = [1, 2];

/// Opens the splits of `inner` at the positions in `at` (by split id), as a restore would.
///
/// The engine does not restore sources from checkpoints yet, so this is how a test drives
/// `open(split, Some(position))` through a real job.
struct StartAt<S> {
    inner: S,
    at: HashMap<String, u64>,
}

impl<T, S: Source<T>> Source<T> for StartAt<S> {
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError> {
        self.inner.splits(parallelism)
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<T>>, BoxError> {
        assert_eq!(position, None, "the engine restored a position by itself");
        self.inner.open(split, self.at.get(&split.id).copied())
    }
}

fn run<T: Clone + Send + 'static>(p: usize, source: impl Source<T>) -> Result<Vec<T>, JobError> {
    let env = StreamEnv::new(Config::default().parallelism(p));
    let out = CollectSink::new();
    env.source(source).sink(out.clone());
    env.execute()?;
    Ok(out.values())
}

/// A value that depends on the record's RNG, so that equal outputs mean equal RNG streams.
fn sample(seq: u64, rng: &mut sluice_connectors::SplitMix64) -> (u64, u64, u32) {
    (seq, rng.next_u64(), rng.below(1000) as u32)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn generator_is_deterministic_at_any_parallelism() {
    let expected = sorted(run(1, GeneratorSource::new(sample).count(5_000).seed(42)).unwrap());
    assert_eq!(expected.len(), 5_000);
    assert_eq!(
        expected.iter().map(|v| v.0).collect::<Vec<_>>(),
        (0..5_000).collect::<Vec<_>>(),
        "every sequence number exactly once"
    );
    for p in PARALLELISMS {
        for splits in [None, Some(1), Some(3)] {
            let mut src = GeneratorSource::new(sample).count(5_000).seed(42);
            if let Some(n) = splits {
                src = src.splits(n);
            }
            assert_eq!(
                sorted(run(p, src).unwrap()),
                expected,
                "p={p} splits={splits:?}"
            );
        }
    }
    let other = sorted(run(2, GeneratorSource::new(sample).count(5_000).seed(43)).unwrap());
    assert_ne!(other, expected, "the seed matters");
}

#[test]
fn generator_resumes_exactly_from_positions() {
    let full = sorted(run(2, GeneratorSource::new(sample).count(1_000).seed(5)).unwrap());
    for p in PARALLELISMS {
        // Split 0 of 2 emitted 10 records (seq 0, 2, .., 18); split 1 emitted 25 (seq 1, .., 49).
        let at = HashMap::from([
            ("generator-0-of-2".to_string(), 10),
            ("generator-1-of-2".to_string(), 25),
        ]);
        let src = StartAt {
            inner: GeneratorSource::new(sample).count(1_000).seed(5).splits(2),
            at,
        };
        let resumed = sorted(run(p, src).unwrap());
        let expected: Vec<_> = full
            .iter()
            .filter(|v| if v.0 % 2 == 0 { v.0 >= 20 } else { v.0 >= 51 })
            .copied()
            .collect();
        assert_eq!(resumed, expected, "p={p}");
    }
}

#[test]
fn rate_limited_generator_finishes_a_small_count() {
    // 20 records at 4000/s: about 5 ms of schedule, spent in Pending polls, not sleeps.
    for p in PARALLELISMS {
        let values = run(
            p,
            GeneratorSource::new(|seq, _| seq).count(20).rate(4_000.0),
        )
        .unwrap();
        assert_eq!(sorted(values), (0..20).collect::<Vec<_>>());
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Event {
    id: u32,
    kind: String,
}

/// A fresh directory, removed when dropped.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sluice-connectors-")
        .tempdir()
        .unwrap()
}

fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    path
}

/// Splits job output into good values and bad lines, each sorted.
fn split_results<T: Ord>(records: Vec<Result<T, BadLine>>) -> (Vec<T>, Vec<BadLine>) {
    let (good, bad): (Vec<_>, Vec<_>) = records.into_iter().partition(Result::is_ok);
    let good = sorted(good.into_iter().filter_map(Result::ok).collect());
    let mut bad: Vec<_> = bad.into_iter().filter_map(Result::err).collect();
    bad.sort_by(|a, b| (&a.source, a.offset).cmp(&(&b.source, b.offset)));
    (good, bad)
}

#[test]
fn json_lines_account_for_every_line() {
    let dir = tempdir();
    let a = write(
        dir.path(),
        "a.jsonl",
        b"{\"id\":1,\"kind\":\"x\"}\n\
          not json\n\
          \n\
          {\"id\":2,\"kind\":\"y\",\"extra\":[1,2]}\r\n\
          {\"id\":\"three\",\"kind\":\"z\"}\n\
          \xc3\x28\n\
          {\"id\":4,\"kind\":\"w\"}",
    );
    let b = write(
        dir.path(),
        "b.jsonl",
        b"{\"id\":5,\"kind\":\"v\"}\n   \t \n",
    );
    let empty = write(dir.path(), "empty.jsonl", b"");
    for p in PARALLELISMS {
        let records = run(p, JsonLinesSource::<Event>::files([&a, &b, &empty])).unwrap();
        assert_eq!(records.len(), 7 + 2, "one record per line, p={p}");
        let (good, bad) = split_results(records);
        assert_eq!(good.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 4, 5]);
        let reasons: Vec<_> = bad
            .iter()
            .map(|b| (b.source.as_str(), b.offset, b.line.as_str(), &b.reason))
            .collect();
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        assert!(matches!(reasons[0], (s, 20, "not json", BadLineReason::InvalidJson(_)) if s == a));
        assert_eq!(reasons[1], (a, 29, "", &BadLineReason::Empty));
        let BadLineReason::InvalidJson(msg) = &bad[2].reason else {
            panic!("{:?}", bad[2])
        };
        assert_eq!(
            (bad[2].offset, bad[2].line.as_str()),
            (65, "{\"id\":\"three\",\"kind\":\"z\"}")
        );
        assert!(msg.contains("invalid type"), "{msg}");
        assert_eq!(reasons[3], (a, 91, "\u{FFFD}(", &BadLineReason::NotUtf8));
        assert_eq!(reasons[4], (b, 20, "   \t ", &BadLineReason::Empty));
    }
}

#[test]
fn json_lines_resume_at_a_byte_offset() {
    let dir = tempdir();
    let lines: Vec<String> = (0..100)
        .map(|i| format!("{{\"id\":{i},\"kind\":\"k{i}\"}}\n"))
        .collect();
    let path = write(dir.path(), "events.jsonl", lines.concat().as_bytes());
    // Resume after the first 40 lines: the position is the byte offset of line 40.
    let offset: usize = lines[..40].iter().map(String::len).sum();
    for p in PARALLELISMS {
        let src = StartAt {
            inner: JsonLinesSource::<Event>::files([&path]),
            at: HashMap::from([(path.display().to_string(), offset as u64)]),
        };
        let (good, bad) = split_results(run(p, src).unwrap());
        assert!(bad.is_empty());
        assert_eq!(
            good.iter().map(|e| e.id).collect::<Vec<_>>(),
            (40..100).collect::<Vec<_>>()
        );
    }
}

#[test]
fn resuming_in_the_middle_of_a_line_fails_the_job_naming_the_source() {
    let dir = tempdir();
    let path = write(
        dir.path(),
        "events.jsonl",
        b"{\"id\":1,\"kind\":\"a\"}\n{\"id\":2,\"kind\":\"b\"}\n",
    );
    let env = StreamEnv::new(Config::default());
    let src = StartAt {
        inner: JsonLinesSource::<Event>::files([&path]),
        at: HashMap::from([(path.display().to_string(), 5)]),
    };
    env.source(src).name("events").sink(CollectSink::new());
    let err = env.execute().unwrap_err();
    assert_eq!(err.operator().map(|o| o.name.as_str()), Some("events"));
    assert!(err.to_string().contains("no line starts there"), "{err}");
}

#[test]
fn missing_input_file_fails_the_job_with_its_path() {
    let dir = tempdir();
    let missing = dir.path().join("nope.jsonl");
    let err = run(2, JsonLinesSource::<Event>::files([&missing])).unwrap_err();
    assert!(err.to_string().contains("nope.jsonl"), "{err}");
}

#[test]
fn too_long_line_is_reported_and_the_rest_is_read() {
    let dir = tempdir();
    let mut content = b"{\"id\":1,\"kind\":\"a\"}\n{\"id\":2,\"kind\":\"".to_vec();
    content.extend(vec![b'z'; 100_000]);
    content.extend_from_slice(b"\"}\n{\"id\":3,\"kind\":\"c\"}\n");
    let path = write(dir.path(), "long.jsonl", &content);
    for p in PARALLELISMS {
        let (good, bad) = split_results(run(p, JsonLinesSource::<Event>::files([&path])).unwrap());
        assert_eq!(good.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].offset, 20);
        assert_eq!(
            bad[0].reason,
            BadLineReason::TooLong {
                len: 100_018,
                limit: 65_536
            }
        );
        assert_eq!(bad[0].line.len(), 1024);
        assert!(bad[0].line.starts_with("{\"id\":2,\"kind\":\"zzz"));
    }
    // A lower limit turns more lines away; a higher one accepts the long line.
    let (good, bad) = split_results(
        run(
            1,
            JsonLinesSource::<Event>::files([&path]).max_line_bytes(10),
        )
        .unwrap(),
    );
    assert!(good.is_empty());
    assert_eq!(bad.len(), 3);
    let (good, _) = split_results(
        run(
            1,
            JsonLinesSource::<Event>::files([&path]).max_line_bytes(1 << 20),
        )
        .unwrap(),
    );
    assert_eq!(good.len(), 3);
}

#[test]
fn raw_lines_keep_text_and_report_non_utf8() {
    let dir = tempdir();
    let path = write(dir.path(), "raw.txt", b"alpha\r\nbad \xff byte\n  beta  \n");
    let second = write(dir.path(), "second.txt", b"\n\ngamma");
    for p in PARALLELISMS {
        let (good, bad) = split_results(run(p, LinesSource::files([&path, &second])).unwrap());
        let good: Vec<_> = good
            .iter()
            .map(|l| (l.text.as_str(), l.offset, l.input))
            .collect();
        // Where each good line was: its offset and the index of its file.
        assert_eq!(
            good,
            [("  beta  ", 18, 0), ("alpha", 0, 0), ("gamma", 2, 1)]
        );
        let bad: Vec<_> = bad
            .into_iter()
            .filter(|b| b.source == path.display().to_string())
            .collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(
            (bad[0].offset, bad[0].line.as_str()),
            (7, "bad \u{FFFD} byte")
        );
        assert_eq!(bad[0].reason, BadLineReason::NotUtf8);
    }
}

#[test]
fn json_sink_round_trips_through_the_source() {
    let make = |seq: u64, rng: &mut sluice_connectors::SplitMix64| Event {
        id: seq as u32,
        kind: format!("k{}\n\"quoted\"", rng.below(10)),
    };
    let expected = sorted(run(1, GeneratorSource::new(make).count(3_000).seed(1)).unwrap());
    for p in PARALLELISMS {
        let dir = tempdir();
        let out = dir.path().join("out");
        let env = StreamEnv::new(Config::default().parallelism(p));
        env.source(GeneratorSource::new(make).count(3_000).seed(1))
            .sink(JsonLinesSink::new(&out));
        env.execute().unwrap();
        let parts: Vec<_> = (0..p)
            .map(|w| out.join(format!("part-{w}.jsonl")))
            .collect();
        assert!(
            parts.iter().all(|f| f.is_file()),
            "one part file per worker"
        );
        let (good, bad) = split_results(run(p, JsonLinesSource::<Event>::files(&parts)).unwrap());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good, expected, "p={p}");
    }
}
