//! The generic one-input, one-output operator with no state: `map`, `filter`, `inspect` and
//! `flat_map` are each a small [`BatchFn`] run by [`StatelessOp`].

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::checkpoint::coordinator::{ack_counts, finished_counts, CheckpointPort};
use crate::error::{OpFailure, OpResult};
use crate::metrics::InstanceMetrics;
use crate::record::Record;
use crate::runtime::graph::{BuildCx, NodeFactory};
use crate::runtime::push::{erase, join_outputs, AnyPush, BoxPush, Push};
use crate::runtime::worker::enter;
use crate::time::Timestamp;

/// Transforms a whole batch. Implementations loop over the batch with the user's closure
/// inlined: there is no dynamic dispatch per record.
pub(crate) trait BatchFn<T, U>: Send + Sync + 'static {
    /// Moves what `input` becomes into `out`. `input` is cleared by the caller afterwards.
    fn apply(&self, input: &mut Vec<Record<T>>, out: &mut Vec<Record<U>>);

    /// The predicate of a function that drops whatever fails it (a filter). Default: none.
    fn predicate(&self) -> Option<&dyn Fn(&T) -> bool> {
        None
    }
}

/// `map`: one output per input, same timestamp.
pub(crate) struct MapFn<F>(pub(crate) F);

impl<T, U, F> BatchFn<T, U> for MapFn<F>
where
    F: Fn(T) -> U + Send + Sync + 'static,
{
    #[inline]
    fn apply(&self, input: &mut Vec<Record<T>>, out: &mut Vec<Record<U>>) {
        out.extend(
            input
                .drain(..)
                .map(|r| Record::new(r.timestamp, (self.0)(r.value))),
        );
    }
}

/// `filter`: keeps the records the predicate accepts.
pub(crate) struct FilterFn<F>(pub(crate) F);

impl<T, F> BatchFn<T, T> for FilterFn<F>
where
    F: Fn(&T) -> bool + Send + Sync + 'static,
{
    #[inline]
    fn apply(&self, input: &mut Vec<Record<T>>, out: &mut Vec<Record<T>>) {
        input.retain(|r| (self.0)(&r.value));
        std::mem::swap(input, out);
    }

    fn predicate(&self) -> Option<&dyn Fn(&T) -> bool> {
        Some(&self.0)
    }
}

/// `inspect`: sees every record, passes it on unchanged.
pub(crate) struct InspectFn<F>(pub(crate) F);

impl<T, F> BatchFn<T, T> for InspectFn<F>
where
    F: Fn(&T) + Send + Sync + 'static,
{
    #[inline]
    fn apply(&self, input: &mut Vec<Record<T>>, out: &mut Vec<Record<T>>) {
        for r in input.iter() {
            (self.0)(&r.value);
        }
        std::mem::swap(input, out);
    }
}

/// `flat_map`: zero or more outputs per input, each with the input's timestamp.
pub(crate) struct FlatMapFn<F>(pub(crate) F);

impl<T, U, I, F> BatchFn<T, U> for FlatMapFn<F>
where
    F: Fn(T) -> I + Send + Sync + 'static,
    I: IntoIterator<Item = U>,
{
    #[inline]
    fn apply(&self, input: &mut Vec<Record<T>>, out: &mut Vec<Record<U>>) {
        for r in input.drain(..) {
            let ts = r.timestamp;
            out.extend((self.0)(r.value).into_iter().map(|v| Record::new(ts, v)));
        }
    }
}

pub(crate) struct StatelessFactory<T, U, B> {
    f: Arc<B>,
    _types: PhantomData<fn(T) -> U>,
}

impl<T, U, B> StatelessFactory<T, U, B> {
    pub(crate) fn new(f: B) -> Self {
        Self {
            f: Arc::new(f),
            _types: PhantomData,
        }
    }
}

impl<T, U, B> NodeFactory for StatelessFactory<T, U, B>
where
    T: 'static,
    U: Clone + 'static,
    B: BatchFn<T, U>,
{
    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        _shared: &(dyn Any + Send + Sync),
        mut outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        let op: BoxPush<T> = Box::new(StatelessOp {
            f: self.f.clone(),
            out: Vec::new(),
            down: join_outputs::<U>(outputs.swap_remove(0)),
            id: cx.op,
            metrics: cx.metrics(),
            port: cx.checkpoint_port(),
            _t: PhantomData,
        });
        Ok(vec![erase(op)])
    }
}

struct StatelessOp<T, U, B> {
    f: Arc<B>,
    out: Vec<Record<U>>,
    down: BoxPush<U>,
    id: usize,
    metrics: InstanceMetrics,
    port: Option<CheckpointPort>,
    _t: PhantomData<fn(T)>,
}

impl<T, U, B: BatchFn<T, U>> Push<T> for StatelessOp<T, U, B> {
    fn predicate(&self) -> Option<&dyn Fn(&T) -> bool> {
        self.f.predicate()
    }
    fn skipped(&mut self, n: usize) {
        self.metrics.add_in(n);
    }
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        enter(self.id);
        self.metrics.add_in(batch.len());
        self.f.apply(batch, &mut self.out);
        batch.clear();
        if self.out.is_empty() {
            return Ok(());
        }
        self.metrics.add_out(self.out.len());
        self.down.push(&mut self.out)
    }
    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        self.down.watermark(wm)
    }
    fn idle(&mut self) -> OpResult {
        self.down.idle()
    }
    fn tick(&mut self, now: Timestamp) -> OpResult {
        self.down.tick(now)
    }
    fn end(&mut self) -> OpResult {
        finished_counts(&self.port);
        self.down.end()
    }
    fn barrier(&mut self, n: u64) -> OpResult {
        ack_counts(&self.port, n);
        self.down.barrier(n)
    }
}
