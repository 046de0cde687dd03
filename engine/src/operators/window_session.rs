//! Session windows: per key, a short list of open sessions; one time-ordered timer queue of
//! "earliest possible close" entries, re-armed lazily.
//!
//! An element opens `[ts, ts + gap)` and merges with every session of its key that it touches
//! or overlaps, in whatever order elements arrive, so an out-of-order element can bridge two
//! sessions. A key has at most one armed timer, at the earliest time one of its sessions could
//! close (or be cleaned up after its allowed lateness). Extending a session does not touch the
//! queue: when the timer fires early it simply re-arms at the new earliest time.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::checkpoint::coordinator::CheckpointPort;
use crate::checkpoint::store::{decode, encode};
use crate::checkpoint::{by_group, InstanceState, Restored};
use crate::error::{BoxError, OpFailure, OpResult};
use crate::keys::{fast_map, FastMap, Key};
use crate::metrics::InstanceMetrics;
use crate::operators::process::{keyed_instance_state, restored_watermark};
use crate::record::Record;
use crate::runtime::graph::{BuildCx, NodeFactory};
use crate::runtime::push::{erase, join_outputs, AnyPush, BoxPush, Push};
use crate::runtime::timers::TimerQueue;
use crate::runtime::worker::enter;
use crate::side_output::{OutputTag, SideOutputs};
use crate::time::{Timestamp, NO_TIMESTAMP};
use crate::window::function::WindowFn;
use crate::window::{Window, WindowResult};

pub(crate) struct SessionWindowFactory<K, T, W> {
    pub(crate) f: Arc<W>,
    pub(crate) gap: i64,
    pub(crate) lateness: i64,
    pub(crate) late_tag: Option<OutputTag<T>>,
    pub(crate) _k: PhantomData<fn(K)>,
}

