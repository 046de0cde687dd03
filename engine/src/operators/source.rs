//! The source operator: polls the [`SplitReader`]s a worker owns, round-robin, and pushes their
//! batches downstream. With a fused watermark strategy it assigns timestamps and tracks a
//! watermark per split (see [`watermark`](crate::watermark)).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};

use serde::{Deserialize, Serialize};

use crate::checkpoint::coordinator::CheckpointPort;
use crate::checkpoint::store::{decode, encode};
use crate::checkpoint::{InstanceState, Restored};
use crate::error::BoxError;
use std::sync::{Arc, OnceLock};

use crate::error::{JobError, OpFailure, OpResult};
use crate::metrics::InstanceMetrics;
use crate::record::Record;
use crate::runtime::graph::{
    BuildCx, Driver, DriverStatus, JobShared, NodeFactory, PrepareCx, Shared,
};
use crate::runtime::push::{join_outputs, AnyPush, BoxPush};
use crate::runtime::worker::enter;
use crate::source::{Source, SourceOutput, SourceStatus, Split, SplitReader};
use crate::time::{Clock, Timestamp};
use crate::watermark::{TimestampAssigner, WatermarkGen, WatermarkStrategy};

/// A watermark strategy fused into a source, set by `with_watermarks` before the job starts.
pub(crate) type FusedStrategy<T> = WatermarkStrategy<Arc<dyn TimestampAssigner<T>>>;

pub(crate) struct SourceFactory<T, S> {
    pub(crate) source: Arc<S>,
    pub(crate) strategy: Arc<OnceLock<FusedStrategy<T>>>,
}

impl<T: Clone + 'static, S: Source<T>> NodeFactory for SourceFactory<T, S> {
    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Shared, JobError> {
        enter(cx.op);
        let splits = self
            .source
            .splits(cx.config.parallelism)
            .map_err(|source| JobError::OperatorFailed {
                operator: cx.name(),
                worker: 0,
                source,
            })?;
        let published: Arc<Vec<AtomicI64>> = Arc::new(
            (0..cx.config.parallelism)
                .map(|_| AtomicI64::new(Timestamp::MIN))
                .collect(),
        );
        Ok(Box::new((splits, published)))
    }

    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        shared: &(dyn Any + Send + Sync),
        mut outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        enter(cx.op);
        let (splits, published) = shared
            .downcast_ref::<(Vec<Split>, Arc<Vec<AtomicI64>>)>()
            .expect("source shared state");
        let p = cx.parallelism();
        let clock = cx.config().clock.clone();
        let now = clock.now();
        let strategy = self.strategy.get().cloned();
        let strategy_drift = strategy.as_ref().and_then(|s| s.max_drift);
        let restored = match cx.restored() {
            Some(r) => Some(restored_positions(r, splits).map_err(|e| OpFailure::error(cx.op, e))?),
            None => None,
        };
        let mut slots = Vec::new();
        for split in splits.iter().skip(cx.worker).step_by(p) {
            let at = restored.as_ref().and_then(|r| r.get(&split.id));
            let reader = self
                .source
                .open(split, at.map(|a| a.position))
                .map_err(|e| OpFailure::error(cx.op, e))?;
            let mut gen = strategy.as_ref().map(|s| WatermarkGen::new(s, now));
            if let (Some(g), Some(a)) = (&mut gen, at) {
                g.restore(a.max_timestamp);
            }
            slots.push(SplitSlot {
                id: split.id.clone(),
                reader,
                finished: false,
                gen,
            });
        }
        let live = slots.len();
        let align = strategy_drift.map(|d| Alignment {
            max_drift: d,
            published: published.clone(),
            worker: cx.worker,
        });
        if let Some(a) = &align {
            // Restored splits start where they were: publish that at once, or every instance
            // would hold its splits back against the others' initial `MIN` until the idle
            // timeout declared them idle (and downstream ran ahead of their data).
            let restored = slots
                .iter()
                .filter_map(|s| s.gen.as_ref().map(WatermarkGen::watermark))
                .min()
                .unwrap_or(Timestamp::MAX);
            a.publish(restored);
        }
        cx.drivers.push(Box::new(SourceDriver {
            id: cx.op,
            slots,
            live,
            next: 0,
            buf: Vec::with_capacity(cx.config().batch_size),
            batch_size: cx.config().batch_size,
            down: join_outputs::<T>(outputs.swap_remove(0)),
            metrics: cx.metrics(),
            assigner: strategy.map(|s| s.assigner),
            clock,
            emitted: Timestamp::MIN,
            idle_emitted: false,
            port: cx.checkpoint_port(),
            last_barrier: restored_barrier(cx),
            align,
        }));
        Ok(Vec::new())
    }
}

