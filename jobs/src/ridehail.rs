//! The `ridehail` run: every job at once over one input, written as JSON Lines under an output
//! directory. The binary (`src/bin/ridehail.rs`) is a thin command line over [`run`].
//!
//! ```text
//! input ─▶ ingest (validate ─▶ event time ─▶ dedup) ─┬─▶ backup      out/backup/year=…/hour=…/
//!            ├─▶ dead letters  out/dead-letters/      ├─▶ surge       out/surge/
//!            └─▶ duplicates    out/duplicates/        ├─▶ trips       out/trips/
//!                                                     ├─▶ shifts      out/shifts/
//!                                                     └─▶ live state  out/live-drivers/, out/live-zones/
//! ```
//!
//! Late and anomalous records of each job go to `out/<job>-late/` (or `out/trip-anomalies/`):
//! every input line ends up in exactly one place or is counted as a duplicate.
//!
//! # Checkpoints and resuming
//!
//! With [`RunConfig::checkpoint_dir`] the run takes a checkpoint every
//! [`RunConfig::checkpoint_every`] and every output is written exactly once: sinks write hidden
//! in-progress files (names starting with `.`), which become visible `part-*.jsonl` files only
//! when the checkpoint covering them is complete. A run killed at any moment and started again
//! with [`RunConfig::resume`] continues from its newest checkpoint, and the visible output then
//! equals that of a run without failure. Readers must ignore files whose names start with `.`.
//!
//! - A fresh run (no `resume`) clears the output subdirectories, as always, and the `chk-*`
//!   checkpoints in the checkpoint directory, so that a later resume cannot pick up a checkpoint
//!   of an unrelated earlier run. It records what it reads and where it writes in
//!   [`RUN_MARKER`] there.
//! - A resumed run keeps the committed output of the earlier run (the sinks commit what the
//!   checkpoint had pre-committed and delete every other hidden file), and refuses to continue
//!   if the input or the output directory differ from the earlier run's. With no complete
//!   checkpoint in the directory it starts from the beginning, exactly like a fresh run. It may
//!   run at another parallelism (state moves by key group); the generator then keeps the
//!   number of sub-cities the run started with (by default one per worker of that run), since
//!   they make up its input.
//! - A run locks its output directory and its checkpoint directory ([`LOCK_FILE`]) for as long
//!   as it runs: a second run on either is refused before it clears or writes anything.
//! - The [`Report`] of a resumed run counts the whole run, as a run without failure would: the
//!   counts are checkpointed as of each barrier, like the output, and a resumed run continues
//!   from them ([`Report::resumed_from`]). Its wall time and events/s are its own
//!   ([`Report::events_this_run`]).

use std::fs;
use std::hash::BuildHasher;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sluice_connectors::{BadLine, JsonLinesSink, Line, LineEncoder, LinesSource, SerdeJson};
use sluice_engine::prelude::*;
use sluice_engine::sink::CountingSink;
use sluice_engine::{BoxError, Clock, JobControl, JobHandle, RestoreFrom, SystemClock};

use crate::backup::BackupSink;
use crate::dedup::{self, DedupConfig};
use crate::event::{DeadLetter, Reason, RideEvent, Validation};
use crate::generator::{CityGenerator, GeneratorConfig};
use crate::ingest::{
    events_by_driver, ingest_files, ingest_generator, ingest_lines, EventTimeConfig, IngestConfig,
    Ingested,
};
use crate::live::{live_state_with, DriverStateJson, LiveConfig};
use crate::shifts::{driver_shifts_with, ShiftConfig};
use crate::surge::{surge_with, SurgeConfig};
use crate::trips::{trip_summaries_with, TripConfig};
use crate::validate::{self, ValidateConfig};

/// Where events come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// The simulated city.
    Generator(GeneratorConfig),
    /// JSON Lines files.
    Files(Vec<PathBuf>),
    /// JSON Lines on standard input.
    Stdin,
}

/// The jobs a run can include besides ingest (validation, dead letters, dedup), which always
/// runs. Named in lower case (`backup`, `surge`, ...) by `--jobs`, the run marker and
/// [`Display`](std::fmt::Display).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Job {
    /// The raw valid events, hourly partitioned (`out/backup/`).
    Backup,
    /// Surge pricing (`out/surge/`, `out/surge-late/`).
    Surge,
    /// Trip summaries (`out/trips/`, `out/trip-anomalies/`).
    Trips,
    /// Driver shifts (`out/shifts/`, `out/shifts-late/`).
    Shifts,
    /// Live driver and zone state (`out/live-drivers/`, `out/live-zones/`, `out/live-late/`).
    Live,
}

