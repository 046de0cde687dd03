//! Workloads shared by the window benchmarks (`benches/windows.rs`, criterion) and the
//! throughput binary (`benches/windows_throughput.rs`): a seeded synthetic event source, the
//! sluice pipelines, and hand-written single-threaded loops that compute the same results.
//!
//! Every run returns a [`Summary`]: the number of results and an order-independent checksum, so
//! a sluice run and its hand-written twin can be compared exactly.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice::prelude::*;
use sluice::window::Count;
use sluice::BoxError;

/// One synthetic event: a key and an event timestamp (ms).
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub key: u64,
    pub ts: i64,
}

/// How events are generated.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Number of events.
    pub events: u64,
    /// Number of distinct keys.
    pub keys: u64,
    /// Event-time step between consecutive events, in microseconds.
    pub step_us: u64,
    /// Maximum disorder in ms (each timestamp is moved back by up to this much).
    pub disorder_ms: i64,
    /// Keys are dedup ids ([`dedup_id`]) instead of random keys.
    pub dedup: bool,
}

#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Workload {
    /// Event number `i`. Cheap on purpose (multiply-shift, no division) so that the benchmarks
    /// measure windowing, not generation.
    #[inline]
    pub fn event(&self, i: u64) -> Event {
        let h = mix(i);
        let jitter = ((h & 0xFFFF_FFFF) * self.disorder_ms as u64) >> 32;
        let key = if self.dedup {
            dedup_id(i)
        } else {
            ((h >> 32) * (self.keys & 0xFFFF_FFFF)) >> 32
        };
        // step_us / 1000 ms per event, in 32.32 fixed point.
        let step_fp = (self.step_us << 32) / 1000;
        let ts = ((i as u128 * step_fp as u128) >> 32) as i64;
        Event {
            key,
            ts: ts - jitter as i64,
        }
    }

    /// A source with one split per worker; split `s` of `n` yields events `s, s + n, ...`.
    pub fn source(&self) -> EventSource {
        EventSource { w: *self }
    }
}

pub struct EventSource {
    w: Workload,
}

struct EventReader {
    w: Workload,
    next: u64,
    stride: u64,
}

impl Source<Event> for EventSource {
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok((0..parallelism)
            .map(|i| Split::new(format!("events-{i}-of-{parallelism}"), i))
            .collect())
    }

    fn open(&self, split: &Split, _: Option<u64>) -> Result<Box<dyn SplitReader<Event>>, BoxError> {
        let stride = split
            .id
            .rsplit("-of-")
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or("malformed split id")?;
        Ok(Box::new(EventReader {
            w: self.w,
            next: split.index as u64,
            stride,
        }))
    }
}

