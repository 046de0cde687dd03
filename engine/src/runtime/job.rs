//! Starting, observing, stopping and joining a job.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_utils::sync::Parker;

use crate::checkpoint::coordinator::{CheckpointShared, Coordinator, Event};
use crate::checkpoint::{
    store, CheckpointData, CheckpointSettings, InstanceState, RestoreFrom, RestoreInfo,
};
use crate::config::Config;
use crate::error::{FailureKind, JobError, OpFailure, OperatorName};
use crate::metrics::{
    CheckpointMetrics, Counts, ExchangeMetrics, JobMetrics, OpMetrics, OperatorMetrics,
    RestoredCounts,
};
use crate::runtime::graph::{Graph, JobShared, PrepareCx};
use crate::runtime::worker;

/// A cheap, cloneable, `Send` view of a running job's metrics, for a progress display or a
/// metrics exporter on another thread.
#[derive(Clone)]
pub struct JobObserver {
    job: Arc<JobShared>,
    side_names: Arc<Vec<Vec<String>>>,
    started: Instant,
}

impl std::fmt::Debug for JobObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobObserver").finish_non_exhaustive()
    }
}

impl JobObserver {
    /// A snapshot of the job's metrics.
    pub fn metrics(&self) -> JobMetrics {
        let operators = self
            .job
            .metrics
            .iter()
            .enumerate()
            .map(|(id, m)| snapshot(id, &self.job.names[id], m, &self.side_names[id]))
            .collect();
        let exchanges = self
            .job
            .exchanges
            .iter()
            .map(|(id, s)| ExchangeMetrics {
                id: *id,
                name: self.job.names[*id].clone(),
                in_flight: s.in_flight(),
                max_in_flight: s.max_in_flight.load(Ordering::Relaxed),
                batches: s.batches.load(Ordering::Relaxed),
            })
            .collect();
        JobMetrics {
            operators,
            exchanges,
            elapsed: self.started.elapsed(),
            checkpoints: self
                .job
                .checkpoint
                .as_ref()
                .map(|c| c.metrics.lock().clone())
                .unwrap_or_default(),
        }
    }
}

/// Stops, cancels or checkpoints a running job from any thread: [`JobHandle::control`]. Cheap
/// to clone. Once the job has ended, its methods do nothing (or return an error).
#[derive(Clone)]
pub struct JobControl {
    job: Arc<JobShared>,
    cancelled: Arc<AtomicBool>,
}

impl std::fmt::Debug for JobControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobControl").finish_non_exhaustive()
    }
}

impl JobControl {
    /// Asks the job to stop gracefully: sources end as if their input were exhausted, so every
    /// pending window and event-time timer fires and sinks finish. Returns at once; use
    /// [`JobHandle::join`] to wait.
    pub fn stop(&self) {
        self.job.stop.store(true, Ordering::Relaxed);
        self.job.wake_all();
    }

    /// Aborts the job: workers exit as soon as they notice; nothing more is emitted.
    /// [`JobHandle::join`] then returns [`JobError::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.job.abort.store(true, Ordering::Relaxed);
        self.job.wake_all();
    }

    /// Takes a savepoint: a checkpoint on request, written as `savepoint-<id>` in the checkpoint
    /// directory and never deleted by retention. Blocks until it is complete; returns its
    /// directory, which [`RestoreFrom::Path`] accepts.
    ///
    /// # Errors
    ///
    /// [`JobError::Checkpoint`] if checkpointing is off, or the job ended (or failed) before the
    /// savepoint completed.
    pub fn savepoint(&self) -> Result<PathBuf, JobError> {
        self.request_checkpoint(true)
    }

    /// Takes a regular checkpoint now (`chk-<id>`, which retention may delete later and
    /// [`RestoreFrom::Latest`] restores), without waiting for the interval. Blocks until it is
    /// complete (its output committed); returns its directory. With [`cancel`](Self::cancel)
    /// after it, this pauses a job: restored from its latest checkpoint, it continues where it
    /// stopped, with nothing lost or repeated.
    ///
    /// # Errors
    ///
    /// [`JobError::Checkpoint`] if checkpointing is off, or the job ended (or failed) before the
    /// checkpoint completed.
    pub fn checkpoint(&self) -> Result<PathBuf, JobError> {
        self.request_checkpoint(false)
    }

    fn request_checkpoint(&self, savepoint: bool) -> Result<PathBuf, JobError> {
        let Some(cp) = &self.job.checkpoint else {
            let what = if savepoint {
                "savepoints"
            } else {
                "checkpoints"
            };
            return Err(JobError::Checkpoint(format!(
                "{what} need checkpointing: set Config::checkpoint_dir"
            )));
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        cp.events
            .send(Event::Request {
                savepoint,
                reply: tx,
            })
            .map_err(|_| JobError::Checkpoint("the job has ended".into()))?;
        rx.recv()
            .unwrap_or_else(|_| Err("the job has ended".into()))
            .map_err(JobError::Checkpoint)
    }
}

