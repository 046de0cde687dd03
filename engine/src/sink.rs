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
