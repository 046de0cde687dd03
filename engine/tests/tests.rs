//! The engine's integration tests: one test binary, one module per concern.
//!
//! | module | guards |
//! |---|---|
//! | `properties` | keyed aggregates and event-time timers against a sequential oracle, at 1, 2 and 4 workers |
//! | `backpressure` | bounded buffering under a slow sink; no deadlock between exchanges |
//! | `failures` | panics and errors name the operator; invalid configs and graphs are refused |
//! | `topology` | union, fan-out, side outputs, key-group routing |
//! | `ttl` | event-time TTL of keyed state: expiry by watermark only, sweeping to zero |
//! | `windows` | tumbling, sliding and session windows against oracles; lateness, late data, state cleanup |
//! | `live` | idleness, processing-time timers, stop and cancel of unbounded jobs |
//!
//! Every job runs under a deadline (see `support`): a hang fails its test instead of the suite.
//! No test sleeps; time moves through a `ManualClock`. The one sleeper is the slow sink, whose
//! whole point is to be slow.

mod it {
    mod alignment;
    mod backpressure;
    mod checkpoints;
    mod crash;
    mod failures;
    mod live;
    mod properties;
    mod support;
    mod topology;
    mod ttl;
    mod windows;
}
