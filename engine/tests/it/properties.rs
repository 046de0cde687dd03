//! Keyed operators against a sequential oracle: random keyed input, disordered within the
//! watermark bound, run at 1, 2 and 4 workers with batch sizes 1 and 1024.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use sluice_connectors::VecSource;
use sluice_engine::prelude::*;

use super::support::{bucket_oracle, channel_sink, run_ok, BucketTotal, Buckets, Event};

/// Every (parallelism, batch size) each property runs at.
const SHAPES: [(usize, usize); 6] = [(1, 1), (1, 1024), (2, 1), (2, 1024), (4, 1), (4, 1024)];

/// Few cases of up to 2000 records, each run at every shape: enough to find ordering bugs, and
/// quick in a debug build.
fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

/// Up to 2000 events over 20 keys, and an out-of-orderness bound (ms) they respect: timestamps
/// rise by random steps, then each is pulled back by at most the bound. A record is late only if
/// it is more than the bound behind an earlier timestamp, so none is.
fn disordered_events() -> impl Strategy<Value = (Vec<Event>, u64)> {
    (0u64..=100).prop_flat_map(|bound| {
        let raw = prop::collection::vec(
            (0u32..20, 1u64..1_000, 0i64..20, 0..=bound as i64),
            0..=2_000,
        );
        let events = raw.prop_map(|raw| {
            let mut base = 0;
            raw.into_iter()
                .map(|(key, value, step, back)| {
                    base += step;
                    Event {
                        key,
                        value,
                        ts: base - back,
                    }
                })
                .collect::<Vec<_>>()
        });
        (events, Just(bound))
    })
}

/// The events as a stream with event time: one split per worker, or a single split.
fn events(env: &StreamEnv, events: &[Event], bound: u64, one_split: bool) -> Stream<Event> {
    let source = VecSource::new(events.to_vec());
    let source = if one_split { source.splits(1) } else { source };
    env.source(source).with_watermarks(
        Watermarks::bounded_out_of_orderness(Duration::from_millis(bound))
            .timestamps(|e: &Event| e.ts),
    )
}

/// Runs a keyed running reduce of `(sum, count)`; returns every emission as
/// `(key, sum, count)`, in arrival order.
fn running_totals(
    input: &[Event],
    bound: u64,
    (parallelism, batch): (usize, usize),
    one_split: bool,
) -> Vec<(u32, u64, u64)> {
    let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(batch));
    let (sink, out) = channel_sink();
    events(&env, input, bound, one_split)
        .map(|e| (e.key, e.value, 1u64))
        .key_by(|t| t.0)
        .reduce(|acc, t| (t.0, acc.1 + t.1, acc.2 + t.2))
        .map(|(_, t)| t)
        .sink(sink);
    run_ok(&env, &out).1
}

/// Groups `(key, x, y)` by key, keeping their order.
fn by_key(values: impl IntoIterator<Item = (u32, u64, u64)>) -> BTreeMap<u32, Vec<(u64, u64)>> {
    let mut m: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for (k, a, b) in values {
        m.entry(k).or_default().push((a, b));
    }
    m
}

proptest! {
    #![proptest_config(proptest_config())]

    /// One split keeps each key's records in input order through the exchange, so every key's
    /// sequence of running totals is exactly the sequential one.
    #[test]
    fn running_reduce_over_one_split_emits_the_oracle_sequence_per_key(
        (input, bound) in disordered_events()
    ) {
        let mut running: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        let expected = by_key(input.iter().map(|e| {
            let t = running.entry(e.key).or_default();
            *t = (t.0 + e.value, t.1 + 1);
            (e.key, t.0, t.1)
        }));
        for shape in SHAPES {
            let got = by_key(running_totals(&input, bound, shape, true));
            prop_assert_eq!(&got, &expected, "(parallelism, batch size) = {:?}", shape);
        }
    }

    /// With a split per worker a key's records arrive interleaved in any order, so compare what
    /// does not depend on it: per key, one emission per record with counts `1..=n`, sums rising
    /// with the count, and the last sum the key's total.
    #[test]
    fn running_reduce_over_many_splits_counts_each_record_once_and_ends_at_the_total(
        (input, bound) in disordered_events()
    ) {
        let mut totals: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for e in &input {
            let t = totals.entry(e.key).or_default();
            *t = (t.0 + e.value, t.1 + 1);
        }
        for shape in SHAPES {
            let got = by_key(running_totals(&input, bound, shape, false));
            prop_assert_eq!(
                got.keys().collect::<Vec<_>>(),
                totals.keys().collect::<Vec<_>>(),
                "(parallelism, batch size) = {:?}", shape
            );
            for (key, mut emitted) in got {
                emitted.sort_by_key(|&(_, count)| count);
                let counts: Vec<u64> = emitted.iter().map(|&(_, c)| c).collect();
                let (total, n) = totals[&key];
                prop_assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "key {} at {:?}", key, shape);
                prop_assert!(
                    emitted.windows(2).all(|w| w[0].0 < w[1].0),
                    "key {} at {:?}: sums must rise with the count: {:?}", key, shape, emitted
                );
                prop_assert_eq!(emitted.last().map(|&(s, _)| s), Some(total), "key {} at {:?}", key, shape);
            }
        }
    }

    /// Event-time timers per key and bucket: since the disorder stays within the bound no record
    /// is late, so every bucket is complete when its timer fires and the output is exactly the
    /// oracle's.
    #[test]
    fn event_time_buckets_fired_by_timers_equal_the_oracle(
        (input, bound) in disordered_events()
    ) {
        let expected = bucket_oracle(&input);
        for (parallelism, batch) in SHAPES {
            let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(batch));
            let (sink, out) = channel_sink::<BucketTotal>();
            events(&env, &input, bound, false)
                .key_by(|e| e.key)
                .process(Buckets::new)
                .name("buckets")
                .sink(sink);
            let (metrics, mut got) = run_ok(&env, &out);
            got.sort_unstable();
            prop_assert_eq!(&got, &expected, "(parallelism, batch size) = {:?}", (parallelism, batch));
            let buckets = metrics.operator("buckets").unwrap();
            prop_assert_eq!(buckets.late, 0);
            prop_assert_eq!(buckets.records_in, input.len() as u64);
            prop_assert_eq!(buckets.pending_timers, 0);
            prop_assert_eq!(buckets.state_keys, 0);
        }
    }
}
