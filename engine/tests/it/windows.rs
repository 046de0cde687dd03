//! Windows against Flink's semantics (see `sluice_engine::window`).
//!
//! - Properties against brute-force oracles that compute the windows of the whole input in one
//!   pass: tumbling (with and without offset), sliding (size a multiple of the slide or not) and
//!   session windows, with `count`, `aggregate`, `reduce` and `process`, at 1, 2 and 4 workers
//!   and batch sizes 1 and 1024. The input is disordered within the watermark bound, so nothing
//!   is late and the results must be the oracle's exactly.
//! - A property with disorder *beyond* the bound, against an element-by-element model of the
//!   semantics (allowed lateness, updates, late-data output) at one worker with one split, where
//!   the arrival order and the watermarks are known; and at two workers, a conservation law:
//!   every element lands in exactly one final result or in the late-data output.
//! - Examples for what the properties cannot pin down: sessions bridged by an out-of-order
//!   element, updates within the allowed lateness, the end of input, records without
//!   timestamps, invalid specs, state cleanup, and regressions for the bugs this suite found.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sluice_connectors::{CollectSink, VecSource};
use sluice_engine::prelude::*;
use sluice_engine::window::WindowSpec;
use sluice_engine::{BoxError, JobHandle};

/// How long any job of this module may take before its test fails as hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// Every (parallelism, batch size) the no-late properties run at.
const SHAPES: [(usize, usize); 6] = [(1, 1), (1, 1024), (2, 1), (2, 1024), (4, 1), (4, 1024)];

/// 24 cases per property (`PROPTEST_CASES` overrides it, for a longer soak).
fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(24),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(n as u64)
}

// ---------------------------------------------------------------------------------------------
// Elements, results, running jobs
// ---------------------------------------------------------------------------------------------

/// A keyed, timestamped element. `id` is unique within an input, so results can name exactly
/// which elements they hold.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
struct Ev {
    key: u32,
    ts: Timestamp,
    id: u32,
    value: i64,
}

/// A window result flattened for comparison: (key, start, end, value, is_update).
type Row<V> = (u32, Timestamp, Timestamp, V, bool);

