//! The non-keyed process operator: runs a [`ProcessFunction`] over each record, with side
//! outputs.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::checkpoint::coordinator::{ack_counts, finished_counts, CheckpointPort};
use crate::error::{OpFailure, OpResult};
use crate::metrics::InstanceMetrics;
use crate::process::{ProcessContext, ProcessFunction};
use crate::record::Record;
use crate::runtime::graph::{BuildCx, NodeFactory};
use crate::runtime::push::{erase, join_outputs, AnyPush, BoxPush, Push};
use crate::runtime::worker::enter;
use crate::side_output::SideOutputs;
use crate::time::{Clock, Timestamp};

pub(crate) struct ProcessFnFactory<T, C> {
    pub(crate) make: Arc<C>,
    pub(crate) _t: PhantomData<fn(T)>,
}

impl<T, C, F> NodeFactory for ProcessFnFactory<T, C>
where
    T: 'static,
    C: Fn() -> F + Send + Sync + 'static,
    F: ProcessFunction<T>,
{
    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        _shared: &(dyn Any + Send + Sync),
        mut outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        enter(cx.op);
        let metrics = cx.metrics();
        let op: BoxPush<T> = Box::new(ProcessFnOp {
            f: (self.make)(),
            out: Vec::new(),
            sides: SideOutputs::new(std::mem::take(&mut cx.sides), metrics.clone()),
            down: join_outputs::<F::Out>(outputs.swap_remove(0)),
            clock: cx.config().clock.clone(),
            watermark: Timestamp::MIN,
            id: cx.op,
            metrics,
            port: cx.checkpoint_port(),
            _t: PhantomData,
        });
        Ok(vec![erase(op)])
    }
}

struct ProcessFnOp<T, F: ProcessFunction<T>> {
    f: F,
    out: Vec<Record<F::Out>>,
    sides: SideOutputs,
    down: BoxPush<F::Out>,
    clock: Arc<dyn Clock>,
    watermark: Timestamp,
    id: usize,
    metrics: InstanceMetrics,
    port: Option<CheckpointPort>,
    _t: PhantomData<fn(T)>,
}

impl<T, F: ProcessFunction<T>> Push<T> for ProcessFnOp<T, F> {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        enter(self.id);
        self.metrics.add_in(batch.len());
        let now = self.clock.now();
        self.f.start_batch();
        for r in batch.drain(..) {
            let mut ctx = ProcessContext {
                out: &mut self.out,
                sides: &mut self.sides,
                timestamp: r.timestamp,
                watermark: self.watermark,
                now,
            };
            self.f.process(r.value, &mut ctx);
        }
        self.sides.flush()?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.metrics.add_out(self.out.len());
        self.down.push(&mut self.out)
    }
    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        self.watermark = self.watermark.max(wm);
        self.sides.watermark(wm)?;
        self.down.watermark(wm)
    }
    fn idle(&mut self) -> OpResult {
        self.down.idle()
    }
    fn tick(&mut self, now: Timestamp) -> OpResult {
        self.sides.tick(now)?;
        self.down.tick(now)
    }
    fn end(&mut self) -> OpResult {
        self.sides.end()?;
        finished_counts(&self.port);
        self.down.end()
    }
    fn barrier(&mut self, n: u64) -> OpResult {
        // The function's own fields are not state the runtime knows of: only the counts.
        ack_counts(&self.port, n);
        self.sides.barrier(n)?;
        self.down.barrier(n)
    }
}