/// A running job. Dropping the handle does not stop the job; call [`join`](Self::join),
/// [`stop`](Self::stop) or [`cancel`](Self::cancel).
pub struct JobHandle {
    threads: Vec<JoinHandle<()>>,
    coordinator: Option<JoinHandle<()>>,
    restore_info: RestoreInfo,
    first_failure: Arc<Mutex<Option<(usize, OpFailure)>>>,
    observer: JobObserver,
    /// The shared job state and the cancelled flag, as handed out by [`control`](Self::control).
    control: JobControl,
}

impl std::fmt::Debug for JobHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle")
            .field("workers", &self.threads.len())
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl JobHandle {
    /// A snapshot of the job's metrics, taken while it runs (or after it ended).
    pub fn metrics(&self) -> JobMetrics {
        self.observer.metrics()
    }

    /// A view of the metrics that can be moved to another thread.
    pub fn observer(&self) -> JobObserver {
        self.observer.clone()
    }

    /// Asks the job to stop gracefully: see [`JobControl::stop`].
    pub fn stop(&self) {
        self.control.stop();
    }

    /// Aborts the job: see [`JobControl::cancel`]. [`join`](Self::join) then returns
    /// [`JobError::Cancelled`].
    pub fn cancel(&self) {
        self.control.cancel();
    }

    /// Takes a savepoint: see [`JobControl::savepoint`].
    ///
    /// # Errors
    ///
    /// As [`JobControl::savepoint`].
    pub fn savepoint(&self) -> Result<PathBuf, JobError> {
        self.control.savepoint()
    }

    /// Takes a regular checkpoint now: see [`JobControl::checkpoint`].
    ///
    /// # Errors
    ///
    /// As [`JobControl::checkpoint`].
    pub fn checkpoint(&self) -> Result<PathBuf, JobError> {
        self.control.checkpoint()
    }

    /// A handle to stop, cancel or checkpoint the job from another thread (a signal handler,
    /// say) while this one waits in [`join`](Self::join).
    pub fn control(&self) -> JobControl {
        self.control.clone()
    }

    /// What the job restored from (empty without checkpointing or on a fresh start).
    pub fn restore_info(&self) -> &RestoreInfo {
        &self.restore_info
    }

    /// Whether every worker has exited.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Waits for the job to end.
    ///
    /// # Errors
    ///
    /// The first failure of any operator, naming it; [`JobError::Cancelled`] after
    /// [`cancel`](Self::cancel).
    pub fn join(mut self) -> Result<JobMetrics, JobError> {
        for t in self.threads.drain(..) {
            // Worker bodies catch their own panics; a join error cannot carry more information.
            let _ = t.join();
        }
        let failure = self.first_failure.lock().expect("failure slot").take();
        let JobControl { job, cancelled } = &self.control;
        if let Some(cp) = &job.checkpoint {
            // The final checkpoint commits the output written since the last one.
            let ok = failure.is_none() && !cancelled.load(Ordering::Relaxed);
            let (tx, rx) = crossbeam_channel::bounded(1);
            let _ = cp.events.send(Event::JobEnded { ok, reply: tx });
            let ended = rx
                .recv()
                .unwrap_or_else(|_| Err("the checkpoint coordinator exited early".into()));
            if let Some(t) = self.coordinator.take() {
                let _ = t.join();
            }
            if let Some(message) = job.checkpoint_failure.lock().take() {
                return Err(JobError::Checkpoint(message));
            }
            ended.map_err(JobError::Checkpoint)?;
        }
        let metrics = self.metrics();
        match failure {
            Some((worker, f)) => {
                let operator = OperatorName {
                    id: f.op,
                    name: job
                        .names
                        .get(f.op)
                        .cloned()
                        .unwrap_or_else(|| "<runtime>".into()),
                };
                Err(match f.kind {
                    FailureKind::Error(source) => JobError::OperatorFailed {
                        operator,
                        worker,
                        source,
                    },
                    FailureKind::Panic(message) => JobError::OperatorPanicked {
                        operator,
                        worker,
                        message,
                    },
                    FailureKind::Aborted => JobError::Cancelled,
                })
            }
            None if cancelled.load(Ordering::Relaxed) => Err(JobError::Cancelled),
            None => Ok(metrics),
        }
    }
}