fn row<V>(r: WindowResult<u32, V>) -> Row<V> {
    (r.key, r.window.start, r.window.end, r.value, r.is_update)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// What tells two multisets apart: the values only in `got` and those only in `want` (the first
/// few of each), or `None` if they are equal.
fn multiset_diff<T: Ord + Clone + std::fmt::Debug>(got: &[T], want: &[T]) -> Option<String> {
    let count = |v: &[T]| {
        let mut m: BTreeMap<T, i64> = BTreeMap::new();
        for x in v {
            *m.entry(x.clone()).or_default() += 1;
        }
        m
    };
    let (g, w) = (count(got), count(want));
    let only = |a: &BTreeMap<T, i64>, b: &BTreeMap<T, i64>| -> Vec<(T, i64)> {
        a.iter()
            .filter_map(|(x, n)| {
                let extra = n - b.get(x).copied().unwrap_or(0);
                (extra > 0).then(|| (x.clone(), extra))
            })
            .take(12)
            .collect()
    };
    let (extra, missing) = (only(&g, &w), only(&w, &g));
    if extra.is_empty() && missing.is_empty() {
        None
    } else {
        Some(format!(
            "{} values vs {} expected\n  unexpected (value, times): {extra:?}\n  missing (value, times): {missing:?}",
            got.len(),
            want.len()
        ))
    }
}

/// Asserts that `got` and `want` hold the same values, as multisets.
#[track_caller]
fn assert_same<T: Ord + Clone + std::fmt::Debug>(got: &[T], want: &[T], what: &str) {
    if let Some(d) = multiset_diff(got, want) {
        panic!("{what}: {d}");
    }
}

/// Sums the elements' values: an [`Aggregate`] of our own.
struct SumValues;

impl Aggregate<Ev> for SumValues {
    type Acc = i64;
    type Out = i64;
    fn create(&self) -> i64 {
        0
    }
    fn add(&self, acc: &mut i64, e: Ev) {
        *acc += e.value;
    }
    fn merge(&self, acc: &mut i64, other: i64) {
        *acc += other;
    }
    fn finish(&self, acc: &i64) -> i64 {
        *acc
    }
}

/// The sorted ids of a window's elements (the `process` window function of these tests).
fn ids_of(key: &u32, w: Window, evs: &[Ev]) -> Vec<u32> {
    for e in evs {
        assert_eq!(e.key, *key, "an element in another key's window");
        assert!(
            matches!(w, Window { start, end } if start <= e.ts && e.ts < end),
            "element {e:?} outside its window {w:?}"
        );
    }
    sorted(evs.iter().map(|e| e.id).collect())
}

/// Runs a job under [`DEADLINE`]: a hang fails the test (after cancelling the job) instead of
/// hanging the suite.
fn run(env: &StreamEnv) -> Result<JobMetrics, JobError> {
    let handle = env.start()?;
    wait(handle)
}

fn wait(handle: JobHandle) -> Result<JobMetrics, JobError> {
    let deadline = Instant::now() + DEADLINE;
    while !handle.is_finished() {
        if Instant::now() > deadline {
            handle.cancel();
            panic!("job did not end within {DEADLINE:?} (cancelled): a deadlock or a hang");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    handle.join()
}

fn run_ok(env: &StreamEnv) -> JobMetrics {
    run(env).unwrap_or_else(|e| panic!("job failed: {e}"))
}

/// `evs` as a stream with event time, with at most `bound` ms of disorder. Timestamps are either
/// attached by the source or extracted by the strategy: both must behave the same.
fn timed(env: &StreamEnv, evs: &[Ev], bound: i64, extract: bool, one_split: bool) -> Stream<Ev> {
    let strategy = Watermarks::bounded_out_of_orderness(ms(bound));
    if extract {
        let source = VecSource::new(evs.to_vec());
        let source = if one_split { source.splits(1) } else { source };
        env.source(source)
            .with_watermarks(strategy.timestamps(|e: &Ev| e.ts))
    } else {
        let source = VecSource::with_timestamps(evs.iter().map(|e| (e.ts, *e)).collect());
        let source = if one_split { source.splits(1) } else { source };
        env.source(source).with_watermarks(strategy)
    }
}

// ---------------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------------

/// The windows of `spec` (tumbling or sliding) that hold `ts`: every `start = offset + k *
/// slide` with `start <= ts < start + size`, found by brute force over a range of `k`.
fn fixed_windows(spec: WindowSpec, ts: Timestamp) -> Vec<Window> {
    let WindowSpec::Sliding {
        size,
        slide,
        offset,
    } = spec
    else {
        unreachable!("sessions have no fixed windows")
    };
    let first = (ts - size - offset).div_euclid(slide);
    let last = (ts - offset).div_euclid(slide) + 1;
    (first..=last)
        .map(|k| offset + k * slide)
        .filter(|&start| start <= ts && ts < start + size)
        .map(|start| Window {
            start,
            end: start + size,
        })
        .collect()
}

/// The windows of the whole input, computed in one pass: for each `(key, window)`, its elements.
fn oracle(spec: WindowSpec, evs: &[Ev]) -> BTreeMap<(u32, Window), Vec<Ev>> {
    let mut out: BTreeMap<(u32, Window), Vec<Ev>> = BTreeMap::new();
    match spec {
        WindowSpec::Sliding { .. } => {
            for e in evs {
                for w in fixed_windows(spec, e.ts) {
                    out.entry((e.key, w)).or_default().push(*e);
                }
            }
        }
        WindowSpec::Session { gap } => {
            let mut by_key: BTreeMap<u32, Vec<Ev>> = BTreeMap::new();
            for e in evs {
                by_key.entry(e.key).or_default().push(*e);
            }
            for (key, mut es) in by_key {
                es.sort_by_key(|e| e.ts);
                let mut cur: Option<(Window, Vec<Ev>)> = None;
                for e in es {
                    cur = Some(match cur {
                        // [ts, ts + gap) touches or overlaps the open session: merge.
                        Some((mut w, mut v)) if e.ts <= w.end => {
                            w.end = w.end.max(e.ts + gap);
                            v.push(e);
                            (w, v)
                        }
                        other => {
                            if let Some((w, v)) = other {
                                out.insert((key, w), v);
                            }
                            (
                                Window {
                                    start: e.ts,
                                    end: e.ts + gap,
                                },
                                vec![e],
                            )
                        }
                    });
                }
                if let Some((w, v)) = cur {
                    out.insert((key, w), v);
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Property 1: disorder within the bound, results equal the oracle exactly
// ---------------------------------------------------------------------------------------------

/// Up to 1500 elements over 16 keys and an out-of-orderness bound they respect: timestamps rise
/// by random steps from a random (possibly negative) origin, then each is pulled back by at
/// most the bound. An element is at most `bound` behind any earlier one, so none is late, at
/// any parallelism and batch size.
fn within_bound() -> impl Strategy<Value = (Vec<Ev>, i64)> {
    (0i64..=200, -1_000i64..1_000).prop_flat_map(|(bound, origin)| {
        prop::collection::vec((0u32..16, 0i64..=5, 0..=bound, -50i64..50), 0..=1_500).prop_map(
            move |raw| {
                let mut base = origin;
                let evs = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, (key, step, back, value))| {
                        base += step;
                        Ev {
                            key,
                            ts: base - back,
                            id: i as u32,
                            value,
                        }
                    })
                    .collect();
                (evs, bound)
            },
        )
    })
}

/// Runs `spec` over `evs` with `count`, `aggregate`, `reduce` and `process` in one job at every
/// shape, and checks each against the oracle: same multiset of results, none an update, none
/// late, every result stamped `end - 1`.
fn check_against_oracle(spec: WindowSpec, evs: &[Ev], bound: i64, extract: bool) {
    let want = oracle(spec, evs);
    let want_count: Vec<Row<u64>> = want
        .iter()
        .map(|((k, w), v)| (*k, w.start, w.end, v.len() as u64, false))
        .collect();
    let want_sum: Vec<Row<i64>> = want
        .iter()
        .map(|((k, w), v)| (*k, w.start, w.end, v.iter().map(|e| e.value).sum(), false))
        .collect();
    let want_ids: Vec<Row<Vec<u32>>> = want
        .iter()
        .map(|((k, w), v)| {
            let ids = sorted(v.iter().map(|e| e.id).collect());
            (*k, w.start, w.end, ids, false)
        })
        .collect();

    for (p, b) in SHAPES {
        let shape = format!("{spec:?} at parallelism {p}, batch size {b}");
        let env = StreamEnv::new(Config::default().parallelism(p).batch_size(b));
        let keyed = timed(&env, evs, bound, extract, false).key_by(|e: &Ev| e.key);
        let counts = CollectSink::new();
        let sums = CollectSink::new();
        let reduced = CollectSink::new();
        let ids = CollectSink::new();
        keyed.clone().window(spec).count().sink(counts.clone());
        keyed
            .clone()
            .window(spec)
            .aggregate(SumValues)
            .name("window_sum")
            .map(row)
            .sink(sums.clone());
        keyed
            .clone()
            .window(spec)
            .reduce(|a, b| Ev {
                value: a.value + b.value,
                ..*a
            })
            .map(|r| map_value(row(r), |e: Ev| e.value))
            .sink(reduced.clone());
        keyed
            .window(spec)
            .process(ids_of)
            .map(row)
            .sink(ids.clone());
        let metrics = run_ok(&env);

        for r in counts.records() {
            assert_eq!(
                r.timestamp,
                r.value.window.max_timestamp(),
                "{shape}: a result is stamped with its window's max timestamp"
            );
        }
        let got_count: Vec<Row<u64>> = counts.values().into_iter().map(row).collect();
        assert_same(&got_count, &want_count, &format!("{shape}: count"));
        assert_same(
            &sums.values(),
            &want_sum,
            &format!("{shape}: aggregate (sum)"),
        );
        assert_same(
            &reduced.values(),
            &want_sum,
            &format!("{shape}: reduce (sum)"),
        );
        assert_same(
            &ids.values(),
            &want_ids,
            &format!("{shape}: process (contents)"),
        );
        for name in [
            "window_count",
            "window_sum",
            "window_reduce",
            "window_process",
        ] {
            let m = metrics.operator(name).expect(name);
            assert_eq!(m.late, 0, "{shape}: {name} saw no late element");
            assert_eq!(m.records_in, evs.len() as u64, "{shape}: {name} input");
            assert_eq!(m.state_keys, 0, "{shape}: {name} state left at the end");
        }
    }
}

/// Replaces the value of a row.
fn map_value<V, U>(r: Row<V>, f: impl FnOnce(V) -> U) -> Row<U> {
    (r.0, r.1, r.2, f(r.3), r.4)
}

fn tumbling_spec() -> impl Strategy<Value = WindowSpec> {
    (1i64..=600, any::<bool>(), any::<prop::sample::Index>()).prop_map(|(size, offset, at)| {
        if offset {
            Tumbling::with_offset(ms(size), ms(at.index(size as usize) as i64))
        } else {
            Tumbling::of(ms(size))
        }
    })
}

/// Sliding specs: a size that is a multiple of the slide, one that is not (panes are then
/// `gcd(size, slide)` long), the classic 300 / 120, and one with an offset.
fn sliding_spec() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (5i64..=200, 1i64..=5).prop_map(|(slide, k)| Sliding::of(ms(slide * k), ms(slide))),
        (5i64..=200, 1i64..=600)
            .prop_map(|(slide, extra)| Sliding::of(ms(slide + extra), ms(slide))),
        Just(Sliding::of(ms(300), ms(120))),
        // The API has no offset for sliding windows, but the spec does.
        (5i64..=200, 1i64..=400, any::<prop::sample::Index>()).prop_map(|(slide, extra, at)| {
            WindowSpec::Sliding {
                size: slide + extra,
                slide,
                offset: at.index(slide as usize) as i64,
            }
        }),
    ]
}

fn session_spec() -> impl Strategy<Value = WindowSpec> {
    (1i64..=120).prop_map(|gap| Session::with_gap(ms(gap)))
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn tumbling_windows_match_the_oracle(
        spec in tumbling_spec(),
        (evs, bound) in within_bound(),
        extract in any::<bool>(),
    ) {
        check_against_oracle(spec, &evs, bound, extract);
    }

    #[test]
    fn sliding_windows_match_the_oracle(
        spec in sliding_spec(),
        (evs, bound) in within_bound(),
        extract in any::<bool>(),
    ) {
        check_against_oracle(spec, &evs, bound, extract);
    }

    /// Timestamps are made even and gaps odd, so that no element falls at exactly the end of
    /// another's session: that one case depends on arrival order (see
    /// `an_element_at_the_end_of_a_fired_session_starts_a_new_one`).
    #[test]
    fn session_windows_match_the_oracle(
        half_gap in 0i64..=60,
        (evs, bound) in within_bound(),
        extract in any::<bool>(),
    ) {
        let evs: Vec<Ev> = evs.into_iter().map(|e| Ev { ts: e.ts * 2, ..e }).collect();
        let spec = Session::with_gap(ms(2 * half_gap + 1));
        check_against_oracle(spec, &evs, 2 * bound, extract);
    }
}

// ---------------------------------------------------------------------------------------------
// Property 2: disorder beyond the bound, allowed lateness, late data
// ---------------------------------------------------------------------------------------------

/// What the model of the semantics says a run emits: results as (key, start, end, sorted ids,
/// is_update), in no particular order, and the ids of the late elements.
#[derive(Debug, Default)]
struct Outcome {
    results: Vec<Row<Vec<u32>>>,
    late: Vec<u32>,
}

/// `a + b` that does not overflow: windows near the end of time with a long lateness.
fn plus(a: Timestamp, b: i64) -> Timestamp {
    a.saturating_add(b)
}

/// One window (or session) of one key in the model.
#[derive(Debug, Clone)]
struct Open {
    window: Window,
    ids: Vec<u32>,
    /// Holds elements not yet in an emitted result.
    dirty: bool,
    /// A result for this window (or, for a session, for a part of it) was emitted.
    emitted: bool,
}

impl Open {
    fn fire(&mut self, key: u32, out: &mut Outcome) {
        let ids = sorted(self.ids.clone());
        out.results
            .push((key, self.window.start, self.window.end, ids, self.emitted));
        self.emitted = true;
        self.dirty = false;
    }
}

/// Flink's window semantics, element by element, written for clarity rather than speed:
///
/// - an element goes to its windows (a session: its own `[ts, ts + gap)` merged with every
///   session of the key it touches); windows whose max timestamp plus the lateness is at or
///   behind the watermark are gone, and an element with no window left is late;
/// - a window that receives an element while its max timestamp is at or behind the watermark
///   fires at once; otherwise it fires when the watermark reaches its max timestamp; a result
///   is an update if one was emitted before for that window (for a session: for any part);
/// - a window's state is dropped once the watermark reaches its max timestamp plus the lateness.
struct Model {
    spec: WindowSpec,
    lateness: i64,
    wm: Timestamp,
    /// Per key, its open windows.
    open: BTreeMap<u32, Vec<Open>>,
    out: Outcome,
}

impl Model {
    fn new(spec: WindowSpec, lateness: i64) -> Self {
        Self {
            spec,
            lateness,
            wm: Timestamp::MIN,
            open: BTreeMap::new(),
            out: Outcome::default(),
        }
    }

    fn element(&mut self, e: &Ev) {
        let wm = self.wm;
        let windows = match self.spec {
            WindowSpec::Sliding { .. } => fixed_windows(self.spec, e.ts),
            WindowSpec::Session { gap } => vec![Window {
                start: e.ts,
                end: plus(e.ts, gap),
            }],
        };
        let open = self.open.entry(e.key).or_default();
        let mut targets = Vec::new();
        match self.spec {
            WindowSpec::Sliding { .. } => {
                for w in windows {
                    if plus(w.max_timestamp(), self.lateness) <= wm {
                        continue;
                    }
                    let i = match open.iter().position(|o| o.window == w) {
                        Some(i) => i,
                        None => {
                            open.push(Open {
                                window: w,
                                ids: Vec::new(),
                                dirty: false,
                                emitted: false,
                            });
                            open.len() - 1
                        }
                    };
                    targets.push(i);
                }
            }
            WindowSpec::Session { .. } => {
                let mut merged = Open {
                    window: windows[0],
                    ids: Vec::new(),
                    dirty: false,
                    emitted: false,
                };
                let mut touched = false;
                open.retain(|o| {
                    let w = o.window;
                    if w.start <= merged.window.end && merged.window.start <= w.end {
                        merged.window.start = merged.window.start.min(w.start);
                        merged.window.end = merged.window.end.max(w.end);
                        merged.ids.extend(&o.ids);
                        merged.emitted |= o.emitted;
                        touched = true;
                        false
                    } else {
                        true
                    }
                });
                // Merging can only reach sessions that touch the element's own window, and
                // those do not touch each other: one pass is enough.
                if touched || plus(merged.window.max_timestamp(), self.lateness) > wm {
                    open.push(merged);
                    targets.push(open.len() - 1);
                }
            }
        }
        if targets.is_empty() {
            self.out.late.push(e.id);
            return;
        }
        for i in targets {
            let o = &mut open[i];
            o.ids.push(e.id);
            o.dirty = true;
            if o.window.max_timestamp() <= wm {
                o.fire(e.key, &mut self.out);
            }
        }
    }

    fn watermark(&mut self, wm: Timestamp) {
        if wm <= self.wm {
            return;
        }
        self.wm = wm;
        for (key, open) in &mut self.open {
            for o in open.iter_mut() {
                if o.dirty && o.window.max_timestamp() <= wm {
                    o.fire(*key, &mut self.out);
                }
            }
        }
        let lateness = self.lateness;
        for open in self.open.values_mut() {
            open.retain(|o| plus(o.window.max_timestamp(), lateness) > wm);
        }
    }

    /// A job at one worker with one split: the source reads `batch` elements per poll and
    /// emits a watermark after each batch but the last; the end of input is a final watermark.
    fn run(spec: WindowSpec, lateness: i64, bound: i64, batch: usize, evs: &[Ev]) -> Outcome {
        let mut m = Self::new(spec, lateness);
        let mut max_ts = Timestamp::MIN;
        let chunks: Vec<&[Ev]> = evs.chunks(batch).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            for e in *chunk {
                m.element(e);
                max_ts = max_ts.max(e.ts);
            }
            if i + 1 < chunks.len() {
                m.watermark(max_ts.saturating_sub(bound).saturating_sub(1));
            }
        }
        m.watermark(Timestamp::MAX);
        m.out
    }
}

/// Up to 800 elements over 16 keys: mostly within the bound, but about one in six is held back
/// beyond it, by a little or a lot (so it arrives after some of its windows fired, within the
/// allowed lateness or not).
fn beyond_bound() -> impl Strategy<Value = (Vec<Ev>, i64)> {
    (0i64..=50).prop_flat_map(|bound| {
        prop::collection::vec(
            (
                0u32..16,
                0i64..=6,
                0..=bound,
                0u8..6,
                prop_oneof![1i64..100, 1i64..1_500],
            ),
            0..=800,
        )
        .prop_map(move |raw| {
            let mut base = 0;
            let evs = raw
                .into_iter()
                .enumerate()
                .map(|(i, (key, step, back, roll, extra))| {
                    base += step;
                    let back = if roll == 0 { bound + extra } else { back };
                    Ev {
                        key,
                        ts: base - back,
                        id: i as u32,
                        value: 1,
                    }
                })
                .collect();
            (evs, bound)
        })
    })
}

/// What a job with a late-data output produced.
struct LateRun {
    counts: Vec<Row<u64>>,
    ids: Vec<Row<Vec<u32>>>,
    late_counted: Vec<Ev>,
    late_processed: Vec<Ev>,
    metrics: JobMetrics,
}

/// Runs `count` and `process` over `spec` with a late-data output each.
fn run_with_lateness(
    spec: WindowSpec,
    lateness: i64,
    evs: &[Ev],
    bound: i64,
    (p, b): (usize, usize),
    one_split: bool,
) -> LateRun {
    let env = StreamEnv::new(Config::default().parallelism(p).batch_size(b));
    let keyed = timed(&env, evs, bound, false, one_split).key_by(|e: &Ev| e.key);
    let (late_c, late_p) = (OutputTag::new("late count"), OutputTag::new("late process"));
    let (counts, ids) = (CollectSink::new(), CollectSink::new());
    let (late_counted, late_processed) = (CollectSink::new(), CollectSink::new());
    let counted = keyed
        .clone()
        .window(spec)
        .allowed_lateness(ms(lateness))
        .late_data(&late_c)
        .count();
    counted.side_output(&late_c).sink(late_counted.clone());
    counted.map(row).sink(counts.clone());
    let processed = keyed
        .window(spec)
        .allowed_lateness(ms(lateness))
        .late_data(&late_p)
        .process(ids_of);
    processed.side_output(&late_p).sink(late_processed.clone());
    processed.map(row).sink(ids.clone());
    let metrics = run_ok(&env);
    for r in late_counted.records() {
        assert_eq!(r.timestamp, r.value.ts, "late data keeps its timestamp");
    }
    LateRun {
        counts: counts.sorted_values(),
        ids: ids.sorted_values(),
        late_counted: late_counted.sorted_values(),
        late_processed: late_processed.sorted_values(),
        metrics,
    }
}

/// What holds however the elements arrived: `count` and `process` saw the same thing; the late
/// metric is the late output; and every element lands exactly once, in the *final* result of
/// its window (or session) or in the late output. A result is final unless a later one of the
/// same key holds all its elements and more (an update of the same window, or of a session that
/// grew by merging).
fn check_conservation(spec: WindowSpec, evs: &[Ev], got: &LateRun, what: &str) {
    let as_counts: Vec<Row<u64>> = sorted(
        got.ids
            .iter()
            .map(|r| map_value(r.clone(), |ids| ids.len() as u64))
            .collect(),
    );
    assert_eq!(got.counts, as_counts, "{what}: count and process agree");
    assert_eq!(
        got.late_counted, got.late_processed,
        "{what}: both operators found the same elements late"
    );
    let late_metric = |name: &str| got.metrics.operator(name).expect(name).late;
    assert_eq!(
        late_metric("window_count"),
        got.late_counted.len() as u64,
        "{what}: late metric of count"
    );
    assert_eq!(
        late_metric("window_process"),
        got.late_processed.len() as u64,
        "{what}: late metric of process"
    );
    let side = |name: &str, tag: &str| got.metrics.operator(name).expect(name).side_output(tag);
    assert_eq!(
        side("window_count", "late count"),
        got.late_counted.len() as u64
    );

    // Final results: per key, the id sets no other result's set strictly contains. A result is
    // emitted again only with a new element, so no key shows the same set twice.
    let mut by_key: BTreeMap<u32, BTreeSet<Vec<u32>>> = BTreeMap::new();
    for (key, start, end, ids, _) in &got.ids {
        let fresh = by_key.entry(*key).or_default().insert(ids.clone());
        assert!(
            fresh,
            "{what}: key {key} [{start}, {end}): {ids:?} emitted twice"
        );
    }
    let mut finals: Vec<(u32, Vec<u32>)> = Vec::new();
    for (key, sets) in &by_key {
        for s in sets {
            let covered = sets
                .iter()
                .any(|t| t.len() > s.len() && s.iter().all(|i| t.binary_search(i).is_ok()));
            if !covered {
                finals.push((*key, s.clone()));
            }
        }
    }
    let mut landed: Vec<u32> = finals.iter().flat_map(|(_, s)| s.clone()).collect();
    landed.extend(got.late_processed.iter().map(|e| e.id));
    landed.sort();
    let all: Vec<u32> = sorted(evs.iter().map(|e| e.id).collect());
    assert_same(
        &landed,
        &all,
        &format!(
            "{what} {spec:?}: every element in exactly one final result or in the late output"
        ),
    );
    // The same law with counts (count's results are process's, checked above): the final
    // results' counts plus the late elements.
    let final_counts: u64 = finals.iter().map(|(_, s)| s.len() as u64).sum();
    assert_eq!(
        final_counts + got.late_counted.len() as u64,
        evs.len() as u64,
        "{what}: counts of final results + late = input"
    );
}

fn late_spec() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![tumbling_spec(), sliding_spec(), session_spec()]
}

fn lateness() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), 1i64..=600]
}

