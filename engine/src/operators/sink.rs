//! The sink operator: hands batches to a [`SinkWriter`](crate::sink::SinkWriter).

use std::any::Any;
use std::sync::Arc;

use crate::checkpoint::coordinator::{CheckpointPort, Committer};
use crate::checkpoint::InstanceState;
use crate::error::{BoxError, JobError, OpFailure, OpResult};
use crate::metrics::InstanceMetrics;
use crate::record::Record;
use crate::runtime::graph::{BuildCx, NodeFactory, PrepareCx, Shared};
use crate::runtime::push::{erase, AnyPush, BoxPush, Push};
use crate::runtime::worker::enter;
use crate::sink::{Sink, SinkContext, SinkWriter};
use crate::time::Timestamp;

pub(crate) struct SinkFactory<T, S> {
    pub(crate) sink: Arc<S>,
    pub(crate) _t: std::marker::PhantomData<fn(T)>,
}

/// Lets the coordinator commit a sink's transactions.
struct SinkCommitter<T, S> {
    sink: Arc<S>,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: 'static, S: Sink<T>> Committer for SinkCommitter<T, S> {
    fn commit(&self, txn: &[u8]) -> Result<(), BoxError> {
        self.sink.commit(txn)
    }
    fn recover(&self, restored: Option<u64>, txns: &[Vec<u8>]) -> Result<(), BoxError> {
        self.sink.recover(restored, txns)
    }
}

impl<T: 'static, S: Sink<T>> NodeFactory for SinkFactory<T, S> {
    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Shared, JobError> {
        cx.committer = Some(Arc::new(SinkCommitter {
            sink: self.sink.clone(),
            _t: std::marker::PhantomData,
        }));
        Ok(Box::new(()))
    }

    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        _shared: &(dyn Any + Send + Sync),
        _outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        enter(cx.op);
        let scx = SinkContext {
            worker: cx.worker,
            parallelism: cx.parallelism(),
            checkpointing: cx.job.checkpoint.is_some(),
            metrics: Some(cx.metrics()),
        };
        let writer = self
            .sink
            .open(&scx)
            .map_err(|e| OpFailure::error(cx.op, e))?;
        let op: BoxPush<T> = Box::new(SinkOp {
            writer,
            sink: self.sink.clone(),
            port: cx.checkpoint_port(),
            id: cx.op,
            metrics: cx.metrics(),
        });
        Ok(vec![erase(op)])
    }
}

struct SinkOp<T, S> {
    writer: Box<dyn SinkWriter<T>>,
    sink: Arc<S>,
    port: Option<CheckpointPort>,
    id: usize,
    metrics: InstanceMetrics,
}

impl<T: 'static, S: Sink<T>> Push<T> for SinkOp<T, S> {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        enter(self.id);
        self.metrics.add_in(batch.len());
        self.writer
            .write(batch)
            .map_err(|e| OpFailure::error(self.id, e))?;
        batch.clear();
        Ok(())
    }
    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        enter(self.id);
        self.writer
            .watermark(wm)
            .map_err(|e| OpFailure::error(self.id, e))
    }
    fn tick(&mut self, _now: Timestamp) -> OpResult {
        Ok(())
    }
    fn end(&mut self) -> OpResult {
        enter(self.id);
        let fail = |e| OpFailure::error(self.id, e);
        self.writer.finish().map_err(fail)?;
        let txn = self.writer.pre_commit(u64::MAX).map_err(fail)?;
        match &self.port {
            // The job's final checkpoint commits it.
            Some(port) => port.finished(InstanceState {
                txn,
                ..InstanceState::default()
            }),
            None => {
                if let Some(txn) = txn {
                    self.sink.commit(&txn).map_err(fail)?;
                }
            }
        }
        Ok(())
    }
    fn barrier(&mut self, n: u64) -> OpResult {
        enter(self.id);
        let txn = self
            .writer
            .pre_commit(n)
            .map_err(|e| OpFailure::error(self.id, e))?;
        if let Some(port) = &self.port {
            port.ack(
                n,
                InstanceState {
                    txn,
                    ..InstanceState::default()
                },
            );
        }
        Ok(())
    }
}
