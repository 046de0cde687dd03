//! `key_by`: the exchange. Routes each record by `key -> key group -> worker` and moves
//! *batches* to the owning worker over bounded channels, with watermarks, idleness and end of
//! input in order in the same channel.
//!
//! The sending side never blocks: a batch that does not fit in the destination's channel waits
//! in a per-destination outbox, and sources pause while any exchange holds more than
//! `Config::max_in_flight` records. Receivers always drain. So two workers exchanging in both
//! directions can never wait on each other, and memory stays bounded.
//!
//! With one worker there is nothing to exchange: the key is computed and the record is passed on
//! directly.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};
use crossbeam_utils::sync::Unparker;

use crate::checkpoint::coordinator::{ack_counts, finished_counts, CheckpointPort};
use crate::error::{JobError, OpFailure, OpResult};
use crate::keys::{Key, Router};
use crate::metrics::{ExchangeStats, InstanceMetrics};
use crate::record::{Message, Record};
use crate::runtime::align::Aligner;
use crate::runtime::graph::{
    BuildCx, Driver, DriverStatus, JobShared, NodeFactory, Outbox, PrepareCx, Shared,
};
use crate::runtime::push::{erase, join_outputs, AnyPush, BoxPush, Push};
use crate::runtime::watermarks::{Progress, WatermarkTracker};
use crate::runtime::worker::enter;
use crate::time::Timestamp;

type Envelope<T> = (u32, Message<T>);

/// How many messages a receiver takes per poll before letting the worker do other work.
const RECEIVE_BUDGET: usize = 64;

pub(crate) struct KeyByFactory<K, T, F> {
    pub(crate) key_fn: Arc<F>,
    pub(crate) _t: PhantomData<fn(T) -> K>,
}

struct ExchangeShared<M> {
    senders: Vec<Sender<Envelope<M>>>,
    receivers: Mutex<Vec<Option<Receiver<Envelope<M>>>>>,
    stats: Arc<ExchangeStats>,
}

impl<K, T, F> NodeFactory for KeyByFactory<K, T, F>
where
    K: Key,
    T: Clone + Send + 'static,
    F: Fn(&T) -> K + Send + Sync + 'static,
{
    fn prepare(&self, cx: &mut PrepareCx<'_>) -> Result<Shared, JobError> {
        let p = cx.config.parallelism;
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..p)
            .map(|_| {
                let (s, r) = bounded::<Envelope<(K, T)>>(cx.config.channel_capacity);
                (s, Some(r))
            })
            .unzip();
        let stats = Arc::new(ExchangeStats::default());
        cx.exchanges.push((cx.op, stats.clone()));
        Ok(Box::new(ExchangeShared {
            senders,
            receivers: Mutex::new(receivers),
            stats,
        }))
    }

    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        shared: &(dyn Any + Send + Sync),
        mut outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure> {
        let down = join_outputs::<(K, T)>(outputs.swap_remove(0));
        let metrics = cx.metrics();
        let p = cx.parallelism();
        if p == 1 {
            let op: BoxPush<T> = Box::new(LocalKeyBy {
                key_fn: self.key_fn.clone(),
                out: Vec::new(),
                down,
                id: cx.op,
                metrics,
                port: cx.checkpoint_port(),
            });
            return Ok(vec![erase(op)]);
        }
        let shared = shared
            .downcast_ref::<ExchangeShared<(K, T)>>()
            .expect("exchange shared state");
        let rx = shared.receivers.lock().expect("exchange receivers")[cx.worker]
            .take()
            .expect("each worker takes its receiver once");
        let batch_size = cx.config().batch_size;
        let outbox = Rc::new(RefCell::new(ExchangeOutbox {
            me: cx.worker as u32,
            senders: shared.senders.clone(),
            staged: (0..p).map(|_| Vec::with_capacity(batch_size)).collect(),
            batch_size,
            pending: (0..p).map(|_| VecDeque::new()).collect(),
            pending_total: 0,
            stats: shared.stats.clone(),
            unparkers: cx.job.unparkers.clone(),
            id: cx.op,
        }));
        cx.outboxes.push(outbox.clone());
        cx.drivers.push(Box::new(ExchangeReceiver::new(
            rx,
            p,
            down,
            shared.stats.clone(),
            cx.op,
            cx.worker,
        )));
        let op: BoxPush<T> = Box::new(ExchangeSender {
            key_fn: self.key_fn.clone(),
            router: Router::new(cx.config().max_parallelism, p),
            outbox,
            id: cx.op,
            metrics,
            port: cx.checkpoint_port(),
        });
        Ok(vec![erase(op)])
    }
}

