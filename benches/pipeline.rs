//! Keyed throughput of the whole runtime: generator -> map -> key_by -> keyed running sum ->
//! discarding sink, at 1 and 2 workers, beside a hand-written single-threaded loop doing the same
//! work.
//!
//! Run with `cargo bench --bench pipeline` (about a minute).
//!
//! The workload: event `i` (of [`EVENTS`]) has key `mix(i) % 10_000` and value `i & 0xff`; `map`
//! doubles the value; the running sum per key emits the sum so far for every record, as Flink's
//! `reduce` does. Two versions of it: `sluice` is a [`KeyedProcessFunction`] with a
//! `ValueState<i64>`, the same state as the hand loop's map; `sluice_reduce` is
//! `KeyedStream::reduce` over whole events. There are no watermarks: this measures keyed
//! throughput alone (records carry no timestamp, so nothing is late and no timer exists).
//!
//! What the gaps mean. Loop to one worker: the loop computes event `i + 1` while the probe of
//! event `i` waits on the cache, whereas the engine runs each operator over a whole batch, so
//! that wait is exposed. Dynamic calls are not the cost: `hand_batched`, the same five stages
//! batch by batch with no engine, runs about as fast as one worker. One worker to two: the
//! exchange writes every record once more, into per-destination batches read by another core.
//!
//! The source is written here, not taken from the connectors, so that the bench measures only
//! the engine: one split per worker, split `s` of `P` generating `i = s, s + P, s + 2P, ...`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use sluice::prelude::*;
use sluice::sink::SinkContext;
use sluice::BoxError;

/// Events per iteration: about 35 ms for the hand loop, 100 ms for one worker.
const EVENTS: u64 = 4_000_000;

/// Distinct keys.
const KEYS: u64 = 10_000;

/// One generated event.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Event {
    key: u32,
    value: i64,
}

/// Event `i`: a cheap deterministic spread of keys, a small value.
#[inline]
fn event(i: u64) -> Event {
    Event {
        key: ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % KEYS) as u32,
        value: (i & 0xff) as i64,
    }
}

/// The `map` step, shared by the loop and the job so both do the same work.
#[inline]
fn double(e: Event) -> Event {
    Event {
        key: e.key,
        value: e.value * 2,
    }
}

/// Generates events `0..n` in `splits` interleaved splits (one per worker).
struct Generator {
    n: u64,
    splits: u64,
}

struct GeneratorReader {
    /// The next event index.
    next: u64,
    /// Distance between this split's indices: the number of splits.
    step: u64,
    /// Index of this split (its first event).
    first: u64,
    n: u64,
}

impl Source<Event> for Generator {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok((0..self.splits as usize)
            .map(|s| Split::new(format!("gen-{s}"), s))
            .collect())
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<Event>>, BoxError> {
        let first = split.index as u64;
        Ok(Box::new(GeneratorReader {
            next: first + position.unwrap_or(0) * self.splits,
            step: self.splits,
            first,
            n: self.n,
        }))
    }
}