impl Job {
    /// Every job, in the order a run wires them.
    pub const ALL: [Job; 5] = [Job::Backup, Job::Surge, Job::Trips, Job::Shifts, Job::Live];
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        let name = self.to_possible_value().expect("no job is skipped");
        f.write_str(name.get_name())
    }
}

/// Everything a run needs. [`RunConfig::new`] gives the defaults of `ridehail run`.
#[derive(Clone)]
pub struct RunConfig {
    /// The input.
    pub input: Input,
    /// Output directory. Default `./out`.
    pub out: PathBuf,
    /// Worker threads. Default 2.
    pub parallelism: usize,
    /// Longest accepted line. Default 64 KiB.
    pub max_line_bytes: usize,
    /// Validation rules' parameters.
    pub validation: Validation,
    /// Watermarks.
    pub event_time: EventTimeConfig,
    /// Deduplication.
    pub dedup: DedupConfig,
    /// Surge.
    pub surge: SurgeConfig,
    /// Trips.
    pub trips: TripConfig,
    /// Shifts.
    pub shifts: ShiftConfig,
    /// Live state.
    pub live: LiveConfig,
    /// The clock of the future-timestamp rule (wall clock by default).
    pub clock: Arc<dyn Clock>,
    /// Where to write checkpoints; `None` (the default) for no checkpoints. With checkpoints,
    /// every output is exactly once (see the [module docs](self)).
    pub checkpoint_dir: Option<PathBuf>,
    /// How often to take a checkpoint (with [`checkpoint_dir`](Self::checkpoint_dir)). Default
    /// 10 s.
    pub checkpoint_every: Duration,
    /// Continue from the newest checkpoint in [`checkpoint_dir`](Self::checkpoint_dir) (a fresh
    /// start if there is none) instead of starting over. Default `false`.
    pub resume: bool,
    /// The jobs to run after ingest. Default: [`Job::ALL`]. The others write nothing, and
    /// their counts in the [`Report`] are zero.
    pub jobs: Vec<Job>,
}

/// A [`RunConfig`] setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunConfigError {
    /// The message says which setting and why.
    #[error("invalid run configuration: {0}")]
    Invalid(String),
}

impl RunConfig {
    /// Checks the settings that have no meaning out of range (a zero interval, an H3
    /// resolution above 15, ...), so that a run refuses them instead of quietly doing something
    /// else (every line a dead letter, a snapshot per millisecond, the nearest resolution).
    /// [`start`] calls it, before it touches the output. A generator input is checked too
    /// ([`GeneratorConfig::validate`]). A dedup horizon of zero is allowed: an id is then
    /// remembered until the watermark passes its event, which still catches a repeat that is
    /// not late.
    ///
    /// # Errors
    ///
    /// [`RunConfigError::Invalid`], naming the first setting out of range.
    pub fn validate(&self) -> Result<(), RunConfigError> {
        let bad = |m: String| Err(RunConfigError::Invalid(m));
        let positive = [
            ("shifts.gap", self.shifts.gap),
            ("trips.timeout", self.trips.timeout),
            ("live.snapshot_interval", self.live.snapshot_interval),
            ("surge.window", self.surge.window),
        ];
        if self.parallelism == 0 {
            return bad("parallelism must be at least 1".into());
        }
        if self.max_line_bytes == 0 {
            return bad("max_line_bytes must be at least 1 (every line would be too long)".into());
        }
        if self.validation.h3_resolution > 15 {
            return bad(format!(
                "validation.h3_resolution must be 0..=15 (H3's resolutions), got {}",
                self.validation.h3_resolution
            ));
        }
        if self.checkpoint_dir.is_some() && self.checkpoint_every.is_zero() {
            return bad("checkpoint_every must be longer than zero".into());
        }
        if self.event_time.idle_after.is_some_and(|d| d.is_zero()) {
            return bad("event_time.idle_after must be longer than zero, or None".into());
        }
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return bad(format!("{name} must be longer than zero"));
        }
        if let Input::Generator(g) = &self.input {
            if let Err(e) = g.validate() {
                return bad(e.to_string());
            }
        }
        Ok(())
    }

    /// Whether the input is standard input (which a resume cannot read again).
    pub fn input_is_stdin(&self) -> bool {
        matches!(self.input, Input::Stdin)
    }

    /// The defaults, reading `input`.
    pub fn new(input: Input) -> Self {
        Self {
            input,
            out: PathBuf::from("out"),
            parallelism: 2,
            max_line_bytes: sluice_connectors::DEFAULT_MAX_LINE_BYTES,
            validation: Validation::default(),
            event_time: EventTimeConfig::default(),
            dedup: DedupConfig::default(),
            surge: SurgeConfig::default(),
            trips: TripConfig::default(),
            shifts: ShiftConfig::default(),
            live: LiveConfig::default(),
            clock: Arc::new(SystemClock),
            checkpoint_dir: None,
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            resume: false,
            jobs: Job::ALL.to_vec(),
        }
    }
}

