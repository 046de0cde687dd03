//! Checkpoints: consistent snapshots of a running job, taken with aligned barriers
//! (Chandy-Lamport, as in Flink), and exactly-once recovery from them.
//!
//! The coordinator triggers checkpoint `n`; each source instance records its split positions and
//! emits `Barrier(n)` into its output, in order with its records. An operator with several
//! inputs (a union, the receiving end of a `key_by`) *aligns*: an input that has delivered
//! `Barrier(n)` is held back until every live input has. Then each operator snapshots its state
//! (keyed state by key group, timers, window contents, watermark) and forwards the barrier;
//! sinks pre-commit what they wrote before it. Every operator instance reports, stateless ones
//! too: each report carries the instance's record counts as of the barrier, so the job's
//! metrics are part of the cut (see [`crate::metrics`]). When every operator instance has
//! reported, the coordinator writes the checkpoint (module `store`) and only then tells the
//! sinks to commit.
//!
//! An operator instance that has finished (its input ended) reports its final state once; that
//! report stands in for it in every later checkpoint, so checkpoints go on while parts of a
//! job are done, and the last one, taken when everything has finished, commits the final
//! output.
//!
//! Restore: keyed state is regrouped by key group, so a checkpoint taken at parallelism `P`
//! restores at any `P'` up to the number of key groups; sources reopen their splits at the
//! recorded positions; sinks commit what the checkpoint had pre-committed and discard anything
//! else left pending; each operator's counts start from the sum of its instances' in the
//! checkpoint. See `docs/guarantees.md`.

pub(crate) mod coordinator;
pub(crate) mod store;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys::worker_for_key_group;
use crate::metrics::Counts;

/// Where a job's state comes from when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreFrom {
    /// The newest complete checkpoint in the checkpoint directory; a fresh start if there is
    /// none. A corrupt or truncated checkpoint is reported on standard error and skipped for the
    /// one before it (exactly-once sinks then roll back what the skipped one had committed); if
    /// checkpoints exist but none is readable, the job refuses to start.
    Latest,
    /// A specific checkpoint or savepoint directory (`.../chk-0000000007`,
    /// `.../savepoint-0000000003`). It must be complete and intact.
    Path(PathBuf),
}

/// The complete regular checkpoints (those with metadata) under a checkpoint directory, newest
/// first, as `(id, directory)`. Whether each is intact is checked only when it is read.
///
/// # Errors
///
/// The directory cannot be listed (a missing directory has no checkpoints).
pub fn complete_checkpoints(dir: &std::path::Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    store::list(dir)
}

/// The id of a directory named like a regular checkpoint (`chk-<id>`), complete or not.
pub fn checkpoint_id(dir_name: &str) -> Option<u64> {
    store::checkpoint_id(dir_name)
}

/// Checkpoint settings of a [`Config`](crate::Config).
#[derive(Debug, Clone)]
pub(crate) struct CheckpointSettings {
    pub(crate) dir: PathBuf,
    pub(crate) interval: Option<Duration>,
    pub(crate) retain: usize,
    pub(crate) restore: Option<RestoreFrom>,
}

/// What a job restored from, and what it skipped on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreInfo {
    /// The checkpoint or savepoint restored, if any.
    pub restored: Option<PathBuf>,
    /// Its id.
    pub id: Option<u64>,
    /// Checkpoints that were newer but unreadable, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Whether the restored checkpoint was taken after the job had finished (nothing is left
    /// to do but commit its output).
    pub finished: bool,
}

/// One operator instance's part of a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct InstanceState {
    /// The instance had finished (its input had ended) when it reported.
    pub(crate) finished: bool,
    /// State that belongs to the instance as a whole (split positions, a watermark).
    #[serde(with = "serde_bytes")]
    pub(crate) operator: Vec<u8>,
    /// Keyed state, one blob per non-empty key group.
    #[serde(with = "blobs")]
    pub(crate) groups: Vec<(u32, Vec<u8>)>,
    /// A sink's pre-committed transaction, committed when the checkpoint completes.
    #[serde(with = "serde_bytes")]
    pub(crate) txn: Option<Vec<u8>>,
    /// The instance's record counts as of the barrier (see [`crate::metrics`]).
    pub(crate) counts: Counts,
}

impl InstanceState {
    /// Whether the instance saved anything to restore (state or a transaction).
    pub(crate) fn has_state(&self) -> bool {
        !self.operator.is_empty() || !self.groups.is_empty() || self.txn.is_some()
    }
}

/// A whole checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointData {
    pub(crate) id: u64,
    pub(crate) parallelism: usize,
    pub(crate) max_parallelism: usize,
    /// Operator names, by operator id: a restore matches operators to the job's by name.
    pub(crate) names: Vec<String>,
    /// `instances[op][worker]`.
    pub(crate) instances: Vec<Vec<InstanceState>>,
}

impl CheckpointData {
    pub(crate) fn is_finished(&self) -> bool {
        self.instances.iter().flatten().all(|i| i.finished)
    }

    /// What operator `op` on worker `worker` of `parallelism` restores from.
    pub(crate) fn view(&self, op: usize, worker: usize, parallelism: usize) -> Restored<'_> {
        Restored {
            data: self,
            op,
            worker,
            parallelism,
        }
    }
}

/// The part of a checkpoint one operator instance restores from.
#[derive(Clone, Copy)]
pub(crate) struct Restored<'a> {
    data: &'a CheckpointData,
    op: usize,
    worker: usize,
    parallelism: usize,
}

impl<'a> Restored<'a> {
    /// The instance-wide state of every instance of the operator in the checkpoint.
    pub(crate) fn operator_states(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.data.instances[self.op]
            .iter()
            .map(|i| i.operator.as_slice())
    }

    /// Whether the checkpoint was taken at the parallelism the job runs at now.
    pub(crate) fn same_parallelism(&self) -> bool {
        self.data.parallelism == self.parallelism
    }

    /// This worker's own instance-wide state, if the parallelism did not change.
    pub(crate) fn own_operator_state(&self) -> Option<&'a [u8]> {
        if !self.same_parallelism() {
            return None;
        }
        self.data.instances[self.op]
            .get(self.worker)
            .map(|i| i.operator.as_slice())
    }

    /// The keyed-state blobs of the key groups this instance now owns, from every old instance.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (maxp, p, me) = (self.data.max_parallelism, self.parallelism, self.worker);
        self.data.instances[self.op].iter().flat_map(move |i| {
            i.groups
                .iter()
                .filter(move |(g, _)| worker_for_key_group(*g as usize, maxp, p) == me)
                .map(|(_, b)| b.as_slice())
        })
    }
}

/// Splits keyed entries by key group: `out[g]` receives the entries whose key is in group `g`.
pub(crate) fn by_group<'a, K: crate::keys::Key, E>(
    max_parallelism: usize,
    entries: impl Iterator<Item = (&'a K, E)>,
) -> Vec<Vec<(&'a K, E)>> {
    let mut out: Vec<Vec<(&K, E)>> = (0..max_parallelism).map(|_| Vec::new()).collect();
    for (k, e) in entries {
        out[crate::keys::key_group(k, max_parallelism)].push((k, e));
    }
    out
}

/// Blobs are written as byte strings (one copy), not as sequences of bytes (a call per byte):
/// this halves the time to snapshot and restore large state.
mod blobs {
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    pub(crate) fn serialize<S: Serializer>(v: &[(u32, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|(g, b)| (g, Bytes::new(b))))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(u32, Vec<u8>)>, D::Error> {
        let v: Vec<(u32, ByteBuf)> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|(g, b)| (g, b.into_vec())).collect())
    }
}
