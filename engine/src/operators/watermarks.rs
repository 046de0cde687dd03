//! `with_watermarks` on a stream that is not a source: assigns timestamps and generates
//! watermarks for the stream as a whole. Incoming watermarks are replaced by the new strategy's.

use std::any::Any;
use std::sync::Arc;

use crate::error::{OpFailure, OpResult};
use crate::metrics::OpMetrics;
use crate::record::Record;
use crate::runtime::graph::{BuildCx, NodeFactory};
use crate::runtime::push::{erase, join_outputs, AnyPush, BoxPush, Push};
use crate::runtime::worker::enter;
use crate::time::{Clock, Timestamp};
use crate::watermark::{TimestampAssigner, WatermarkGen, WatermarkStrategy};

pub(crate) struct WatermarkFactory<T> {
    pub(crate) strategy: WatermarkStrategy<Arc<dyn TimestampAssigner<T>>>,
}

impl<T: Clone + 'static> NodeFactory for WatermarkFactory<T> {
    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        _shared: &(dyn Any + Send + Sync),
        mut outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        let clock = cx.config().clock.clone();
        let op: BoxPush<T> = Box::new(WatermarkOp {
            gen: WatermarkGen::new(&self.strategy, clock.now()),
            assigner: self.strategy.assigner.clone(),
            clock,
            emitted: Timestamp::MIN,
            down: join_outputs::<T>(outputs.swap_remove(0)),
            id: cx.op,
            metrics: cx.metrics(),
        });
        Ok(vec![erase(op)])
    }
}

struct WatermarkOp<T> {
    gen: WatermarkGen,
    assigner: Arc<dyn TimestampAssigner<T>>,
    clock: Arc<dyn Clock>,
    emitted: Timestamp,
    down: BoxPush<T>,
    id: usize,
    metrics: Arc<OpMetrics>,
}

impl<T: 'static> Push<T> for WatermarkOp<T> {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        if batch.is_empty() {
            return Ok(());
        }
        enter(self.id);
        self.metrics.add_in(batch.len());
        self.metrics.add_out(batch.len());
        let max = self.assigner.assign(batch);
        self.gen.observe(max, self.clock.now());
        self.down.push(batch)?;
        let wm = self.gen.watermark();
        if wm > self.emitted {
            self.emitted = wm;
            self.down.watermark(wm)?;
        }
        Ok(())
    }
    fn watermark(&mut self, _wm: Timestamp) -> OpResult {
        Ok(())
    }
    fn idle(&mut self) -> OpResult {
        Ok(())
    }
    fn tick(&mut self, now: Timestamp) -> OpResult {
        if self.gen.check_idle(now) {
            self.down.idle()?;
        }
        self.down.tick(now)
    }
    fn end(&mut self) -> OpResult {
        self.down.end()
    }
}