/// The default [`RunConfig::checkpoint_every`].
pub const DEFAULT_CHECKPOINT_EVERY: Duration = Duration::from_secs(10);

/// The file in the checkpoint directory where a run records its input and output directory, so
/// that a resume can refuse to continue a different run.
pub const RUN_MARKER: &str = "ridehail-run.json";

/// The output subdirectories a run writes (and clears first, unless it resumes: then only
/// `summary`).
pub const OUTPUT_DIRS: [&str; 13] = [
    "backup",
    "dead-letters",
    "duplicates",
    "surge",
    "surge-late",
    "trips",
    "trip-anomalies",
    "shifts",
    "shifts-late",
    "live-drivers",
    "live-zones",
    "live-late",
    "summary",
];

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Input lines read.
    pub events_in: u64,
    /// Valid events.
    pub valid: u64,
    /// Dead letters, in total.
    pub dead_letters: u64,
    /// Dead letters by reason (only reasons that occurred).
    pub dead_letters_by_reason: Vec<(String, u64)>,
    /// Valid events seen before (within the dedup horizon).
    pub duplicates: u64,
    /// Valid first occurrences.
    pub unique: u64,
    /// Surge windows fired (zone x window results).
    pub surge_windows: u64,
    /// Trip summaries written.
    pub trips_summarised: u64,
    /// Driver shifts written.
    pub shifts: u64,
    /// Live snapshots written (drivers + zones).
    pub live_snapshots: u64,
    /// Events behind the watermark, per job (surge, shifts, live) and trip anomalies.
    pub late: Vec<(String, u64)>,
    /// Input lines this run read itself: all of them, unless it resumed (then those after the
    /// checkpoint it resumed from).
    pub events_this_run: u64,
    /// Wall time of this run in seconds.
    pub wall_secs: f64,
    /// Input lines this run read per second of its wall time.
    pub events_per_sec: f64,
    /// The checkpoint this run resumed from, if any. The counts above then still cover the
    /// whole input, as of a run without failure: they continue from the checkpoint's (which
    /// holds them as of its barrier, like the output), and the output directories hold
    /// everything. Only [`events_this_run`](Self::events_this_run), the wall time and events/s
    /// are this run's alone.
    pub resumed_from: Option<u64>,
    /// The checkpoint at which the run was paused by [`Interrupt::interrupt`], if it was: the
    /// output up to it is committed, and a resumed run continues from it.
    pub paused_at: Option<u64>,
}

/// The dead-letter sink's operator name; it counts each [`Reason`] with a
/// [`Counter`](sluice_engine::Counter) named by [`Reason::as_str`] (a
/// [`CountingSink`]).
pub const DEAD_LETTER_SINK: &str = "sink.dead-letters";

/// Live counters a progress display can read while the job runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// The event-time watermark reached by the backup sink (ms), or `i64::MIN`.
    pub watermark: AtomicI64,
}

/// A started run: the job handle plus what is needed to build the report.
pub struct Running {
    handle: JobHandle,
    progress: Arc<Progress>,
    started: Instant,
    /// Whether an interrupt pauses (checkpoints, and an input a resume can read again).
    pausable: bool,
    paused: Arc<OnceLock<u64>>,
    /// Released when the run is dropped (after [`Running::finish`]).
    _locks: Vec<DirLock>,
}

/// Interrupts a [`Running`] run from another thread (a Ctrl-C handler): [`Running::interrupt`].
#[derive(Clone, Debug)]
pub struct Interrupt {
    control: JobControl,
    pausable: bool,
    paused: Arc<OnceLock<u64>>,
}

impl Interrupt {
    /// Whether [`interrupt`](Self::interrupt) pauses the run (it has checkpoints, and its input
    /// is not standard input) rather than draining it.
    pub fn pauses(&self) -> bool {
        self.pausable
    }

