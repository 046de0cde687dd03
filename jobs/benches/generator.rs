//! Throughput of the simulated city ([`CityGenerator`]) on one core: lines per second of the
//! iterator, without and with the typical fault mix.
//! Run with `cargo bench -p sluice-jobs --bench generator`.

use std::time::Duration;

use criterion::{Criterion, Throughput};
use sluice_jobs::generator::{CityGenerator, Faults, GeneratorConfig};

const LINES: u64 = 1_000_000;

fn config(drivers: usize, faults: Faults) -> GeneratorConfig {
    GeneratorConfig {
        drivers,
        duration: None,
        max_lines: Some(LINES),
        faults,
        ..GeneratorConfig::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("generator");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(LINES));
    for (name, drivers, faults) in [
        ("200 drivers", 200, Faults::none()),
        ("2000 drivers", 2_000, Faults::none()),
        ("200 drivers, typical faults", 200, Faults::typical()),
    ] {
        let city = CityGenerator::new(config(drivers, faults)).expect("valid config");
        group.bench_function(name, |b| {
            b.iter(|| {
                let bytes: usize = city.lines().map(|l| l.len()).sum();
                assert!(bytes > 0);
                bytes
            })
        });
    }
    group.finish();
}

// By hand rather than `criterion_group!`, whose generated `pub fn` trips `missing_docs`.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
