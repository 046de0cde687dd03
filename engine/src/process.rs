//! Keyed process functions: the general keyed operator, in the spirit of Flink's
//! `KeyedProcessFunction`, with the key passed explicitly.
//!
//! A [`KeyedProcessFunction`] sees every record of the keys its worker owns, one at a time, with
//! the record's key. Through the [`Context`] it reads and writes keyed state, registers
//! event-time and processing-time timers, emits results and writes to side outputs.
//!
//! # Watermarks
//!
//! Event-time timers fire, in time order, when the operator's watermark reaches them; the
//! watermark is forwarded downstream after the timers it fired. At end of input every pending
//! event-time timer fires. Pending processing-time timers do not fire at end of input (as in
//! Flink): a bounded job does not wait for the wall clock.

use crate::keys::Key;
use crate::record::Record;
use crate::runtime::timers::TimerQueue;
use crate::side_output::{OutputTag, SideOutputs};
use crate::state::{ListState, ListTable, MapState, MapTable, StateStore, ValueState, ValueTable};
use crate::time::{Timestamp, NO_TIMESTAMP};

/// Which clock a timer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark reaches the timer's time.
    EventTime,
    /// Fires when the processing-time clock reaches the timer's time.
    ProcessingTime,
}

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timer {
    /// The time it was registered for.
    pub time: Timestamp,
    /// Its time domain.
    pub domain: TimeDomain,
}

/// A keyed operator written by the user.
///
/// Instances are created on each worker by the constructor passed to
/// [`KeyedStream::process`](crate::KeyedStream::process), which also declares the state.
///
/// # Examples
///
/// Count records per key and emit the count one second (event time) after the key was first
/// seen:
///
/// ```
/// use sluice_engine::prelude::*;
/// use sluice_connectors::{CollectSink, VecSource};
///
/// struct CountThenEmit { count: ValueState<u64> }
///
/// impl KeyedProcessFunction<u32, (u32, i64)> for CountThenEmit {
///     type Out = (u32, u64);
///     fn process(&mut self, key: &u32, _v: (u32, i64), ctx: &mut Context<'_, u32, (u32, u64)>) {
///         let ts = ctx.timestamp();
///         let count = ctx.value(self.count).get_or_insert_with(key, || 0);
///         *count += 1;
///         if *count == 1 {
///             ctx.register_event_timer(key, ts + 1_000);
///         }
///     }
///     fn on_timer(&mut self, key: &u32, _t: Timer, ctx: &mut Context<'_, u32, (u32, u64)>) {
///         if let Some(n) = ctx.value(self.count).remove(key) {
///             ctx.emit((*key, n));
///         }
///     }
/// }
///
/// let env = StreamEnv::new(Config::default());
/// let out = CollectSink::new();
/// env.source(VecSource::new(vec![(1u32, 10i64), (2, 20), (1, 30)]))
///     .with_watermarks(Watermarks::monotonous().timestamps(|e: &(u32, i64)| e.1))
///     .key_by(|e| e.0)
///     .process(|reg| CountThenEmit { count: reg.value("count") })
///     .sink(out.clone());
/// env.execute().unwrap();
/// assert_eq!(out.sorted_values(), vec![(1, 2), (2, 1)]);
/// ```
pub trait KeyedProcessFunction<K, I>: 'static {
    /// What the function emits.
    type Out: Clone + Send + 'static;

    /// Handles one record of `key`.
    fn process(&mut self, key: &K, value: I, ctx: &mut Context<'_, K, Self::Out>);

    /// A timer of `key` fired. Default: nothing.
    fn on_timer(&mut self, key: &K, timer: Timer, ctx: &mut Context<'_, K, Self::Out>) {
        let _ = (key, timer, ctx);
    }
}

/// The parts of a keyed operator instance a [`Context`] gives access to.
pub(crate) struct Parts<K, O> {
    pub(crate) state: StateStore<K>,
    pub(crate) event_timers: TimerQueue<K>,
    pub(crate) proc_timers: TimerQueue<K>,
    pub(crate) out: Vec<Record<O>>,
    pub(crate) sides: SideOutputs,
    pub(crate) watermark: Timestamp,
    pub(crate) now: Timestamp,
}

/// What a [`KeyedProcessFunction`] can do while handling a record or a timer.
pub struct Context<'a, K, O> {
    pub(crate) parts: &'a mut Parts<K, O>,
    pub(crate) timestamp: Timestamp,
    /// Event time up to which TTL'd state counts as expired: the watermark for records; for a
    /// timer, the timer's time (so timers firing at end of input see state as of their time).
    pub(crate) horizon: Timestamp,
}