    /// Ends the run early, keeping what it did:
    ///
    /// - with checkpoints, it *pauses*: takes a checkpoint (committing every output up to it),
    ///   then cancels the job; `Ok(Some(id))`. [`RunConfig::resume`] continues from that
    ///   checkpoint, and the output is then the same as that of an uninterrupted run.
    ///   [`Running::finish`] reports it in [`Report::paused_at`].
    /// - without checkpoints, or reading standard input (which no resume can read again, so
    ///   what a pause left uncommitted would be lost), it *drains*: the input ends here, as if
    ///   exhausted: every pending window and timer fires, and the outputs are complete (and
    ///   with checkpoints committed) for the input read so far; `Ok(None)`.
    ///
    /// Returns once the checkpoint is complete (at once without checkpoints).
    ///
    /// # Errors
    ///
    /// The checkpoint could not be taken (the run has ended, say); the run then goes on.
    pub fn interrupt(&self) -> Result<Option<u64>, JobError> {
        if !self.pausable {
            self.control.stop();
            return Ok(None);
        }
        let dir = self.control.checkpoint()?;
        let id = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(sluice_engine::checkpoint::checkpoint_id)
            .ok_or_else(|| {
                JobError::Checkpoint(format!("unexpected checkpoint name {}", dir.display()))
            })?;
        let _ = self.paused.set(id);
        self.control.cancel();
        Ok(Some(id))
    }
}

impl Running {
    /// The job's handle (metrics while running, stop, cancel).
    pub fn handle(&self) -> &JobHandle {
        &self.handle
    }

    /// Live progress counters.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// A handle that ends the run early from another thread: [`Interrupt::interrupt`].
    pub fn interrupt(&self) -> Interrupt {
        Interrupt {
            control: self.handle.control(),
            pausable: self.pausable,
            paused: self.paused.clone(),
        }
    }

    /// Input lines read so far; a resumed run counts on from its checkpoint (see
    /// [`Report::resumed_from`]).
    pub fn events_in(&self) -> u64 {
        self.handle
            .metrics()
            .operator(validate::OPERATOR)
            .map_or(0, |m| m.records_in)
    }

    /// Waits for the end and builds the report.
    ///
    /// # Errors
    ///
    /// The job's failure, naming the operator.
    pub fn finish(self) -> Result<Report, JobError> {
        let resumed_from = self.handle.restore_info().id;
        let observer = self.handle.observer();
        let metrics = match self.handle.join() {
            // Paused by `Interrupt`: what the run did until then.
            Err(JobError::Cancelled) if self.paused.get().is_some() => observer.metrics(),
            result => result?,
        };
        let paused_at = self.paused.get().copied();
        let wall = self.started.elapsed().as_secs_f64();
        let op = |name: &str| metrics.operator(name);
        let input = op(validate::OPERATOR).map_or(0, |m| m.records_in);
        // Counts continue from the checkpoint a resumed run started from: this run's own
        // input is what it read beyond that.
        let read_here = input - op(validate::OPERATOR).map_or(0, |m| m.restored.records_in);
        let valid = op(validate::OPERATOR).map_or(0, |m| m.records_out);
        let by_reason: Vec<(String, u64)> = Reason::ALL
            .iter()
            .map(|r| {
                let n = op(DEAD_LETTER_SINK).map_or(0, |m| m.counter(r.as_str()));
                (r.as_str().to_string(), n)
            })
            .filter(|(_, c)| *c > 0)
            .collect();
        let dead = by_reason.iter().map(|(_, c)| c).sum();
        let duplicates = op(dedup::OPERATOR).map_or(0, |m| m.side_output(dedup::DUPLICATES));
        let unique = op(dedup::OPERATOR).map_or(0, |m| m.records_out);
        let written = |name: &str| op(name).map_or(0, |m| m.records_in);
        Ok(Report {
            events_in: input,
            valid,
            dead_letters: dead,
            dead_letters_by_reason: by_reason,
            duplicates,
            unique,
            surge_windows: written("sink.surge"),
            trips_summarised: written("sink.trips"),
            shifts: written("sink.shifts"),
            live_snapshots: written("sink.live-drivers") + written("sink.live-zones"),
            late: vec![
                ("surge".into(), written("sink.surge-late")),
                ("shifts".into(), written("sink.shifts-late")),
                ("live".into(), written("sink.live-late")),
                ("trip_anomalies".into(), written("sink.trip-anomalies")),
            ],
            events_this_run: read_here,
            wall_secs: wall,
            events_per_sec: if wall > 0.0 {
                read_here as f64 / wall
            } else {
                0.0
            },
            resumed_from,
            paused_at,
        })
    }
}

/// Checks that `out` can be written and clears the subdirectories a run writes.
///
/// # Errors
///
/// An I/O error naming the directory.
pub fn prepare_output(out: &Path) -> io::Result<()> {
    prepare_dirs(out, &OUTPUT_DIRS)
}

