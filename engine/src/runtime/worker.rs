//! One worker thread: builds its instance of every operator, then loops.
//!
//! Each iteration: flush pending exchange sends; drain the receiving ends of exchanges; poll each
//! source once for one batch unless some exchange is over its in-flight bound (backpressure);
//! deliver processing time if the clock moved. A worker that made no progress parks until a peer
//! wakes it (data sent to it, or room freed in a channel it waits on) or the idle wait elapses.
//! No step ever blocks on another worker, so workers exchanging in both directions cannot
//! deadlock.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;

use crossbeam_utils::sync::Parker;

use crate::error::OpFailure;
use crate::runtime::graph::{BuildCx, Driver, DriverStatus, Graph, JobShared, Outbox, Shared};
use crate::runtime::push::AnyPush;
use crate::time::Timestamp;

thread_local! {
    static CURRENT_OP: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Marks operator `op` as the one running on this thread, so a panic can be attributed to it.
/// Called at the entry of every operator section that runs user or connector code.
#[inline]
pub(crate) fn enter(op: usize) {
    CURRENT_OP.with(|c| c.set(op));
}

/// The operator that last called [`enter`] on this thread.
pub(crate) fn current_op() -> usize {
    CURRENT_OP.with(|c| c.get())
}

type Built = (Vec<Box<dyn Driver>>, Vec<Rc<RefCell<dyn Outbox>>>);

/// Instantiates the graph on this worker, consumers first.
fn build(
    worker: usize,
    graph: &Graph,
    shared: &[Shared],
    job: &JobShared,
) -> Result<Built, OpFailure> {
    let mut consumers: Vec<Vec<Vec<AnyPush>>> = graph
        .nodes
        .iter()
        .map(|n| (0..=n.side_ports.len()).map(|_| Vec::new()).collect())
        .collect();
    let mut cx = BuildCx {
        worker,
        op: 0,
        job,
        drivers: Vec::new(),
        outboxes: Vec::new(),
        sides: Vec::new(),
    };
    for id in (0..graph.nodes.len()).rev() {
        let spec = &graph.nodes[id];
        let mut outputs = std::mem::take(&mut consumers[id]);
        let side_outputs: Vec<Vec<AnyPush>> = outputs.drain(1..).collect();
        cx.sides = spec
            .side_ports
            .iter()
            .zip(side_outputs)
            .map(|(port, outs)| (port.make)(outs))
            .collect();
        cx.op = id;
        enter(id);
        let inputs = spec.factory.build(&mut cx, &*shared[id], outputs)?;
        debug_assert_eq!(inputs.len(), spec.inputs.len());
        for (edge, push) in spec.inputs.iter().zip(inputs) {
            consumers[edge.from][edge.port].push(push);
        }
    }
    Ok((cx.drivers, cx.outboxes))
}

/// Runs worker `worker` until every driver is done, or the job aborts.
pub(crate) fn run(
    worker: usize,
    graph: &Graph,
    shared: &[Shared],
    job: &JobShared,
    parker: Parker,
) -> Result<(), OpFailure> {
    let (mut drivers, outboxes) = build(worker, graph, shared, job)?;
    let mut done = vec![false; drivers.len()];
    let mut remaining = drivers.len();
    let clock = job.config.clock.clone();
    let limit = job.config.get_max_in_flight();
    let idle_wait = job.config.idle_wait;
    let mut last_tick: Timestamp = clock.now();
    loop {
        if job.abort.load(Ordering::Relaxed) {
            return Err(OpFailure::aborted(usize::MAX));
        }
        let mut progress = false;
        let mut pending_sends = false;
        for ob in &outboxes {
            let mut ob = ob.borrow_mut();
            progress |= ob.flush()?;
            pending_sends |= !ob.is_empty();
        }
        let backpressured =
            pending_sends || job.exchanges.iter().any(|(_, s)| s.in_flight() >= limit);
        for (i, d) in drivers.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if backpressured && d.is_source() {
                d.poll_barrier(job)?;
                continue;
            }
            match d.poll(job)? {
                DriverStatus::Progress => progress = true,
                DriverStatus::Idle => {}
                DriverStatus::Done => {
                    done[i] = true;
                    remaining -= 1;
                    progress = true;
                }
            }
        }
        let now = clock.now();
        if now != last_tick {
            last_tick = now;
            for ob in &outboxes {
                progress |= ob.borrow_mut().linger()?;
            }
            for (i, d) in drivers.iter_mut().enumerate() {
                if !done[i] {
                    d.tick(now)?;
                }
            }
        }
        if remaining == 0 {
            // Everything is produced; deliver what is still queued, then leave.
            let mut all_sent = true;
            for ob in &outboxes {
                let mut ob = ob.borrow_mut();
                ob.flush()?;
                all_sent &= ob.is_empty();
            }
            if all_sent {
                return Ok(());
            }
            parker.park_timeout(idle_wait);
            continue;
        }
        if !progress {
            // Out of work: ship what was held back to fill up before sleeping.
            let mut shipped = false;
            for ob in &outboxes {
                shipped |= ob.borrow_mut().linger()?;
            }
            if !shipped {
                parker.park_timeout(idle_wait);
            }
        }
    }
}