/// `key_by` at parallelism 1: compute the key, pass the record on.
struct LocalKeyBy<K, T, F> {
    key_fn: Arc<F>,
    out: Vec<Record<(K, T)>>,
    down: BoxPush<(K, T)>,
    id: usize,
    metrics: InstanceMetrics,
    port: Option<CheckpointPort>,
}

impl<K, T, F: Fn(&T) -> K> Push<T> for LocalKeyBy<K, T, F> {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        enter(self.id);
        self.metrics.add_in(batch.len());
        self.metrics.add_out(batch.len());
        let f = &*self.key_fn;
        self.out.extend(
            batch
                .drain(..)
                .map(|r| Record::new(r.timestamp, (f(&r.value), r.value))),
        );
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

/// The sending side on one worker: partitions batches by destination.
struct ExchangeSender<K, T, F> {
    key_fn: Arc<F>,
    router: Router,
    outbox: Rc<RefCell<ExchangeOutbox<(K, T)>>>,
    id: usize,
    metrics: InstanceMetrics,
    /// The sending side reports the exchange's counts (it is where they are counted).
    port: Option<CheckpointPort>,
}

impl<K: Key, T, F: Fn(&T) -> K> ExchangeSender<K, T, F> {
    fn broadcast(&mut self, make: impl Fn() -> Message<(K, T)>) -> OpResult {
        let mut outbox = self.outbox.borrow_mut();
        outbox.ship_partials()?;
        for dest in 0..outbox.senders.len() {
            outbox.send(dest, make())?;
        }
        Ok(())
    }
}

impl<K: Key, T, F: Fn(&T) -> K> Push<T> for ExchangeSender<K, T, F> {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        enter(self.id);
        self.metrics.add_in(batch.len());
        self.metrics.add_out(batch.len());
        let mut outbox = self.outbox.borrow_mut();
        for r in batch.drain(..) {
            let key = (self.key_fn)(&r.value);
            let dest = self.router.route(&key);
            outbox.stage(dest, Record::new(r.timestamp, (key, r.value)))?;
        }
        // Partial batches stay staged until they fill, a control message goes out, the worker
        // runs out of work, or the clock ticks (at most a millisecond): see `Outbox::linger`.
        Ok(())
    }
    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        self.broadcast(|| Message::Watermark(wm))
    }
    fn idle(&mut self) -> OpResult {
        self.broadcast(|| Message::Idle)
    }
    fn tick(&mut self, _now: Timestamp) -> OpResult {
        // Processing time is delivered to the receiving side by its own worker.
        Ok(())
    }
    fn end(&mut self) -> OpResult {
        finished_counts(&self.port);
        self.broadcast(|| Message::End)
    }
    fn barrier(&mut self, n: u64) -> OpResult {
        ack_counts(&self.port, n);
        self.broadcast(|| Message::Barrier(n))
    }
}

/// Messages one worker could not send yet, per destination, in order.
struct ExchangeOutbox<M> {
    me: u32,
    senders: Vec<Sender<Envelope<M>>>,
    /// Records staged per destination until a batch is full.
    staged: Vec<Vec<Record<M>>>,
    batch_size: usize,
    pending: Vec<VecDeque<Message<M>>>,
    pending_total: usize,
    stats: Arc<ExchangeStats>,
    unparkers: Vec<Unparker>,
    id: usize,
}