/// The lock file a run holds in its output directory, and in its checkpoint directory if that
/// is elsewhere.
pub const LOCK_FILE: &str = ".ridehail.lock";

/// An exclusive lock on a directory, held while a run uses it: a second run on the same
/// directory is refused rather than clearing and overwriting the files of the first. The
/// operating system releases it when the file is closed or the process ends, however it ends
/// (a killed run does not leave its directory locked).
#[derive(Debug)]
struct DirLock {
    _file: fs::File,
}

fn lock_dir(dir: &Path, what: &str) -> Result<DirLock, BoxError> {
    fs::create_dir_all(dir).map_err(|e| annotate(&format!("cannot create {what}"), dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| annotate("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(format!(
            "{what} {} is in use by another run (it holds {}); wait for it to end, or choose \
             another directory",
            dir.display(),
            path.display()
        )
        .into()),
        Err(fs::TryLockError::Error(e)) => Err(annotate("cannot lock", &path, e).into()),
    }
}

/// Creates `out`, checks that it can be written and removes its subdirectories `clear`.
fn prepare_dirs(out: &Path, clear: &[&str]) -> io::Result<()> {
    fs::create_dir_all(out).map_err(|e| annotate("cannot create output directory", out, e))?;
    let probe = out.join(".ridehail-write-test");
    fs::write(&probe, b"ok").map_err(|e| annotate("cannot write to output directory", out, e))?;
    fs::remove_file(&probe).map_err(|e| annotate("cannot write to output directory", out, e))?;
    for d in clear {
        let p = out.join(d);
        if p.exists() {
            fs::remove_dir_all(&p).map_err(|e| annotate("cannot clear", &p, e))?;
        }
    }
    Ok(())
}

fn annotate(what: &str, p: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
}

/// The newest complete checkpoint under `dir` (a `chk-<id>` directory with its `_metadata`
/// file, which the engine writes last), or `None` if there is none (or no such directory):
/// the checkpoint a resume restores.
///
/// # Errors
///
/// An I/O error listing `dir`, naming it.
pub fn latest_checkpoint(dir: &Path) -> io::Result<Option<PathBuf>> {
    let complete = sluice_engine::checkpoint::complete_checkpoints(dir)
        .map_err(|e| annotate("cannot list checkpoint directory", dir, e))?;
    Ok(complete.into_iter().next().map(|(_, p)| p))
}

/// Removes every `chk-*` checkpoint (complete or not) under `dir`; savepoints stay.
fn clear_checkpoints(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(annotate("cannot list checkpoint directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| annotate("cannot list checkpoint directory", dir, e))?;
        let name = entry.file_name();
        if name
            .to_str()
            .and_then(sluice_engine::checkpoint::checkpoint_id)
            .is_some()
        {
            let p = entry.path();
            fs::remove_dir_all(&p).map_err(|e| annotate("cannot remove old checkpoint", &p, e))?;
        }
    }
    // Durably gone before the output is cleared.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| annotate("cannot sync", dir, e))
}

/// The layout of the jobs' keyed state, recorded in [`RUN_MARKER`]: a resume refuses
/// checkpoints of another layout. 2: driver, trip and zone keys are [`Id`](crate::event::Id)s,
/// whose key groups differ from those of the bare strings of layout 1 (no `state` in the
/// marker): restored, their state would sit on workers that no longer see their events. 3: the
/// dedup key is an [`EventId`](crate::event::EventId), for the same reason. 4: files are read
/// in stripes and validated in the source ([`ingest_files`]). 5: trips' per-driver state is
/// keyed by [`Id`](crate::event::Id) (the empty id for no driver), not `Option<Id>`, to share
/// the exchange by driver. 6: trips' per-driver state keeps its location updates as bare
/// times.
const STATE_LAYOUT: u32 = 6;

/// The generator's splits: its own setting, or by default (1) one per worker, unless a resumed
/// run recorded how many it had: its input is what those splits produce, whatever the
/// parallelism now.
fn generator_splits(cfg: &RunConfig, g: &GeneratorConfig, recorded: Option<usize>) -> usize {
    match (g.splits, recorded) {
        (1, Some(n)) => n,
        (1, None) => cfg.parallelism,
        (n, _) => n,
    }
}

/// The stripes each input file is read in ([`LinesSource::stripes`]): as many as a resumed run
/// recorded (its checkpointed positions are per stripe), else `p / gcd(files, p)`, the fewest
/// that make the splits (`lcm(files, p)` of them) a multiple of the `p` workers, so that each
/// reads and parses an equal share: one file at two workers, two stripes; two files, one.
fn file_stripes(cfg: &RunConfig, files: usize, recorded: Option<usize>) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    recorded.unwrap_or_else(|| cfg.parallelism / gcd(files.max(1), cfg.parallelism))
}