/// Where a split was when a checkpoint was taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SplitPosition {
    id: String,
    position: u64,
    /// The largest event timestamp seen, so the restored watermark starts where it was.
    max_timestamp: Timestamp,
}

/// The positions of every split in the checkpoint being restored, checked against the splits
/// the source enumerates now.
fn restored_positions(
    r: Restored<'_>,
    splits: &[Split],
) -> Result<HashMap<String, SplitPosition>, BoxError> {
    let mut map = HashMap::new();
    for blob in r.operator_states() {
        if blob.is_empty() {
            continue;
        }
        let positions: Vec<SplitPosition> = decode(blob)
            .map_err(|e| format!("cannot decode the source's checkpointed positions: {e}"))?;
        for pos in positions {
            map.insert(pos.id.clone(), pos);
        }
    }
    if let Some(gone) = map.keys().find(|id| !splits.iter().any(|s| &s.id == *id)) {
        return Err(format!(
            "the source's splits changed since the checkpoint: split `{gone}` is gone \
             (the source must enumerate the same splits: a generator's depend on the \
             parallelism unless fixed with `.splits(n)`, files' on their number of stripes)"
        )
        .into());
    }
    Ok(map)
}

/// The checkpoint id a restored job continues after (barriers with smaller ids are stale).
fn restored_barrier(cx: &BuildCx<'_>) -> u64 {
    cx.job.checkpoint.as_ref().map_or(0, |c| c.start_id)
}

struct SplitSlot<T> {
    id: String,
    reader: Box<dyn SplitReader<T>>,
    finished: bool,
    gen: Option<WatermarkGen>,
}

struct SourceDriver<T> {
    id: usize,
    slots: Vec<SplitSlot<T>>,
    live: usize,
    next: usize,
    buf: Vec<Record<T>>,
    batch_size: usize,
    down: BoxPush<T>,
    metrics: InstanceMetrics,
    assigner: Option<Arc<dyn TimestampAssigner<T>>>,
    clock: Arc<dyn Clock>,
    emitted: Timestamp,
    idle_emitted: bool,
    port: Option<CheckpointPort>,
    /// The newest checkpoint this driver emitted a barrier for.
    last_barrier: u64,
    align: Option<Alignment>,
}

/// Watermark alignment across the instances of one source: each publishes the watermark of
/// its least advanced split (`Timestamp::MAX` once it has none live and active).
struct Alignment {
    max_drift: i64,
    published: Arc<Vec<AtomicI64>>,
    worker: usize,
}

impl Alignment {
    /// The newest watermark a split may have and still be read.
    fn limit(&self) -> Timestamp {
        let min = self
            .published
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .min()
            .unwrap_or(Timestamp::MAX);
        min.saturating_add(self.max_drift)
    }

    fn publish(&self, wm: Timestamp) {
        self.published[self.worker].store(wm, Ordering::Relaxed);
    }
}

