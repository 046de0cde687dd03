//! Criterion benchmarks of the window workloads, each beside its hand-written single-threaded
//! loop: (a) tumbling count per key, 10K keys, 5-minute windows, 5 s disorder; (b) sliding
//! 5 min / 1 min; (c) sessions, 100K keys, 10 s gap; (d) keyed dedup with a 10-minute event-time
//! TTL. Run with `cargo bench --bench windows`.

mod common;

use criterion::{BenchmarkId, Criterion, Throughput};

use common::Kind;

const EVENTS: u64 = 2_000_000;

fn bench(c: &mut Criterion) {
    for (name, kind) in [
        ("tumbling", Kind::Tumbling),
        ("sliding", Kind::Sliding),
        ("session", Kind::Session),
        ("dedup", Kind::Dedup),
    ] {
        let w = kind.workload(EVENTS);
        let expected = kind.run_hand(w);
        let mut group = c.benchmark_group(format!("windows/{name}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements(EVENTS));
        group.bench_function("hand-written loop", |b| b.iter(|| kind.run_hand(w)));
        for workers in [1usize, 2] {
            assert_eq!(
                kind.run_sluice(w, workers),
                expected,
                "sluice ({workers} workers) and the hand-written loop disagree on {name}"
            );
            group.bench_with_input(BenchmarkId::new("sluice", workers), &workers, |b, &p| {
                b.iter(|| kind.run_sluice(w, p))
            });
        }
        group.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