fn snapshot(id: usize, name: &str, m: &OpMetrics, side_names: &[String]) -> OperatorMetrics {
    let total = m.totals();
    let restored = m.restored();
    let named = |counts: &[u64]| {
        side_names
            .iter()
            .zip(counts)
            .map(|(n, c)| (n.clone(), *c))
            .collect()
    };
    OperatorMetrics {
        id,
        name: name.to_string(),
        records_in: total.records_in,
        records_out: total.records_out,
        late: total.late,
        side_outputs: named(&total.side),
        counters: total.named,
        state_keys: m.state_keys(),
        pending_timers: m.timers(),
        restored: RestoredCounts {
            records_in: restored.records_in,
            records_out: restored.records_out,
            late: restored.late,
            side_outputs: named(&restored.side),
            counters: restored.named.clone(),
        },
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Validates and starts a job on `config.parallelism` worker threads.
pub(crate) fn start(graph: Graph, config: Config) -> Result<JobHandle, JobError> {
    config.validate()?;
    if !graph.errors.is_empty() {
        return Err(JobError::Graph(graph.errors.join("; ")));
    }
    if graph.nodes.is_empty() {
        return Err(JobError::Graph("the job has no operators".into()));
    }
    let mut exchanges = Vec::new();
    let mut shared = Vec::with_capacity(graph.nodes.len());
    let mut committers = Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let mut cx = PrepareCx {
            config: &config,
            exchanges: &mut exchanges,
            op: id,
            name: &node.name,
            committer: None,
        };
        shared.push(node.factory.prepare(&mut cx)?);
        committers.push(cx.committer);
    }
    let names: Vec<String> = graph.nodes.iter().map(|n| n.name.clone()).collect();
    let mut restore_info = RestoreInfo::default();
    let mut checkpointing = None;
    let mut checkpoint_shared = None;
    if let Some(settings) = &config.checkpoints {
        let (restore, info) = load_restore(settings, &config, &names)?;
        // Sinks finish what the restored checkpoint pre-committed and drop all else pending.
        for (op, c) in committers.iter().enumerate() {
            let Some(c) = c else { continue };
            let txns: Vec<Vec<u8>> = restore
                .as_ref()
                .map(|r| {
                    r.instances[op]
                        .iter()
                        .filter_map(|i| i.txn.clone())
                        .collect()
                })
                .unwrap_or_default();
            c.recover(restore.as_ref().map(|r| r.id), &txns)
                .map_err(|e| {
                    JobError::Checkpoint(format!("recovering sink `{}`: {e}", names[op]))
                })?;
        }
        let start_id = restore.as_ref().map_or(0, |r| r.id);
        let next_id = store::max_id(&settings.dir)
            .map_err(|e| JobError::Checkpoint(format!("reading {}: {e}", settings.dir.display())))?
            .max(start_id)
            + 1;
        let (tx, rx) = crossbeam_channel::unbounded();
        let metrics = CheckpointMetrics {
            restored_id: restore.as_ref().map(|r| r.id),
            ..CheckpointMetrics::default()
        };
        restore_info = info;
        checkpoint_shared = Some(CheckpointShared {
            trigger: AtomicU64::new(start_id),
            start_id,
            events: tx,
            restore: restore.map(Arc::new),
            metrics: parking_lot::Mutex::new(metrics),
        });
        checkpointing = Some((rx, next_id, settings.clone()));
    }
    let side_names: Vec<Vec<String>> = graph
        .nodes
        .iter()
        .map(|n| {
            let mut names: Vec<String> = n.side_ports.iter().map(|p| p.name.clone()).collect();
            if n.has_side_outputs {
                names.push("(unconsumed)".into());
            }
            names
        })
        .collect();
    let p = config.parallelism;
    let parkers: Vec<Parker> = (0..p).map(|_| Parker::new()).collect();
    // Counts continue from the restored checkpoint's: the sum over its instances of each
    // operator, whatever the parallelism was.
    let restored_counts = |op: usize| -> Counts {
        let mut total = Counts::default();
        let restore = checkpoint_shared
            .as_ref()
            .and_then(|c: &CheckpointShared| c.restore.as_deref());
        for i in restore.map_or(&[][..], |r| &r.instances[op][..]) {
            total.add(&i.counts);
        }
        total
    };
    let job = Arc::new(JobShared {
        metrics: side_names
            .iter()
            .enumerate()
            .map(|(op, s)| Arc::new(OpMetrics::new(s.len(), p, restored_counts(op))))
            .collect(),
        names: names.clone(),
        exchanges,
        unparkers: parkers.iter().map(|p| p.unparker().clone()).collect(),
        stop: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        checkpoint: checkpoint_shared,
        checkpoint_failure: parking_lot::Mutex::new(None),
        config,
    });
    let coordinator = match checkpointing {
        Some((rx, next_id, settings)) => {
            let coord = Coordinator {
                settings,
                names,
                parallelism: p,
                max_parallelism: job.config.max_parallelism,
                committers,
                next_id,
                job: job.clone(),
                rx,
            };
            let t = std::thread::Builder::new()
                .name("sluice-checkpoints".into())
                .spawn(move || coord.run())
                .map_err(JobError::Spawn)?;
            Some(t)
        }
        None => None,
    };
    let graph = Arc::new(graph);
    let shared = Arc::new(shared);
    let first_failure: Arc<Mutex<Option<(usize, OpFailure)>>> = Arc::new(Mutex::new(None));
    let mut threads = Vec::with_capacity(p);
    for (w, parker) in parkers.into_iter().enumerate() {
        let (graph, shared, job_w, first) = (
            graph.clone(),
            shared.clone(),
            job.clone(),
            first_failure.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("sluice-worker-{w}"))
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    worker::run(w, &graph, &shared, &job_w, parker)
                }));
                let failure = match result {
                    Ok(Ok(())) => return,
                    Ok(Err(f)) => f,
                    Err(payload) => OpFailure {
                        op: worker::current_op(),
                        kind: FailureKind::Panic(panic_message(&*payload)),
                    },
                };
                if !matches!(failure.kind, FailureKind::Aborted) {
                    let mut slot = first.lock().unwrap_or_else(|e| e.into_inner());
                    if slot.is_none() {
                        *slot = Some((w, failure));
                    }
                }
                job_w.abort.store(true, Ordering::Relaxed);
                job_w.wake_all();
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                job.abort.store(true, Ordering::Relaxed);
                job.wake_all();
                for t in threads {
                    let _ = t.join();
                }
                return Err(JobError::Spawn(e));
            }
        }
    }
    Ok(JobHandle {
        threads,
        coordinator,
        restore_info,
        observer: JobObserver {
            job: job.clone(),
            side_names: Arc::new(side_names),
            started: Instant::now(),
        },
        first_failure,
        control: JobControl {
            job,
            cancelled: Arc::new(AtomicBool::new(false)),
        },
    })
}

