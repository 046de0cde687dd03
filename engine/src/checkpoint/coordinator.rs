//! The checkpoint coordinator: one thread per job with checkpointing on.
//!
//! It triggers checkpoints (on its interval, and on request as savepoints), collects every
//! operator instance's report, writes the checkpoint, then commits the sinks' transactions.
//! Only one checkpoint is in flight at a time. Reports arrive over an unbounded channel: a few
//! per operator instance per checkpoint, never per record.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::checkpoint::{store, CheckpointData, CheckpointSettings, InstanceState};
use crate::error::BoxError;
use crate::metrics::{CheckpointMetrics, InstanceMetrics};
use crate::runtime::graph::JobShared;

/// What operator instances and the job handle tell the coordinator.
pub(crate) enum Event {
    /// Operator `op` on `worker` snapshotted for checkpoint `id`.
    Ack {
        id: u64,
        op: usize,
        worker: usize,
        state: InstanceState,
    },
    /// Operator `op` on `worker` finished; this is its state for every later checkpoint.
    Finished {
        op: usize,
        worker: usize,
        state: InstanceState,
    },
    /// Take a checkpoint now (`savepoint`: a savepoint); reply with its directory once
    /// complete.
    Request {
        savepoint: bool,
        reply: Sender<Result<PathBuf, String>>,
    },
    /// Every worker has exited (`ok`: without failure). Take the final checkpoint if the job
    /// finished, reply, and exit.
    JobEnded {
        ok: bool,
        reply: Sender<Result<(), String>>,
    },
}

/// An operator instance's line to the coordinator. Cheap to clone; `None` in a job without
/// checkpointing. Every report carries the instance's record counts as of the report, so an
/// operator reports at its barrier, after the records before it and before any after it.
#[derive(Clone)]
pub(crate) struct CheckpointPort {
    pub(crate) events: Sender<Event>,
    pub(crate) op: usize,
    pub(crate) worker: usize,
    pub(crate) metrics: InstanceMetrics,
}

impl CheckpointPort {
    pub(crate) fn ack(&self, id: u64, mut state: InstanceState) {
        state.counts = self.metrics.checkpoint_counts();
        // A send fails only once the coordinator is gone, when the job is ending anyway.
        let _ = self.events.send(Event::Ack {
            id,
            op: self.op,
            worker: self.worker,
            state,
        });
    }

    pub(crate) fn finished(&self, mut state: InstanceState) {
        state.finished = true;
        state.counts = self.metrics.checkpoint_counts();
        let _ = self.events.send(Event::Finished {
            op: self.op,
            worker: self.worker,
            state,
        });
    }
}

/// For an operator without state: reports its counts at barrier `n` (through `port`, if the
/// job checkpoints).
pub(crate) fn ack_counts(port: &Option<CheckpointPort>, n: u64) {
    if let Some(port) = port {
        port.ack(n, InstanceState::default());
    }
}

/// For an operator without state: reports its final counts at the end of its input.
pub(crate) fn finished_counts(port: &Option<CheckpointPort>) {
    if let Some(port) = port {
        port.finished(InstanceState::default());
    }
}

/// Commits a sink's transactions, from the coordinator's thread.
pub(crate) trait Committer: Send + Sync {
    fn commit(&self, txn: &[u8]) -> Result<(), BoxError>;
    fn recover(&self, restored: Option<u64>, txns: &[Vec<u8>]) -> Result<(), BoxError>;
}

/// What the job shares with the coordinator.
pub(crate) struct CheckpointShared {
    /// The newest checkpoint the sources should inject a barrier for.
    pub(crate) trigger: AtomicU64,
    /// The checkpoint the job restored from (0: none); barriers start after it.
    pub(crate) start_id: u64,
    pub(crate) events: Sender<Event>,
    pub(crate) restore: Option<Arc<CheckpointData>>,
    pub(crate) metrics: Mutex<CheckpointMetrics>,
}

struct Pending {
    id: u64,
    savepoint: bool,
    reply: Option<Sender<Result<PathBuf, String>>>,
    got: Vec<Vec<Option<InstanceState>>>,
    missing: usize,
    started: Instant,
}

pub(crate) struct Coordinator {
    pub(crate) settings: CheckpointSettings,
    pub(crate) names: Vec<String>,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: usize,
    /// Per operator: the sink committer, if the operator is a sink.
    pub(crate) committers: Vec<Option<Arc<dyn Committer>>>,
    pub(crate) next_id: u64,
    pub(crate) job: Arc<JobShared>,
    pub(crate) rx: Receiver<Event>,
}

