//! What the tests share: a sink that streams to the test (and tells it when the job is over),
//! hand-fed and endless sources, the event type with its bucketing process function and oracle,
//! and the deadline every job runs under.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use sluice_connectors::JsonLinesSink;
use sluice_engine::keys::Key;
use sluice_engine::prelude::*;
use sluice_engine::sink::{CountingSink, Sink};
use sluice_engine::{BoxError, JobHandle};

/// How long any job of this suite may take before its test fails as hung.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Every operator's record counts: name, in, out, late, side outputs.
pub type Counted = Vec<(
    String,
    u64,
    u64,
    u64,
    Vec<(String, u64)>,
    Vec<(String, u64)>,
)>;

/// The record counts of a job's metrics (and its operators' own counters), to compare two
/// runs of a job.
pub fn counts(m: &JobMetrics) -> Counted {
    m.operators
        .iter()
        .map(|o| {
            (
                o.name.clone(),
                o.records_in,
                o.records_out,
                o.late,
                o.side_outputs.clone(),
                o.counters.clone(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running jobs under a deadline
// ---------------------------------------------------------------------------------------------

/// Starts the job and waits for it to end, collecting what `out`'s sink received.
///
/// # Panics
///
/// If the job has not ended within [`DEADLINE`] (it is cancelled first), so that a deadlock is
/// a test failure rather than a hung suite.
pub fn run<T>(env: &StreamEnv, out: &Output<T>) -> (Result<JobMetrics, JobError>, Vec<T>) {
    match env.start() {
        Ok(handle) => finish(handle, out),
        Err(e) => (Err(e), Vec::new()),
    }
}

/// [`run`], for jobs that must succeed.
pub fn run_ok<T>(env: &StreamEnv, out: &Output<T>) -> (JobMetrics, Vec<T>) {
    let (result, values) = run(env, out);
    match result {
        Ok(metrics) => (metrics, values),
        Err(e) => panic!("job failed: {e}"),
    }
}

/// Waits for a started job to end (after `stop`, `cancel`, a failure or the end of its input),
/// collecting the rest of what `out`'s sink receives.
///
/// # Panics
///
/// If the job has not ended within [`DEADLINE`]; it is cancelled first.
pub fn finish<T>(handle: JobHandle, out: &Output<T>) -> (Result<JobMetrics, JobError>, Vec<T>) {
    let deadline = Instant::now() + DEADLINE;
    let mut values = Vec::new();
    loop {
        match out.rx.recv_deadline(deadline) {
            Ok(batch) => values.extend(batch),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                handle.cancel();
                panic!("job did not end within {DEADLINE:?} (cancelled): a deadlock or a hang");
            }
        }
    }
    (handle.join(), values)
}

// ---------------------------------------------------------------------------------------------
// Sinks
// ---------------------------------------------------------------------------------------------

/// A sink that sends every batch it writes to the test, which reads it through an [`Output`].
///
/// The sink and its writers hold the only senders of the channel, and a job drops its graph (so
/// the sink) when its last worker exits. So the channel disconnects exactly when the job is
/// over, however it ended: that is how [`finish`] knows, without polling.
pub struct ChannelSink<T> {
    tx: Sender<Vec<T>>,
    per_batch: Duration,
    fail_after: Option<usize>,
}

/// The test's end of a [`ChannelSink`].
pub struct Output<T> {
    rx: Receiver<Vec<T>>,
}

/// A sink and the test's end of it.
pub fn channel_sink<T>() -> (ChannelSink<T>, Output<T>) {
    let (tx, rx) = unbounded();
    (
        ChannelSink {
            tx,
            per_batch: Duration::ZERO,
            fail_after: None,
        },
        Output { rx },
    )
}

impl<T> ChannelSink<T> {
    /// Makes every write take at least `d`: the slow sink of the backpressure tests.
    pub fn slow(mut self, d: Duration) -> Self {
        self.per_batch = d;
        self
    }

    /// Makes each writer fail (return an error) on its batch after the first `n`.
    pub fn fail_after(mut self, n: usize) -> Self {
        self.fail_after = Some(n);
        self
    }
}

impl<T: Send + 'static> Sink<T> for ChannelSink<T> {
    fn open(&self, _cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        Ok(Box::new(ChannelWriter {
            tx: self.tx.clone(),
            per_batch: self.per_batch,
            fail_after: self.fail_after,
            written: 0,
        }))
    }
}

struct ChannelWriter<T> {
    tx: Sender<Vec<T>>,
    per_batch: Duration,
    fail_after: Option<usize>,
    written: usize,
}

impl<T> SinkWriter<T> for ChannelWriter<T> {
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        if !self.per_batch.is_zero() {
            // The only sleep of the suite: this sink is slow on purpose.
            std::thread::sleep(self.per_batch);
        }
        if self.fail_after == Some(self.written) {
            batch.clear();
            return Err("the sink refused the batch".into());
        }
        self.written += 1;
        // A test that already gave up (and panicked) dropped the receiver; that is not the
        // job's failure.
        let _ = self.tx.send(batch.drain(..).map(|r| r.value).collect());
        Ok(())
    }
}

impl<T> Output<T> {
    /// The test's end of a channel whose senders a test-made sink holds.
    pub fn new(rx: Receiver<Vec<T>>) -> Self {
        Self { rx }
    }

    /// Waits until a received value satisfies `pred`; returns everything received up to and
    /// including the batch that held it.
    ///
    /// # Panics
    ///
    /// After [`DEADLINE`] (the job is cancelled first), or if the job ends before.
    pub fn until(&self, handle: &JobHandle, pred: impl Fn(&T) -> bool) -> Vec<T> {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(batch) => {
                    let found = batch.iter().any(&pred);
                    seen.extend(batch);
                    if found {
                        return seen;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    handle.cancel();
                    panic!("the awaited output did not arrive within {DEADLINE:?} (job cancelled)");
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the job ended before the awaited output arrived")
                }
            }
        }
    }

    /// Waits until at least `n` values have been received; returns them (and any others of the
    /// last batch).
    ///
    /// # Panics
    ///
    /// As [`until`](Self::until).
    pub fn at_least(&self, handle: &JobHandle, n: usize) -> Vec<T> {
        let mut seen = Vec::new();
        while seen.len() < n {
            seen.extend(self.until(handle, |_| true));
        }
        seen
    }

    /// What is left in the channel. Only complete once the job is over (after [`run`] or
    /// [`finish`] returned for a sink of the same job).
    pub fn collected(&self) -> Vec<T> {
        self.rx.try_iter().flatten().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/// A live source that the test feeds by hand, one queue per split. A split with nothing queued
/// reports `Pending`; a closed split reports `Finished` once drained.
pub struct LiveSource<T> {
    feeds: Vec<Feed<T>>,
}

/// The test's handle on one split of a [`LiveSource`].
pub struct Feed<T> {
    state: Arc<Mutex<FeedState<T>>>,
}

struct FeedState<T> {
    queue: VecDeque<T>,
    closed: bool,
}

impl<T> Clone for Feed<T> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
        }
    }
}

