//! Failures: a panic or an error fails the job promptly, naming the operator it came from; an
//! invalid configuration or graph is refused before anything runs.

use sluice_connectors::{CollectSink, VecSource};
use sluice_engine::prelude::*;

use super::support::{channel_sink, run, Event};

/// The record on which the exploding functions below panic.
const BOOM: u64 = 4_321;

fn numbers() -> VecSource<u64> {
    VecSource::new((0..10_000).collect())
}

/// Asserts that `result` is a panic of the operator called `name`, with `BOOM` in the message.
fn assert_panicked_in(result: Result<JobMetrics, JobError>, name: &str, parallelism: usize) {
    match result {
        Err(JobError::OperatorPanicked {
            operator, message, ..
        }) => {
            assert_eq!(operator.name, name, "parallelism {parallelism}");
            assert!(message.contains(&BOOM.to_string()), "message: {message}");
        }
        other => panic!("expected a panic in `{name}` at parallelism {parallelism}, got {other:?}"),
    }
}

#[test]
fn panic_in_a_map_fails_the_job_naming_the_map() {
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(64));
        let (sink, out) = channel_sink();
        env.source(numbers())
            .map(|x| if x == BOOM { panic!("boom at {x}") } else { x })
            .name("exploding map")
            .key_by(|x| x % 7)
            .into_stream()
            .sink(sink);
        assert_panicked_in(run(&env, &out).0, "exploding map", parallelism);
    }
}

struct ExplodeOn(u64);

impl KeyedProcessFunction<u64, u64> for ExplodeOn {
    type Out = u64;
    fn process(&mut self, _key: &u64, value: u64, ctx: &mut Context<'_, u64, u64>) {
        assert_ne!(value, self.0, "boom at {value}");
        ctx.emit(value);
    }
}

#[test]
fn panic_in_a_process_function_fails_the_job_naming_it() {
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(64));
        let (sink, out) = channel_sink();
        env.source(numbers())
            .key_by(|x| x % 7)
            .process(|_| ExplodeOn(BOOM))
            .name("exploding process")
            .sink(sink);
        assert_panicked_in(run(&env, &out).0, "exploding process", parallelism);
    }
}

/// Registers one event-time timer per key and panics when the timer of `BOOM`'s key fires,
/// which happens at the end of input, after the function has emitted other output.
struct ExplodeOnTimer;

impl KeyedProcessFunction<u32, Event> for ExplodeOnTimer {
    type Out = u32;
    fn process(&mut self, key: &u32, e: Event, ctx: &mut Context<'_, u32, u32>) {
        ctx.register_event_timer(key, e.ts + 1_000_000);
    }
    fn on_timer(&mut self, key: &u32, _t: Timer, ctx: &mut Context<'_, u32, u32>) {
        assert_ne!(*key as u64, BOOM % 10, "boom at {BOOM}");
        ctx.emit(*key);
    }
}

#[test]
fn panic_in_an_event_timer_fails_the_job_naming_the_process_function() {
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism));
        let (sink, out) = channel_sink();
        let events = (0..1_000).map(|i| Event {
            key: (i % 10) as u32,
            value: i,
            ts: i as i64,
        });
        env.source(VecSource::new(events.collect()))
            .with_watermarks(Watermarks::monotonous().timestamps(|e: &Event| e.ts))
            .key_by(|e| e.key)
            .process(|_| ExplodeOnTimer)
            .name("exploding timer")
            .sink(sink);
        assert_panicked_in(run(&env, &out).0, "exploding timer", parallelism);
    }
}

#[test]
fn failing_sink_fails_the_job_naming_the_sink() {
    for parallelism in [1, 2] {
        let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(16));
        let (sink, out) = channel_sink();
        // Operators: #0 source, #1 map, #2 sink.
        env.source(numbers())
            .map(|x| x + 1)
            .sink(sink.fail_after(3));
        match run(&env, &out).0 {
            Err(e @ JobError::OperatorFailed { .. }) => {
                let operator = e.operator().unwrap();
                assert_eq!((operator.id, operator.name.as_str()), (2, "sink"));
                assert!(e.to_string().contains("the sink refused the batch"), "{e}");
                assert!(!e.is_retryable());
            }
            other => panic!("expected the sink to fail the job, got {other:?}"),
        }
    }
}

#[test]
fn invalid_configs_are_refused_before_the_job_starts() {
    let cases = [
        ("parallelism 0", Config::default().parallelism(0)),
        (
            "max_parallelism < parallelism",
            Config::default().parallelism(4).max_parallelism(2),
        ),
        ("batch_size 0", Config::default().batch_size(0)),
        ("channel_capacity 0", Config::default().channel_capacity(0)),
        ("max_in_flight 0", Config::default().max_in_flight(0)),
    ];
    for (what, config) in cases {
        let env = StreamEnv::new(config);
        env.source(numbers()).sink(CollectSink::new());
        match env.execute() {
            Err(JobError::Config(msg)) => assert!(!msg.is_empty(), "{what}"),
            other => panic!("{what}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn side_output_requested_from_a_map_is_a_graph_error() {
    let env = StreamEnv::new(Config::default());
    let doubled = env.source(numbers()).map(|x| x * 2);
    let tag: OutputTag<u64> = OutputTag::new("odd");
    doubled.side_output(&tag).sink(CollectSink::new());
    doubled.sink(CollectSink::new());
    match env.execute() {
        Err(JobError::Graph(msg)) => assert!(msg.contains("odd") && msg.contains("map"), "{msg}"),
        other => panic!("expected a graph error, got {other:?}"),
    }
}

#[test]
fn executing_a_job_twice_is_a_graph_error() {
    let env = StreamEnv::new(Config::default());
    let out = CollectSink::new();
    env.source(numbers()).sink(out.clone());
    env.execute().unwrap();
    assert!(matches!(env.execute(), Err(JobError::Graph(_))));
    assert_eq!(
        out.len(),
        10_000,
        "the second execute must not run anything"
    );
}

#[test]
fn job_without_operators_is_a_graph_error() {
    let env = StreamEnv::new(Config::default());
    assert!(matches!(env.execute(), Err(JobError::Graph(_))));
}
