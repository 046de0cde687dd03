//! The logical job graph and how each worker instantiates it.
//!
//! The fluent API appends [`NodeSpec`]s to a [`Graph`]; a node's inputs always have smaller ids
//! than the node, so descending id order is a reverse topological order. Every worker builds
//! the whole graph on its own thread, consumers first: a node is handed the (type-erased)
//! pushers of its consumers, per output port, and returns one pusher per input edge. Nodes that
//! start work of their own (sources, the receiving side of an exchange) register a [`Driver`]
//! with the worker.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crossbeam_utils::sync::Unparker;

use crate::checkpoint::coordinator::{CheckpointPort, CheckpointShared, Committer};
use crate::checkpoint::{CheckpointData, Restored};
use crate::config::Config;
use crate::error::{JobError, OpFailure, OpResult};
use crate::metrics::{ExchangeStats, InstanceMetrics, OpMetrics};
use crate::runtime::push::AnyPush;
use crate::time::Timestamp;

/// An edge into a node: output `port` of node `from` (port 0 is the main output, port `i + 1`
/// the node's i-th side output).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Edge {
    pub(crate) from: usize,
    pub(crate) port: usize,
}

/// Per-job resources a node creates before workers start (exchange channels, say).
pub(crate) type Shared = Box<dyn Any + Send + Sync>;

/// How to instantiate one node on a worker.
pub(crate) trait NodeFactory: Send + Sync {
    /// Creates per-job resources, once, before the workers start.
    fn prepare(&self, _cx: &mut PrepareCx<'_>) -> Result<Shared, JobError> {
        Ok(Box::new(()))
    }

    /// Instantiates the node on one worker. `outputs[port]` holds the pushers of the consumers
    /// of that port. Returns one pusher per input edge, in edge order.
    fn build(
        &self,
        cx: &mut BuildCx<'_>,
        shared: &(dyn Any + Send + Sync),
        outputs: Vec<Vec<AnyPush>>,
    ) -> Result<Vec<AnyPush>, OpFailure>;
}

/// One operator of the logical graph.
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) inputs: Vec<Edge>,
    /// Names of the side-output ports (port `i + 1`), with the ids of their tags.
    pub(crate) side_ports: Vec<SidePort>,
    /// Whether the node may have side outputs at all.
    pub(crate) has_side_outputs: bool,
    pub(crate) factory: Box<dyn NodeFactory>,
}

/// A side-output port of a node.
pub(crate) struct SidePort {
    pub(crate) name: String,
    pub(crate) tag: usize,
    pub(crate) make: crate::side_output::SideMaker,
}

/// The logical graph of a job.
#[derive(Default)]
pub(crate) struct Graph {
    pub(crate) nodes: Vec<NodeSpec>,
    /// Misuse of the builder API, reported by `execute`.
    pub(crate) errors: Vec<String>,
}

/// What `prepare` may touch.
pub(crate) struct PrepareCx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) exchanges: &'a mut Vec<(usize, Arc<ExchangeStats>)>,
    pub(crate) op: usize,
    pub(crate) name: &'a str,
    /// Set by a sink: what commits its transactions when a checkpoint completes.
    pub(crate) committer: Option<Arc<dyn Committer>>,
}

impl PrepareCx<'_> {
    pub(crate) fn name(&self) -> crate::error::OperatorName {
        crate::error::OperatorName {
            id: self.op,
            name: self.name.to_string(),
        }
    }
}

/// Everything the workers of one job share.
pub(crate) struct JobShared {
    pub(crate) config: Config,
    pub(crate) metrics: Vec<Arc<OpMetrics>>,
    pub(crate) names: Vec<String>,
    pub(crate) exchanges: Vec<(usize, Arc<ExchangeStats>)>,
    pub(crate) unparkers: Vec<Unparker>,
    /// Graceful stop: sources end as if their input were exhausted.
    pub(crate) stop: AtomicBool,
    /// Abort: workers exit as soon as they notice.
    pub(crate) abort: AtomicBool,
    /// Checkpointing, if on.
    pub(crate) checkpoint: Option<CheckpointShared>,
    /// Why the coordinator aborted the job, if it did.
    pub(crate) checkpoint_failure: parking_lot::Mutex<Option<String>>,
}

impl JobShared {
    /// Wakes every worker (after consuming from a channel, or when aborting).
    pub(crate) fn wake_all(&self) {
        for u in &self.unparkers {
            u.unpark();
        }
    }
}

/// Something that makes progress on its own on a worker: a source, or the receiving end of an
/// exchange.
pub(crate) trait Driver {
    /// Does a bounded amount of work.
    fn poll(&mut self, shared: &JobShared) -> Result<DriverStatus, OpFailure>;
    /// Processing time advanced; forward it downstream.
    fn tick(&mut self, now: Timestamp) -> OpResult;
    /// Sources pause under backpressure; receivers never do.
    fn is_source(&self) -> bool;
    /// Called instead of `poll` while a source is paused by backpressure: a source still emits
    /// checkpoint barriers then, or alignment downstream could wait on it forever.
    fn poll_barrier(&mut self, _shared: &JobShared) -> OpResult {
        Ok(())
    }
}

/// What a [`Driver::poll`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DriverStatus {
    /// Moved some data or control messages.
    Progress,
    /// Nothing to do right now.
    Idle,
    /// Finished; never poll again.
    Done,
}

/// Pending outgoing messages of an exchange sender that could not be sent yet.
pub(crate) trait Outbox {
    /// Tries to send what is pending. Returns whether anything was sent.
    fn flush(&mut self) -> Result<bool, OpFailure>;
    /// Whether anything is still pending.
    fn is_empty(&self) -> bool;
    /// Sends batches that were held back to fill up (called when the worker runs out of work and
    /// when the clock ticks, so a trickle is never held for more than about a millisecond).
    /// Returns whether anything was sent.
    fn linger(&mut self) -> Result<bool, OpFailure> {
        Ok(false)
    }
}

/// What a node's `build` may touch.
pub(crate) struct BuildCx<'a> {
    pub(crate) worker: usize,
    pub(crate) op: usize,
    pub(crate) job: &'a JobShared,
    pub(crate) drivers: Vec<Box<dyn Driver>>,
    pub(crate) outboxes: Vec<Rc<RefCell<dyn Outbox>>>,
    /// The typed side channels of the node being built (port `i + 1` at index `i`).
    pub(crate) sides: Vec<Box<dyn crate::side_output::SideChannel>>,
}

impl BuildCx<'_> {
    pub(crate) fn parallelism(&self) -> usize {
        self.job.config.parallelism
    }

    pub(crate) fn config(&self) -> &Config {
        &self.job.config
    }

    /// This operator instance's counters.
    pub(crate) fn metrics(&self) -> InstanceMetrics {
        InstanceMetrics::new(self.job.metrics[self.op].clone(), self.worker)
    }

    /// This operator instance's line to the checkpoint coordinator, if checkpointing is on.
    pub(crate) fn checkpoint_port(&self) -> Option<CheckpointPort> {
        self.job.checkpoint.as_ref().map(|c| CheckpointPort {
            events: c.events.clone(),
            op: self.op,
            worker: self.worker,
            metrics: self.metrics(),
        })
    }
}

impl<'a> BuildCx<'a> {
    /// The state this operator instance restores from, if the job is restoring.
    pub(crate) fn restored(&self) -> Option<Restored<'a>> {
        let job: &'a JobShared = self.job;
        let data: &'a CheckpointData = job.checkpoint.as_ref()?.restore.as_deref()?;
        Some(data.view(self.op, self.worker, self.parallelism()))
    }
}