proptest! {
    #![proptest_config(proptest_config())]

    /// At one worker with one split, arrival order and watermarks are known: results and late
    /// output must be the model's exactly.
    #[test]
    fn late_elements_update_or_go_to_the_late_output_as_the_model_says(
        spec in late_spec(),
        lateness in lateness(),
        (evs, bound) in beyond_bound(),
        batch in prop_oneof![Just(1usize), Just(7), Just(1024)],
    ) {
        let want = Model::run(spec, lateness, bound, batch, &evs);
        let got = run_with_lateness(spec, lateness, &evs, bound, (1, batch), true);
        let what = format!("{spec:?}, lateness {lateness}, bound {bound}, batch {batch}");
        if let Some(d) = multiset_diff(&got.ids, &want.results) {
            return Err(TestCaseError::fail(format!("{what}: results: {d}")));
        }
        let late: Vec<u32> = got.late_processed.iter().map(|e| e.id).collect();
        if let Some(d) = multiset_diff(&late, &want.late) {
            return Err(TestCaseError::fail(format!("{what}: late output: {d}")));
        }
        if !matches!(spec, WindowSpec::Sliding { size, slide, .. } if size != slide) {
            check_conservation(spec, &evs, &got, &what);
        }
    }

    /// At two workers the arrival order is not known; what must hold anyway does.
    #[test]
    fn every_element_lands_once_in_a_final_result_or_the_late_output(
        spec in prop_oneof![tumbling_spec(), session_spec()],
        lateness in lateness(),
        (evs, bound) in beyond_bound(),
        batch in prop_oneof![Just(1usize), Just(1024)],
    ) {
        let got = run_with_lateness(spec, lateness, &evs, bound, (2, batch), false);
        let what = format!("parallelism 2, lateness {lateness}, bound {bound}, batch {batch}");
        check_conservation(spec, &evs, &got, &what);
    }
}

