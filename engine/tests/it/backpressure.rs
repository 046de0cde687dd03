//! Backpressure: a slow sink slows the source and buffering stays bounded; exchanges in both
//! directions between workers never deadlock.

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_connectors::VecSource;
use sluice_engine::keys::{key_group, worker_for_key_group};
use sluice_engine::prelude::*;

use super::support::{channel_sink, run_ok, Numbered};

/// The most records one exchange fed by one source can hold in flight under `config`: the
/// configured bound plus a batch per worker.
///
/// A worker polls its source only while every exchange holds fewer than `max_in_flight`
/// records; one poll reads at most `batch_size` records, and the exchange's sender ships all
/// of them before the worker checks again. Every worker may pass its check just under the
/// limit at the same moment.
fn in_flight_bound(config: &Config) -> usize {
    config.get_max_in_flight() - 1 + config.get_parallelism() * config.get_batch_size()
}

/// Asserts that, per key, the ranks [`Numbered`] gave are `1..=n` exactly once each.
fn assert_ranked_once(what: &str, ranked: impl IntoIterator<Item = (u64, u64)>) {
    let mut by_key: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (key, rank) in ranked {
        by_key.entry(key).or_default().push(rank);
    }
    for (key, mut ranks) in by_key {
        ranks.sort_unstable();
        let n = ranks.len() as u64;
        assert_eq!(ranks, (1..=n).collect::<Vec<_>>(), "{what}: key {key}");
    }
}

#[test]
fn slow_sink_keeps_records_in_flight_bounded_and_loses_nothing() {
    const N: u64 = 10_000;
    // A worker runs its source and its share of the sink in one loop. For the source to be
    // much faster than the sink, it reads on worker 0 (one split) and every key belongs to
    // worker 1, whose sink sleeps.
    let keys: Vec<u64> = (0..)
        .filter(|k| worker_for_key_group(key_group(k, 128), 128, 2) == 1)
        .take(10)
        .collect();
    // Room for 16 batches per channel, so the in-flight limit is what holds the source back;
    // then room for one, so a full channel is.
    for (capacity, limit_binds) in [(16, true), (1, false)] {
        let config = Config::default()
            .parallelism(2)
            .max_parallelism(128)
            .batch_size(16)
            .channel_capacity(capacity)
            .max_in_flight(64);
        let bound = in_flight_bound(&config);
        let env = StreamEnv::new(config);
        let (sink, out) = channel_sink();
        let keys = keys.clone();
        env.source(VecSource::new((0..N).collect()).splits(1))
            .key_by(move |x| keys[(x % 10) as usize])
            .process(Numbered::new)
            .sink(sink.slow(Duration::from_millis(1)));
        let (metrics, values) = run_ok(&env, &out);

        let exchange = &metrics.exchanges[0];
        let max = exchange.max_in_flight;
        if limit_binds {
            assert!(
                max >= 64,
                "the source was never held back by the in-flight limit (at most {max} in flight)"
            );
        }
        assert!(
            max <= bound,
            "channel capacity {capacity}: {max} records were in flight at once; the bound is {bound}"
        );
        assert_eq!(exchange.in_flight, 0);

        // Every record arrived, exactly once.
        assert_eq!(metrics.operator("sink").unwrap().records_in, N);
        let mut ids: Vec<u64> = values.iter().map(|&(x, _)| x).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..N).collect::<Vec<_>>());
        assert_ranked_once("ranks", values.iter().map(|&(x, rank)| (x % 10, rank)));
    }
}

#[test]
fn two_exchanges_crossing_workers_both_ways_complete_under_backpressure() {
    const N: u64 = 20_000;
    for parallelism in [2, 3] {
        let env = StreamEnv::new(
            Config::default()
                .parallelism(parallelism)
                .batch_size(4)
                .channel_capacity(1)
                .max_in_flight(8),
        );
        let (sink, out) = channel_sink();
        // Different keys in the two stages, so records cross from every worker to every other
        // in both exchanges at once.
        env.source(VecSource::new((0..N).collect()))
            .key_by(|x| x % 13)
            .process(Numbered::new)
            .name("first")
            .key_by(|&(x, _)| x % 11)
            .process(Numbered::new)
            .name("second")
            .sink(sink);
        let (metrics, values) = run_ok(&env, &out);

        let mut ids: Vec<u64> = values.iter().map(|&((x, _), _)| x).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..N).collect::<Vec<_>>(), "parallelism {parallelism}");
        assert_ranked_once("first", values.iter().map(|&((x, r), _)| (x % 13, r)));
        assert_ranked_once("second", values.iter().map(|&((x, _), r)| (x % 11, r)));
        assert_eq!(metrics.exchanges.len(), 2);
        assert!(metrics.exchanges.iter().all(|e| e.in_flight == 0));
    }
}