impl<T> Feed<T> {
    /// Queues records for the split.
    pub fn push(&self, items: impl IntoIterator<Item = T>) {
        self.state.lock().unwrap().queue.extend(items);
    }

    /// Ends the split once its queue is drained.
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
    }
}

impl<T> LiveSource<T> {
    /// A source with `splits` splits (split `i` goes to worker `i % parallelism`) and their
    /// feeds.
    pub fn new(splits: usize) -> (Self, Vec<Feed<T>>) {
        let feeds: Vec<Feed<T>> = (0..splits)
            .map(|_| Feed {
                state: Arc::new(Mutex::new(FeedState {
                    queue: VecDeque::new(),
                    closed: false,
                })),
            })
            .collect();
        (
            Self {
                feeds: feeds.clone(),
            },
            feeds,
        )
    }
}

impl<T: Send + 'static> Source<T> for LiveSource<T> {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok((0..self.feeds.len())
            .map(|i| Split::new(format!("live-{i}"), i))
            .collect())
    }

    fn open(&self, split: &Split, _pos: Option<u64>) -> Result<Box<dyn SplitReader<T>>, BoxError> {
        Ok(Box::new(FeedReader {
            feed: self.feeds[split.index].clone(),
            read: 0,
        }))
    }
}

struct FeedReader<T> {
    feed: Feed<T>,
    read: u64,
}

impl<T> SplitReader<T> for FeedReader<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, BoxError> {
        let mut state = self.feed.state.lock().unwrap();
        while !out.is_full() {
            let Some(v) = state.queue.pop_front() else {
                break;
            };
            out.push(v);
            self.read += 1;
        }
        Ok(match (state.queue.is_empty(), state.closed) {
            (false, _) => SourceStatus::More,
            (true, true) => SourceStatus::Finished,
            (true, false) => SourceStatus::Pending,
        })
    }

    fn position(&self) -> u64 {
        self.read
    }
}

/// An endless source of [`Event`]s: split `i` of `n` emits the counter values
/// `i, i + n, i + 2n, ...` as `Event { key: v % 5, value: v, ts: v }` and never finishes.
pub struct Endless;

impl Source<Event> for Endless {
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok((0..parallelism)
            .map(|i| Split::new(format!("endless-{i}-of-{parallelism}"), i))
            .collect())
    }

    fn open(
        &self,
        split: &Split,
        _pos: Option<u64>,
    ) -> Result<Box<dyn SplitReader<Event>>, BoxError> {
        let stride = split
            .id
            .rsplit("-of-")
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or("malformed split id")?;
        Ok(Box::new(EndlessReader {
            next: split.index as u64,
            stride,
        }))
    }
}

