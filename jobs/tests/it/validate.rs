//! The validate job: golden file (every rule of events.md, from a file with bad bytes, blank
//! and over-long lines), count conservation at 1 and 2 workers, and property tests that nothing
//! panics and every line becomes exactly one event or one dead letter.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use proptest::prelude::*;
use sluice_connectors::{CollectSink, LinesSource, VecSource};
use sluice_engine::prelude::*;
use sluice_jobs::event::{parse_event, DeadLetter, Reason, RideEvent};
use sluice_jobs::generator::{CityGenerator, GeneratorConfig};
use sluice_jobs::validate::{self, validate, validate_line, ValidateConfig};

use super::fixtures::{assert_golden, json_lines, NOW};
use super::pipelines::{clock_at, execute, op, wire_lines};

/// Relative to the package root, where cargo runs the tests, so that dead letters name the
/// same source on every machine.
const INPUT: &str = "tests/data/validate.jsonl";

fn config() -> ValidateConfig {
    ValidateConfig {
        clock: clock_at(NOW),
        inputs: vec![INPUT.to_string()],
        ..ValidateConfig::default()
    }
}

/// Runs validation over `INPUT` at `parallelism`; returns valid events, dead letters and the
/// number of lines the source read.
fn run_file(parallelism: usize) -> (Vec<RideEvent>, Vec<DeadLetter>, JobMetrics) {
    let env = StreamEnv::new(Config::default().parallelism(parallelism));
    let lines = env.source(LinesSource::files([INPUT]).max_line_bytes(512));
    let out = validate(lines, &config());
    let (events, dead) = (CollectSink::new(), CollectSink::new());
    out.events.sink(events.clone());
    out.dead_letters.sink(dead.clone());
    let metrics = execute(&env);
    (events.values(), dead.values(), metrics)
}

#[test]
fn golden_validate_covers_every_rule() {
    let (events, dead, metrics) = run_file(1);
    assert_golden("validate.expected.jsonl", &wire_lines(&events));
    assert_golden("validate.dead_letters.expected.jsonl", &json_lines(&dead));
    let reasons: BTreeSet<Reason> = dead.iter().map(|d| d.reason).collect();
    assert_eq!(
        reasons,
        Reason::ALL.into_iter().collect(),
        "every reason appears in the golden input"
    );
    // Every dead letter says where its line is: the file, and the offset its bytes start at.
    let file = std::fs::read(INPUT).unwrap();
    for d in &dead {
        assert_eq!(d.source, INPUT);
        let at = &file[d.offset.expect("a file's dead letters have offsets") as usize..];
        let text = String::from_utf8_lossy(&at[..at.len().min(d.line.len())]);
        assert!(text.starts_with(&d.line), "{d:?}");
    }
    let m = op(&metrics, validate::OPERATOR);
    assert_eq!(m.records_in, 26, "the file has 26 lines");
    assert_eq!(m.records_out, 8);
    assert_eq!(m.side_output(validate::DEAD_LETTERS), 18);
    // Derived zones: the H3 cell at resolution 7 when there is no geo_zone and a point.
    let v1 = events
        .iter()
        .find(|e| &*e.event_id == "v1")
        .expect("v1 is valid");
    assert_eq!(v1.zone().map(|z| z.len()), Some(15));
    assert!(v1.geo_zone().is_none());
}

#[test]
fn validation_does_not_depend_on_parallelism() {
    let (events, dead, _) = run_file(1);
    let (events2, dead2, _) = run_file(2);
    assert_eq!(wire_lines(&events), wire_lines(&events2));
    assert_eq!(json_lines(&dead), json_lines(&dead2));
}

/// A pool of valid generator lines to mutate.
fn valid_lines() -> &'static [String] {
    static LINES: OnceLock<Vec<String>> = OnceLock::new();
    LINES.get_or_init(|| {
        let city = CityGenerator::new(GeneratorConfig {
            drivers: 10,
            max_lines: Some(400),
            ..GeneratorConfig::default()
        })
        .expect("valid config");
        city.lines().collect()
    })
}