impl<K: Key, O> Context<'_, K, O> {
    /// The timestamp of the record being processed, or the time of the timer that fired.
    /// [`NO_TIMESTAMP`] for records that never got one.
    #[inline]
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The operator's current watermark.
    #[inline]
    pub fn watermark(&self) -> Timestamp {
        self.parts.watermark
    }

    /// The processing time (read once per batch from the job's clock).
    #[inline]
    pub fn processing_time(&self) -> Timestamp {
        self.parts.now
    }

    /// Emits a result with the current timestamp.
    #[inline]
    pub fn emit(&mut self, value: O) {
        self.parts.out.push(Record::new(self.timestamp, value));
    }

    /// Emits a result with an explicit timestamp.
    #[inline]
    pub fn emit_at(&mut self, timestamp: Timestamp, value: O) {
        self.parts.out.push(Record::new(timestamp, value));
    }

    /// Emits `value` to the side output `tag`, with the current timestamp.
    #[inline]
    pub fn output<X: 'static>(&mut self, tag: &OutputTag<X>, value: X) {
        self.parts.sides.emit(tag, self.timestamp, value);
    }

    /// The table behind a [`ValueState`] handle.
    #[inline]
    pub fn value<V: 'static>(&mut self, h: ValueState<V>) -> &mut ValueTable<K, V> {
        self.parts.state.value(h, self.timestamp, self.horizon)
    }

    /// The table behind a [`MapState`] handle.
    #[inline]
    pub fn map<UK: Key, UV: 'static>(&mut self, h: MapState<UK, UV>) -> &mut MapTable<K, UK, UV> {
        self.parts.state.map(h)
    }

    /// The table behind a [`ListState`] handle.
    #[inline]
    pub fn list<V: 'static>(&mut self, h: ListState<V>) -> &mut ListTable<K, V> {
        self.parts.state.list(h)
    }

    /// Registers an event-time timer for `key` at `time`. Registering the same key and time
    /// twice makes one timer (so deleting it deletes it for every purpose it was registered for).
    /// A timer at or before the current watermark fires with the next watermark advance (or at end
    /// of input); one registered from `on_timer` at or before the watermark being processed fires
    /// within that same advance.
    pub fn register_event_timer(&mut self, key: &K, time: Timestamp) {
        if time != NO_TIMESTAMP {
            self.parts.event_timers.register(key, time);
        }
    }

    /// Deletes an event-time timer; returns whether it existed.
    pub fn delete_event_timer(&mut self, key: &K, time: Timestamp) -> bool {
        self.parts.event_timers.delete(key, time)
    }

    /// Registers a processing-time timer for `key` at `time` (milliseconds of the job's clock).
    pub fn register_processing_timer(&mut self, key: &K, time: Timestamp) {
        self.parts.proc_timers.register(key, time);
    }

    /// Deletes a processing-time timer; returns whether it existed.
    pub fn delete_processing_timer(&mut self, key: &K, time: Timestamp) -> bool {
        self.parts.proc_timers.delete(key, time)
    }
}

/// A non-keyed operator written by the user: sees each record once, emits any number of
/// results, and may write to side outputs (dead letters, say). No state is managed for it; keep
/// what you need in `self` (one instance per worker).
///
/// # Examples
///
/// Parse numbers, sending what does not parse to a side output:
///
/// ```
/// use sluice_engine::prelude::*;
/// use sluice_engine::process::{ProcessContext, ProcessFunction};
/// use sluice_connectors::{CollectSink, VecSource};
///
/// struct Parse { bad: OutputTag<String> }
/// impl ProcessFunction<String> for Parse {
///     type Out = i64;
///     fn process(&mut self, line: String, ctx: &mut ProcessContext<'_, i64>) {
///         match line.parse() {
///             Ok(n) => ctx.emit(n),
///             Err(_) => ctx.output(&self.bad, line),
///         }
///     }
/// }
///
/// let bad = OutputTag::<String>::new("bad");
/// let env = StreamEnv::new(Config::default());
/// let (good_out, bad_out) = (CollectSink::new(), CollectSink::new());
/// let tag = bad.clone();
/// let parsed = env
///     .source(VecSource::new(vec!["1".to_string(), "x".into(), "3".into()]))
///     .process(move || Parse { bad: tag.clone() });
/// parsed.side_output(&bad).sink(bad_out.clone());
/// parsed.sink(good_out.clone());
/// env.execute()?;
/// assert_eq!(good_out.sorted_values(), vec![1, 3]);
/// assert_eq!(bad_out.values(), vec!["x".to_string()]);
/// # Ok::<(), sluice_engine::JobError>(())
/// ```
pub trait ProcessFunction<I>: 'static {
    /// What the function emits.
    type Out: Clone + Send + 'static;

    /// Handles one record.
    fn process(&mut self, value: I, ctx: &mut ProcessContext<'_, Self::Out>);

    /// Called before each batch of records is handed to [`process`](Self::process), one by
    /// one: where a function reads what need not be read per record (a clock of its own, say).
    /// Records arrive in batches of up to [`Config::batch_size`](crate::Config::batch_size).
    /// Default: nothing.
    fn start_batch(&mut self) {}
}

/// What a [`ProcessFunction`] can do while handling a record.
pub struct ProcessContext<'a, O> {
    pub(crate) out: &'a mut Vec<Record<O>>,
    pub(crate) sides: &'a mut SideOutputs,
    pub(crate) timestamp: Timestamp,
    pub(crate) watermark: Timestamp,
    pub(crate) now: Timestamp,
}

impl<O> ProcessContext<'_, O> {
    /// The timestamp of the record being processed.
    #[inline]
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    /// The operator's current watermark (`Timestamp::MIN` before the first one).
    #[inline]
    pub fn watermark(&self) -> Timestamp {
        self.watermark
    }

    /// The processing time (read once per batch from the job's clock).
    #[inline]
    pub fn processing_time(&self) -> Timestamp {
        self.now
    }

    /// Emits a result with the record's timestamp.
    #[inline]
    pub fn emit(&mut self, value: O) {
        self.out.push(Record::new(self.timestamp, value));
    }

    /// Emits a result with an explicit timestamp.
    #[inline]
    pub fn emit_at(&mut self, timestamp: Timestamp, value: O) {
        self.out.push(Record::new(timestamp, value));
    }

    /// Emits `value` to the side output `tag`, with the record's timestamp.
    #[inline]
    pub fn output<X: 'static>(&mut self, tag: &OutputTag<X>, value: X) {
        self.sides.emit(tag, self.timestamp, value);
    }
}