// ---------------------------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------------------------

/// Elements `(key, ts)` in this exact arrival order, one per batch, at one worker: the watermark
/// after each is `max ts so far - bound - 1`.
fn in_order(env: &StreamEnv, items: &[(u32, Timestamp)], bound: i64) -> KeyedStream<u32, Ev> {
    let evs: Vec<(Timestamp, Ev)> = items
        .iter()
        .enumerate()
        .map(|(i, &(key, ts))| {
            (
                ts,
                Ev {
                    key,
                    ts,
                    id: i as u32,
                    value: 1,
                },
            )
        })
        .collect();
    env.source(VecSource::with_timestamps(evs).splits(1))
        .with_watermarks(Watermarks::bounded_out_of_orderness(ms(bound)))
        .key_by(|e: &Ev| e.key)
}

fn one_by_one() -> StreamEnv {
    StreamEnv::new(Config::default().parallelism(1).batch_size(1))
}

#[test]
fn an_out_of_order_element_bridges_two_sessions_into_one() {
    // Gap 10: 0 and 20 open [0, 10) and [20, 30); 10, arriving after both (and not late with a
    // bound of 25), touches both: one session [0, 30) of 3 elements. Then 100 moves the
    // watermark past it.
    let env = one_by_one();
    let out = CollectSink::new();
    in_order(&env, &[(1, 0), (1, 20), (1, 10), (1, 100)], 25)
        .window(Session::with_gap(ms(10)))
        .count()
        .map(row)
        .sink(out.clone());
    let metrics = run_ok(&env);
    assert_eq!(
        out.sorted_values(),
        vec![(1, 0, 30, 3, false), (1, 100, 110, 1, false)]
    );
    assert_eq!(metrics.operator("window_count").unwrap().late, 0);
}

