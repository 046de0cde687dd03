//! The source interface, split-based as in Flink's FLIP-27.
//!
//! A [`Source`] is a description shared by all workers. It enumerates [`Split`]s, the unit of
//! work *and* of position-keeping: a file, a partition, a share of a generator's sequence. The
//! runtime assigns splits to workers round-robin and each worker opens a [`SplitReader`] per
//! split it owns. A reader reports its [`position`](SplitReader::position) so that checkpoints
//! can record it and a restore can seek to it.
//!
//! Readers are polled, never blocking: a reader with nothing to give says
//! [`SourceStatus::Pending`] and the worker gets on with other work.

use crate::error::BoxError;
use crate::record::Record;
use crate::time::{Timestamp, NO_TIMESTAMP};

/// One unit of a source's work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Split {
    /// Stable identifier, unique within the source (used to match checkpointed positions).
    pub id: String,
    /// Source-defined description (a path, a partition number, a share index).
    pub index: usize,
}

impl Split {
    /// A split with the given id and index.
    pub fn new(id: impl Into<String>, index: usize) -> Self {
        Self {
            id: id.into(),
            index,
        }
    }
}

/// What [`SplitReader::poll`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// The reader may have more right away: poll again.
    More,
    /// Nothing is available now (a live source waiting for input); poll again later.
    Pending,
    /// The split is exhausted. The reader will not be polled again.
    Finished,
}

/// Where a reader writes the records it reads; at most [`remaining`](Self::remaining) per poll.
pub struct SourceOutput<'a, T> {
    buf: &'a mut Vec<Record<T>>,
    limit: usize,
}

impl<'a, T> SourceOutput<'a, T> {
    /// An output that appends to `buf` until it holds `limit` records. The runtime makes one per
    /// poll; tests of a reader can make their own.
    pub fn new(buf: &'a mut Vec<Record<T>>, limit: usize) -> Self {
        Self { buf, limit }
    }

    /// Emits a record with no timestamp (a watermark strategy assigns one later).
    #[inline]
    pub fn push(&mut self, value: T) {
        self.buf.push(Record::new(NO_TIMESTAMP, value));
    }

    /// Emits a record with an event timestamp.
    #[inline]
    pub fn push_at(&mut self, timestamp: Timestamp, value: T) {
        self.buf.push(Record::new(timestamp, value));
    }

    /// How many more records this poll may emit.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    /// Whether this poll's quota is used up.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.buf.len() >= self.limit
    }
}

/// A source of records of type `T`, shared by all workers of a job.
///
/// # Examples
///
/// A source that counts to `n` in one split:
///
/// ```
/// use sluice_engine::source::*;
/// use sluice_engine::BoxError;
///
/// struct Count(u64);
/// struct CountReader { next: u64, end: u64 }
///
/// impl Source<u64> for Count {
///     fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
///         Ok(vec![Split::new("count", 0)])
///     }
///     fn open(&self, _split: &Split, position: Option<u64>) -> Result<Box<dyn SplitReader<u64>>, BoxError> {
///         Ok(Box::new(CountReader { next: position.unwrap_or(0), end: self.0 }))
///     }
/// }
///
/// impl SplitReader<u64> for CountReader {
///     fn poll(&mut self, out: &mut SourceOutput<'_, u64>) -> Result<SourceStatus, BoxError> {
///         while !out.is_full() && self.next < self.end {
///             out.push(self.next);
///             self.next += 1;
///         }
///         Ok(if self.next == self.end { SourceStatus::Finished } else { SourceStatus::More })
///     }
///     fn position(&self) -> u64 { self.next }
/// }
/// ```
pub trait Source<T>: Send + Sync + 'static {
    /// The splits of this source for a job with `parallelism` workers. Called once per run.
    ///
    /// # Errors
    ///
    /// Whatever prevents enumerating the splits (an unreadable directory, say); the job fails
    /// before it starts.
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError>;

    /// Opens a reader for `split`, on the worker thread that will poll it. `position` is the
    /// position a checkpoint recorded for this split, or `None` to start from the beginning.
    ///
    /// # Errors
    ///
    /// Whatever prevents opening the split; the job fails naming the source operator.
    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<T>>, BoxError>;
}

/// Reads one split. Lives on one worker thread; need not be `Send`.
pub trait SplitReader<T> {
    /// Emits up to `out.remaining()` records and says whether more may follow.
    ///
    /// # Errors
    ///
    /// A read error fails the job (naming the source operator). Malformed *records* are not read
    /// errors: emit them to the stream and route them to a dead-letter output downstream.
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, BoxError>;

    /// The reader's position: the offset a restored reader would resume from (the index of the
    /// next record, a byte offset, a sequence number). Must be consistent with the records
    /// emitted so far.
    fn position(&self) -> u64;
}
