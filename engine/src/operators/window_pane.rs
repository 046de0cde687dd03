//! Tumbling and sliding windows, kept as *pane -> (key -> accumulator)*.
//!
//! A pane is a slice of time of length `gcd(size, slide)`; every window is a run of consecutive
//! panes. An element updates exactly one accumulator (its key in its pane). A watermark walks the
//! few open panes in time order, fires the windows it completes (merging panes for sliding
//! windows), and drops panes whose windows are all past their allowed lateness.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::checkpoint::coordinator::CheckpointPort;
use crate::checkpoint::store::{decode, encode};
use crate::checkpoint::{by_group, InstanceState, Restored};
use crate::error::{BoxError, OpFailure, OpResult};
use crate::keys::{fast_map, FastMap, Key};
use crate::metrics::InstanceMetrics;
use crate::record::Record;
use crate::runtime::graph::{BuildCx, NodeFactory};
use crate::runtime::push::{erase, join_outputs, AnyPush, BoxPush, Push};
use crate::runtime::worker::enter;
use crate::side_output::{OutputTag, SideOutputs};
use crate::time::{Timestamp, NO_TIMESTAMP};
use crate::window::function::WindowFn;
use crate::window::{align, gcd, Window, WindowResult};

pub(crate) struct PaneWindowFactory<K, T, W> {
    pub(crate) f: Arc<W>,
    pub(crate) size: i64,
    pub(crate) slide: i64,
    pub(crate) offset: i64,
    pub(crate) lateness: i64,
    pub(crate) late_tag: Option<OutputTag<T>>,
    pub(crate) _k: PhantomData<fn(K)>,
}

impl<K, T, W> NodeFactory for PaneWindowFactory<K, T, W>
where
    K: Key,
    T: Clone + Send + 'static,
    W: WindowFn<K, T>,
{
    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        _shared: &(dyn Any + Send + Sync),
        mut outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        let metrics = cx.metrics();
        let mut op = Box::new(PaneWindowOp {
            f: self.f.clone(),
            size: self.size,
            slide: self.slide,
            offset: self.offset,
            pane: gcd(self.size, self.slide),
            lateness: self.lateness,
            panes: Vec::new(),
            cur_start: Timestamp::MIN,
            cur_idx: 0,
            fired_upto: Timestamp::MIN,
            wm: Timestamp::MIN,
            scratch: fast_map(),
            ends: Vec::new(),
            refire: Vec::new(),
            out: Vec::new(),
            sides: SideOutputs::new(std::mem::take(&mut cx.sides), metrics.clone()),
            late_tag: self.late_tag.clone(),
            down: join_outputs::<WindowResult<K, W::Out>>(outputs.swap_remove(0)),
            batch_size: cx.config().batch_size,
            id: cx.op,
            metrics,
            port: cx.checkpoint_port(),
            max_parallelism: cx.config().max_parallelism,
        });
        if let Some(r) = cx.restored() {
            op.restore(r).map_err(|e| OpFailure::error(cx.op, e))?;
        }
        let op: BoxPush<(K, T)> = op;
        Ok(vec![erase(op)])
    }
}

type Pane<K, A> = (Timestamp, FastMap<K, A>);

/// One pane's entries of one key group, as checkpointed: its start and `(key, accumulator)`s.
type PaneEntries<K, A> = (Timestamp, Vec<(K, A)>);

struct PaneWindowOp<K, T, W: WindowFn<K, T>> {
    f: Arc<W>,
    size: i64,
    slide: i64,
    offset: i64,
    /// Pane length: gcd(size, slide).
    pane: i64,
    lateness: i64,
    /// Open panes, ascending by start.
    panes: Vec<Pane<K, W::Acc>>,
    /// The pane the last element went to (a cache: most elements go to the same pane).
    cur_start: Timestamp,
    cur_idx: usize,
    /// Every window with `end <= fired_upto` has had its regular firing.
    fired_upto: Timestamp,
    wm: Timestamp,
    scratch: FastMap<K, W::Acc>,
    ends: Vec<Timestamp>,
    /// Windows an element behind the watermark fires again, and whether as an update.
    refire: Vec<(Window, bool)>,
    out: Vec<Record<WindowResult<K, W::Out>>>,
    sides: SideOutputs,
    late_tag: Option<OutputTag<T>>,
    down: BoxPush<WindowResult<K, W::Out>>,
    batch_size: usize,
    id: usize,
    metrics: InstanceMetrics,
    port: Option<CheckpointPort>,
    max_parallelism: usize,
}