#[test]
fn an_element_that_touches_neither_session_does_not_bridge_them() {
    // Gap 10: [0, 10) and [25, 35); 12 opens [12, 22), which touches neither.
    let env = one_by_one();
    let out = CollectSink::new();
    in_order(&env, &[(1, 0), (1, 25), (1, 12)], 30)
        .window(Session::with_gap(ms(10)))
        .count()
        .map(row)
        .sink(out.clone());
    run_ok(&env);
    assert_eq!(
        out.sorted_values(),
        vec![
            (1, 0, 10, 1, false),
            (1, 12, 22, 1, false),
            (1, 25, 35, 1, false)
        ]
    );
}

#[test]
fn touching_sessions_merge_while_both_are_open() {
    // Gap 10: [0, 10) and [10, 20) touch. 10 arrives before [0, 10) fires: one session.
    let env = one_by_one();
    let out = CollectSink::new();
    in_order(&env, &[(1, 0), (1, 10)], 0)
        .window(Session::with_gap(ms(10)))
        .count()
        .map(row)
        .sink(out.clone());
    run_ok(&env);
    assert_eq!(out.values(), vec![(1, 0, 20, 2, false)]);
}

#[test]
fn an_element_at_the_end_of_a_fired_session_starts_a_new_one() {
    // As in Flink: [0, 10) fires when the watermark reaches 9 (here on 10 of key 2); 10 of key 1
    // is then not late (10 > 9) but [0, 10) is gone, so it opens [10, 20).
    let env = one_by_one();
    let out = CollectSink::new();
    in_order(&env, &[(1, 0), (2, 10), (1, 10)], 0)
        .window(Session::with_gap(ms(10)))
        .count()
        .map(row)
        .filter(|r| r.0 == 1)
        .sink(out.clone());
    let metrics = run_ok(&env);
    assert_eq!(
        out.values(),
        vec![(1, 0, 10, 1, false), (1, 10, 20, 1, false)]
    );
    assert_eq!(metrics.operator("window_count").unwrap().late, 0);
}

