//! Live jobs: idle inputs, processing-time timers on a manual clock, and stopping or cancelling
//! a job whose source never ends.

use std::collections::BTreeSet;
use std::time::Duration;

use sluice_engine::prelude::*;
use sluice_engine::ManualClock;

use super::support::{channel_sink, finish, BucketTotal, Buckets, Endless, Event, LiveSource};

/// Ten records of `key`, one every 10 ms of event time from `start`, each of value 1.
fn ten(key: u32, start: Timestamp) -> impl Iterator<Item = Event> {
    (0..10).map(move |i| Event {
        key,
        value: 1,
        ts: start + i * 10,
    })
}

#[test]
fn idle_split_does_not_hold_back_event_time_timers() {
    for parallelism in [1, 2] {
        let clock = ManualClock::new(0);
        let env = StreamEnv::new(
            Config::default()
                .parallelism(parallelism)
                .clock(clock.clone()),
        );
        // At parallelism 2 each split has a worker of its own, so the idle split's worker
        // must say so through the exchange; at 1 both are splits of one source.
        let (source, feeds) = LiveSource::new(2);
        let (stalled, moving) = (&feeds[0], &feeds[1]);
        let (raw_sink, raw) = channel_sink::<Event>();
        let (sink, out) = channel_sink::<BucketTotal>();
        let events = env.source(source).with_watermarks(
            Watermarks::bounded_out_of_orderness(Duration::from_millis(10))
                .timestamps(|e: &Event| e.ts)
                .idle_after(Duration::from_millis(100)),
        );
        events.clone().sink(raw_sink);
        events.key_by(|e| e.key).process(Buckets::new).sink(sink);
        let handle = env.start().unwrap();

        stalled.push(ten(1, 0));
        moving.push(ten(2, 0));
        // Once the records are past the source, both splits have seen them, at processing time
        // 0, and hold the watermark at 79: no bucket can close yet.
        raw.at_least(&handle, 20);
        // The stalled split then says nothing for a second of processing time (the idle
        // timeout is 100 ms), while the moving one goes on, far ahead in event time.
        clock.advance(Duration::from_secs(1));
        moving.push(ten(2, 1_000));
        // The moving split's watermark (1_079) alone now drives the timers: both first buckets
        // close, long before the job ends.
        let mut fired = out.at_least(&handle, 2);
        fired.sort_unstable();
        assert_eq!(
            fired,
            vec![(1, 0, 10, 10), (2, 0, 10, 10)],
            "parallelism {parallelism}"
        );

        handle.stop();
        let (result, rest) = finish(handle, &out);
        result.expect("a stopped job ends OK");
        assert_eq!(rest, vec![(2, 10, 10, 10)], "parallelism {parallelism}");
    }
}

/// What [`Reminder`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Note {
    /// A processing-time timer was set for the key, at this time.
    Armed(u32, Timestamp),
    /// The key's timer fired.
    Fired(u32, Timestamp),
}

/// Sets a processing-time timer a second after it first sees a key.
struct Reminder {
    armed: ValueState<Timestamp>,
}

impl KeyedProcessFunction<u32, Event> for Reminder {
    type Out = Note;

    fn process(&mut self, key: &u32, _e: Event, ctx: &mut Context<'_, u32, Note>) {
        if ctx.value(self.armed).get(key).is_none() {
            let at = ctx.processing_time() + 1_000;
            ctx.value(self.armed).set(key, at);
            ctx.register_processing_timer(key, at);
            ctx.emit(Note::Armed(*key, at));
        }
    }

    fn on_timer(&mut self, key: &u32, timer: Timer, ctx: &mut Context<'_, u32, Note>) {
        assert_eq!(timer.domain, TimeDomain::ProcessingTime);
        assert_eq!(ctx.value(self.armed).remove(key), Some(timer.time));
        ctx.emit(Note::Fired(*key, timer.time));
    }
}