/// Finds and reads the checkpoint to restore, if any, and checks it fits this job.
fn load_restore(
    settings: &CheckpointSettings,
    config: &Config,
    names: &[String],
) -> Result<(Option<CheckpointData>, RestoreInfo), JobError> {
    let mut info = RestoreInfo::default();
    let found = match &settings.restore {
        None => None,
        Some(RestoreFrom::Path(path)) => {
            let data = store::read(path).map_err(|e| JobError::Checkpoint(e.to_string()))?;
            Some((path.clone(), data))
        }
        Some(RestoreFrom::Latest) => {
            let candidates = store::list(&settings.dir).map_err(|e| {
                JobError::Checkpoint(format!("listing {}: {e}", settings.dir.display()))
            })?;
            let mut found = None;
            let any = !candidates.is_empty();
            for (_, dir) in candidates {
                match store::read(&dir) {
                    Ok(data) => {
                        found = Some((dir, data));
                        break;
                    }
                    Err(e) => {
                        eprintln!(
                            "sluice: skipping checkpoint {}: {e}; trying the one before it \
                             (exactly-once sinks roll back what it had committed)",
                            dir.display()
                        );
                        info.skipped.push((dir, e.to_string()));
                    }
                }
            }
            if any && found.is_none() {
                // Starting afresh would repeat output the checkpoints had committed.
                return Err(JobError::Checkpoint(format!(
                    "no checkpoint under {} is readable ({}); refusing to start from scratch",
                    settings.dir.display(),
                    info.skipped
                        .iter()
                        .map(|(_, e)| e.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                )));
            }
            found
        }
    };
    let Some((path, data)) = found else {
        return Ok((None, info));
    };
    let data = if data.names == names {
        data
    } else {
        match_operators(data, names).map_err(|e| {
            JobError::Checkpoint(format!(
                "{} was taken from a different job: {e}",
                path.display()
            ))
        })?
    };
    if data.max_parallelism != config.max_parallelism {
        return Err(JobError::Checkpoint(format!(
            "{} has {} key groups (max_parallelism) but the job is configured with {}; \
             they must match",
            path.display(),
            data.max_parallelism,
            config.max_parallelism
        )));
    }
    info.restored = Some(path);
    info.id = Some(data.id);
    info.finished = data.is_finished();
    Ok((Some(data), info))
}

/// Matches a checkpoint taken from a job whose operators differ from `names` to the job: the
/// `k`-th operator of a name in the job takes the state of the `k`-th operator of that name in
/// the checkpoint (for the same graph, the same operator), as Flink matches operators by uid.
/// So operators without state may come and go between a checkpoint and its restore (a stage
/// that only exists at some parallelism, say); an operator new to the job starts empty. An
/// operator of the checkpoint that held state and has no match in the job is an error: its
/// state would be lost.
fn match_operators(mut data: CheckpointData, names: &[String]) -> Result<CheckpointData, String> {
    fn numbered(names: &[String]) -> Vec<(&str, usize)> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        names
            .iter()
            .map(|n| {
                let k = seen.entry(n.as_str()).or_default();
                *k += 1;
                (n.as_str(), *k)
            })
            .collect()
    }
    let old: HashMap<(&str, usize), usize> = numbered(&data.names)
        .into_iter()
        .enumerate()
        .map(|(i, k)| (k, i))
        .collect();
    let mut matched = vec![false; data.names.len()];
    let picks: Vec<Option<usize>> = numbered(names)
        .into_iter()
        .map(|k| old.get(&k).copied())
        .collect();
    for &i in picks.iter().flatten() {
        matched[i] = true;
    }
    if let Some(i) = (0..data.names.len())
        .find(|&i| !matched[i] && data.instances[i].iter().any(InstanceState::has_state))
    {
        return Err(format!(
            "its operator {i} `{}` has state, and this job has no operator of that name to \
             restore it into (operators there: {:?}; here: {names:?})",
            data.names[i], data.names
        ));
    }
    data.instances = picks
        .iter()
        .map(|p| {
            p.map(|i| std::mem::take(&mut data.instances[i]))
                .unwrap_or_default()
        })
        .collect();
    data.names = names.to_vec();
    Ok(data)
}