#[test]
fn a_bridging_element_behind_the_watermark_updates_both_fired_sessions_at_once() {
    // Monotonous watermark, gap 10, lateness 100. 0, 20 and 40: [0, 10) and [20, 30) fired.
    // Then 10 (within the lateness) bridges them: [0, 30) is behind the watermark, so it fires
    // at once, as an update.
    let env = one_by_one();
    let out = CollectSink::new();
    in_order(&env, &[(1, 0), (1, 20), (1, 40), (1, 10)], 0)
        .window(Session::with_gap(ms(10)))
        .allowed_lateness(ms(100))
        .count()
        .map(row)
        .sink(out.clone());
    run_ok(&env);
    assert_eq!(
        out.values(),
        vec![
            (1, 0, 10, 1, false),
            (1, 20, 30, 1, false),
            (1, 0, 30, 3, true),
            (1, 40, 50, 1, false),
        ]
    );
}

#[test]
fn a_session_merged_with_a_fired_one_fires_when_the_watermark_reaches_its_new_end() {
    // Regression: a session merged with one that had fired was marked fired as a whole, so if
    // the merged session ended past the watermark it was never emitted, and its elements were
    // lost. Monotonous watermark, gap 10, lateness 100: 0, then 20 (watermark 19: [0, 10)
    // fires), then 10 bridges [0, 10) and the open [20, 30) into [0, 30), which ends after the
    // watermark: it must fire (as an update) when the watermark reaches 29.
    let env = one_by_one();
    let out = CollectSink::new();
    in_order(&env, &[(1, 0), (1, 20), (1, 10), (1, 200)], 0)
        .window(Session::with_gap(ms(10)))
        .allowed_lateness(ms(100))
        .count()
        .map(row)
        .sink(out.clone());
    run_ok(&env);
    assert_eq!(
        out.values(),
        vec![
            (1, 0, 10, 1, false),
            (1, 0, 30, 3, true),
            (1, 200, 210, 1, false)
        ]
    );
}

#[test]
fn a_fired_session_extended_past_the_watermark_fires_again() {
    // Regression, the single-session case of the bug above. Gap 10, lateness 100, bound 5:
    // 0, then 15 (watermark 9: [0, 10) fires), then 3: [3, 13) extends [0, 10) to [0, 13),
    // which ends after the watermark: it must fire, as an update, when the watermark reaches 12.
    let env = one_by_one();
    let out = CollectSink::new();
    in_order(&env, &[(1, 0), (1, 15), (1, 3), (1, 100)], 5)
        .window(Session::with_gap(ms(10)))
        .allowed_lateness(ms(100))
        .count()
        .map(row)
        .sink(out.clone());
    run_ok(&env);
    assert_eq!(
        out.sorted_values(),
        vec![
            (1, 0, 10, 1, false),
            (1, 0, 13, 2, true),
            (1, 15, 25, 1, false),
            (1, 100, 110, 1, false)
        ]
    );
}

