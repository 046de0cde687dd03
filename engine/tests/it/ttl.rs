//! Event-time TTL of keyed state: values expire by the watermark, never by processing time, and
//! the state's size returns to zero once everything has expired.

use std::time::Duration;

use sluice_engine::prelude::*;
use sluice_engine::{JobHandle, ManualClock};

use super::support::{channel_sink, finish, LiveSource, DEADLINE};

/// Waits until the operator's state size is `n` (it is updated once per batch or watermark).
fn state_becomes(handle: &JobHandle, n: u64) {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let keys = handle.metrics().operator("remember").unwrap().state_keys;
        if keys == n {
            return;
        }
        if std::time::Instant::now() > deadline {
            handle.cancel();
            panic!("state_keys stayed at {keys}, expected {n}");
        }
        // Polling a gauge, not waiting for time to pass: nothing depends on how long this is.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Emits `(key, whether the key was still remembered)` and remembers it for 1 s of event time.
struct Remember {
    seen: ValueState<()>,
}

impl KeyedProcessFunction<u32, (u32, i64)> for Remember {
    type Out = (u32, bool);
    fn process(&mut self, key: &u32, _v: (u32, i64), ctx: &mut Context<'_, u32, (u32, bool)>) {
        let seen = ctx.value(self.seen);
        let was = seen.get(key).is_some();
        seen.set(key, ());
        ctx.emit((*key, was));
    }
}

#[test]
fn ttl_state_expires_by_event_time_not_processing_time_and_returns_to_zero() {
    let clock = ManualClock::new(0);
    let env = StreamEnv::new(Config::default().parallelism(2).clock(clock.clone()));
    let (source, feeds) = LiveSource::<(u32, i64)>::new(1);
    let feed = &feeds[0];
    let (sink, out) = channel_sink();
    env.source(source)
        .with_watermarks(Watermarks::monotonous().timestamps(|e: &(u32, i64)| e.1))
        .key_by(|e| e.0)
        .process(|reg| Remember {
            seen: reg.value_with_ttl("seen", Duration::from_secs(1)),
        })
        .name("remember")
        .sink(sink);
    let handle = env.start().expect("start");

    // 1000 keys written at event times 0..999.
    feed.push((0..1_000u32).map(|k| (k, i64::from(k))));
    assert_eq!(out.at_least(&handle, 1_000).len(), 1_000);
    state_becomes(&handle, 1_000);

    // Ten hours of processing time pass; event time does not move: nothing expires.
    clock.advance(Duration::from_secs(36_000));
    feed.push([(5_000, 999)]);
    assert_eq!(out.at_least(&handle, 1), vec![(5_000, false)]);
    state_becomes(&handle, 1_001);

    // Event time moves to 2000: everything written at 999 or before has expired (1 s TTL) and
    // is swept; key 0 is not remembered any more.
    // (Visibility follows the watermark, which moves after each batch: hence two pushes.)
    feed.push([(6_000, 2_000)]);
    out.at_least(&handle, 1);
    state_becomes(&handle, 1);
    feed.push([(0, 2_001)]);
    let last = out.at_least(&handle, 1);
    assert_eq!(last, vec![(0, false)], "an expired value is invisible");
    state_becomes(&handle, 2);

    // A value renewed by a write lives on from its new write time.
    feed.push([(0, 2_500), (7_000, 3_200)]);
    let renewed = out.at_least(&handle, 2);
    assert!(renewed.contains(&(0, true)), "{renewed:?}");
    // Keys 0 (renewed at 2500) and 7000; 6000 expired at 3000.
    state_becomes(&handle, 2);

    feed.close();
    let (result, _) = finish(handle, &out);
    let metrics = result.expect("job");
    assert_eq!(metrics.operator("remember").unwrap().state_keys, 0);
}