impl<M> ExchangeOutbox<M> {
    /// Stages one record for `dest`, shipping the batch when it is full.
    #[inline(always)]
    fn stage(&mut self, dest: usize, r: Record<M>) -> OpResult {
        let buf = &mut self.staged[dest];
        buf.push(r);
        if buf.len() >= self.batch_size {
            return self.ship_full(dest);
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn ship_full(&mut self, dest: usize) -> OpResult {
        let full = std::mem::replace(&mut self.staged[dest], Vec::with_capacity(self.batch_size));
        self.send(dest, Message::Data(full))
    }

    /// Ships every staged partial batch. Returns whether there was any.
    fn ship_partials(&mut self) -> Result<bool, OpFailure> {
        let mut shipped = false;
        for dest in 0..self.staged.len() {
            if !self.staged[dest].is_empty() {
                let part =
                    std::mem::replace(&mut self.staged[dest], Vec::with_capacity(self.batch_size));
                self.send(dest, Message::Data(part))?;
                shipped = true;
            }
        }
        Ok(shipped)
    }

    fn send(&mut self, dest: usize, msg: Message<M>) -> OpResult {
        if let Message::Data(b) = &msg {
            self.stats.sent(b.len());
        }
        if !self.pending[dest].is_empty() {
            self.pending[dest].push_back(msg);
            self.pending_total += 1;
            return Ok(());
        }
        match self.senders[dest].try_send((self.me, msg)) {
            Ok(()) => {
                self.unparkers[dest].unpark();
                Ok(())
            }
            Err(TrySendError::Full((_, msg))) => {
                self.pending[dest].push_back(msg);
                self.pending_total += 1;
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => Err(OpFailure::aborted(self.id)),
        }
    }
}

impl<M> Outbox for ExchangeOutbox<M> {
    fn flush(&mut self) -> Result<bool, OpFailure> {
        if self.pending_total == 0 {
            return Ok(false);
        }
        let mut sent = false;
        for dest in 0..self.pending.len() {
            while let Some(msg) = self.pending[dest].pop_front() {
                match self.senders[dest].try_send((self.me, msg)) {
                    Ok(()) => {
                        self.pending_total -= 1;
                        sent = true;
                    }
                    Err(TrySendError::Full((_, msg))) => {
                        self.pending[dest].push_front(msg);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(OpFailure::aborted(self.id)),
                }
            }
            if sent {
                self.unparkers[dest].unpark();
            }
        }
        Ok(sent)
    }

    fn is_empty(&self) -> bool {
        self.pending_total == 0
    }

    fn linger(&mut self) -> Result<bool, OpFailure> {
        self.ship_partials()
    }
}

/// The receiving side on one worker: merges what every worker sent to it, and aligns
/// checkpoint barriers: a sender that has delivered `Barrier(n)` is held back (its messages
/// queue here, still counted as in flight, so sources feel the backpressure) until every sender
/// that has not ended has delivered it too.
struct ExchangeReceiver<M> {
    rx: Receiver<Envelope<M>>,
    tracker: WatermarkTracker,
    down: BoxPush<M>,
    stats: Arc<ExchangeStats>,
    id: usize,
    me: usize,
    done: bool,
    align: Aligner<M>,
}

impl<M> ExchangeReceiver<M> {
    fn new(
        rx: Receiver<Envelope<M>>,
        senders: usize,
        down: BoxPush<M>,
        stats: Arc<ExchangeStats>,
        id: usize,
        me: usize,
    ) -> Self {
        Self {
            rx,
            tracker: WatermarkTracker::new(senders),
            down,
            stats,
            id,
            me,
            done: false,
            align: Aligner::new(senders),
        }
    }

    fn progress(&mut self, p: Option<Progress>) -> OpResult {
        match p {
            Some(Progress::Watermark(wm)) => self.down.watermark(wm),
            Some(Progress::Idle) => self.down.idle(),
            None => Ok(()),
        }
    }

    fn handle(&mut self, from: usize, msg: Message<M>) -> OpResult {
        let Some(msg) = self.align.admit(from, msg) else {
            return Ok(());
        };
        match msg {
            Message::Data(mut batch) => {
                self.stats.received(batch.len());
                self.tracker.active(from);
                self.down.push(&mut batch)?;
            }
            Message::Watermark(wm) => {
                let p = self.tracker.watermark(from, wm);
                self.progress(p)?;
            }
            Message::Idle => {
                let p = self.tracker.idle(from);
                self.progress(p)?;
            }
            Message::End => {
                self.align.end(from);
                let (all, p) = self.tracker.end_progress(from);
                self.progress(p)?;
                if all {
                    self.down.end()?;
                    self.done = true;
                } else {
                    self.check_aligned()?;
                }
            }
            Message::Barrier(n) => {
                self.align.barrier(from, n);
                self.check_aligned()?;
            }
        }
        Ok(())
    }

    /// Forwards the barrier being aligned once every live sender delivered it, then releases
    /// what was held back, in order.
    fn check_aligned(&mut self) -> OpResult {
        let Some((n, held)) = self.align.release() else {
            return Ok(());
        };
        self.down.barrier(n)?;
        for (from, msg) in held {
            self.handle(from, msg)?;
        }
        Ok(())
    }
}

impl<M> Driver for ExchangeReceiver<M> {
    fn poll(&mut self, shared: &JobShared) -> Result<DriverStatus, OpFailure> {
        if self.done {
            return Ok(DriverStatus::Done);
        }
        let mut received = 0;
        while received < RECEIVE_BUDGET && !self.done {
            let (from, msg) = match self.rx.try_recv() {
                Ok(m) => m,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(OpFailure::aborted(self.id)),
            };
            received += 1;
            self.handle(from as usize, msg)?;
        }
        if received == 0 {
            return Ok(DriverStatus::Idle);
        }
        // Space was freed in our channel and in-flight counts dropped: senders blocked on
        // either may go on.
        for (w, u) in shared.unparkers.iter().enumerate() {
            if w != self.me {
                u.unpark();
            }
        }
        Ok(if self.done {
            DriverStatus::Done
        } else {
            DriverStatus::Progress
        })
    }

    fn tick(&mut self, now: Timestamp) -> OpResult {
        self.down.tick(now)
    }

    fn is_source(&self) -> bool {
        false
    }
}
