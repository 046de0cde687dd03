//! `union`: merges several streams of the same type. The output watermark is the minimum of the
//! inputs' watermarks; the output ends when every input has ended.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::error::{OpFailure, OpResult};
use crate::metrics::OpMetrics;
use crate::record::Record;
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

struct UnionCore<T> {
    tracker: WatermarkTracker,
    down: BoxPush<T>,
    metrics: Arc<OpMetrics>,
}

impl<T> UnionCore<T> {
    fn progress(&mut self, p: Option<Progress>) -> OpResult {
        match p {
            Some(Progress::Watermark(wm)) => self.down.watermark(wm),
            Some(Progress::Idle) => self.down.idle(),
            None => Ok(()),
        }
    }
}

struct UnionInput<T> {
    index: usize,
    core: Rc<RefCell<UnionCore<T>>>,
}

impl<T> Push<T> for UnionInput<T> {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        let mut core = self.core.borrow_mut();
        core.tracker.active(self.index);
        core.metrics.add_in(batch.len());
        core.metrics.add_out(batch.len());
        core.down.push(batch)
    }
    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        let mut core = self.core.borrow_mut();
        let p = core.tracker.watermark(self.index, wm);
        core.progress(p)
    }
    fn idle(&mut self) -> OpResult {
        let mut core = self.core.borrow_mut();
        let p = core.tracker.idle(self.index);
        core.progress(p)
    }
    fn tick(&mut self, now: Timestamp) -> OpResult {
        self.core.borrow_mut().down.tick(now)
    }
    fn end(&mut self) -> OpResult {
        let mut core = self.core.borrow_mut();
        let (all, p) = core.tracker.end_progress(self.index);
        core.progress(p)?;
        if all {
            core.down.end()?;
        }
        Ok(())
    }
}
