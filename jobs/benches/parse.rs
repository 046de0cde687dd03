//! Throughput of [`parse_event`] (parse + validate; the geo zone is derived later, on first
//! use) on one core, over generated
//! lines; and of `serde_json` alone reading the same lines into a generic value, for scale.
//! Run with `cargo bench -p sluice-jobs --bench parse`.

use std::time::Duration;

use criterion::{Criterion, Throughput};
use sluice_jobs::event::{parse_event, Validation};
use sluice_jobs::generator::{CityGenerator, GeneratorConfig};

const LINES: u64 = 200_000;

fn bench(c: &mut Criterion) {
    let city = CityGenerator::new(GeneratorConfig {
        duration: None,
        max_lines: Some(LINES),
        ..GeneratorConfig::default()
    })
    .expect("valid config");
    let lines: Vec<String> = city.lines().collect();
    let cfg = Validation::default();
    let mut group = c.benchmark_group("parse");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(LINES));
    group.bench_function("parse_event", |b| {
        b.iter(|| {
            let valid = lines
                .iter()
                .filter(|l| parse_event(l, i64::MAX, &cfg).is_ok())
                .count();
            assert_eq!(valid as u64, LINES);
        })
    });
    group.bench_function("serde_json::Value", |b| {
        b.iter(|| {
            let n = lines
                .iter()
                .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
                .count();
            assert_eq!(n as u64, LINES);
        })
    });
    group.finish();
}

// By hand rather than `criterion_group!`, whose generated `pub fn` trips `missing_docs`.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