#[test]
fn allowed_lateness_updates_fired_windows_and_sends_later_elements_to_the_late_output() {
    // Tumbling 100 ms, lateness 50, monotonous watermark. 10 and 20, then 120 fires [0, 100)
    // with 2. 30 arrives within the lateness: an update with 3. 200 moves the watermark to 199,
    // past 99 + 50: [0, 100) is gone and 40 is late.
    let env = one_by_one();
    let tag = OutputTag::new("late");
    let (out, late) = (CollectSink::new(), CollectSink::new());
    let counted = in_order(
        &env,
        &[(1, 10), (1, 20), (1, 120), (1, 30), (1, 200), (1, 40)],
        0,
    )
    .window(Tumbling::of(ms(100)))
    .allowed_lateness(ms(50))
    .late_data(&tag)
    .count();
    counted
        .side_output(&tag)
        .map(|e: Ev| (e.key, e.ts))
        .sink(late.clone());
    counted.map(row).sink(out.clone());
    let metrics = run_ok(&env);
    assert_eq!(
        out.values(),
        vec![
            (1, 0, 100, 2, false),
            (1, 0, 100, 3, true),
            (1, 100, 200, 1, false),
            (1, 200, 300, 1, false),
        ]
    );
    assert_eq!(late.values(), vec![(1, 40)]);
    let m = metrics.operator("window_count").unwrap();
    assert_eq!(m.late, 1);
    assert_eq!(m.side_output("late"), 1);
}

#[test]
fn a_late_first_element_of_a_key_in_a_fired_window_is_not_an_update() {
    // Regression: tumbling and sliding windows marked every firing caused by an element behind
    // the watermark as an update, even for a key that had no result in that window yet (there
    // is nothing to replace). Sessions got it right. Key 1 makes [0, 100) fire; then key 2's
    // first element of [0, 100) arrives within the lateness.
    for spec in [
        Tumbling::of(ms(100)),
        Sliding::of(ms(100), ms(50)),
        Session::with_gap(ms(30)),
    ] {
        let env = one_by_one();
        let out = CollectSink::new();
        in_order(&env, &[(1, 10), (1, 150), (2, 60), (2, 70)], 0)
            .window(spec)
            .allowed_lateness(ms(200))
            .count()
            .map(row)
            // Key 2's window holding 60 that starts first (sliding windows: [0, 100)).
            .filter(|r| r.0 == 2 && (r.1 == 0 || r.1 == 60))
            .sink(out.clone());
        run_ok(&env);
        let got = out.values();
        assert_eq!(got.len(), 2, "{spec:?}: {got:?}");
        assert!(
            !got[0].4,
            "{spec:?}: the first result of key 2 is new: {got:?}"
        );
        assert!(got[1].4, "{spec:?}: the second replaces it: {got:?}");
        assert_eq!(got[1].3, 2, "{spec:?}: {got:?}");
    }
}

#[test]
fn windows_still_open_at_the_end_of_bounded_input_fire() {
    // Hour-long windows and a lagging watermark: only the final watermark fires them.
    for spec in [
        Tumbling::of(Duration::from_secs(3_600)),
        Sliding::of(Duration::from_secs(3_600), Duration::from_secs(1_800)),
        Session::with_gap(Duration::from_secs(3_600)),
    ] {
        let env = StreamEnv::new(Config::default().parallelism(2));
        let out = CollectSink::new();
        env.source(VecSource::with_timestamps(
            (0..100).map(|i| (i * 10, i as u32 % 3)).collect(),
        ))
        .with_watermarks(Watermarks::bounded_out_of_orderness(Duration::from_secs(5)))
        .key_by(|k: &u32| *k)
        .window(spec)
        .count()
        .map(|r| (r.key, r.value, r.is_update))
        .sink(out.clone());
        run_ok(&env);
        let per_window = match spec {
            WindowSpec::Sliding { size, slide, .. } if size != slide => 2,
            _ => 1,
        };
        let want: Vec<_> = [(0, 34), (1, 33), (2, 33)]
            .into_iter()
            .flat_map(|(k, n)| std::iter::repeat_n((k, n, false), per_window))
            .collect();
        assert_eq!(out.sorted_values(), want, "{spec:?}");
    }
}

#[test]
fn records_without_timestamps_are_late_not_dropped() {
    // No watermark strategy: records carry no timestamp, belong to no window, and are late
    // (counted, and in the late output), as documented.
    for spec in [Tumbling::of(ms(100)), Session::with_gap(ms(100))] {
        let env = StreamEnv::new(Config::default().parallelism(2));
        let tag = OutputTag::new("late");
        let (out, late) = (CollectSink::new(), CollectSink::new());
        let counted = env
            .source(VecSource::new((0..50u32).collect()))
            .key_by(|v: &u32| v % 4)
            .window(spec)
            .late_data(&tag)
            .count();
        counted.side_output(&tag).sink(late.clone());
        counted.sink(out.clone());
        let metrics = run_ok(&env);
        assert!(out.is_empty(), "{spec:?}");
        assert_eq!(
            late.sorted_values(),
            (0..50).collect::<Vec<_>>(),
            "{spec:?}"
        );
        assert_eq!(metrics.operator("window_count").unwrap().late, 50);
    }
}

#[test]
fn invalid_window_specs_are_refused_with_a_reason() {
    let cases = [
        (
            Sliding::of(ms(100), ms(200)),
            "window slide (200 ms) must not exceed its size (100 ms)",
        ),
        (Tumbling::of(Duration::ZERO), "must be positive"),
        (Sliding::of(ms(100), Duration::ZERO), "must be positive"),
        (Session::with_gap(Duration::ZERO), "session gap (0 ms)"),
        (Tumbling::with_offset(ms(100), ms(100)), "offset (100 ms)"),
    ];
    for (spec, reason) in cases {
        let env = StreamEnv::new(Config::default());
        let out = CollectSink::new();
        env.source(VecSource::with_timestamps(vec![(1, 1u32)]))
            .with_watermarks(Watermarks::monotonous())
            .key_by(|v: &u32| *v)
            .window(spec)
            .count()
            .sink(out.clone());
        match run(&env) {
            Err(JobError::Graph(msg)) => {
                assert!(
                    msg.contains(reason),
                    "{spec:?}: {msg:?} should say {reason:?}"
                )
            }
            other => panic!("{spec:?}: expected JobError::Graph, got {other:?}"),
        }
        assert!(out.is_empty());
    }
}