impl Coordinator {
    fn shared(&self) -> &CheckpointShared {
        self.job
            .checkpoint
            .as_ref()
            .expect("coordinator runs only with checkpointing on")
    }

    /// Runs until the job ends. Returns an error if a checkpoint could not be written or
    /// committed (the job has then been aborted).
    pub(crate) fn run(mut self) {
        let ops = self.names.len();
        let p = self.parallelism;
        // Every operator instance reports (its state, if any, and always its counts).
        let mut finished: Vec<Vec<Option<InstanceState>>> = vec![vec![None; p]; ops];
        let mut pending: Option<Pending> = None;
        // Requested checkpoints and savepoints, oldest first.
        let mut requests: Vec<(bool, Sender<Result<PathBuf, String>>)> = Vec::new();
        // Restored from a job's final checkpoint: the job has nothing left to do, and that
        // checkpoint stays its newest. A new one would hold none of the transactions that
        // committed the output (its sinks write nothing new), so restoring it later would roll
        // back as uncommitted the files of the final checkpoint (named `cfinal`, not by id).
        let restored_final = self
            .shared()
            .restore
            .as_ref()
            .and_then(|d| d.is_finished().then_some(d.id));
        // No periodic trigger then (nor a timeout that would keep this loop spinning).
        let interval = self.settings.interval.filter(|_| restored_final.is_none());
        let mut next_trigger = interval.map(|d| Instant::now() + d);
        loop {
            let timeout = next_trigger.map_or(Duration::from_secs(3600), |t| {
                t.saturating_duration_since(Instant::now())
            });
            let mut complete = false;
            match self.rx.recv_timeout(timeout) {
                Ok(Event::Ack {
                    id,
                    op,
                    worker,
                    state,
                }) => {
                    if let Some(pend) = pending.as_mut().filter(|pend| pend.id == id) {
                        if pend.got[op][worker].is_none() {
                            pend.got[op][worker] = Some(state);
                            pend.missing -= 1;
                            complete = pend.missing == 0;
                        }
                    }
                }
                Ok(Event::Finished { op, worker, state }) => {
                    if let Some(pend) = pending.as_mut() {
                        if pend.got[op][worker].is_none() {
                            pend.got[op][worker] = Some(state.clone());
                            pend.missing -= 1;
                            complete = pend.missing == 0;
                        }
                    }
                    finished[op][worker] = Some(state);
                }
                Ok(Event::Request { savepoint, reply }) => requests.push((savepoint, reply)),
                Ok(Event::JobEnded { ok, reply }) => {
                    let result = match (ok, restored_final) {
                        (true, None) => self.finish(&finished, pending.take()),
                        // Anything a sink wrote anyway is committed as without checkpoints.
                        (true, Some(_)) => self.commit_final(&finished),
                        (false, _) => Ok(()),
                    };
                    for (_, r) in requests.drain(..) {
                        let _ = r.send(Err("the job ended before the checkpoint was taken".into()));
                    }
                    if let Some(Pending { reply: Some(r), .. }) = pending.take() {
                        let _ = r.send(Err("the job ended before the checkpoint completed".into()));
                    }
                    let _ = reply.send(result);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if complete {
                let pend = pending.take().expect("pending checkpoint");
                if let Err(e) = self.complete(pend) {
                    self.fail(e);
                }
            }
            let all_finished = finished.iter().flatten().all(Option::is_some);
            if all_finished {
                // No checkpoint can start any more (the final one is taken when the job is
                // joined): answer now, or a caller waiting for it would never join.
                for (_, r) in requests.drain(..) {
                    let _ = r.send(Err(
                        "the job finished before the checkpoint could be taken".into()
                    ));
                }
            }
            if let Some(id) = restored_final {
                for (_, r) in requests.drain(..) {
                    let _ = r.send(Err(format!(
                        "the job restored its final checkpoint {id} and has nothing left to do"
                    )));
                }
                continue;
            }
            if pending.is_none() && !all_finished {
                let due = next_trigger.is_some_and(|t| Instant::now() >= t);
                if !requests.is_empty() || due {
                    let (savepoint, reply) = if requests.is_empty() {
                        (false, None)
                    } else {
                        let (savepoint, reply) = requests.remove(0);
                        (savepoint, Some(reply))
                    };
                    let pend = self.start(&finished, savepoint, reply);
                    if pend.missing == 0 {
                        if let Err(e) = self.complete(pend) {
                            self.fail(e);
                        }
                    } else {
                        pending = Some(pend);
                    }
                    if due {
                        next_trigger = interval.map(|d| Instant::now() + d);
                    }
                }
            }
        }
    }

    fn start(
        &mut self,
        finished: &[Vec<Option<InstanceState>>],
        savepoint: bool,
        reply: Option<Sender<Result<PathBuf, String>>>,
    ) -> Pending {
        let id = self.next_id;
        self.next_id += 1;
        let got: Vec<Vec<Option<InstanceState>>> = finished.to_vec();
        let missing = got.iter().flatten().filter(|s| s.is_none()).count();
        if missing > 0 {
            self.shared().trigger.store(id, Ordering::Release);
            self.job.wake_all();
        }
        Pending {
            id,
            savepoint,
            reply,
            got,
            missing,
            started: Instant::now(),
        }
    }

    /// Writes a checkpoint whose every part has arrived, then commits its transactions.
    fn complete(&mut self, pend: Pending) -> Result<(), String> {
        let data = CheckpointData {
            id: pend.id,
            parallelism: self.parallelism,
            max_parallelism: self.max_parallelism,
            names: self.names.clone(),
            instances: pend
                .got
                .into_iter()
                .map(|v| v.into_iter().map(|s| s.unwrap_or_default()).collect())
                .collect(),
        };
        let root = &self.settings.dir;
        let result = store::write(root, &data, pend.savepoint)
            .map_err(|e| {
                format!(
                    "writing checkpoint {} under {}: {e}",
                    data.id,
                    root.display()
                )
            })
            .and_then(|(dir, bytes)| {
                self.commit(&data)?;
                if !pend.savepoint {
                    store::retain(root, self.settings.retain).map_err(|e| {
                        format!("removing old checkpoints under {}: {e}", root.display())
                    })?;
                }
                let mut m = self.shared().metrics.lock();
                m.completed += 1;
                m.last_id = data.id;
                m.last_bytes = bytes;
                m.last_duration = pend.started.elapsed();
                Ok(dir)
            });
        let failed = result.as_ref().err().cloned();
        if let Some(reply) = pend.reply {
            let _ = reply.send(result);
        }
        failed.map_or(Ok(()), Err)
    }

    fn commit(&self, data: &CheckpointData) -> Result<(), String> {
        let states = data.instances.iter().enumerate();
        self.commit_txns(
            &format!("checkpoint {}", data.id),
            states.flat_map(|(op, v)| v.iter().map(move |s| (op, s))),
        )
    }

    /// A job restored from its final checkpoint ended: commits whatever transactions its sinks
    /// reported (as a job without checkpoints does), and writes no checkpoint.
    fn commit_final(&self, finished: &[Vec<Option<InstanceState>>]) -> Result<(), String> {
        let states = finished.iter().enumerate();
        self.commit_txns(
            "the output of a finished job",
            states.flat_map(|(op, v)| v.iter().flatten().map(move |s| (op, s))),
        )
    }

    /// Commits the transactions in `states` (operator, instance state) of the sinks, naming
    /// `what` in an error.
    fn commit_txns<'a>(
        &self,
        what: &str,
        states: impl Iterator<Item = (usize, &'a InstanceState)>,
    ) -> Result<(), String> {
        for (op, state) in states {
            if let (Some(c), Some(txn)) = (&self.committers[op], &state.txn) {
                c.commit(txn)
                    .map_err(|e| format!("committing {what} in sink `{}`: {e}", self.names[op]))?;
            }
        }
        Ok(())
    }

    /// The job finished: the final checkpoint holds every instance's final state and commits
    /// the output written since the previous one.
    fn finish(
        &mut self,
        finished: &[Vec<Option<InstanceState>>],
        pending: Option<Pending>,
    ) -> Result<(), String> {
        if let Some(missing) = finished
            .iter()
            .enumerate()
            .find_map(|(op, v)| v.iter().any(Option::is_none).then_some(op))
        {
            return Err(format!(
                "operator `{}` ended without reporting its final state",
                self.names[missing]
            ));
        }
        drop(pending);
        let pend = self.start(finished, false, None);
        debug_assert_eq!(pend.missing, 0);
        self.complete(pend)
    }

    fn fail(&self, message: String) {
        eprintln!("sluice: checkpoint failed, aborting the job: {message}");
        *self.job.checkpoint_failure.lock() = Some(message);
        self.job
            .abort
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.job.wake_all();
    }
}