/// What a run reads and where it writes, as recorded in [`RUN_MARKER`]: a resume must read the
/// same input and write to the same directory, or its output would be partial or duplicated;
/// and the layout of its state ([`STATE_LAYOUT`]); and how its input is split, which the engine
/// does not decide (see [`generator_splits`] and [`file_stripes`]: `recorded_splits`).
fn run_identity(cfg: &RunConfig, recorded_splits: Option<usize>) -> serde_json::Value {
    let absolute = |p: &Path| {
        fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let mut splits = None;
    let input = match &cfg.input {
        Input::Files(paths) => {
            splits = Some(file_stripes(cfg, paths.len(), recorded_splits));
            serde_json::json!(paths.iter().map(|p| absolute(p)).collect::<Vec<_>>())
        }
        Input::Stdin => serde_json::json!("-"),
        Input::Generator(g) => {
            // What the simulation produces: its settings with the effective number of splits
            // (so that a resume at another parallelism is not refused for its default), but
            // not its pace (resuming at another rate is fine).
            let mut g = *g;
            g.splits = generator_splits(cfg, &g, recorded_splits);
            splits = Some(g.splits);
            g.pace = crate::generator::Pace::Unlimited;
            serde_json::json!(format!("generator {g:?}"))
        }
    };
    let mut jobs = cfg.jobs.clone();
    jobs.sort_by_key(|j| Job::ALL.iter().position(|x| x == j));
    jobs.dedup();
    serde_json::json!({
        "out": absolute(&cfg.out),
        "input": input,
        "jobs": jobs,
        "state": STATE_LAYOUT,
        "splits": splits,
    })
}

/// What [`prepare_checkpointed`] found.
struct Prepared {
    /// The checkpoint to restore (`None`: start from the beginning).
    restore: Option<PathBuf>,
    /// The generator's splits or the files' stripes of the run being resumed, as recorded.
    splits: Option<usize>,
}

/// Prepares the output and checkpoint directories of a run with checkpoints.
fn prepare_checkpointed(cfg: &RunConfig, dir: &Path) -> Result<Prepared, BoxError> {
    let latest = if cfg.resume {
        latest_checkpoint(dir)?
    } else {
        None
    };
    let marker = dir.join(RUN_MARKER);
    if let Some(chk) = latest {
        let mut splits = None;
        match fs::read(&marker) {
            Ok(bytes) => {
                let recorded: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{} is corrupt: {e}", marker.display()))?;
                splits = recorded["splits"]
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok());
                let now = run_identity(cfg, splits);
                for (key, what) in [
                    ("input", "input"),
                    ("out", "output directory"),
                    ("jobs", "set of jobs"),
                    ("state", "state layout (an older build)"),
                ] {
                    if recorded[key] != now[key] {
                        return Err(format!(
                            "cannot resume: the checkpoints in {} are of a run with another \
                             {what} ({} there, {} now); resume with the same input, output \
                             directory and jobs, or start over without resuming",
                            dir.display(),
                            recorded[key],
                            now[key]
                        )
                        .into());
                    }
                }
            }
            // Checkpoints written by something else: nothing to compare with.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(annotate("cannot read", &marker, e).into()),
        }
        prepare_dirs(&cfg.out, &["summary"])?;
        return Ok(Prepared {
            restore: Some(chk),
            splits,
        });
    }
    // A fresh start (also a resume with nothing to resume from: no checkpoint completed, so
    // no output was committed either). The checkpoints go first: were the output cleared first
    // and the run killed before the checkpoints were, a resume would restore a checkpoint whose
    // output is gone.
    clear_checkpoints(dir)?;
    prepare_dirs(&cfg.out, &OUTPUT_DIRS)?;
    // `dir` exists: `start` created it to lock it, and only checkpoints in it were cleared.
    let tmp = dir.join(format!("{RUN_MARKER}.tmp"));
    fs::write(&tmp, serde_json::to_vec_pretty(&run_identity(cfg, None))?)
        .map_err(|e| annotate("cannot write", &tmp, e))?;
    fs::rename(&tmp, &marker).map_err(|e| annotate("cannot write", &marker, e))?;
    Ok(Prepared {
        restore: None,
        splits: None,
    })
}