#[test]
fn a_huge_allowed_lateness_keeps_windows_until_the_end() {
    // Regression: `max timestamp + lateness` overflowed with a lateness near i64::MAX ms
    // (`Duration::MAX`, "keep forever"): a panic in debug builds, every window dropped at once
    // in release ones.
    for spec in [Tumbling::of(ms(100)), Session::with_gap(ms(100))] {
        let env = one_by_one();
        let out = CollectSink::new();
        in_order(&env, &[(1, 10), (1, 500), (1, 20)], 0)
            .window(spec)
            .allowed_lateness(Duration::MAX)
            .count()
            .map(row)
            .sink(out.clone());
        let metrics = run_ok(&env);
        let m = metrics.operator("window_count").unwrap();
        assert_eq!(m.late, 0, "{spec:?}");
        assert_eq!(m.state_keys, 0, "{spec:?}");
        let want_first = match spec {
            WindowSpec::Session { .. } => (1, 10, 110, 1, false),
            _ => (1, 0, 100, 1, false),
        };
        let got = out.values();
        assert_eq!(got[0], want_first, "{spec:?}: {got:?}");
        assert_eq!(got[1].3, 2, "{spec:?}: the update {got:?}");
        assert!(got[1].4, "{spec:?}: the update {got:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// State cleanup
// ---------------------------------------------------------------------------------------------

/// One split that emits its elements and then waits (`Pending`) until the job is stopped.
struct ThenWait {
    items: Arc<Vec<(Timestamp, u32)>>,
    drained: Arc<AtomicBool>,
}

struct ThenWaitReader {
    items: Arc<Vec<(Timestamp, u32)>>,
    next: usize,
    drained: Arc<AtomicBool>,
}

impl Source<u32> for ThenWait {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok(vec![Split::new("then-wait", 0)])
    }

    fn open(
        &self,
        _split: &Split,
        _pos: Option<u64>,
    ) -> Result<Box<dyn SplitReader<u32>>, BoxError> {
        Ok(Box::new(ThenWaitReader {
            items: self.items.clone(),
            next: 0,
            drained: self.drained.clone(),
        }))
    }
}

impl SplitReader<u32> for ThenWaitReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, u32>) -> Result<SourceStatus, BoxError> {
        while !out.is_full() && self.next < self.items.len() {
            let (ts, v) = self.items[self.next];
            out.push_at(ts, v);
            self.next += 1;
        }
        if self.next < self.items.len() {
            Ok(SourceStatus::More)
        } else {
            self.drained.store(true, Ordering::Release);
            Ok(SourceStatus::Pending)
        }
    }

    fn position(&self) -> u64 {
        self.next as u64
    }
}

#[test]
fn window_state_of_many_keys_is_dropped_once_the_watermark_passes_it() {
    // 3000 keys in the first second, then one element of key 0 at 100 s moves the watermark
    // far ahead. While the source waits, every window operator must hold state for key 0's
    // last window only; after the end, none.
    let mut items: Vec<(Timestamp, u32)> = (0..6_000).map(|i| (i as i64 / 6, i % 3_000)).collect();
    items.push((100_000, 0));
    let drained = Arc::new(AtomicBool::new(false));
    let env = StreamEnv::new(Config::default().parallelism(2).batch_size(256));
    let keyed = env
        .source(ThenWait {
            items: Arc::new(items),
            drained: drained.clone(),
        })
        .with_watermarks(Watermarks::bounded_out_of_orderness(ms(100)))
        .key_by(|k: &u32| *k);
    let names = ["tumbling", "sliding", "session"];
    for (spec, name) in [
        Tumbling::of(ms(100)),
        Sliding::of(ms(300), ms(120)),
        Session::with_gap(ms(50)),
    ]
    .into_iter()
    .zip(names)
    {
        keyed
            .clone()
            .window(spec)
            .allowed_lateness(ms(1_000))
            .count()
            .name(name)
            .sink(CollectSink::new());
    }
    let handle = env.start().expect("start");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let m = handle.metrics();
        let settled = drained.load(Ordering::Acquire)
            && names.iter().all(|n| {
                let op = m.operator(n).unwrap();
                op.records_in == 6_001 && op.state_keys == 1
            });
        if settled {
            break;
        }
        if Instant::now() > deadline {
            handle.cancel();
            panic!("window state was not cleaned up by the watermark: {m:#?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    handle.stop();
    let metrics = wait(handle).expect("job");
    for n in names {
        let op = metrics.operator(n).unwrap();
        assert_eq!(op.state_keys, 0, "{n}: {op:?}");
        assert_eq!(op.pending_timers, 0, "{n}: {op:?}");
        assert_eq!(op.late, 0, "{n}: {op:?}");
    }
}

#[test]
fn no_window_state_is_left_after_a_job_with_many_keys() {
    let evs: Vec<(Timestamp, u32)> = (0..20_000).map(|i| (i as i64 / 4, i % 5_000)).collect();
    let env = StreamEnv::new(Config::default().parallelism(2));
    let keyed = env
        .source(VecSource::with_timestamps(evs))
        .with_watermarks(Watermarks::bounded_out_of_orderness(ms(50)))
        .key_by(|k: &u32| *k);
    keyed
        .clone()
        .window(Tumbling::of(ms(1_000)))
        .allowed_lateness(ms(500))
        .count()
        .sink(CollectSink::new());
    keyed
        .clone()
        .window(Sliding::of(ms(1_000), ms(300)))
        .count()
        .name("sliding")
        .sink(CollectSink::new());
    keyed
        .window(Session::with_gap(ms(200)))
        .allowed_lateness(ms(500))
        .count()
        .name("session")
        .sink(CollectSink::new());
    let metrics = run_ok(&env);
    for n in ["window_count", "sliding", "session"] {
        let op = metrics.operator(n).unwrap();
        assert_eq!(op.records_in, 20_000, "{n}");
        assert_eq!(op.state_keys, 0, "{n}: {op:?}");
        assert_eq!(op.pending_timers, 0, "{n}: {op:?}");
    }
}