#[test]
fn processing_time_timers_fire_when_the_clock_reaches_them_and_not_at_end_of_input() {
    for parallelism in [1, 2] {
        let clock = ManualClock::new(10_000);
        let env = StreamEnv::new(
            Config::default()
                .parallelism(parallelism)
                .clock(clock.clone()),
        );
        let (source, feeds) = LiveSource::<Event>::new(1);
        let (sink, out) = channel_sink::<Note>();
        env.source(source)
            .key_by(|e| e.key)
            .process(|reg| Reminder {
                armed: reg.value("armed"),
            })
            .name("reminder")
            .sink(sink);
        let handle = env.start().unwrap();

        feeds[0].push((0..10).map(|key| Event {
            key,
            value: 1,
            ts: 0,
        }));
        let mut armed = out.at_least(&handle, 10);
        armed.sort_unstable();
        // The clock has not moved, so nothing can have fired.
        assert_eq!(
            armed,
            (0..10).map(|k| Note::Armed(k, 11_000)).collect::<Vec<_>>()
        );

        clock.advance(Duration::from_secs(1));
        let mut fired = out.at_least(&handle, 10);
        fired.sort_unstable();
        assert_eq!(
            fired,
            (0..10).map(|k| Note::Fired(k, 11_000)).collect::<Vec<_>>()
        );

        // A timer still pending when the input ends does not fire: a job does not wait for
        // the wall clock.
        feeds[0].push(ten(10, 0));
        assert_eq!(out.at_least(&handle, 1), vec![Note::Armed(10, 12_000)]);
        feeds[0].close();
        let (result, rest) = finish(handle, &out);
        let metrics = result.expect("a job whose input ended ends OK");
        assert_eq!(rest, vec![], "parallelism {parallelism}");
        assert_eq!(metrics.operator("reminder").unwrap().pending_timers, 1);
    }
}

/// Regression: the sending side of an exchange kept partial batches until a batch filled up or
/// a watermark came by, so a trickle of records from a live source without watermarks never
/// crossed a `key_by`.
#[test]
fn trickle_from_a_live_source_crosses_key_by_without_waiting_for_a_full_batch() {
    let env = StreamEnv::new(Config::default().parallelism(2));
    let (source, feeds) = LiveSource::<Event>::new(1);
    let (sink, out) = channel_sink();
    env.source(source)
        .key_by(|e| e.key)
        .into_stream()
        .sink(sink);
    let handle = env.start().unwrap();
    // A few records, for both workers, far fewer than a batch.
    let trickle: Vec<Event> = (0..10)
        .map(|key| Event {
            key,
            value: 1,
            ts: 0,
        })
        .collect();
    feeds[0].push(trickle.clone());
    let mut got = out.at_least(&handle, 10);
    got.sort_unstable();
    assert_eq!(
        got,
        trickle.into_iter().map(|e| (e.key, e)).collect::<Vec<_>>()
    );
    feeds[0].close();
    let (result, rest) = finish(handle, &out);
    result.expect("a job whose input ended ends OK");
    assert!(rest.is_empty());
}

#[test]
fn stop_drains_an_unbounded_source_and_fires_every_pending_timer() {
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(64));
        let (sink, out) = channel_sink::<BucketTotal>();
        env.source(Endless)
            .name("endless")
            .with_watermarks(Watermarks::monotonous().timestamps(|e: &Event| e.ts))
            .key_by(|e| e.key)
            .process(Buckets::new)
            .name("buckets")
            .sink(sink);
        let handle = env.start().unwrap();
        // Buckets close while the source runs...
        let early = out.at_least(&handle, 1);
        handle.stop();
        let (result, rest) = finish(handle, &out);
        let metrics = result.expect("a stopped job ends OK");

        // ...and at the stop, everything read is processed and every open bucket fires.
        let all: Vec<BucketTotal> = early.into_iter().chain(rest).collect();
        let read = metrics.operator("endless").unwrap().records_out;
        assert_eq!(all.iter().map(|b| b.2).sum::<u64>(), read);
        let buckets: BTreeSet<(u32, i64)> = all.iter().map(|b| (b.0, b.1)).collect();
        assert_eq!(buckets.len(), all.len(), "each bucket fires once");
        let op = metrics.operator("buckets").unwrap();
        assert_eq!(
            (op.records_in, op.pending_timers, op.state_keys),
            (read, 0, 0)
        );
    }
}

#[test]
fn cancel_ends_an_unbounded_job_with_cancelled() {
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism));
        let (sink, out) = channel_sink::<BucketTotal>();
        env.source(Endless)
            .with_watermarks(Watermarks::monotonous().timestamps(|e: &Event| e.ts))
            .key_by(|e| e.key)
            .process(Buckets::new)
            .sink(sink);
        let handle = env.start().unwrap();
        out.at_least(&handle, 1);
        handle.cancel();
        let (result, _) = finish(handle, &out);
        assert!(
            matches!(result, Err(JobError::Cancelled)),
            "parallelism {parallelism}: {result:?}"
        );
    }
}
