//! The sink interface.
//!
//! A [`Sink`] is shared by all workers; each worker opens one [`SinkWriter`] and hands it the
//! batches that reach it.
//!
//! Exactly-once output is a two-phase commit tied to checkpoints. On each checkpoint barrier the
//! runtime calls [`SinkWriter::pre_commit`]: the writer makes what it wrote since the previous
//! barrier durable but not yet visible, and returns a *transaction* (bytes describing how to make
//! it visible). The transaction is stored in the checkpoint; once the checkpoint is complete,
//! the coordinator calls [`Sink::commit`] with it. On restore, [`Sink::recover`] commits the
//! restored checkpoint's transactions again and discards anything else left pending, so the
//! visible output holds each record exactly once. At end of input the writer pre-commits a last
//! time; that transaction is committed by the job's final checkpoint (or, with checkpointing
//! off, right away).
//!
//! A sink that does not override these hooks is at-least-once under checkpointing: after a
//! restore it sees again what followed the restored checkpoint.

use crate::error::BoxError;
use crate::metrics::{Counter, InstanceMetrics};
use crate::record::Record;
use crate::time::Timestamp;

/// What a sink knows about where it runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SinkContext {
    /// This writer's worker index.
    pub worker: usize,
    /// Number of workers.
    pub parallelism: usize,
    /// Whether the job takes checkpoints (so transactions are committed by checkpoints).
    pub checkpointing: bool,
    /// The sink instance's metrics, inside a job.
    pub(crate) metrics: Option<InstanceMetrics>,
}

impl SinkContext {
    /// The context of worker `worker` of `parallelism` (for tests of a sink outside a job).
    pub fn new(worker: usize, parallelism: usize) -> Self {
        Self {
            worker,
            parallelism,
            checkpointing: false,
            metrics: None,
        }
    }

    /// The counter `name` of this sink instance: what it adds is reported as the sink
    /// operator's [`OperatorMetrics::counter`](crate::OperatorMetrics::counter) (summed over
    /// the workers), and checkpointed, so that a restored job continues it (see [`Counter`]).
    /// Asking again for a name gives the same counter. Outside a job (a context from
    /// [`new`](Self::new)), a [`Counter::detached`] one.
    ///
    /// # Examples
    ///
    /// ```
    /// use sluice_engine::prelude::*;
    /// use sluice_engine::sink::{SinkContext, SinkWriter};
    /// use sluice_engine::{BoxError, Counter, Record};
    /// use sluice_connectors::VecSource;
    ///
    /// struct CountEvens(Counter);
    ///
    /// impl SinkWriter<u64> for CountEvens {
    ///     fn write(&mut self, batch: &mut Vec<Record<u64>>) -> Result<(), BoxError> {
    ///         let evens = batch.iter().filter(|r| r.value % 2 == 0).count();
    ///         self.0.add(evens as u64); // once per batch
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let env = StreamEnv::new(Config::default().parallelism(2));
    /// env.source(VecSource::new((0..10u64).collect()))
    ///     .sink(|cx: &SinkContext| {
    ///         Ok(Box::new(CountEvens(cx.counter("evens"))) as Box<dyn SinkWriter<u64>>)
    ///     })
    ///     .name("sink.evens");
    /// let metrics = env.execute()?;
    /// assert_eq!(metrics.operator("sink.evens").unwrap().counter("evens"), 5);
    /// # Ok::<(), sluice_engine::JobError>(())
    /// ```
    pub fn counter(&self, name: &str) -> Counter {
        self.metrics
            .as_ref()
            .map_or_else(Counter::detached, |m| m.counter(name))
    }
}

/// A destination for records of type `T`.
pub trait Sink<T>: Send + Sync + 'static {
    /// Opens the writer for one worker, on that worker's thread.
    ///
    /// # Errors
    ///
    /// Whatever prevents opening the destination; the job fails naming the sink.
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError>;

    /// Makes a pre-committed transaction visible (see the [module docs](self)). Called on the
    /// checkpoint coordinator's thread once the checkpoint holding `txn` is complete, and again
    /// on restore: it must be idempotent. Default: nothing to commit.
    ///
    /// # Errors
    ///
    /// An error fails the job; the transaction is committed again on restore.
    fn commit(&self, _txn: &[u8]) -> Result<(), BoxError> {
        Ok(())
    }

    /// Called once before a job with checkpointing starts, before any writer opens: commit
    /// `txns` (the transactions of checkpoint `restored`, the one being restored; none on a
    /// fresh start) and discard everything else left pending by an earlier run. A sink that can
    /// should also roll back output committed by checkpoints newer than `restored` (there are
    /// such only when the newest checkpoint was unreadable and an older one is restored): the
    /// restored job produces it again. Default: nothing.
    ///
    /// # Errors
    ///
    /// An error fails the job before it starts.
    fn recover(&self, _restored: Option<u64>, _txns: &[Vec<u8>]) -> Result<(), BoxError> {
        Ok(())
    }
}

