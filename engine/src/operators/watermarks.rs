//! `with_watermarks` on a stream that is not a source: assigns timestamps and generates
//! watermarks for the stream as a whole. Incoming watermarks are replaced by the new strategy's.

use std::any::Any;
use std::sync::Arc;

use crate::checkpoint::coordinator::CheckpointPort;
use crate::checkpoint::store::{decode, encode};
use crate::checkpoint::InstanceState;
use crate::error::{OpFailure, OpResult};
use crate::metrics::InstanceMetrics;
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
        let mut gen = WatermarkGen::new(&self.strategy, clock.now());
        if let Some(r) = cx.restored() {
            // At the same parallelism, continue this worker's own timestamps; after rescaling,
            // the least advanced of the old instances' (a watermark may only be late, never early).
            let mine = r.own_operator_state().into_iter();
            let states: Vec<&[u8]> = if r.same_parallelism() {
                mine.collect()
            } else {
                r.operator_states().collect()
            };
            let restored = states
                .into_iter()
                .filter_map(|b| decode::<Timestamp>(b).ok())
                .min();
            if let Some(max_ts) = restored {
                gen.restore(max_ts);
            }
        }
        let op: BoxPush<T> = Box::new(WatermarkOp {
            port: cx.checkpoint_port(),
            gen,
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
    port: Option<CheckpointPort>,
    down: BoxPush<T>,
    id: usize,
    metrics: InstanceMetrics,
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
        if let Some(port) = &self.port {
            port.finished(self.snapshot());
        }
        self.down.end()
    }
    fn barrier(&mut self, n: u64) -> OpResult {
        if let Some(port) = &self.port {
            port.ack(n, self.snapshot());
        }
        self.down.barrier(n)
    }
}

impl<T> WatermarkOp<T> {
    fn snapshot(&self) -> InstanceState {
        InstanceState {
            operator: encode(&self.gen.max_timestamp()),
            ..InstanceState::default()
        }
    }
}