impl<T: 'static> SourceDriver<T> {
    fn finish(&mut self) -> Result<DriverStatus, OpFailure> {
        for s in &mut self.slots {
            s.finished = true;
        }
        self.live = 0;
        if let Some(a) = &self.align {
            a.publish(Timestamp::MAX);
        }
        if let Some(port) = &self.port {
            port.finished(self.snapshot());
        }
        self.down.end()?;
        Ok(DriverStatus::Done)
    }

    fn snapshot(&self) -> InstanceState {
        let positions: Vec<SplitPosition> = self
            .slots
            .iter()
            .map(|s| SplitPosition {
                id: s.id.clone(),
                position: s.reader.position(),
                max_timestamp: s.gen.as_ref().map_or(Timestamp::MIN, |g| g.max_timestamp()),
            })
            .collect();
        InstanceState {
            operator: encode(&positions),
            ..InstanceState::default()
        }
    }

    /// Emits a barrier if the coordinator triggered a checkpoint since the last one: records
    /// every split's position, reports it, and sends the barrier after the records read so far.
    fn barrier(&mut self, shared: &JobShared) -> OpResult {
        let Some(cp) = &shared.checkpoint else {
            return Ok(());
        };
        let n = cp.trigger.load(Ordering::Acquire);
        if n <= self.last_barrier {
            return Ok(());
        }
        self.last_barrier = n;
        enter(self.id);
        if let Some(port) = &self.port {
            port.ack(n, self.snapshot());
        }
        self.down.barrier(n)
    }

    /// Emits the minimum watermark over the live, non-idle splits if it advanced, or an idle
    /// status if every live split is idle.
    fn emit_watermark(&mut self) -> OpResult {
        if self.assigner.is_none() {
            return Ok(());
        }
        let mut min = Timestamp::MAX;
        let mut any_active = false;
        for s in &self.slots {
            if let (false, Some(g)) = (s.finished, &s.gen) {
                if !g.idle {
                    any_active = true;
                    min = min.min(g.watermark());
                }
            }
        }
        if let Some(a) = &self.align {
            // Idle or done: do not hold the other instances back.
            a.publish(if any_active { min } else { Timestamp::MAX });
        }
        if !any_active {
            if self.live > 0 && !self.idle_emitted {
                self.idle_emitted = true;
                return self.down.idle();
            }
            return Ok(());
        }
        self.idle_emitted = false;
        if min > self.emitted {
            self.emitted = min;
            self.down.watermark(min)?;
        }
        Ok(())
    }
}

impl<T: 'static> Driver for SourceDriver<T> {
    fn poll(&mut self, shared: &JobShared) -> Result<DriverStatus, OpFailure> {
        if self.live == 0 || shared.stop.load(Ordering::Relaxed) {
            return self.finish();
        }
        self.barrier(shared)?;
        let n = self.slots.len();
        let limit = self.align.as_ref().map_or(Timestamp::MAX, Alignment::limit);
        for _ in 0..n {
            let i = self.next;
            self.next = (self.next + 1) % n;
            if self.slots[i].finished {
                continue;
            }
            if let Some(g) = &mut self.slots[i].gen {
                if g.watermark() > limit {
                    // Ahead of the slowest split by more than the allowed drift: wait. Waiting
                    // is not idleness (the split has data): an idle split would let everything
                    // downstream run ahead of its data.
                    g.hold(self.clock.now());
                    continue;
                }
            }
            enter(self.id);
            let slot = &mut self.slots[i];
            let status = slot
                .reader
                .poll(&mut SourceOutput::new(&mut self.buf, self.batch_size))
                .map_err(|e| OpFailure::error(self.id, e))?;
            let produced = !self.buf.is_empty();
            if produced {
                if let (Some(a), Some(g)) = (&self.assigner, &mut slot.gen) {
                    let max = a.assign(&mut self.buf);
                    g.observe(max, self.clock.now());
                }
                self.metrics.add_out(self.buf.len());
                self.down.push(&mut self.buf)?;
                self.buf.clear();
            }
            if status == SourceStatus::Finished {
                self.slots[i].finished = true;
                self.live -= 1;
                if self.live == 0 {
                    return self.finish();
                }
            }
            if produced || status == SourceStatus::Finished {
                self.emit_watermark()?;
                return Ok(DriverStatus::Progress);
            }
            if status == SourceStatus::More {
                return Ok(DriverStatus::Progress);
            }
        }
        Ok(DriverStatus::Idle)
    }

    fn tick(&mut self, now: Timestamp) -> OpResult {
        let mut changed = false;
        for s in &mut self.slots {
            if let (false, Some(g)) = (s.finished, &mut s.gen) {
                changed |= g.check_idle(now);
            }
        }
        if changed {
            self.emit_watermark()?;
        }
        self.down.tick(now)
    }

    fn is_source(&self) -> bool {
        true
    }

    fn poll_barrier(&mut self, shared: &JobShared) -> OpResult {
        if self.live == 0 {
            return Ok(());
        }
        self.barrier(shared)
    }
}
