//! `union`: merges several streams of the same type. The output watermark is the minimum of the
//! inputs' watermarks; the output ends when every input has ended.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use crate::checkpoint::coordinator::{ack_counts, finished_counts, CheckpointPort};
use crate::error::{OpFailure, OpResult};
use crate::metrics::InstanceMetrics;
use crate::record::{Message, Record};
use crate::runtime::align::Aligner;
use crate::runtime::graph::{BuildCx, NodeFactory};
use crate::runtime::push::{erase, join_outputs, AnyPush, BoxPush, Push};
use crate::runtime::watermarks::{Progress, WatermarkTracker};
use crate::time::Timestamp;

pub(crate) struct UnionFactory<T> {
    pub(crate) inputs: usize,
    pub(crate) _t: std::marker::PhantomData<fn(T)>,
}

impl<T: Clone + 'static> NodeFactory for UnionFactory<T> {
    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        _shared: &(dyn Any + Send + Sync),
        mut outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        let core = Rc::new(RefCell::new(UnionCore {
            tracker: WatermarkTracker::new(self.inputs),
            down: join_outputs::<T>(outputs.swap_remove(0)),
            metrics: cx.metrics(),
            port: cx.checkpoint_port(),
            align: Aligner::new(self.inputs),
        }));
        Ok((0..self.inputs)
            .map(|index| {
                let input: BoxPush<T> = Box::new(UnionInput {
                    index,
                    core: core.clone(),
                });
                erase(input)
            })
            .collect())
    }
}

/// The union's state on one worker, shared by its inputs. Aligns checkpoint barriers like the
/// receiving end of an exchange: an input that delivered `Barrier(n)` is held back until every
/// input that has not ended has delivered it.
struct UnionCore<T> {
    tracker: WatermarkTracker,
    down: BoxPush<T>,
    metrics: InstanceMetrics,
    port: Option<CheckpointPort>,
    align: Aligner<T>,
}

impl<T> UnionCore<T> {
    fn progress(&mut self, p: Option<Progress>) -> OpResult {
        match p {
            Some(Progress::Watermark(wm)) => self.down.watermark(wm),
            Some(Progress::Idle) => self.down.idle(),
            None => Ok(()),
        }
    }

    fn handle(&mut self, index: usize, msg: Message<T>) -> OpResult {
        let Some(msg) = self.align.admit(index, msg) else {
            return Ok(());
        };
        match msg {
            Message::Data(mut batch) => self.data(index, &mut batch),
            Message::Watermark(wm) => {
                let p = self.tracker.watermark(index, wm);
                self.progress(p)
            }
            Message::Idle => {
                let p = self.tracker.idle(index);
                self.progress(p)
            }
            Message::End => {
                self.align.end(index);
                let (all, p) = self.tracker.end_progress(index);
                self.progress(p)?;
                if all {
                    finished_counts(&self.port);
                    return self.down.end();
                }
                self.check_aligned()
            }
            Message::Barrier(n) => {
                self.align.barrier(index, n);
                self.check_aligned()
            }
        }
    }

    fn data(&mut self, index: usize, batch: &mut Vec<Record<T>>) -> OpResult {
        self.tracker.active(index);
        self.metrics.add_in(batch.len());
        self.metrics.add_out(batch.len());
        self.down.push(batch)
    }

    fn check_aligned(&mut self) -> OpResult {
        let Some((n, held)) = self.align.release() else {
            return Ok(());
        };
        // Aligned: every record before the barrier is counted, none after it (held back).
        ack_counts(&self.port, n);
        self.down.barrier(n)?;
        for (index, msg) in held {
            self.handle(index, msg)?;
        }
        Ok(())
    }
}

struct UnionInput<T> {
    index: usize,
    core: Rc<RefCell<UnionCore<T>>>,
}

impl<T> Push<T> for UnionInput<T> {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        let mut core = self.core.borrow_mut();
        if core.align.is_blocked(self.index) {
            let held = std::mem::take(batch);
            return core.handle(self.index, Message::Data(held));
        }
        core.data(self.index, batch)
    }
    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        self.core
            .borrow_mut()
            .handle(self.index, Message::Watermark(wm))
    }
    fn idle(&mut self) -> OpResult {
        self.core.borrow_mut().handle(self.index, Message::Idle)
    }
    fn tick(&mut self, now: Timestamp) -> OpResult {
        self.core.borrow_mut().down.tick(now)
    }
    fn end(&mut self) -> OpResult {
        self.core.borrow_mut().handle(self.index, Message::End)
    }
    fn barrier(&mut self, n: u64) -> OpResult {
        self.core
            .borrow_mut()
            .handle(self.index, Message::Barrier(n))
    }
}