impl SplitReader<Event> for GeneratorReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, Event>) -> Result<SourceStatus, BoxError> {
        for _ in 0..out.remaining() {
            if self.next >= self.n {
                break;
            }
            out.push(event(self.next));
            self.next += self.step;
        }
        Ok(if self.next >= self.n {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> u64 {
        (self.next - self.first) / self.step
    }
}

/// The keyed running sum: for every record, adds its value to its key's sum and emits
/// `(key, sum so far)`, as Flink's `reduce` does. The state is an `i64` per key, as in the hand
/// loop, so both touch tables of the same size.
struct RunningSum {
    sum: ValueState<i64>,
}

impl KeyedProcessFunction<u32, Event> for RunningSum {
    type Out = (u32, i64);

    #[inline]
    fn process(&mut self, key: &u32, e: Event, ctx: &mut Context<'_, u32, (u32, i64)>) {
        let sums = ctx.value(self.sum);
        let sum = match sums.get_mut(key) {
            Some(sum) => {
                *sum += e.value;
                *sum
            }
            None => {
                sums.set(key, e.value);
                e.value
            }
        };
        ctx.emit((*key, sum));
    }
}

/// A sink that discards, folding what it sees into a checksum so nothing is optimised away, and
/// counting records so the bench can check that every one arrived.
struct Discard {
    seen: Arc<AtomicU64>,
}

struct DiscardWriter {
    checksum: i64,
    count: u64,
    seen: Arc<AtomicU64>,
}

impl<T: 'static> Sink<(u32, T)> for Discard
where
    DiscardWriter: SinkWriter<(u32, T)>,
{
    fn open(&self, _cx: &SinkContext) -> Result<Box<dyn SinkWriter<(u32, T)>>, BoxError> {
        Ok(Box::new(DiscardWriter {
            checksum: 0,
            count: 0,
            seen: self.seen.clone(),
        }))
    }
}

impl DiscardWriter {
    #[inline]
    fn write_with<T>(
        &mut self,
        batch: &mut Vec<Record<(u32, T)>>,
        sum: impl Fn(&T) -> i64,
    ) -> Result<(), BoxError> {
        self.count += batch.len() as u64;
        for r in batch.drain(..) {
            self.checksum = self.checksum.wrapping_add(sum(&r.value.1));
        }
        black_box(self.checksum);
        Ok(())
    }

    fn finish_count(&mut self) -> Result<(), BoxError> {
        self.seen.fetch_add(self.count, Ordering::Relaxed);
        Ok(())
    }
}

impl SinkWriter<(u32, i64)> for DiscardWriter {
    fn write(&mut self, batch: &mut Vec<Record<(u32, i64)>>) -> Result<(), BoxError> {
        self.write_with(batch, |sum| *sum)
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.finish_count()
    }
}

impl SinkWriter<(u32, Event)> for DiscardWriter {
    fn write(&mut self, batch: &mut Vec<Record<(u32, Event)>>) -> Result<(), BoxError> {
        self.write_with(batch, |e| e.value)
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.finish_count()
    }
}

/// Which keyed operator computes the running sum.
#[derive(Debug, Clone, Copy)]
enum Sum {
    /// [`RunningSum`]: an `i64` of state per key, like the hand loop.
    Process,
    /// `KeyedStream::reduce` over whole events: the general API, with an `Event` of state per key.
    Reduce,
}

/// Runs the job once at `workers` workers, one split per worker.
fn run_sluice(workers: usize, n: u64, sum: Sum) {
    let seen = Arc::new(AtomicU64::new(0));
    let env = StreamEnv::new(Config::default().parallelism(workers));
    let keyed = env
        .source(Generator {
            n,
            splits: workers as u64,
        })
        .map(double)
        .key_by(|e: &Event| e.key);
    let sink = Discard { seen: seen.clone() };
    match sum {
        Sum::Process => {
            keyed
                .process(|reg| RunningSum {
                    sum: reg.value("sum"),
                })
                .sink(sink);
        }
        Sum::Reduce => {
            keyed
                .reduce(|acc, e| Event {
                    key: e.key,
                    value: acc.value + e.value,
                })
                .sink(sink);
        }
    }
    env.execute().expect("the job runs");
    assert_eq!(
        seen.load(Ordering::Relaxed),
        n,
        "every running sum reached the sink"
    );
}

/// The same work by hand, on one thread: generate, map, running sum per key (in the map and with
/// the hasher the engine uses for keyed state), emit.
fn run_hand_loop(n: u64) {
    let mut sums: hashbrown::HashMap<u32, i64, foldhash::fast::FixedState> =
        hashbrown::HashMap::default();
    for i in 0..n {
        let e = double(event(i));
        let sum = sums.entry(e.key).or_insert(0);
        *sum += e.value;
        black_box(*sum);
    }
    black_box(&sums);
}

/// The same work by hand in the engine's shape: each stage a pass over a batch of up to 1024
/// records, with direct calls and no engine. What any batch-at-a-time engine could reach.
fn run_hand_batched(n: u64) {
    const BATCH: u64 = 1024;
    let mut sums: hashbrown::HashMap<u32, i64, foldhash::fast::FixedState> =
        hashbrown::HashMap::default();
    let mut generated: Vec<Record<Event>> = Vec::with_capacity(BATCH as usize);
    let mut mapped: Vec<Record<Event>> = Vec::with_capacity(BATCH as usize);
    let mut keyed: Vec<Record<(u32, Event)>> = Vec::with_capacity(BATCH as usize);
    let mut summed: Vec<Record<(u32, i64)>> = Vec::with_capacity(BATCH as usize);
    let mut checksum = 0i64;
    for start in (0..n).step_by(BATCH as usize) {
        generated.extend((start..n.min(start + BATCH)).map(|i| Record::new(0, event(i))));
        mapped.extend(
            generated
                .drain(..)
                .map(|r| Record::new(r.timestamp, double(r.value))),
        );
        keyed.extend(
            mapped
                .drain(..)
                .map(|r| Record::new(r.timestamp, (r.value.key, r.value))),
        );
        for r in keyed.drain(..) {
            let (key, e) = r.value;
            let sum = sums.entry(key).or_insert(0);
            *sum += e.value;
            summed.push(Record::new(r.timestamp, (key, *sum)));
        }
        for r in summed.drain(..) {
            checksum = checksum.wrapping_add(r.value.1);
        }
        black_box(checksum);
    }
}

fn keyed_running_sum(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_running_sum");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(EVENTS));
    group.bench_function("hand_loop", |b| b.iter(|| run_hand_loop(EVENTS)));
    group.bench_function("hand_batched", |b| b.iter(|| run_hand_batched(EVENTS)));
    for (name, sum) in [("sluice", Sum::Process), ("sluice_reduce", Sum::Reduce)] {
        for workers in [1, 2] {
            group.bench_function(format!("{name}/{workers}_workers"), |b| {
                b.iter(|| run_sluice(workers, EVENTS, sum))
            });
        }
    }
    group.finish();
}

// By hand rather than `criterion_group!`, whose generated `pub fn` trips `missing_docs`.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    keyed_running_sum(&mut c);
    c.final_summary();
}