impl SplitReader<Event> for EventReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, Event>) -> Result<SourceStatus, BoxError> {
        let stride = self.stride;
        while !out.is_full() && self.next < self.w.events {
            let e = self.w.event(self.next);
            out.push_at(e.ts, e);
            self.next += stride;
        }
        Ok(if self.next >= self.w.events {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> u64 {
        self.next
    }
}

/// What a run produced: the number of results and an order-independent checksum of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub results: u64,
    pub checksum: u64,
}

#[inline]
fn result_hash(key: u64, start: i64, end: i64, value: u64) -> u64 {
    mix(key ^ mix(start as u64 ^ mix(end as u64 ^ mix(value))))
}

/// A sink that folds results into a [`Summary`], once per batch.
#[derive(Clone, Default)]
pub struct SummarySink {
    results: Arc<AtomicU64>,
    checksum: Arc<AtomicU64>,
}

impl SummarySink {
    pub fn summary(&self) -> Summary {
        Summary {
            results: self.results.load(Ordering::Relaxed),
            checksum: self.checksum.load(Ordering::Relaxed),
        }
    }
}

/// Something that can be folded into a checksum.
pub trait Summarize {
    fn hash(&self) -> u64;
}

impl Summarize for WindowResult<u64, u64> {
    #[inline]
    fn hash(&self) -> u64 {
        result_hash(self.key, self.window.start, self.window.end, self.value)
    }
}

/// Dedup output: which occurrence of an id comes first depends on arrival order across workers,
/// so only the id counts.
impl Summarize for Event {
    #[inline]
    fn hash(&self) -> u64 {
        result_hash(self.key, 0, 0, 0)
    }
}

impl<T: Summarize + Send + 'static> Sink<T> for SummarySink {
    fn open(&self, _cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl<T: Summarize> SinkWriter<T> for SummarySink {
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        let mut sum = 0u64;
        for r in batch.iter() {
            sum = sum.wrapping_add(r.value.hash());
        }
        self.results
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.checksum.fetch_add(sum, Ordering::Relaxed);
        batch.clear();
        Ok(())
    }
}

fn env(workers: usize) -> Config {
    Config::default().parallelism(workers)
}

fn watermarks(w: &Workload) -> sluice::WatermarkStrategy<sluice::watermark::FromSource> {
    Watermarks::bounded_out_of_orderness(Duration::from_millis(w.disorder_ms as u64))
}

/// The four window workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tumbling,
    Sliding,
    Session,
    Dedup,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "tumbling" => Kind::Tumbling,
            "sliding" => Kind::Sliding,
            "session" => Kind::Session,
            "dedup" => Kind::Dedup,
            _ => return None,
        })
    }

    /// The workload shapes: (a) 10K keys, 5-minute tumbling windows, 5 s disorder;
    /// (b) sliding 5 min / 1 min; (c) sessions of 100K keys with a 10 s gap; (d) dedup with a
    /// 10-minute event-time TTL.
    pub fn workload(self, events: u64) -> Workload {
        match self {
            Kind::Tumbling | Kind::Sliding => Workload {
                events,
                keys: 10_000,
                step_us: 100,
                disorder_ms: 5_000,
                dedup: false,
            },
            Kind::Session => Workload {
                events,
                keys: 100_000,
                step_us: 100,
                disorder_ms: 5_000,
                dedup: false,
            },
            // Event ids: about 1 in 8 events repeats a recent id.
            Kind::Dedup => Workload {
                events,
                keys: u64::MAX,
                step_us: 100,
                disorder_ms: 5_000,
                dedup: true,
            },
        }
    }

    pub fn run_sluice(self, w: Workload, workers: usize) -> Summary {
        self.run_sluice_with(w, env(workers), false).summary
    }

    /// [`run_sluice`](Self::run_sluice) with a whole [`Config`] (checkpointing, say). With
    /// `watch`, the run's metrics are polled while it runs (see [`Run::checkpoints`]).
    pub fn run_sluice_with(self, w: Workload, config: Config, watch: bool) -> Run {
        match self {
            Kind::Tumbling => {
                sluice_windows(w, config, watch, Tumbling::of(Duration::from_secs(300)))
            }
            Kind::Sliding => sluice_windows(
                w,
                config,
                watch,
                Sliding::of(Duration::from_secs(300), Duration::from_secs(60)),
            ),
            Kind::Session => {
                sluice_windows(w, config, watch, Session::with_gap(Duration::from_secs(10)))
            }
            Kind::Dedup => sluice_dedup(w, config, watch),
        }
    }

    pub fn run_hand(self, w: Workload) -> Summary {
        match self {
            Kind::Tumbling => hand_sliding(w, 300_000, 300_000),
            Kind::Sliding => hand_sliding(w, 300_000, 60_000),
            Kind::Session => hand_session(w, 10_000),
            Kind::Dedup => hand_dedup(w, 600_000),
        }
    }
}

/// What [`Kind::run_sluice_with`] returns.
pub struct Run {
    pub summary: Summary,
    /// The job's final metrics.
    pub metrics: JobMetrics,
    /// With `watch`: the checkpoint metrics each time a new checkpoint had completed, polled
    /// every 10 ms while the job ran (not including the final checkpoint taken as it ends).
    pub checkpoints: Checkpoints,
}

fn sluice_windows(
    w: Workload,
    config: Config,
    watch: bool,
    spec: sluice::window::WindowSpec,
) -> Run {
    let env = StreamEnv::new(config);
    let sink = SummarySink::default();
    env.source(w.source())
        .with_watermarks(watermarks(&w))
        .key_by(|e: &Event| e.key)
        .window(spec)
        .aggregate(Count)
        .sink(sink.clone());
    let (metrics, checkpoints) = run(&env, watch);
    Run {
        summary: sink.summary(),
        metrics,
        checkpoints,
    }
}

/// Every checkpoint a run completed, as seen by polling the job's metrics: the `i`-th entry is
/// the `CheckpointMetrics` right after a new checkpoint id appeared.
pub type Checkpoints = Vec<sluice::CheckpointMetrics>;

