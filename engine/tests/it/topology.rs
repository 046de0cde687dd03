//! Graph shapes: union, fan-out, side outputs, and where keys are processed.

use std::collections::{BTreeMap, BTreeSet};

use crossbeam_channel::{unbounded, Sender};
use sluice_connectors::VecSource;
use sluice_engine::keys::{key_group, worker_for_key_group};
use sluice_engine::prelude::*;
use sluice_engine::BoxError;

use super::support::{bucket_oracle, channel_sink, run_ok, BucketTotal, Buckets, Event, Output};

fn event_source(env: &StreamEnv, events: Vec<Event>) -> Stream<Event> {
    env.source(VecSource::new(events))
        .with_watermarks(Watermarks::monotonous().timestamps(|e: &Event| e.ts))
}

#[test]
fn union_watermark_is_the_minimum_so_the_lagging_input_is_never_late() {
    // Two inputs far apart in event time. Were the union's watermark the maximum of its inputs,
    // every record of the lagging one would be late after the leading one's first batch.
    let ahead: Vec<Event> = (0..2_000)
        .map(|i| Event {
            key: i % 7,
            value: 1,
            ts: 1_000_000 + i as i64 * 10,
        })
        .collect();
    let behind: Vec<Event> = (0..2_000)
        .map(|i| Event {
            key: i % 7,
            value: 2,
            ts: i as i64 * 10,
        })
        .collect();
    let all: Vec<Event> = ahead.iter().chain(&behind).copied().collect();
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(8));
        let (sink, out) = channel_sink::<BucketTotal>();
        event_source(&env, ahead.clone())
            .union([event_source(&env, behind.clone())])
            .key_by(|e| e.key)
            .process(Buckets::new)
            .name("buckets")
            .sink(sink);
        let (metrics, mut got) = run_ok(&env, &out);
        got.sort_unstable();
        assert_eq!(got, bucket_oracle(&all), "parallelism {parallelism}");
        assert_eq!(metrics.operator("buckets").unwrap().late, 0);
        assert_eq!(metrics.operator("union").unwrap().records_in, 4_000);
    }
}

#[test]
fn fan_out_gives_every_consumer_every_record() {
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(32));
        let (all_sink, all) = channel_sink();
        let (quarters_sink, quarters) = channel_sink();
        let (sums_sink, sums) = channel_sink();
        let (keyed_sink, keyed) = channel_sink();

        let doubled = env
            .source(VecSource::new((0..1_000u64).collect()))
            .map(|x| x * 2);
        doubled.clone().sink(all_sink);
        let by_mod = doubled
            .clone()
            .filter(|x| x % 4 == 0)
            .name("mod4.keyed")
            .key_by(|x| x % 10);
        by_mod.clone().reduce(|a, b| a + b).sink(sums_sink);
        by_mod.into_stream().sink(keyed_sink);
        doubled.filter(|x| x % 4 == 0).sink(quarters_sink);

        let (metrics, mut got) = run_ok(&env, &all);
        got.sort_unstable();
        assert_eq!(got, (0..1_000).map(|x| x * 2).collect::<Vec<_>>());
        // The fan-out clones only what a filter keeps, but the filter still counts every record
        // it was offered.
        let filter = metrics.operator("mod4.keyed").expect("named filter");
        assert_eq!((filter.records_in, filter.records_out), (1_000, 500));
        let mut got = quarters.collected();
        got.sort_unstable();
        let expected: Vec<u64> = (0..1_000).map(|x| x * 2).filter(|x| x % 4 == 0).collect();
        assert_eq!(got, expected);
        let mut got = keyed.collected();
        got.sort_unstable();
        let mut expected_keyed: Vec<(u64, u64)> = expected.iter().map(|&x| (x % 10, x)).collect();
        expected_keyed.sort_unstable();
        assert_eq!(got, expected_keyed);
        let mut totals: BTreeMap<u64, u64> = BTreeMap::new();
        for (k, running) in sums.collected() {
            let t = totals.entry(k).or_default();
            *t = (*t).max(running);
        }
        let mut expected_totals: BTreeMap<u64, u64> = BTreeMap::new();
        for x in expected {
            *expected_totals.entry(x % 10).or_default() += x;
        }
        assert_eq!(totals, expected_totals, "parallelism {parallelism}");
    }
}

