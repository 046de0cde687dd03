//! Job configuration.

use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::{CheckpointSettings, RestoreFrom};
use crate::error::JobError;
use crate::time::{Clock, SystemClock};

/// How a job runs: worker threads, batching, key groups, buffering and the clock.
///
/// Every setting has a sane default; [`Config::validate`] is called by
/// [`StreamEnv::new`](crate::StreamEnv::new)'s `execute` and rejects nonsense with a clear error.
///
/// # Examples
///
/// ```
/// use sluice_engine::Config;
/// let config = Config::default().parallelism(2).batch_size(512);
/// assert_eq!(config.get_parallelism(), 2);
/// ```
#[derive(Clone)]
pub struct Config {
    pub(crate) parallelism: usize,
    pub(crate) batch_size: usize,
    pub(crate) max_parallelism: usize,
    pub(crate) channel_capacity: usize,
    pub(crate) max_in_flight: Option<usize>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) idle_wait: Duration,
    pub(crate) checkpoints: Option<CheckpointSettings>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            parallelism: 1,
            batch_size: 1024,
            max_parallelism: 128,
            channel_capacity: 16,
            max_in_flight: None,
            clock: Arc::new(SystemClock),
            idle_wait: Duration::from_millis(1),
            checkpoints: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("parallelism", &self.parallelism)
            .field("batch_size", &self.batch_size)
            .field("max_parallelism", &self.max_parallelism)
            .field("channel_capacity", &self.channel_capacity)
            .field("max_in_flight", &self.get_max_in_flight())
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Turns checkpointing on, writing checkpoints under `dir` (created if missing). Without
    /// [`checkpoint_every`](Self::checkpoint_every) checkpoints are taken only on request
    /// ([`JobHandle::savepoint`](crate::JobHandle::savepoint)) and when the job finishes, which
    /// commits the output of exactly-once sinks.
    pub fn checkpoint_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        let dir = dir.into();
        match &mut self.checkpoints {
            Some(c) => c.dir = dir,
            None => {
                self.checkpoints = Some(CheckpointSettings {
                    dir,
                    interval: None,
                    retain: 3,
                    restore: None,
                })
            }
        }
        self
    }

    /// Takes a checkpoint every `interval` (requires [`checkpoint_dir`](Self::checkpoint_dir)).
    pub fn checkpoint_every(mut self, interval: Duration) -> Self {
        self.checkpoint_settings().interval = Some(interval);
        self
    }

    /// How many complete checkpoints to keep (default 3, at least 1). Savepoints are never
    /// deleted.
    pub fn retain_checkpoints(mut self, count: usize) -> Self {
        self.checkpoint_settings().retain = count.max(1);
        self
    }

    /// Starts from a checkpoint instead of from scratch (requires
    /// [`checkpoint_dir`](Self::checkpoint_dir)).
    pub fn restore(mut self, from: RestoreFrom) -> Self {
        self.checkpoint_settings().restore = Some(from);
        self
    }

    fn checkpoint_settings(&mut self) -> &mut CheckpointSettings {
        self.checkpoints.get_or_insert_with(|| CheckpointSettings {
            dir: std::path::PathBuf::new(),
            interval: None,
            retain: 3,
            restore: None,
        })
    }

    /// Number of worker threads (default 1). Each runs one instance of every operator.
    pub fn parallelism(mut self, workers: usize) -> Self {
        self.parallelism = workers;
        self
    }

    /// Records per batch on every edge (default 1024). Sources read at most this many records
    /// per poll, and exchanges ship batches of at most this size.
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch_size = records;
        self
    }

    /// Number of key groups (default 128): the unit of keyed state redistribution. A checkpoint
    /// can be restored at any parallelism up to this number. Must be `>= parallelism`.
    pub fn max_parallelism(mut self, key_groups: usize) -> Self {
        self.max_parallelism = key_groups;
        self
    }

    /// Capacity of each exchange channel, in batches (default 16).
    pub fn channel_capacity(mut self, batches: usize) -> Self {
        self.channel_capacity = batches;
        self
    }

    /// The most records that may be in flight on one exchange (sent, not yet received) before
    /// sources pause. Default: `channel_capacity * batch_size * parallelism`.
    pub fn max_in_flight(mut self, records: usize) -> Self {
        self.max_in_flight = Some(records);
        self
    }

    /// The processing-time clock (default: the system clock). Inject a
    /// [`ManualClock`](crate::time::ManualClock) in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The processing-time clock, shared with other parts of the program (a validation step
    /// that reads the same clock, say).
    pub fn clock_arc(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The configured clock.
    pub fn get_clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// How long an idle worker parks before it re-checks live sources and processing-time
    /// timers (default 1 ms). Workers are woken early when data arrives.
    pub fn idle_wait(mut self, d: Duration) -> Self {
        self.idle_wait = d;
        self
    }

    /// The configured number of workers.
    pub fn get_parallelism(&self) -> usize {
        self.parallelism
    }

    /// The configured batch size.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }

    /// The configured number of key groups.
    pub fn get_max_parallelism(&self) -> usize {
        self.max_parallelism
    }

    /// The effective in-flight bound per exchange, in records.
    pub fn get_max_in_flight(&self) -> usize {
        self.max_in_flight
            .unwrap_or(self.channel_capacity * self.batch_size * self.parallelism)
    }

    /// Checks that the settings make sense together.
    ///
    /// # Errors
    ///
    /// [`JobError::Config`] naming the offending setting.
    pub fn validate(&self) -> Result<(), JobError> {
        let bad = |m: String| Err(JobError::Config(m));
        if self.parallelism == 0 {
            return bad("parallelism must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if self.max_parallelism < self.parallelism {
            return bad(format!(
                "max_parallelism ({}) must be >= parallelism ({})",
                self.max_parallelism, self.parallelism
            ));
        }
        if self.max_parallelism > 1 << 15 {
            return bad(format!(
                "max_parallelism ({}) must be <= 32768",
                self.max_parallelism
            ));
        }
        if self.channel_capacity == 0 {
            return bad("channel_capacity must be at least 1".into());
        }
        if self.get_max_in_flight() == 0 {
            return bad("max_in_flight must be at least 1".into());
        }
        if let Some(c) = &self.checkpoints {
            if c.dir.as_os_str().is_empty() {
                return bad(
                    "checkpoint_every, retain_checkpoints and restore need checkpoint_dir".into(),
                );
            }
            if c.interval.is_some_and(|d| d.is_zero()) {
                return bad("checkpoint_every must be longer than zero".into());
            }
        }
        Ok(())
    }
}