/// Runs the job. With `watch`, the job's metrics are polled every 10 ms while it runs so that
/// every checkpoint's size and duration are seen (the metrics hold only the newest); they are
/// returned with the final metrics, whose `checkpoints` describe the final checkpoint taken
/// when the job finished (if checkpointing is on). Without `watch` this is `execute`.
fn run(env: &StreamEnv, watch: bool) -> (JobMetrics, Checkpoints) {
    let handle = env.start().expect("bench job starts");
    let mut seen: Checkpoints = Vec::new();
    if watch {
        while !handle.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
            let c = handle.metrics().checkpoints;
            if c.completed > 0 && seen.last().is_none_or(|l| l.last_id != c.last_id) {
                seen.push(c);
            }
        }
    }
    let metrics = handle.join().expect("bench job");
    (metrics, seen)
}

/// Dedup keys: event `i` carries id `i`, except that 1 in 8 repeats the id of an event up to
/// 1000 positions earlier.
#[inline]
pub fn dedup_id(i: u64) -> u64 {
    let h = mix(i ^ 0xD1CE);
    if h & 7 == 0 {
        i.saturating_sub(1 + (h >> 20) % 1000)
    } else {
        i
    }
}

struct Dedup {
    seen: ValueState<()>,
}

impl KeyedProcessFunction<u64, Event> for Dedup {
    type Out = Event;
    #[inline]
    fn process(&mut self, key: &u64, e: Event, ctx: &mut Context<'_, u64, Event>) {
        if ctx.value(self.seen).set_if_absent(key, ()) {
            ctx.emit(e);
        }
    }
}

