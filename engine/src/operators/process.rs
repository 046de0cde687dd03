//! The keyed process operator: runs a [`KeyedProcessFunction`] over `(key, value)` records with
//! keyed state, timers and side outputs.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::checkpoint::coordinator::CheckpointPort;
use crate::checkpoint::store::{decode, encode};
use crate::checkpoint::{by_group, InstanceState, Restored};
use crate::error::{BoxError, OpFailure, OpResult};
use crate::keys::Key;
use crate::metrics::InstanceMetrics;
use crate::process::{Context, KeyedProcessFunction, Parts, TimeDomain, Timer};
use crate::record::Record;
use crate::runtime::graph::{BuildCx, NodeFactory};
use crate::runtime::push::{erase, join_outputs, AnyPush, BoxPush, Push};
use crate::runtime::timers::TimerQueue;
use crate::runtime::worker::enter;
use crate::side_output::SideOutputs;
use crate::state::{StateRegistry, StateStore};
use crate::time::{Clock, Timestamp, NO_TIMESTAMP};

pub(crate) struct ProcessFactory<K, T, C> {
    pub(crate) make: Arc<C>,
    pub(crate) _t: PhantomData<fn(K, T)>,
}

impl<K, T, C, F> NodeFactory for ProcessFactory<K, T, C>
where
    K: Key,
    T: 'static,
    C: Fn(&mut StateRegistry<K>) -> F + Send + Sync + 'static,
    F: KeyedProcessFunction<K, T>,
{
    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        _shared: &(dyn Any + Send + Sync),
        mut outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        enter(cx.op);
        let metrics = cx.metrics();
        let mut registry = StateRegistry::new(metrics.clone());
        let f = (self.make)(&mut registry);
        let sides = SideOutputs::new(std::mem::take(&mut cx.sides), metrics.clone());
        let clock = cx.config().clock.clone();
        let mut parts = Parts {
            state: StateStore::new(registry),
            event_timers: TimerQueue::new(),
            proc_timers: TimerQueue::new(),
            out: Vec::new(),
            sides,
            watermark: Timestamp::MIN,
            now: clock.now(),
        };
        if let Some(r) = cx.restored() {
            restore(&mut parts, r).map_err(|e| OpFailure::error(cx.op, e))?;
        }
        let op: BoxPush<(K, T)> = Box::new(ProcessOp {
            f,
            parts,
            port: cx.checkpoint_port(),
            max_parallelism: cx.config().max_parallelism,
            down: join_outputs::<F::Out>(outputs.swap_remove(0)),
            clock,
            batch_size: cx.config().batch_size,
            id: cx.op,
            metrics,
            _t: PhantomData,
        });
        Ok(vec![erase(op)])
    }
}

/// One key group of a keyed process operator's checkpoint: `(table name, entries)` per state
/// table, then the event-time and processing-time timers.
type GroupSnapshot<K> = (
    Vec<(String, serde_bytes::ByteBuf)>,
    Vec<(K, Timestamp)>,
    Vec<(K, Timestamp)>,
);

fn restore<K: Key, O>(parts: &mut Parts<K, O>, r: Restored<'_>) -> Result<(), BoxError> {
    parts.watermark = restored_watermark(r)?;
    for blob in r.groups() {
        let (tables, event, proc): GroupSnapshot<K> = decode(blob)
            .map_err(|e| format!("cannot decode keyed state from the checkpoint: {e}"))?;
        for (name, bytes) in tables {
            parts.state.restore(&name, bytes.as_ref())?;
        }
        for (k, t) in event {
            parts.event_timers.register(&k, t);
        }
        for (k, t) in proc {
            parts.proc_timers.register(&k, t);
        }
    }
    Ok(())
}

/// A keyed operator's watermark after restore: the least advanced of its old instances' (they
/// are equal unless some input was idle).
pub(crate) fn restored_watermark(r: Restored<'_>) -> Result<Timestamp, BoxError> {
    let mut wm = Timestamp::MAX;
    let mut any = false;
    for blob in r.operator_states() {
        if blob.is_empty() {
            continue;
        }
        let w: Timestamp =
            decode(blob).map_err(|e| format!("cannot decode a checkpointed watermark: {e}"))?;
        wm = wm.min(w);
        any = true;
    }
    Ok(if any { wm } else { Timestamp::MIN })
}

/// Serializes keyed entries grouped by key group into an [`InstanceState`].
pub(crate) fn keyed_instance_state(
    watermark: Timestamp,
    groups: impl Iterator<Item = (usize, Vec<u8>)>,
) -> InstanceState {
    InstanceState {
        operator: encode(&watermark),
        groups: groups
            .filter(|(_, b)| !b.is_empty())
            .map(|(g, b)| (g as u32, b))
            .collect(),
        ..InstanceState::default()
    }
}

struct ProcessOp<K, T, F: KeyedProcessFunction<K, T>> {
    f: F,
    parts: Parts<K, F::Out>,
    port: Option<CheckpointPort>,
    max_parallelism: usize,
    down: BoxPush<F::Out>,
    clock: Arc<dyn Clock>,
    batch_size: usize,
    id: usize,
    metrics: InstanceMetrics,
    _t: PhantomData<fn(T)>,
}