/// One `key_by` feeds several keyed operators, each taking part of it (`filter`), a new value
/// (`map_values`) or more input keyed alike (`union`): no further exchange, and every key's
/// records still meet on one worker (a running sum per key ends at the key's total only then).
#[test]
fn keyed_filter_map_and_union_keep_the_partitioning_without_an_exchange() {
    for parallelism in [1, 2, 3] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(16));
        let (evens_sink, evens) = channel_sink();
        let (merged_sink, merged) = channel_sink();
        let keyed = env
            .source(VecSource::new((0..2_000u64).collect()))
            .key_by(|x| x % 13);
        keyed
            .clone()
            .filter(|x| x % 2 == 0)
            .map_values(|x| x * 10)
            .reduce(|a, b| a + b)
            .sink(evens_sink);
        let others = env
            .source(VecSource::new((5_000..5_500u64).collect()))
            .key_by(|x| x % 13);
        keyed.union([others]).reduce(|a, b| a + b).sink(merged_sink);

        let (metrics, evens) = run_ok(&env, &evens);
        assert_eq!(metrics.exchanges.len(), 2, "one per key_by");
        let totals = |sums: Vec<(u64, u64)>| {
            let mut totals: BTreeMap<u64, u64> = BTreeMap::new();
            for (k, running) in sums {
                let t = totals.entry(k).or_default();
                *t = (*t).max(running);
            }
            totals
        };
        let oracle = |xs: &mut dyn Iterator<Item = (u64, u64)>| {
            let mut totals: BTreeMap<u64, u64> = BTreeMap::new();
            for (k, x) in xs {
                *totals.entry(k).or_default() += x;
            }
            totals
        };
        // Keys stay those of the original values.
        let expected = oracle(
            &mut (0..2_000u64)
                .filter(|x| x % 2 == 0)
                .map(|x| (x % 13, x * 10)),
        );
        assert_eq!(totals(evens), expected, "parallelism {parallelism}");
        let merged_expected = oracle(&mut (0..2_000u64).chain(5_000..5_500).map(|x| (x % 13, x)));
        assert_eq!(
            totals(merged.collected()),
            merged_expected,
            "parallelism {parallelism}"
        );
    }
}

/// Keeps positive values, routes negative ones to the side output `negative` and zeros to
/// `zero`, which nothing consumes.
struct Router {
    negative: OutputTag<i64>,
    zero: OutputTag<i64>,
}

impl KeyedProcessFunction<i64, i64> for Router {
    type Out = i64;
    fn process(&mut self, _key: &i64, v: i64, ctx: &mut Context<'_, i64, i64>) {
        match v {
            0 => ctx.output(&self.zero, v),
            v if v < 0 => ctx.output(&self.negative, v),
            v => ctx.emit(v),
        }
    }
}

#[test]
fn side_outputs_carry_what_the_process_function_routes_there() {
    let input: Vec<i64> = (-500..1_000).collect();
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(16));
        let (main_sink, main) = channel_sink();
        let (negative_sink, negative) = channel_sink();
        let negative_tag = OutputTag::new("negative");
        let zero_tag = OutputTag::new("zero");
        let tags = (negative_tag.clone(), zero_tag);
        let routed = env
            .source(VecSource::new(input.clone()))
            .key_by(|v| v.rem_euclid(3))
            .process(move |_| Router {
                negative: tags.0.clone(),
                zero: tags.1.clone(),
            })
            .name("router");
        // The side output feeds an exchange of its own, so it must also carry end of input.
        routed
            .side_output(&negative_tag)
            .key_by(|v| v % 5)
            .into_stream()
            .sink(negative_sink);
        routed.sink(main_sink);

        let (metrics, mut got) = run_ok(&env, &main);
        got.sort_unstable();
        assert_eq!(got, (1..1_000).collect::<Vec<_>>());
        let mut got: Vec<i64> = negative.collected().into_iter().map(|(_, v)| v).collect();
        got.sort_unstable();
        assert_eq!(got, (-500..0).collect::<Vec<_>>());

        let router = metrics.operator("router").unwrap();
        assert_eq!(router.records_in, 1_500);
        assert_eq!(router.records_out, 999);
        assert_eq!(router.side_output("negative"), 500);
        assert_eq!(router.side_output("(unconsumed)"), 1, "the zero");
    }
}