struct EndlessReader {
    next: u64,
    stride: u64,
}

impl SplitReader<Event> for EndlessReader {
    fn poll(&mut self, out: &mut SourceOutput<'_, Event>) -> Result<SourceStatus, BoxError> {
        while !out.is_full() {
            let v = self.next;
            out.push(Event {
                key: (v % 5) as u32,
                value: v,
                ts: v as i64,
            });
            self.next += self.stride;
        }
        Ok(SourceStatus::More)
    }

    fn position(&self) -> u64 {
        self.next / self.stride
    }
}

// ---------------------------------------------------------------------------------------------
// Events, and the process functions several tests use
// ---------------------------------------------------------------------------------------------

/// A keyed, timestamped record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Event {
    pub key: u32,
    pub value: u64,
    pub ts: Timestamp,
}

/// Width of the event-time buckets of [`Buckets`].
pub const BUCKET_MS: Timestamp = 100;

/// What [`Buckets`] emits: `(key, bucket, count, sum)`, bucket `b` covering
/// `[b * BUCKET_MS, (b + 1) * BUCKET_MS)`.
pub type BucketTotal = (u32, i64, u64, u64);

/// Per key, counts and sums values in fixed event-time buckets held in `MapState`, and emits a
/// bucket's total from an event-time timer at its last millisecond.
pub struct Buckets {
    open: MapState<i64, (u64, u64)>,
}

impl Buckets {
    /// Declares the state; pass as `.process(Buckets::new)`.
    pub fn new(reg: &mut StateRegistry<u32>) -> Self {
        Self {
            open: reg.map("open buckets"),
        }
    }
}

impl KeyedProcessFunction<u32, Event> for Buckets {
    type Out = BucketTotal;

    fn process(&mut self, key: &u32, e: Event, ctx: &mut Context<'_, u32, BucketTotal>) {
        let bucket = ctx.timestamp().div_euclid(BUCKET_MS);
        let open = ctx.map(self.open);
        match open.get_mut(key, &bucket) {
            Some((count, sum)) => {
                *count += 1;
                *sum += e.value;
            }
            None => {
                open.insert(key, bucket, (1, e.value));
                ctx.register_event_timer(key, (bucket + 1) * BUCKET_MS - 1);
            }
        }
    }

    fn on_timer(&mut self, key: &u32, timer: Timer, ctx: &mut Context<'_, u32, BucketTotal>) {
        assert_eq!(timer.domain, TimeDomain::EventTime);
        assert_eq!(ctx.timestamp(), timer.time);
        let bucket = timer.time.div_euclid(BUCKET_MS);
        let (count, sum) = ctx
            .map(self.open)
            .remove(key, &bucket)
            .expect("a bucket's timer fires once, while the bucket is open");
        ctx.emit((*key, bucket, count, sum));
    }
}

/// What [`Buckets`] must emit for `events` when none is late, sorted.
pub fn bucket_oracle(events: &[Event]) -> Vec<BucketTotal> {
    let mut totals: BTreeMap<(u32, i64), (u64, u64)> = BTreeMap::new();
    for e in events {
        let t = totals
            .entry((e.key, e.ts.div_euclid(BUCKET_MS)))
            .or_default();
        t.0 += 1;
        t.1 += e.value;
    }
    totals
        .into_iter()
        .map(|((k, b), (c, s))| (k, b, c, s))
        .collect()
}

/// Emits every value with its rank among its key's values so far: `(value, 1)`, `(value, 2)`...
/// Over a whole run, key `k` must show the ranks `1..=count(k)` exactly once each.
pub struct Numbered {
    seen: ValueState<u64>,
}

impl Numbered {
    /// Declares the state; pass as `.process(Numbered::new)`.
    pub fn new<K: Key>(reg: &mut StateRegistry<K>) -> Self {
        Self {
            seen: reg.value("seen"),
        }
    }
}

impl<K: Key, V: Data> KeyedProcessFunction<K, V> for Numbered {
    type Out = (V, u64);

    fn process(&mut self, key: &K, value: V, ctx: &mut Context<'_, K, (V, u64)>) {
        let seen = ctx.value(self.seen).get_or_insert_with(key, || 0);
        *seen += 1;
        let rank = *seen;
        ctx.emit((value, rank));
    }
}

/// The lines of the checkpoint tests' jobs: `(key, window start, window end, value)`.
pub type Line = (u32, i64, i64, i64);

/// The exactly-once JSON-lines sink, also counting its lines by the parity of their key with
/// two named counters (`even keys`, `odd keys`): what a restore must continue like the
/// engine's own counts.
pub fn parity_counting(out: &std::path::Path) -> impl Sink<Line> {
    CountingSink::new(
        JsonLinesSink::new(out),
        ["even keys", "odd keys"],
        |l: &Line| (l.0 % 2) as usize,
    )
}