impl<K, T, W> NodeFactory for SessionWindowFactory<K, T, W>
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
        let mut op = Box::new(SessionWindowOp {
            f: self.f.clone(),
            gap: self.gap,
            lateness: self.lateness,
            keys: fast_map(),
            timers: TimerQueue::new(),
            wm: Timestamp::MIN,
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

#[derive(Serialize, Deserialize)]
struct Session<A> {
    start: Timestamp,
    end: Timestamp,
    acc: A,
    /// Its current contents have been emitted: it waits only for its cleanup.
    fired: bool,
    /// A result for it (or for a session merged into it) has been emitted: its next one is an
    /// update.
    emitted: bool,
}

#[derive(Serialize, Deserialize)]
struct KeySessions<A> {
    /// Disjoint, non-touching sessions, in no particular order (usually one).
    sessions: Vec<Session<A>>,
    /// The time of this key's armed timer, or `Timestamp::MAX` if none.
    armed: Timestamp,
}

struct SessionWindowOp<K, T, W: WindowFn<K, T>> {
    f: Arc<W>,
    gap: i64,
    lateness: i64,
    keys: FastMap<K, KeySessions<W::Acc>>,
    timers: TimerQueue<K>,
    wm: Timestamp,
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

/// When a session needs attention next: its close, or once fired, its cleanup.
#[inline]
fn due_time<A>(s: &Session<A>, lateness: i64) -> Timestamp {
    if s.fired {
        (s.end - 1).saturating_add(lateness)
    } else {
        s.end - 1
    }
}

impl<K: Key, T: 'static, W: WindowFn<K, T>> SessionWindowOp<K, T, W> {
    /// Operator state: the watermark; per key group, every key's sessions. A key's armed timer
    /// is re-armed from its sessions on restore.
    fn snapshot(&self) -> InstanceState {
        let groups = by_group(self.max_parallelism, self.keys.iter())
            .into_iter()
            .enumerate()
            .map(|(g, entries)| {
                if entries.is_empty() {
                    (g, Vec::new())
                } else {
                    (g, encode(&entries))
                }
            });
        keyed_instance_state(self.wm, groups)
    }

    fn restore(&mut self, r: Restored<'_>) -> Result<(), BoxError> {
        self.wm = restored_watermark(r)?;
        for blob in r.groups() {
            let entries: Vec<(K, KeySessions<W::Acc>)> = decode(blob)
                .map_err(|e| format!("cannot decode sessions from the checkpoint: {e}"))?;
            for (key, sessions) in entries {
                if sessions.armed != Timestamp::MAX {
                    self.timers.register(&key, sessions.armed);
                }
                self.keys.insert(key, sessions);
            }
        }
        Ok(())
    }

    fn emit<A>(
        f: &W,
        out: &mut Vec<Record<WindowResult<K, W::Out>>>,
        key: &K,
        s: &Session<A>,
        acc: &W::Acc,
        is_update: bool,
    ) {
        let window = Window {
            start: s.start,
            end: s.end,
        };
        out.push(Record::new(
            window.max_timestamp(),
            WindowResult {
                key: key.clone(),
                window,
                value: f.finish(key, window, acc),
                is_update,
            },
        ));
    }

    fn add(&mut self, ts: Timestamp, key: K, value: T) {
        let (start, end) = (ts, ts.saturating_add(self.gap));
        let (lateness, wm) = (self.lateness, self.wm);
        let entry = match self.keys.get_mut(&key) {
            Some(e) => e,
            None => {
                if (end - 1).saturating_add(lateness) <= wm {
                    return self.late(ts, value);
                }
                self.keys.insert(
                    key.clone(),
                    KeySessions {
                        sessions: Vec::with_capacity(1),
                        armed: Timestamp::MAX,
                    },
                );
                self.keys.get_mut(&key).expect("just inserted")
            }
        };
        // The sessions this element touches merge into one, which gets the element. The usual
        // case, one (a driver's current shift), grows in place.
        let mut touching = entry
            .sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| s.start <= end && start <= s.end)
            .map(|(i, _)| i);
        let at = match (touching.next(), touching.next()) {
            (Some(i), None) => i,
            (Some(first), Some(_)) => {
                let m = Self::merge_touching(&self.f, &mut entry.sessions, first, start, end);
                entry.sessions.push(m);
                entry.sessions.len() - 1
            }
            (None, _) => {
                if (end - 1).saturating_add(lateness) <= wm {
                    if entry.sessions.is_empty() {
                        self.keys.remove(&key);
                    }
                    return self.late(ts, value);
                }
                entry.sessions.push(Session {
                    start,
                    end,
                    acc: self.f.create(),
                    fired: false,
                    emitted: false,
                });
                entry.sessions.len() - 1
            }
        };
        let session = &mut entry.sessions[at];
        session.start = session.start.min(start);
        session.end = session.end.max(end);
        // It gets a new element: it must fire again, at once if it is behind the watermark,
        // else when the watermark reaches its (maybe grown) end.
        session.fired = false;
        self.f.add(&mut session.acc, value);
        if session.end - 1 <= wm {
            // Behind the watermark but within the lateness: fire again at once.
            Self::emit(
                &self.f,
                &mut self.out,
                &key,
                session,
                &session.acc,
                session.emitted,
            );
            session.fired = true;
            session.emitted = true;
        }
        let due = due_time(session, lateness);
        if due < entry.armed {
            entry.armed = due;
            self.timers.register(&key, due);
        }
    }

    /// Takes every session of `sessions` that touches `[start, end]` out and merges them into
    /// one. `first` is the first that touches: none before it does.
    fn merge_touching(
        f: &W,
        sessions: &mut Vec<Session<W::Acc>>,
        first: usize,
        start: Timestamp,
        end: Timestamp,
    ) -> Session<W::Acc> {
        let mut merged = sessions.swap_remove(first);
        // `first` now holds what was the last session: look at it too.
        let mut i = first;
        while i < sessions.len() {
            let s = &sessions[i];
            if s.start <= end && start <= s.end {
                let s = sessions.swap_remove(i);
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.emitted |= s.emitted;
                f.merge(&mut merged.acc, s.acc);
            } else {
                i += 1;
            }
        }
        merged
    }

    fn late(&mut self, ts: Timestamp, value: T) {
        self.metrics.add_late(1);
        if let Some(tag) = &self.late_tag {
            self.sides.emit(tag, ts, value);
        }
    }

    fn advance(&mut self, wm: Timestamp) -> OpResult {
        enter(self.id);
        self.wm = wm;
        while let Some((time, keys)) = self.timers.pop_due(wm) {
            for key in keys {
                let Some(entry) = self.keys.get_mut(&key) else {
                    continue;
                };
                if entry.armed == time {
                    entry.armed = Timestamp::MAX;
                }
                let lateness = self.lateness;
                let mut i = 0;
                while i < entry.sessions.len() {
                    let s = &mut entry.sessions[i];
                    if !s.fired && s.end - 1 <= wm {
                        Self::emit(&self.f, &mut self.out, &key, s, &s.acc, s.emitted);
                        s.fired = true;
                        s.emitted = true;
                    }
                    if s.fired && (s.end - 1).saturating_add(lateness) <= wm {
                        entry.sessions.swap_remove(i);
                    } else {
                        i += 1;
                    }
                }
                match entry.sessions.iter().map(|s| due_time(s, lateness)).min() {
                    None => {
                        self.keys.remove(&key);
                    }
                    Some(next) => {
                        if next < entry.armed {
                            entry.armed = next;
                            self.timers.register(&key, next);
                        }
                    }
                }
            }
            if self.out.len() >= self.batch_size {
                self.flush()?;
                enter(self.id);
            }
        }
        self.flush()
    }

    fn flush(&mut self) -> OpResult {
        self.metrics.set_state(self.keys.len(), self.timers.len());
        self.sides.flush()?;
        if self.out.is_empty() {
            return Ok(());
        }
        self.metrics.add_out(self.out.len());
        self.down.push(&mut self.out)
    }
}

impl<K: Key, T: 'static, W: WindowFn<K, T>> Push<(K, T)> for SessionWindowOp<K, T, W> {
    fn push(&mut self, batch: &mut Vec<Record<(K, T)>>) -> OpResult {
        enter(self.id);
        self.metrics.add_in(batch.len());
        for r in batch.drain(..) {
            let (key, value) = r.value;
            if r.timestamp == NO_TIMESTAMP {
                self.late(r.timestamp, value);
            } else {
                self.add(r.timestamp, key, value);
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