/// A sink that reports `(worker, key)` for every record it writes.
fn worker_reporting_sink(tx: Sender<Vec<(usize, u32)>>) -> impl Sink<(u32, u32)> {
    move |cx: &SinkContext| -> Result<Box<dyn SinkWriter<(u32, u32)>>, BoxError> {
        Ok(Box::new(WorkerReporter {
            worker: cx.worker,
            tx: tx.clone(),
        }))
    }
}

struct WorkerReporter {
    worker: usize,
    tx: Sender<Vec<(usize, u32)>>,
}

impl SinkWriter<(u32, u32)> for WorkerReporter {
    fn write(&mut self, batch: &mut Vec<Record<(u32, u32)>>) -> Result<(), BoxError> {
        let _ = self
            .tx
            .send(batch.drain(..).map(|r| (self.worker, r.value.0)).collect());
        Ok(())
    }
}

#[test]
fn every_key_is_processed_on_the_worker_that_owns_its_key_group() {
    for (parallelism, key_groups) in [(2, 128), (3, 128), (3, 7), (4, 4)] {
        let env = StreamEnv::new(
            Config::default()
                .parallelism(parallelism)
                .max_parallelism(key_groups)
                .batch_size(16),
        );
        let (tx, rx) = unbounded();
        let out = Output::new(rx);
        env.source(VecSource::new((0..5_000u32).map(|i| i % 300).collect()))
            .key_by(|k| *k)
            .into_stream()
            .sink(worker_reporting_sink(tx));
        let (_, seen) = run_ok(&env, &out);
        assert_eq!(seen.len(), 5_000);

        let mut workers: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
        for (worker, key) in seen {
            workers.entry(key).or_default().insert(worker);
        }
        assert_eq!(workers.len(), 300);
        for (key, on) in workers {
            let owner = worker_for_key_group(key_group(&key, key_groups), key_groups, parallelism);
            assert_eq!(
                on,
                BTreeSet::from([owner]),
                "key {key} at parallelism {parallelism} with {key_groups} key groups"
            );
        }
    }
}

/// A non-keyed process function sees the operator's watermark and the job clock.
struct SeeTime;

impl sluice_engine::process::ProcessFunction<u32> for SeeTime {
    type Out = (u32, i64, i64);
    fn process(&mut self, v: u32, ctx: &mut sluice_engine::process::ProcessContext<'_, Self::Out>) {
        ctx.emit((v, ctx.watermark(), ctx.processing_time()));
    }
}

#[test]
fn non_keyed_process_functions_see_the_watermark_and_the_clock() {
    let clock = sluice_engine::ManualClock::new(42_000);
    let env = StreamEnv::new(Config::default().clock(clock).batch_size(1));
    let (sink, out) = channel_sink();
    env.source(
        VecSource::with_timestamps((0..5u32).map(|i| (i64::from(i) * 1_000, i)).collect())
            .splits(1),
    )
    .with_watermarks(Watermarks::monotonous())
    .process(|| SeeTime)
    .sink(sink);
    let (_, mut seen) = run_ok(&env, &out);
    seen.sort();
    for (v, wm, now) in seen {
        assert_eq!(now, 42_000, "processing time comes from the job's clock");
        // Batches of one: the watermark of record v is the previous record's time minus 1.
        let expected = if v == 0 {
            i64::MIN
        } else {
            i64::from(v - 1) * 1_000 - 1
        };
        assert_eq!(wm, expected, "record {v}");
    }
}

/// Tags each record with the number of the batch it came in (counted by `start_batch`).
struct BatchNumber(u32);

impl sluice_engine::process::ProcessFunction<u32> for BatchNumber {
    type Out = (u32, u32);
    fn start_batch(&mut self) {
        self.0 += 1;
    }
    fn process(&mut self, v: u32, ctx: &mut sluice_engine::process::ProcessContext<'_, Self::Out>) {
        ctx.emit((v, self.0));
    }
}

#[test]
fn start_batch_runs_once_before_each_batch() {
    let env = StreamEnv::new(Config::default().batch_size(4));
    let (sink, out) = channel_sink();
    env.source(VecSource::new((0..10u32).collect()).splits(1))
        .process(|| BatchNumber(0))
        .sink(sink);
    let (_, mut seen) = run_ok(&env, &out);
    seen.sort();
    // One source split of ten records in batches of four: 4 + 4 + 2.
    let batches: Vec<u32> = seen.iter().map(|&(_, b)| b).collect();
    assert_eq!(batches, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3]);
}