/// Spreads standard input's lines over every worker: one worker reads it, and parsing and
/// validating, the most expensive step of a run, would otherwise stay there (files are read in
/// stripes instead, see [`file_stripes`]). Lines go by a hash of their bytes, so where a line
/// is parsed does not depend on timing, and each worker sees its share in input order (its
/// watermarks follow the input's time, as the reading worker's would).
fn spread(
    lines: Stream<Result<Line, BadLine>>,
    parallelism: usize,
) -> Stream<Result<Line, BadLine>> {
    if parallelism == 1 {
        return lines;
    }
    let hasher = sluice_engine::keys::FixedState::default();
    lines
        .key_by(move |l: &Result<Line, BadLine>| {
            let bytes = match l {
                Ok(line) => line.text.as_bytes(),
                Err(bad) => bad.line.as_bytes(),
            };
            hasher.hash_one(bytes)
        })
        .name("spread_lines")
        .into_stream()
        .map(|(_, line)| line)
        .name("spread_lines.values")
}

fn json_sink<T: serde::Serialize + Clone + Send + 'static>(
    stream: Stream<T>,
    out: &Path,
    dir: &str,
) {
    json_sink_with(stream, out, dir, SerdeJson);
}

/// [`json_sink`] with a line encoder of the output's own.
fn json_sink_with<T: Clone + Send + 'static, E: LineEncoder<T>>(
    stream: Stream<T>,
    out: &Path,
    dir: &str,
    encoder: E,
) {
    stream
        .sink(JsonLinesSink::with_encoder(out.join(dir), encoder))
        .name(&format!("sink.{dir}"));
}

/// Builds and starts every job.
///
/// # Errors
///
/// An invalid configuration ([`RunConfig::validate`], the generator's or the engine's) or an
/// output directory that cannot be written.
pub fn start(cfg: &RunConfig) -> Result<Running, BoxError> {
    cfg.validate()?;
    // Before anything in them is cleared or written.
    let mut locks = vec![lock_dir(&cfg.out, "output directory")?];
    if let Some(dir) = &cfg.checkpoint_dir {
        fs::create_dir_all(dir)
            .map_err(|e| annotate("cannot create checkpoint directory", dir, e))?;
        // Unless it is the output directory itself, locked already.
        if fs::canonicalize(dir)? != fs::canonicalize(&cfg.out)? {
            locks.push(lock_dir(dir, "checkpoint directory")?);
        }
    }
    let mut config = Config::default().parallelism(cfg.parallelism);
    let mut recorded_splits = None;
    match &cfg.checkpoint_dir {
        None if cfg.resume => {
            return Err("resuming needs the checkpoint directory of the earlier run".into())
        }
        None => prepare_output(&cfg.out)?,
        Some(_) if cfg.resume && matches!(cfg.input, Input::Stdin) => {
            return Err("cannot resume reading standard input: it cannot be read again".into())
        }
        Some(dir) => {
            config = config
                .checkpoint_dir(dir)
                .checkpoint_every(cfg.checkpoint_every);
            let prepared = prepare_checkpointed(cfg, dir)?;
            if prepared.restore.is_some() {
                // The newest readable one: should the newest be corrupt, the engine falls back to
                // the one before it and the sinks roll back what the newer one committed.
                config = config.restore(RestoreFrom::Latest);
                recorded_splits = prepared.splits;
            }
        }
    }
    let env = StreamEnv::new(config);
    let mut ingest = IngestConfig {
        validate: ValidateConfig {
            validation: cfg.validation,
            max_line_bytes: cfg.max_line_bytes,
            source: "input".into(),
            inputs: Vec::new(),
            clock: cfg.clock.clone(),
        },
        event_time: cfg.event_time,
        dedup: cfg.dedup,
    };
    let Ingested {
        events,
        dead_letters,
        duplicates,
    } = match &cfg.input {
        Input::Generator(g) => {
            let mut g = *g;
            // One sub-city per worker unless asked otherwise, or as many as the run resumed.
            g.splits = generator_splits(cfg, &g, recorded_splits);
            ingest.validate.source = "generator".into();
            ingest_generator(&env, CityGenerator::new(g)?, &ingest)
        }
        Input::Files(paths) => {
            let stripes = file_stripes(cfg, paths.len(), recorded_splits);
            ingest_files(&env, paths, stripes, &ingest)
        }
        Input::Stdin => {
            ingest.validate.source = "-".into();
            let lines = env.source(LinesSource::stdin().max_line_bytes(cfg.max_line_bytes));
            ingest_lines(spread(lines, cfg.parallelism), &ingest)
        }
    };
    let out = &cfg.out;
    // Counted per reason by the engine's counters, which are checkpointed with the output.
    dead_letters
        .sink(CountingSink::new(
            JsonLinesSink::new(out.join("dead-letters")),
            Reason::ALL.iter().map(|r| r.as_str()),
            |d: &DeadLetter| Reason::ALL.iter().position(|r| *r == d.reason).unwrap_or(0),
        ))
        .name(DEAD_LETTER_SINK);
    json_sink(duplicates.map(|e| json_value(&e)), out, "duplicates");

    let progress = Arc::new(Progress {
        watermark: AtomicI64::new(i64::MIN),
    });
    let on = |job: Job| cfg.jobs.contains(&job);
    if on(Job::Backup) {
        events
            .clone()
            .sink(BackupSink::new(out.join("backup")).with_watermark_gauge(progress.clone()))
            .name("sink.backup");
    }
    // One exchange by driver for every job that keys by driver.
    let by_driver = [Job::Surge, Job::Trips, Job::Shifts, Job::Live]
        .into_iter()
        .any(on)
        .then(|| events_by_driver(events.clone()));
    if let (true, Some(by_driver)) = (on(Job::Surge), &by_driver) {
        let surge_out = surge_with(events.clone(), by_driver.clone(), &cfg.surge);
        json_sink(surge_out.results, out, "surge");
        json_sink(surge_out.late.map(|e| json_value(&e)), out, "surge-late");
    }
    if let (true, Some(by_driver)) = (on(Job::Trips), &by_driver) {
        let trips = trip_summaries_with(events.clone(), by_driver.clone(), &cfg.trips);
        json_sink(trips.summaries, out, "trips");
        json_sink(trips.anomalies, out, "trip-anomalies");
    }
    if let (true, Some(by_driver)) = (on(Job::Shifts), &by_driver) {
        let shifts = driver_shifts_with(by_driver.clone(), &cfg.shifts);
        json_sink(shifts.shifts, out, "shifts");
        json_sink(shifts.late.map(|e| json_value(&e)), out, "shifts-late");
    }
    if let (true, Some(by_driver)) = (on(Job::Live), &by_driver) {
        let live = live_state_with(events.clone(), by_driver.clone(), &cfg.live);
        json_sink_with(live.drivers, out, "live-drivers", DriverStateJson);
        json_sink(live.zones, out, "live-zones");
        json_sink(live.late.map(|e| json_value(&e)), out, "live-late");
    }

    let started = Instant::now();
    let handle = env.start()?;
    Ok(Running {
        handle,
        progress,
        started,
        pausable: cfg.checkpoint_dir.is_some() && !cfg.input_is_stdin(),
        _locks: locks,
        paused: Arc::new(OnceLock::new()),
    })
}