impl<K: Key, T, F: KeyedProcessFunction<K, T>> ProcessOp<K, T, F> {
    fn snapshot(&self) -> InstanceState {
        let maxp = self.max_parallelism;
        let tables = self.parts.state.snapshot(maxp);
        let event = by_group(maxp, self.parts.event_timers.iter());
        let proc = by_group(maxp, self.parts.proc_timers.iter());
        let groups = tables
            .into_iter()
            .zip(event)
            .zip(proc)
            .enumerate()
            .map(|(g, ((t, e), p))| {
                if t.is_empty() && e.is_empty() && p.is_empty() {
                    (g, Vec::new())
                } else {
                    let t: Vec<(String, serde_bytes::ByteBuf)> = t
                        .into_iter()
                        .map(|(n, b)| (n, serde_bytes::ByteBuf::from(b)))
                        .collect();
                    (g, encode(&(t, e, p)))
                }
            });
        keyed_instance_state(self.parts.watermark, groups)
    }

    fn flush(&mut self) -> OpResult {
        self.metrics.set_state(
            self.parts.state.keys(),
            self.parts.event_timers.len() + self.parts.proc_timers.len(),
        );
        self.parts.sides.flush()?;
        if self.parts.out.is_empty() {
            return Ok(());
        }
        self.metrics.add_out(self.parts.out.len());
        self.down.push(&mut self.parts.out)
    }

    /// Fires the timers of one domain up to `upto`, in time order, flushing output as it grows.
    fn fire(&mut self, domain: TimeDomain, upto: Timestamp) -> OpResult {
        enter(self.id);
        loop {
            let queue = match domain {
                TimeDomain::EventTime => &mut self.parts.event_timers,
                TimeDomain::ProcessingTime => &mut self.parts.proc_timers,
            };
            let Some((time, keys)) = queue.pop_due(upto) else {
                break;
            };
            for key in keys {
                let horizon = match domain {
                    TimeDomain::EventTime => self.parts.watermark.min(time),
                    TimeDomain::ProcessingTime => self.parts.watermark,
                };
                let mut ctx = Context {
                    parts: &mut self.parts,
                    timestamp: time,
                    horizon,
                };
                self.f.on_timer(&key, Timer { time, domain }, &mut ctx);
            }
            if self.parts.out.len() >= self.batch_size {
                self.flush()?;
                enter(self.id);
            }
        }
        self.flush()
    }
}

impl<K: Key, T, F: KeyedProcessFunction<K, T>> Push<(K, T)> for ProcessOp<K, T, F> {
    fn push(&mut self, batch: &mut Vec<Record<(K, T)>>) -> OpResult {
        enter(self.id);
        self.metrics.add_in(batch.len());
        let wm = self.parts.watermark;
        self.parts.now = self.clock.now();
        // Counted in the same pass as the records are handled: a separate pass would read the
        // whole batch twice.
        let mut late = 0;
        for r in batch.drain(..) {
            late += usize::from(r.timestamp != NO_TIMESTAMP && r.timestamp <= wm);
            let (key, value) = r.value;
            let mut ctx = Context {
                parts: &mut self.parts,
                timestamp: r.timestamp,
                horizon: wm,
            };
            self.f.process(&key, value, &mut ctx);
        }
        if late > 0 {
            self.metrics.add_late(late);
        }
        self.flush()
    }

    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        if wm <= self.parts.watermark {
            return Ok(());
        }
        self.parts.watermark = wm;
        self.fire(TimeDomain::EventTime, wm)?;
        self.parts.state.expire(wm);
        self.metrics.set_state(
            self.parts.state.keys(),
            self.parts.event_timers.len() + self.parts.proc_timers.len(),
        );
        self.parts.sides.watermark(wm)?;
        self.down.watermark(wm)
    }

    fn idle(&mut self) -> OpResult {
        self.down.idle()
    }

    fn tick(&mut self, now: Timestamp) -> OpResult {
        self.parts.now = now;
        if self.parts.proc_timers.next_time().is_some_and(|t| t <= now) {
            self.fire(TimeDomain::ProcessingTime, now)?;
        }
        self.parts.sides.tick(now)?;
        self.down.tick(now)
    }

    fn end(&mut self) -> OpResult {
        self.parts.watermark = Timestamp::MAX;
        self.fire(TimeDomain::EventTime, Timestamp::MAX)?;
        self.parts.state.expire(Timestamp::MAX);
        self.metrics.set_state(
            self.parts.state.keys(),
            self.parts.event_timers.len() + self.parts.proc_timers.len(),
        );
        self.parts.sides.end()?;
        if let Some(port) = &self.port {
            port.finished(self.snapshot());
        }
        self.down.end()
    }

    fn barrier(&mut self, n: u64) -> OpResult {
        enter(self.id);
        self.flush()?;
        if let Some(port) = &self.port {
            port.ack(n, self.snapshot());
        }
        self.parts.sides.barrier(n)?;
        self.down.barrier(n)
    }
}
