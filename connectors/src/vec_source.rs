//! An in-memory source: a vector, split across workers.

use std::sync::Arc;

use sluice_engine::source::{Source, SourceOutput, SourceStatus, Split, SplitReader};
use sluice_engine::time::Timestamp;
use sluice_engine::BoxError;

use crate::share::{share_count, share_splits};

/// A bounded source over a vector of values (optionally with timestamps).
///
/// By default it has one split per worker; split `i` of `n` holds the elements at indices
/// `i, i + n, i + 2n, ...`, so every split progresses through the vector at the same pace (and
/// event time advances evenly on all workers). Position = elements of the split emitted so far.
///
/// # Examples
///
/// ```
/// use sluice_connectors::{CollectSink, VecSource};
/// use sluice_engine::{Config, StreamEnv};
///
/// let env = StreamEnv::new(Config::default());
/// let out = CollectSink::new();
/// env.source(VecSource::new(vec![1, 2, 3])).map(|x| x * 10).sink(out.clone());
/// env.execute().unwrap();
/// assert_eq!(out.sorted_values(), vec![10, 20, 30]);
/// ```
pub struct VecSource<T> {
    items: Arc<Vec<(Timestamp, T)>>,
    splits: Option<usize>,
}

impl<T: Clone + Send + Sync + 'static> VecSource<T> {
    /// A source of `items`, without timestamps.
    pub fn new(items: Vec<T>) -> Self {
        Self::with_timestamps(
            items
                .into_iter()
                .map(|v| (sluice_engine::time::NO_TIMESTAMP, v))
                .collect(),
        )
    }

    /// A source of `(timestamp, value)` pairs; the timestamps are attached to the records (use
    /// `Watermarks::...` without `.timestamps(..)` to generate watermarks from them).
    pub fn with_timestamps(items: Vec<(Timestamp, T)>) -> Self {
        Self {
            items: Arc::new(items),
            splits: None,
        }
    }

    /// Uses exactly `n` splits (at least 1) instead of one per worker. One split keeps the
    /// vector's order on a single worker.
    pub fn splits(mut self, n: usize) -> Self {
        self.splits = Some(n.max(1));
        self
    }
}

impl<T: Clone + Send + Sync + 'static> Source<T> for VecSource<T> {
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok(share_splits(
            "vec",
            self.splits.unwrap_or(parallelism).max(1),
        ))
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<T>>, BoxError> {
        let count = share_count(split)?;
        Ok(Box::new(VecReader {
            items: self.items.clone(),
            next: split.index + position.unwrap_or(0) as usize * count,
            stride: count,
            emitted: position.unwrap_or(0),
        }))
    }
}

struct VecReader<T> {
    items: Arc<Vec<(Timestamp, T)>>,
    next: usize,
    stride: usize,
    emitted: u64,
}

impl<T: Clone> SplitReader<T> for VecReader<T> {
    fn poll(&mut self, out: &mut SourceOutput<'_, T>) -> Result<SourceStatus, BoxError> {
        while !out.is_full() {
            let Some((ts, v)) = self.items.get(self.next) else {
                return Ok(SourceStatus::Finished);
            };
            out.push_at(*ts, v.clone());
            self.next += self.stride;
            self.emitted += 1;
        }
        Ok(if self.next >= self.items.len() {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> u64 {
        self.emitted
    }
}
