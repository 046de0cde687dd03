//! The jobs crate's integration tests: one test binary, one module per job.
//!
//! | module | guards |
//! |---|---|
//! | `trips` | trip summaries: golden file, order and parallelism independence, anomalies, state cleanup |
//! | `shifts` | driver shifts: golden file, order and parallelism independence, late data, state cleanup |
//! | `live` | live snapshots and the `LiveView`: golden files, order and parallelism independence, late data, state cleanup |
//! | `generator` | the simulated city: determinism by seed and per split, exact resumption, limits, event-time order, demand curve |
//! | `validate` | validation: golden file covering every rule, parallelism independence, no panics and one output per line (proptest) |
//! | `dedup` | dedup: golden file (repeats, horizon), order and parallelism independence |
//! | `surge` | surge: hand-computed golden file hitting every tier, order and parallelism independence, late events |
//! | `cli` | the `ridehail` binary end to end: default run, `generate | run --input -`, clear errors |
//! | `crash` | `ridehail run` SIGKILLed 20+ times and resumed from checkpoints: output equals a failure-free run's; `--resume` errors |
//! | `run` | `ridehail::start` over a file: spread over the workers for parsing, same output at 1 and 2 workers |
//! | `ingest` | generated data with faults at 1 and 2 workers: lines = valid + dead letters, valid = unique + duplicates |
//!
//! `fixtures` and `pipelines` hold what they share (inputs, running under a deadline, shuffles
//! within the watermark bound, golden files: run with `SLUICE_BLESS=1` to rewrite them, then check them by
//! hand). Inputs and expected outputs live in `tests/data`.

mod it {
    mod cli;
    mod crash;
    mod dedup;
    mod fixtures;
    mod generator;
    mod ingest;
    mod live;
    mod pipelines;
    mod run;
    mod shifts;
    mod surge;
    mod trips;
    mod validate;
}