/// Runs every job to the end of the input.
///
/// # Errors
///
/// See [`start`] and [`Running::finish`].
pub fn run(cfg: &RunConfig) -> Result<Report, BoxError> {
    Ok(start(cfg)?.finish()?)
}

/// An event as a JSON value (for the rare side streams: duplicates and late events).
fn json_value(e: &RideEvent) -> serde_json::Value {
    serde_json::from_str(&e.to_json()).unwrap_or(serde_json::Value::Null)
}

/// Parses durations like `90s`, `5m`, `1h`, `250ms`, `1h30m`, or a bare number of seconds.
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(|| format!("`{s}`: missing unit (ms, s, m, h, d)"))?;
        if digits == 0 {
            return Err(format!("`{s}`: expected a number before the unit"));
        }
        let n: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}`: bad number `{}`", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let ms = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m, h, d)")),
        };
        total += Duration::from_secs_f64(n * ms / 1000.0);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_the_usual_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_latest_checkpoint_is_the_newest_complete_one() {
        let dir = std::env::temp_dir().join(format!("ridehail-latest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(latest_checkpoint(&dir).unwrap(), None);
        for (name, complete) in [
            ("chk-0000000002", true),
            ("chk-0000000010", true),
            ("chk-0000000011", false),
            ("savepoint-0000000012", true),
        ] {
            fs::create_dir_all(dir.join(name)).unwrap();
            if complete {
                fs::write(dir.join(name).join("_metadata"), b"").unwrap();
            }
        }
        assert_eq!(
            latest_checkpoint(&dir).unwrap(),
            Some(dir.join("chk-0000000010"))
        );
        clear_checkpoints(&dir).unwrap();
        assert_eq!(latest_checkpoint(&dir).unwrap(), None);
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["savepoint-0000000012"]);
        let _ = fs::remove_dir_all(&dir);
    }
}
