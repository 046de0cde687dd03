//! A sink that collects into memory, for tests and examples.

use std::sync::Arc;

use parking_lot::Mutex;
use sluice_engine::sink::{Sink, SinkContext, SinkWriter};
use sluice_engine::{BoxError, Record};

/// Collects every record it receives. Clones share the same buffer: keep one clone, give the
/// other to [`Stream::sink`](sluice_engine::Stream::sink), read it after the job.
///
/// The lock is taken once per batch, never per record.
pub struct CollectSink<T> {
    records: Arc<Mutex<Vec<Record<T>>>>,
}

impl<T> Clone for CollectSink<T> {
    fn clone(&self) -> Self {
        Self {
            records: self.records.clone(),
        }
    }
}

impl<T> Default for CollectSink<T> {
    fn default() -> Self {
        Self {
            records: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T: Clone> CollectSink<T> {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The records received so far, in arrival order (which across workers is not
    /// deterministic).
    pub fn records(&self) -> Vec<Record<T>> {
        self.records.lock().clone()
    }

    /// The values received so far, in arrival order.
    pub fn values(&self) -> Vec<T> {
        self.records
            .lock()
            .iter()
            .map(|r| r.value.clone())
            .collect()
    }

    /// The values received so far, sorted.
    pub fn sorted_values(&self) -> Vec<T>
    where
        T: Ord,
    {
        let mut v = self.values();
        v.sort();
        v
    }

    /// Number of records received so far.
    pub fn len(&self) -> usize {
        self.records.lock().len()
    }

    /// Whether nothing was received.
    pub fn is_empty(&self) -> bool {
        self.records.lock().is_empty()
    }
}

impl<T: Clone + Send + 'static> Sink<T> for CollectSink<T> {
    fn open(&self, _cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        Ok(Box::new(self.clone()))
    }
}

impl<T: Send> SinkWriter<T> for CollectSink<T> {
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        self.records.lock().append(batch);
        Ok(())
    }
}