impl<K: Key, T: 'static, W: WindowFn<K, T>> PaneWindowOp<K, T, W> {
    /// Operator state `(watermark, fired_upto)`; per key group, `(pane start, entries)`.
    fn snapshot(&self) -> InstanceState {
        let maxp = self.max_parallelism;
        let mut groups: Vec<Vec<PaneEntries<&K, &W::Acc>>> =
            (0..maxp).map(|_| Vec::new()).collect();
        for (start, map) in &self.panes {
            for (g, entries) in by_group(maxp, map.iter()).into_iter().enumerate() {
                if !entries.is_empty() {
                    groups[g].push((*start, entries));
                }
            }
        }
        InstanceState {
            operator: encode(&(self.wm, self.fired_upto)),
            groups: groups
                .into_iter()
                .enumerate()
                .filter(|(_, g)| !g.is_empty())
                .map(|(g, panes)| (g as u32, encode(&panes)))
                .collect(),
            ..InstanceState::default()
        }
    }

    fn restore(&mut self, r: Restored<'_>) -> Result<(), BoxError> {
        let mut clocks: Option<(Timestamp, Timestamp)> = None;
        for blob in r.operator_states().filter(|b| !b.is_empty()) {
            let (wm, fired): (Timestamp, Timestamp) = decode(blob)
                .map_err(|e| format!("cannot decode the window's checkpointed watermark: {e}"))?;
            clocks = Some(clocks.map_or((wm, fired), |(w, f)| (w.min(wm), f.min(fired))));
        }
        if let Some((wm, fired)) = clocks {
            self.wm = wm;
            self.fired_upto = fired;
        }
        for blob in r.groups() {
            let panes: Vec<PaneEntries<K, W::Acc>> = decode(blob)
                .map_err(|e| format!("cannot decode window contents from the checkpoint: {e}"))?;
            for (start, entries) in panes {
                let idx = self.pane_index(start);
                self.panes[idx].1.extend(entries);
            }
        }
        self.cur_start = Timestamp::MIN;
        Ok(())
    }

    /// Index of the pane starting at `start`, creating it if needed.
    #[inline]
    fn pane_index(&mut self, start: Timestamp) -> usize {
        if start == self.cur_start {
            return self.cur_idx;
        }
        let mut i = self.panes.len();
        while i > 0 && self.panes[i - 1].0 > start {
            i -= 1;
        }
        let idx = if i > 0 && self.panes[i - 1].0 == start {
            i - 1
        } else {
            self.panes.insert(i, (start, fast_map()));
            i
        };
        self.cur_start = start;
        self.cur_idx = idx;
        idx
    }

    #[inline]
    fn add(&mut self, ts: Timestamp, key: K, value: T) {
        let start = if (ts.wrapping_sub(self.cur_start) as u64) < self.pane as u64 {
            self.cur_start
        } else {
            align(ts, self.pane, self.offset)
        };
        let idx = self.pane_index(start);
        let map = &mut self.panes[idx].1;
        match map.get_mut(&key) {
            Some(acc) => self.f.add(acc, value),
            None => {
                let mut acc = self.f.create();
                self.f.add(&mut acc, value);
                map.insert(key, acc);
            }
        }
    }

    fn late(&mut self, ts: Timestamp, value: T) {
        self.metrics.add_late(1);
        if let Some(tag) = &self.late_tag {
            self.sides.emit(tag, ts, value);
        }
    }

    /// An element at or behind the watermark: late, or an update of fired windows.
    fn add_behind(&mut self, ts: Timestamp, key: K, value: T) {
        let last_start = align(ts, self.slide, self.offset);
        if (last_start + self.size - 1).saturating_add(self.lateness) <= self.wm {
            return self.late(ts, value);
        }
        // The fired, not yet cleaned up windows of `ts` fire again for this key; the result is
        // an update only if the key already had one in that window.
        let mut refire = std::mem::take(&mut self.refire);
        let mut start = last_start;
        while start + self.size > ts {
            let end = start + self.size;
            if end <= self.fired_upto && (end - 1).saturating_add(self.lateness) > self.wm {
                let window = Window { start, end };
                refire.push((window, self.has_key(&key, window)));
            }
            start -= self.slide;
        }
        let k = key.clone();
        self.add(ts, key, value);
        for (window, is_update) in refire.drain(..) {
            self.fire_key(&k, window, is_update);
        }
        self.refire = refire;
    }

    /// Whether `key` has an accumulator in a pane of `window`.
    fn has_key(&self, key: &K, window: Window) -> bool {
        self.panes
            .iter()
            .any(|(ps, map)| *ps >= window.start && *ps < window.end && map.contains_key(key))
    }

    /// Fires `window` again for one key (an element behind the watermark arrived).
    fn fire_key(&mut self, key: &K, window: Window, is_update: bool) {
        let mut acc: Option<W::Acc> = None;
        for (ps, map) in &self.panes {
            if *ps < window.start || *ps >= window.end {
                continue;
            }
            if let Some(a) = map.get(key) {
                match &mut acc {
                    Some(m) => self.f.merge(m, a.clone()),
                    None => acc = Some(a.clone()),
                }
            }
        }
        if let Some(acc) = acc {
            let value = self.f.finish(key, window, &acc);
            self.out.push(Record::new(
                window.max_timestamp(),
                WindowResult {
                    key: key.clone(),
                    window,
                    value,
                    is_update,
                },
            ));
        }
    }

    /// The regular firing of the window ending at `end`.
    fn fire_window(&mut self, end: Timestamp) -> OpResult {
        let window = Window {
            start: end - self.size,
            end,
        };
        let ts = window.max_timestamp();
        if self.pane == self.size {
            // Tumbling: the window is one pane.
            let Some(idx) = self.panes.iter().position(|(s, _)| *s == window.start) else {
                return Ok(());
            };
            if (end - 1).saturating_add(self.lateness) <= self.wm {
                // Nothing can update it any more: consume the pane, no clones.
                let (_, map) = self.panes.remove(idx);
                self.cur_start = Timestamp::MIN;
                for (key, acc) in map {
                    let value = self.f.finish(&key, window, &acc);
                    self.out.push(Record::new(
                        ts,
                        WindowResult {
                            key,
                            window,
                            value,
                            is_update: false,
                        },
                    ));
                }
            } else {
                for (key, acc) in &self.panes[idx].1 {
                    let value = self.f.finish(key, window, acc);
                    self.out.push(Record::new(
                        ts,
                        WindowResult {
                            key: key.clone(),
                            window,
                            value,
                            is_update: false,
                        },
                    ));
                }
            }
        } else {
            for (ps, map) in &self.panes {
                if *ps < window.start || *ps >= end {
                    continue;
                }
                for (key, acc) in map {
                    match self.scratch.get_mut(key) {
                        Some(m) => self.f.merge(m, acc.clone()),
                        None => {
                            self.scratch.insert(key.clone(), acc.clone());
                        }
                    }
                }
            }
            for (key, acc) in self.scratch.drain() {
                let value = self.f.finish(&key, window, &acc);
                self.out.push(Record::new(
                    ts,
                    WindowResult {
                        key,
                        window,
                        value,
                        is_update: false,
                    },
                ));
            }
        }
        if self.out.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> OpResult {
        let keys: usize = self.panes.iter().map(|(_, m)| m.len()).sum();
        self.metrics.set_state(keys, self.panes.len());
        self.sides.flush()?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.metrics.add_out(self.out.len());
        self.down.push(&mut self.out)
    }

    fn advance(&mut self, wm: Timestamp) -> OpResult {
        enter(self.id);
        self.wm = wm;
        let limit = wm.saturating_add(1);
        self.ends.clear();
        for (ps, _) in &self.panes {
            if *ps >= limit {
                break;
            }
            let mut start = align(*ps, self.slide, self.offset);
            while start + self.size > *ps {
                let end = start + self.size;
                if end > self.fired_upto && end <= limit {
                    self.ends.push(end);
                }
                start -= self.slide;
            }
        }
        self.ends.sort_unstable();
        self.ends.dedup();
        let ends = std::mem::take(&mut self.ends);
        for &end in &ends {
            self.fire_window(end)?;
        }
        self.ends = ends;
        self.fired_upto = self.fired_upto.max(limit);
        let (size, slide, offset, lateness) = (self.size, self.slide, self.offset, self.lateness);
        let before = self.panes.len();
        self.panes
            .retain(|(ps, _)| (align(*ps, slide, offset) + size - 1).saturating_add(lateness) > wm);
        if self.panes.len() != before {
            self.cur_start = Timestamp::MIN;
        }
        self.flush()
    }
}

impl<K: Key, T: 'static, W: WindowFn<K, T>> Push<(K, T)> for PaneWindowOp<K, T, W> {
    fn push(&mut self, batch: &mut Vec<Record<(K, T)>>) -> OpResult {
        enter(self.id);
        self.metrics.add_in(batch.len());
        for r in batch.drain(..) {
            let ts = r.timestamp;
            let (key, value) = r.value;
            if ts > self.wm {
                self.add(ts, key, value);
            } else if ts == NO_TIMESTAMP {
                self.late(ts, value);
            } else {
                self.add_behind(ts, key, value);
            }
        }
        self.flush()
    }

    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        if wm <= self.wm {
            return Ok(());
        }
        self.advance(wm)?;
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
        if self.wm < Timestamp::MAX {
            self.advance(Timestamp::MAX)?;
        }
        self.sides.end()?;
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
        self.sides.barrier(n)?;
        self.down.barrier(n)
    }
}