/// `line` with `edit` applied at byte position `at` (clamped to a char boundary).
fn mutate(line: &str, at: usize, edit: u8, text: &str) -> String {
    let mut at = at % (line.len() + 1);
    while !line.is_char_boundary(at) {
        at -= 1;
    }
    let (head, tail) = line.split_at(at);
    match edit % 4 {
        0 => format!("{head}{text}{tail}"), // insert
        1 => format!("{head}{}", tail.get(text.len()..).unwrap_or("")), // delete
        2 => format!("{head}{text}{}", tail.get(1..).unwrap_or("")), // replace
        _ => head.to_string(),              // truncate
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(line in any::<String>()) {
        let _ = validate_line(Ok(line), NOW, &config());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let line = String::from_utf8_lossy(&bytes).into_owned();
        let _ = validate_line(Ok(line), NOW, &config());
    }

    /// Mutated valid lines: never a panic, and whatever is accepted survives a round trip
    /// through the wire format unchanged.
    #[test]
    fn mutated_valid_lines_never_panic_and_accepted_ones_round_trip(
        pick in 0usize..400,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), "[\\PC\"\\\\{}:,0-9.eE+-]{0,6}"), 1..4),
    ) {
        let lines = valid_lines();
        let mut line = lines[pick % lines.len()].clone();
        for (at, edit, text) in &edits {
            line = mutate(&line, *at, *edit, text);
        }
        if let Ok(event) = validate_line(Ok(line), NOW, &config()) {
            let again = parse_event(&event.to_json(), NOW, &config().validation);
            prop_assert_eq!(again.as_ref(), Ok(&event));
        }
    }
}

static FILES: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Random bytes (and mangled event lines) through a file, the line source and the
    /// validation operator: exactly one event or one dead letter per line the source read.
    #[test]
    fn every_line_becomes_one_event_or_one_dead_letter(
        chunks in proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                (0usize..400).prop_map(|i| valid_lines()[i].clone().into_bytes()),
                Just(b"\n\n\r\n".to_vec()),
            ],
            0..40,
        ),
        parallelism in 1usize..3,
    ) {
        let path = std::env::temp_dir().join(format!(
            "sluice-validate-prop-{}-{}.jsonl",
            std::process::id(),
            FILES.fetch_add(1, Ordering::Relaxed)
        ));
        let mut bytes = Vec::new();
        for c in &chunks {
            bytes.extend_from_slice(c);
            bytes.push(b'\n');
        }
        std::fs::write(&path, &bytes).expect("temp file written");
        let env = StreamEnv::new(Config::default().parallelism(parallelism));
        let raw = env.source(LinesSource::files([&path]).max_line_bytes(256));
        let read = CollectSink::new();
        raw.clone().map(|_| ()).sink(read.clone());
        let out = validate(raw, &config());
        let (events, dead) = (CollectSink::new(), CollectSink::new());
        out.events.sink(events.clone());
        out.dead_letters.sink(dead.clone());
        execute(&env);
        let _ = std::fs::remove_file(&path);
        prop_assert_eq!(events.len() + dead.len(), read.len());
    }
}

#[test]
fn string_input_is_validated_too() {
    let env = StreamEnv::new(Config::default());
    let lines = vec![
        valid_lines()[0].clone(),
        String::new(),
        "x".repeat(70_000),
        "{".to_string(),
    ];
    let cfg = ValidateConfig {
        source: "strings".into(),
        ..config()
    };
    let out = validate(env.source(VecSource::new(lines)), &cfg);
    let (events, dead) = (CollectSink::new(), CollectSink::new());
    out.events.sink(events.clone());
    out.dead_letters.sink(dead.clone());
    execute(&env);
    assert_eq!(events.len(), 1);
    let mut reasons: Vec<Reason> = dead.values().iter().map(|d| d.reason).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![Reason::TooLong, Reason::Empty, Reason::NotJson]
    );
    assert!(dead
        .values()
        .iter()
        .all(|d| d.source == "strings" && d.offset.is_none()));
}