fn sluice_dedup(w: Workload, config: Config, watch: bool) -> Run {
    let env = StreamEnv::new(config);
    let sink = SummarySink::default();
    env.source(w.source())
        .with_watermarks(watermarks(&w))
        .key_by(|e: &Event| e.key)
        .process(|reg| Dedup {
            seen: reg.value_with_ttl("seen", Duration::from_secs(600)),
        })
        .sink(sink.clone());
    let (metrics, checkpoints) = run(&env, watch);
    Run {
        summary: sink.summary(),
        metrics,
        checkpoints,
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written single-threaded loops.

type Map<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;

fn map<K, V>() -> Map<K, V> {
    Map::with_hasher(foldhash::fast::FixedState::with_seed(1))
}

/// Tumbling (slide == size) and sliding windows with panes, counting per key.
pub fn hand_sliding(w: Workload, size: i64, slide: i64) -> Summary {
    let pane = gcd(size, slide);
    let mut panes: BTreeMap<i64, Map<u64, u64>> = BTreeMap::new();
    let mut max_ts = i64::MIN;
    let mut fired_upto = i64::MIN;
    let (mut results, mut checksum) = (0u64, 0u64);
    let mut fire = |panes: &mut BTreeMap<i64, Map<u64, u64>>, wm: i64, fired_upto: &mut i64| {
        let limit = wm.saturating_add(1);
        let mut ends: Vec<i64> = Vec::new();
        for &ps in panes.keys() {
            if ps >= limit {
                break;
            }
            let mut start = ps - ps.rem_euclid(slide);
            while start + size > ps {
                let end = start + size;
                if end > *fired_upto && end <= limit {
                    ends.push(end);
                }
                start -= slide;
            }
        }
        ends.sort_unstable();
        ends.dedup();
        for end in ends {
            let start = end - size;
            if pane == size {
                if let Some(m) = panes.remove(&start) {
                    for (k, c) in m {
                        results += 1;
                        checksum = checksum.wrapping_add(result_hash(k, start, end, c));
                    }
                }
            } else {
                let mut merged: Map<u64, u64> = map();
                for (_, m) in panes.range(start..end) {
                    for (k, c) in m {
                        *merged.entry(*k).or_insert(0) += c;
                    }
                }
                for (k, c) in merged {
                    results += 1;
                    checksum = checksum.wrapping_add(result_hash(k, start, end, c));
                }
            }
        }
        *fired_upto = (*fired_upto).max(limit);
        panes.retain(|ps, _| ps - ps.rem_euclid(slide) + size - 1 > wm);
    };
    let mut cur_start = i64::MIN;
    let mut cur: Option<Map<u64, u64>> = None;
    for i in 0..w.events {
        let e = w.event(i);
        let ps = e.ts - e.ts.rem_euclid(pane);
        if ps != cur_start {
            if let Some(m) = cur.take() {
                panes.insert(cur_start, m);
            }
            cur = Some(panes.remove(&ps).unwrap_or_else(map));
            cur_start = ps;
        }
        *cur.as_mut().expect("pane").entry(e.key).or_insert(0) += 1;
        if e.ts > max_ts {
            max_ts = e.ts;
        }
        // Watermark once per 1024 events, as sluice does per batch.
        if i % 1024 == 1023 {
            let wm = max_ts - w.disorder_ms - 1;
            if let Some(m) = cur.take() {
                panes.insert(cur_start, m);
                cur_start = i64::MIN;
            }
            fire(&mut panes, wm, &mut fired_upto);
        }
    }
    if let Some(m) = cur.take() {
        panes.insert(cur_start, m);
    }
    fire(&mut panes, i64::MAX, &mut fired_upto);
    Summary { results, checksum }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Session windows counting per key: per key a list of sessions; a heap of possible closes.
pub fn hand_session(w: Workload, gap: i64) -> Summary {
    struct S {
        start: i64,
        end: i64,
        count: u64,
    }
    let mut sessions: Map<u64, (Vec<S>, i64)> = map();
    let mut heap: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::new();
    let (mut results, mut checksum) = (0u64, 0u64);
    let mut max_ts = i64::MIN;
    let mut fire = |sessions: &mut Map<u64, (Vec<S>, i64)>,
                    heap: &mut BinaryHeap<Reverse<(i64, u64)>>,
                    wm: i64| {
        while let Some(&Reverse((t, k))) = heap.peek() {
            if t > wm {
                break;
            }
            heap.pop();
            let Some((list, armed)) = sessions.get_mut(&k) else {
                continue;
            };
            if *armed == t {
                *armed = i64::MAX;
            }
            list.retain(|s| {
                if s.end - 1 <= wm {
                    results += 1;
                    checksum = checksum.wrapping_add(result_hash(k, s.start, s.end, s.count));
                    false
                } else {
                    true
                }
            });
            match list.iter().map(|s| s.end - 1).min() {
                None => {
                    sessions.remove(&k);
                }
                Some(next) if next < *armed => {
                    *armed = next;
                    heap.push(Reverse((next, k)));
                }
                Some(_) => {}
            }
        }
    };
    for i in 0..w.events {
        let e = w.event(i);
        let (list, armed) = sessions
            .entry(e.key)
            .or_insert_with(|| (Vec::new(), i64::MAX));
        let (mut start, mut end, mut count) = (e.ts, e.ts + gap, 1u64);
        list.retain(|s| {
            if s.start <= end && start <= s.end {
                start = start.min(s.start);
                end = end.max(s.end);
                count += s.count;
                false
            } else {
                true
            }
        });
        list.push(S { start, end, count });
        if end - 1 < *armed {
            *armed = end - 1;
            heap.push(Reverse((end - 1, e.key)));
        }
        max_ts = max_ts.max(e.ts);
        if i % 1024 == 1023 {
            fire(&mut sessions, &mut heap, max_ts - w.disorder_ms - 1);
        }
    }
    fire(&mut sessions, &mut heap, i64::MAX);
    Summary { results, checksum }
}

/// Dedup by id with an event-time TTL: a map id -> expiry, and time buckets to sweep.
pub fn hand_dedup(w: Workload, ttl: i64) -> Summary {
    let bucket = (ttl / 8).max(1);
    let mut seen: Map<u64, i64> = map();
    let mut sweep: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
    let (mut results, mut checksum) = (0u64, 0u64);
    let mut max_ts = i64::MIN;
    let mut wm = i64::MIN;
    for i in 0..w.events {
        let e = w.event(i);
        let live = matches!(seen.get(&e.key), Some(&exp) if exp > wm);
        if !live {
            let exp = e.ts + ttl;
            if seen.insert(e.key, exp).is_none() {
                let end = exp.div_euclid(bucket) * bucket + bucket - 1;
                sweep.entry(end).or_default().push(e.key);
            }
            results += 1;
            checksum = checksum.wrapping_add(e.hash());
        }
        max_ts = max_ts.max(e.ts);
        if i % 1024 == 1023 {
            wm = max_ts - w.disorder_ms - 1;
            while let Some(entry) = sweep.first_entry() {
                if *entry.key() > wm {
                    break;
                }
                for k in entry.remove() {
                    if let Some(&exp) = seen.get(&k) {
                        if exp <= wm {
                            seen.remove(&k);
                        } else {
                            let end = exp.div_euclid(bucket) * bucket + bucket - 1;
                            sweep.entry(end).or_default().push(k);
                        }
                    }
                }
            }
        }
    }
    Summary { results, checksum }
}
