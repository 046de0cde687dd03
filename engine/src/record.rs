//! Records and the messages that flow along the edges of a job graph.

use crate::time::Timestamp;

/// One element of a stream: a value with its event timestamp.
///
/// Operators receive and emit records in batches (`Vec<Record<T>>`); user functions see only the
/// value, and the timestamp travels with it through `map`, `filter` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record<T> {
    /// Event time in milliseconds, or [`NO_TIMESTAMP`](crate::time::NO_TIMESTAMP).
    pub timestamp: Timestamp,
    /// The payload.
    pub value: T,
}

impl<T> Record<T> {
    /// A record with the given timestamp.
    pub fn new(timestamp: Timestamp, value: T) -> Self {
        Self { timestamp, value }
    }
}

/// What travels over an exchange channel, in order.
///
/// Data and control messages share one ordered channel so that a watermark can never overtake
/// the records it covers.
#[derive(Debug)]
pub(crate) enum Message<T> {
    /// A batch of records (never empty).
    Data(Vec<Record<T>>),
    /// The sender promises no more records with timestamp `<=` this value.
    Watermark(Timestamp),
    /// The sender has nothing to say for now; exclude it from watermark computation until it
    /// sends again.
    Idle,
    /// The sender will send nothing more. Implies a final watermark of `Timestamp::MAX`.
    End,
    /// Checkpoint barrier: everything the sender sent before it belongs to checkpoint `n`.
    Barrier(u64),
}