/// Writes the batches that reach one worker's instance of a sink.
pub trait SinkWriter<T> {
    /// Writes a batch. Must leave `batch` empty (drain it, or clear it after copying).
    ///
    /// # Errors
    ///
    /// An error fails the job, naming the sink.
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError>;

    /// The input's watermark advanced. Default: nothing.
    ///
    /// # Errors
    ///
    /// An error fails the job, naming the sink.
    fn watermark(&mut self, _wm: Timestamp) -> Result<(), BoxError> {
        Ok(())
    }

    /// End of input: flush and close. Default: nothing.
    ///
    /// # Errors
    ///
    /// An error fails the job, naming the sink.
    fn finish(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// A checkpoint barrier (`checkpoint` is its id; `u64::MAX` after
    /// [`finish`](Self::finish)): make everything written since the last call durable but not
    /// visible, and return the transaction that [`Sink::commit`] makes visible, or `None` if
    /// there is nothing to commit. Default: `None`.
    ///
    /// # Errors
    ///
    /// An error fails the job, naming the sink.
    fn pre_commit(&mut self, _checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        Ok(None)
    }
}

impl<T, F> Sink<T> for F
where
    F: Fn(&SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> + Send + Sync + 'static,
{
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        self(cx)
    }
}

/// A sink that counts what it writes by label, then hands it to another: `inner` does the
/// writing (its two-phase commit included), and one [`Counter`] per label counts the records,
/// so the counts are reported as the sink operator's
/// [`OperatorMetrics::counter`](crate::OperatorMetrics::counter)s and continue across a
/// restore, exactly once like the output. `label_of` gives a record's label as an index into
/// `labels`; counting is added to the counters once per batch.
///
/// # Panics
///
/// A writer panics (and the job fails, naming the sink) if `label_of` returns an index past
/// the end of `labels`.
///
/// # Examples
///
/// ```
/// use sluice_engine::prelude::*;
/// use sluice_engine::sink::CountingSink;
/// use sluice_connectors::{CollectSink, VecSource};
///
/// let env = StreamEnv::new(Config::default().parallelism(2));
/// let out = CollectSink::new();
/// env.source(VecSource::new((0..10u64).collect()))
///     .sink(CountingSink::new(out.clone(), ["even", "odd"], |v: &u64| (v % 2) as usize))
///     .name("sink.numbers");
/// let metrics = env.execute()?;
/// let sink = metrics.operator("sink.numbers").unwrap();
/// assert_eq!((sink.counter("even"), sink.counter("odd")), (5, 5));
/// assert_eq!(out.values().len(), 10);
/// # Ok::<(), sluice_engine::JobError>(())
/// ```
pub struct CountingSink<T, S, F> {
    inner: S,
    labels: Vec<String>,
    label_of: std::sync::Arc<F>,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T, S, F> CountingSink<T, S, F>
where
    S: Sink<T>,
    F: Fn(&T) -> usize + Send + Sync + 'static,
{
    /// Counts `inner`'s records under `labels`, each by `label_of`.
    pub fn new(inner: S, labels: impl IntoIterator<Item = impl Into<String>>, label_of: F) -> Self {
        Self {
            inner,
            labels: labels.into_iter().map(Into::into).collect(),
            label_of: std::sync::Arc::new(label_of),
            _t: std::marker::PhantomData,
        }
    }
}

impl<T, S, F> Sink<T> for CountingSink<T, S, F>
where
    T: 'static,
    S: Sink<T>,
    F: Fn(&T) -> usize + Send + Sync + 'static,
{
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        Ok(Box::new(CountingWriter {
            inner: self.inner.open(cx)?,
            counters: self.labels.iter().map(|l| cx.counter(l)).collect(),
            local: vec![0; self.labels.len()],
            label_of: self.label_of.clone(),
        }))
    }

    fn commit(&self, txn: &[u8]) -> Result<(), BoxError> {
        self.inner.commit(txn)
    }

    fn recover(&self, restored: Option<u64>, txns: &[Vec<u8>]) -> Result<(), BoxError> {
        self.inner.recover(restored, txns)
    }
}

struct CountingWriter<T, F> {
    inner: Box<dyn SinkWriter<T>>,
    counters: Vec<Counter>,
    /// This batch's counts, per label.
    local: Vec<u64>,
    label_of: std::sync::Arc<F>,
}

impl<T, F: Fn(&T) -> usize> SinkWriter<T> for CountingWriter<T, F> {
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for r in batch.iter() {
            let i = (self.label_of)(&r.value);
            assert!(
                i < self.local.len(),
                "label index {i} out of range for {} labels",
                self.local.len()
            );
            self.local[i] += 1;
        }
        for (c, n) in self.counters.iter().zip(self.local.iter_mut()) {
            c.add(std::mem::take(n));
        }
        self.inner.write(batch)
    }

    fn watermark(&mut self, wm: Timestamp) -> Result<(), BoxError> {
        self.inner.watermark(wm)
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.inner.finish()
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        self.inner.pre_commit(checkpoint)
    }
}
