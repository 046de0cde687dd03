//! The sink operator: hands batches to a [`SinkWriter`](crate::sink::SinkWriter).

use std::any::Any;
use std::sync::Arc;

use crate::error::{OpFailure, OpResult};
use crate::metrics::OpMetrics;
use crate::record::Record;
use crate::runtime::graph::{BuildCx, NodeFactory};
use crate::runtime::push::{erase, AnyPush, BoxPush, Push};
use crate::runtime::worker::enter;
use crate::sink::{Sink, SinkContext, SinkWriter};
use crate::time::Timestamp;

pub(crate) struct SinkFactory<T, S> {
    pub(crate) sink: Arc<S>,
    pub(crate) _t: std::marker::PhantomData<fn(T)>,
}

impl<T: 'static, S: Sink<T>> NodeFactory for SinkFactory<T, S> {
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
        };
        let writer = self
            .sink
            .open(&scx)
            .map_err(|e| OpFailure::error(cx.op, e))?;
        let op: BoxPush<T> = Box::new(SinkOp {
            writer,
            id: cx.op,
            metrics: cx.metrics(),
        });
        Ok(vec![erase(op)])
    }
}

struct SinkOp<T> {
    writer: Box<dyn SinkWriter<T>>,
    id: usize,
    metrics: Arc<OpMetrics>,
}

impl<T> Push<T> for SinkOp<T> {
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
        self.writer
            .finish()
            .map_err(|e| OpFailure::error(self.id, e))
    }
}
