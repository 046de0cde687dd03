//! Side outputs: typed, named extra outputs of an operator (late data, dead letters).
//!
//! Create an [`OutputTag`], emit to it from a keyed function with
//! [`Context::output`](crate::process::Context::output), and get the stream with
//! [`Stream::side_output`](crate::Stream::side_output). Records emitted to a tag that no stream
//! consumes are counted (in the operator's metrics, under `(unconsumed)`) and discarded.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::OpResult;
use crate::metrics::InstanceMetrics;
use crate::record::Record;
use crate::runtime::push::{join_outputs, AnyPush, BoxPush};
use crate::time::Timestamp;

static NEXT_TAG: AtomicUsize = AtomicUsize::new(1);

/// Names a side output carrying values of type `T`.
///
/// # Examples
///
/// ```
/// use sluice_engine::OutputTag;
/// let late: OutputTag<String> = OutputTag::new("late");
/// assert_eq!(late.name(), "late");
/// ```
pub struct OutputTag<T> {
    pub(crate) id: usize,
    name: Arc<str>,
    _t: PhantomData<fn(T)>,
}

impl<T> OutputTag<T> {
    /// A new tag. Two tags are the same side output only if one is a clone of the other.
    pub fn new(name: &str) -> Self {
        Self {
            id: NEXT_TAG.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            _t: PhantomData,
        }
    }

    /// The tag's name (used in metrics).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            name: self.name.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({:?})", &*self.name)
    }
}

/// One consumed side output of an operator instance: a buffer and its downstream.
pub(crate) trait SideChannel {
    fn tag(&self) -> usize;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn flush(&mut self) -> Result<usize, crate::error::OpFailure>;
    fn watermark(&mut self, wm: Timestamp) -> OpResult;
    fn tick(&mut self, now: Timestamp) -> OpResult;
    fn end(&mut self) -> OpResult;
    fn barrier(&mut self, n: u64) -> OpResult;
}

pub(crate) struct TypedSide<X> {
    tag: usize,
    pub(crate) buf: Vec<Record<X>>,
    down: BoxPush<X>,
}

impl<X: 'static> SideChannel for TypedSide<X> {
    fn tag(&self) -> usize {
        self.tag
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn flush(&mut self) -> Result<usize, crate::error::OpFailure> {
        let n = self.buf.len();
        if n > 0 {
            self.down.push(&mut self.buf)?;
        }
        Ok(n)
    }
    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        self.down.watermark(wm)
    }
    fn tick(&mut self, now: Timestamp) -> OpResult {
        self.down.tick(now)
    }
    fn end(&mut self) -> OpResult {
        self.down.end()
    }
    fn barrier(&mut self, n: u64) -> OpResult {
        self.down.barrier(n)
    }
}

/// Builds the typed side channel of one port from its consumers' pushers; captured when the
/// user asks for the side output, while the type is known.
pub(crate) type SideMaker = Box<dyn Fn(Vec<AnyPush>) -> Box<dyn SideChannel> + Send + Sync>;

pub(crate) fn side_maker<X: Clone + 'static>(tag: usize) -> SideMaker {
    Box::new(move |outputs| {
        Box::new(TypedSide::<X> {
            tag,
            buf: Vec::new(),
            down: join_outputs::<X>(outputs),
        })
    })
}

/// All side outputs of one operator instance.
pub(crate) struct SideOutputs {
    slots: Vec<Box<dyn SideChannel>>,
    metrics: InstanceMetrics,
    /// Index in `metrics.side` of the "(unconsumed)" counter.
    unconsumed: usize,
}

impl SideOutputs {
    /// `slots[i]` is port `i + 1`; `metrics.side` has one more counter for unconsumed tags.
    pub(crate) fn new(slots: Vec<Box<dyn SideChannel>>, metrics: InstanceMetrics) -> Self {
        let unconsumed = slots.len();
        Self {
            slots,
            metrics,
            unconsumed,
        }
    }

    #[inline]
    pub(crate) fn emit<X: 'static>(&mut self, tag: &OutputTag<X>, ts: Timestamp, value: X) {
        for slot in &mut self.slots {
            if slot.tag() == tag.id {
                if let Some(side) = slot.as_any_mut().downcast_mut::<TypedSide<X>>() {
                    side.buf.push(Record::new(ts, value));
                    return;
                }
            }
        }
        self.metrics.add_side(self.unconsumed, 1);
    }

    pub(crate) fn flush(&mut self) -> OpResult {
        for (port, slot) in self.slots.iter_mut().enumerate() {
            let n = slot.flush()?;
            self.metrics.add_side(port, n);
        }
        Ok(())
    }

    pub(crate) fn watermark(&mut self, wm: Timestamp) -> OpResult {
        self.flush()?;
        self.slots.iter_mut().try_for_each(|s| s.watermark(wm))
    }

    pub(crate) fn tick(&mut self, now: Timestamp) -> OpResult {
        self.slots.iter_mut().try_for_each(|s| s.tick(now))
    }

    pub(crate) fn end(&mut self) -> OpResult {
        self.flush()?;
        self.slots.iter_mut().try_for_each(|s| s.end())
    }

    /// Flushes, then forwards barrier `n` on every side output.
    pub(crate) fn barrier(&mut self, n: u64) -> OpResult {
        self.flush()?;
        self.slots.iter_mut().try_for_each(|s| s.barrier(n))
    }
}
