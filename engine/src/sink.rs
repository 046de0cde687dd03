//! The sink interface.
//!
//! A [`Sink`] is shared by all workers; each worker opens one [`SinkWriter`] and hands it the
//! batches that reach it. Exactly-once (two-phase commit) sinks extend this with checkpoint hooks.

use crate::error::BoxError;
use crate::record::Record;
use crate::time::Timestamp;

/// What a sink knows about where it runs.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SinkContext {
    /// This writer's worker index.
    pub worker: usize,
    /// Number of workers.
    pub parallelism: usize,
}

impl SinkContext {
    /// The context of worker `worker` of `parallelism` (for tests of a sink outside a job).
    pub fn new(worker: usize, parallelism: usize) -> Self {
        Self {
            worker,
            parallelism,
        }
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
}

impl<T, F> Sink<T> for F
where
    F: Fn(&SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> + Send + Sync + 'static,
{
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        self(cx)
    }
}
