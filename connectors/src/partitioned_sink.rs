//! JSON Lines partitioned by event hour: [`PartitionedJsonLinesSink`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use hashbrown::hash_map::Entry;
use serde::Serialize;
use sluice_engine::keys::{fast_map, fast_set, FastMap, FastSet};
use sluice_engine::sink::{Sink, SinkContext, SinkWriter};
use sluice_engine::time::NO_TIMESTAMP;
use sluice_engine::{BoxError, Record, Timestamp};

use crate::txn_files::{at_path, encode_txn, run_token, TxnDir, TxnFile};

const HOUR_MS: i64 = 3_600_000;

/// A run of encoded lines is written out once it is this long.
const RUN_BYTES: usize = 1 << 20;
const WRITE_BUFFER: usize = 64 * 1024;
/// The partition of records without an event timestamp.
pub const NO_TIMESTAMP_DIR: &str = "no-timestamp";

/// Writes every value as one line of JSON under `dir/year=YYYY/month=MM/day=DD/hour=HH/`, by
/// the record's event time (UTC): the layout of Hive-style partitioned tables. Records without
/// a timestamp go to `dir/no-timestamp/`.
///
/// Each worker writes its own file per hour. A file stays open until the watermark passes the
/// end of its hour; a late record for a closed hour opens it again, so nothing is dropped.
///
/// Without checkpointing the files are `part-{worker}.jsonl`. Under checkpointing the sink is
/// exactly-once with the protocol of [`JsonLinesSink`](crate::JsonLinesSink)
/// ([`txn_files`](crate::txn_files)): hidden in-progress files per hour, pending on each
/// barrier, committed as `part-{worker}-{run}-{seq}-c{checkpoint}.jsonl` when the checkpoint
/// completes.
///
/// # Examples
///
/// ```
/// use sluice_connectors::{PartitionedJsonLinesSink, VecSource};
/// use sluice_engine::prelude::*;
///
/// let dir = std::env::temp_dir().join(format!("sluice-partitioned-doc-{}", std::process::id()));
/// let env = StreamEnv::new(Config::default());
/// // 2026-01-05T08:30:00Z and 09:10:00Z
/// let events = vec![(1_767_601_800_000_i64, "a"), (1_767_604_200_000, "b")];
/// env.source(VecSource::new(events))
///     .with_watermarks(Watermarks::monotonous().timestamps(|e: &(i64, &str)| e.0))
///     .sink(PartitionedJsonLinesSink::new(&dir));
/// env.execute()?;
/// let hour = dir.join("year=2026/month=01/day=05/hour=09/part-0.jsonl");
/// assert_eq!(std::fs::read_to_string(hour)?, "[1767604200000,\"b\"]\n");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PartitionedJsonLinesSink<T, E = SerdeJson> {
    dir: PathBuf,
    encoder: Arc<E>,
    _t: PhantomData<fn(T)>,
}

/// How a value becomes one line of output (without the newline). Statically dispatched: a
/// writer calls it once per record.
pub trait LineEncoder<T>: Send + Sync + 'static {
    /// Appends `value`'s line to `line`.
    ///
    /// # Errors
    ///
    /// A value that cannot be encoded; the job fails, naming the sink.
    fn encode(&self, value: &T, line: &mut Vec<u8>) -> Result<(), BoxError>;
}

/// The default encoder: `serde_json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SerdeJson;

impl<T: Serialize> LineEncoder<T> for SerdeJson {
    #[inline]
    fn encode(&self, value: &T, line: &mut Vec<u8>) -> Result<(), BoxError> {
        serde_json::to_writer(line, value)
            .map_err(|e| format!("cannot serialize a record: {e}").into())
    }
}

impl<T, E> fmt::Debug for PartitionedJsonLinesSink<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedJsonLinesSink")
            .field("dir", &self.dir)
            .finish()
    }
}

impl<T: Serialize + 'static> PartitionedJsonLinesSink<T> {
    /// A sink writing under `dir`, one `serde_json` line per value.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_encoder(dir, SerdeJson)
    }
}

impl<T: 'static, E: LineEncoder<T>> PartitionedJsonLinesSink<T, E> {
    /// A sink writing under `dir`, encoding each value with `encoder` (a hand-written JSON
    /// writer for a hot type, say).
    pub fn with_encoder(dir: impl Into<PathBuf>, encoder: E) -> Self {
        Self {
            dir: dir.into(),
            encoder: Arc::new(encoder),
            _t: PhantomData,
        }
    }
}

/// The partition directory of an hour (start in ms), relative to the sink's directory.
pub fn hour_partition(hour_start: Timestamp) -> String {
    if hour_start == NO_TIMESTAMP {
        return NO_TIMESTAMP_DIR.to_string();
    }
    let secs = hour_start.div_euclid(1_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let h = secs.rem_euclid(86_400) / 3_600;
    format!("year={y:04}/month={m:02}/day={d:02}/hour={h:02}")
}

/// The proleptic Gregorian date `(year, month, day)` of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm; any `i64` day count within about ±2.5e16 years).
#[inline]
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn hour_of(ts: Timestamp) -> Timestamp {
    if ts == NO_TIMESTAMP {
        NO_TIMESTAMP
    } else {
        ts.div_euclid(HOUR_MS) * HOUR_MS
    }
}

impl<T: 'static, E: LineEncoder<T>> Sink<T> for PartitionedJsonLinesSink<T, E> {
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| at_path(e, "cannot create output directory", &self.dir))?;
        let files = if cx.checkpointing {
            Files::Txn {
                prefix: format!("part-{}-{}", cx.worker, run_token()),
                seq: 0,
                open: fast_map(),
                closed: Vec::new(),
            }
        } else {
            Files::Plain {
                worker: cx.worker,
                open: fast_map(),
                created: fast_set(),
            }
        };
        Ok(Box::new(PartitionedWriter {
            encoder: self.encoder.clone(),
            dir: self.dir.clone(),
            files,
            buf: Vec::new(),
            cached: None,
        }))
    }

    fn commit(&self, txn: &[u8]) -> Result<(), BoxError> {
        TxnDir::new(&self.dir).commit(txn)
    }

    fn recover(&self, restored: Option<u64>, txns: &[Vec<u8>]) -> Result<(), BoxError> {
        TxnDir::new(&self.dir).recover(restored, txns)
    }
}

enum Files {
    /// Without checkpointing: `part-{worker}.jsonl` per hour, truncated when first opened by
    /// this writer, appended to when reopened.
    Plain {
        worker: usize,
        open: FastMap<Timestamp, BufWriter<File>>,
        created: FastSet<Timestamp>,
    },
    /// Under checkpointing.
    Txn {
        prefix: String,
        seq: u64,
        open: FastMap<Timestamp, TxnFile>,
        closed: Vec<TxnFile>,
    },
}

struct PartitionedWriter<E> {
    encoder: Arc<E>,
    dir: PathBuf,
    files: Files,
    /// Encoded lines waiting to be written (one run of an hour).
    buf: Vec<u8>,
    /// The hour of the last record (most records of a batch share it).
    cached: Option<Timestamp>,
}

impl<E> PartitionedWriter<E> {
    /// Appends `self.buf` (whole lines) to the file of `hour`, and empties it.
    fn write_buf(&mut self, hour: Timestamp) -> Result<(), BoxError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let rel = || hour_partition(hour);
        match &mut self.files {
            Files::Plain {
                worker,
                open,
                created,
            } => {
                let out = match open.entry(hour) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        let dir = self.dir.join(rel());
                        fs::create_dir_all(&dir).map_err(|e| at_path(e, "cannot create", &dir))?;
                        let path = dir.join(format!("part-{worker}.jsonl"));
                        let fresh = created.insert(hour);
                        let file = OpenOptions::new()
                            .create(true)
                            .write(true)
                            .truncate(fresh)
                            .append(!fresh)
                            .open(&path)
                            .map_err(|e| at_path(e, "cannot open", &path))?;
                        v.insert(BufWriter::with_capacity(WRITE_BUFFER, file))
                    }
                };
                out.write_all(&self.buf)
                    .map_err(|e| at_path(e, "cannot write under", &self.dir))?;
            }
            Files::Txn {
                prefix, seq, open, ..
            } => {
                let file = match open.entry(hour) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        let base = format!("{prefix}-{seq:06}");
                        *seq += 1;
                        v.insert(TxnFile::create(&self.dir, &rel(), base)?)
                    }
                };
                file.write_all(&self.buf)?;
            }
        }
        self.buf.clear();
        Ok(())
    }
}

impl<T, E: LineEncoder<T>> SinkWriter<T> for PartitionedWriter<E> {
    /// Encodes each run of records of one hour into one buffer, written to the hour's file
    /// at once (or every [`RUN_BYTES`]): one file lookup and one copy per run (most of a batch
    /// is one run), not per line.
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        // Lines a batch that failed midway left behind are not written.
        self.buf.clear();
        let mut run = None;
        for record in batch.drain(..) {
            let hour = match self.cached {
                Some(h)
                    if record.timestamp != NO_TIMESTAMP
                        && (record.timestamp.wrapping_sub(h) as u64) < HOUR_MS as u64 =>
                {
                    h
                }
                _ => hour_of(record.timestamp),
            };
            self.cached = Some(hour);
            if let Some(r) = run.filter(|&r| r != hour) {
                self.write_buf(r)?;
            }
            run = Some(hour);
            self.encoder
                .encode(&record.value, &mut self.buf)
                .map_err(|e| format!("{e} (for {})", self.dir.display()))?;
            self.buf.push(b'\n');
            // Long lines: memory stays bounded, whatever the batch.
            if self.buf.len() >= RUN_BYTES {
                self.write_buf(hour)?;
            }
        }
        run.map_or(Ok(()), |hour| self.write_buf(hour))
    }

    fn watermark(&mut self, wm: Timestamp) -> Result<(), BoxError> {
        let passed = |h: &Timestamp| *h != NO_TIMESTAMP && h.saturating_add(HOUR_MS) <= wm;
        match &mut self.files {
            Files::Plain { open, .. } => {
                let done: Vec<Timestamp> = open.keys().copied().filter(passed).collect();
                for h in done {
                    if let Some(mut f) = open.remove(&h) {
                        f.flush()
                            .map_err(|e| at_path(e, "cannot write under", &self.dir))?;
                    }
                }
            }
            Files::Txn { open, closed, .. } => {
                let done: Vec<Timestamp> = open.keys().copied().filter(passed).collect();
                for h in done {
                    if let Some(mut f) = open.remove(&h) {
                        // Its hour is over: on to the disk now rather than at the pre-commit.
                        f.start_writeback()?;
                        closed.push(f);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        if let Files::Plain { open, .. } = &mut self.files {
            for (_, mut f) in open.drain() {
                f.flush()
                    .map_err(|e| at_path(e, "cannot write under", &self.dir))?;
            }
        }
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        let Files::Txn { open, closed, .. } = &mut self.files else {
            return Ok(None);
        };
        closed.extend(open.drain().map(|(_, f)| f));
        if closed.is_empty() {
            return Ok(None);
        }
        let mut names = Vec::with_capacity(closed.len());
        for f in closed.drain(..) {
            names.push(f.pre_commit(checkpoint)?);
        }
        Ok(Some(encode_txn(names.iter().map(String::as_str))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_map_to_their_utc_partition() {
        // 2026-01-05T08:30:00Z
        assert_eq!(
            hour_partition(hour_of(1_767_601_800_000)),
            "year=2026/month=01/day=05/hour=08"
        );
        // Leap day, and the last hour of a year.
        assert_eq!(
            hour_partition(hour_of(1_709_164_800_000)),
            "year=2024/month=02/day=29/hour=00"
        );
        assert_eq!(
            hour_partition(hour_of(1_735_689_599_999)),
            "year=2024/month=12/day=31/hour=23"
        );
        assert_eq!(hour_partition(hour_of(NO_TIMESTAMP)), NO_TIMESTAMP_DIR);
        assert_eq!(
            hour_partition(hour_of(-1)),
            "year=1969/month=12/day=31/hour=23"
        );
    }

    /// Every committed line under `root`, with its directory relative to `root`, sorted.
    fn lines_under(root: &std::path::Path) -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<(String, String)>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    let sub = if rel.is_empty() {
                        name
                    } else {
                        format!("{rel}/{name}")
                    };
                    walk(&e.path(), &sub, out);
                } else if !name.starts_with('.') {
                    for l in fs::read_to_string(e.path()).unwrap().lines() {
                        out.push((rel.to_string(), l.to_string()));
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(root, "", &mut out);
        out.sort();
        out
    }

    const H8: i64 = 1_767_600_000_000; // 2026-01-05T08:00:00Z

    #[test]
    fn late_records_reopen_their_hour_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let sink = PartitionedJsonLinesSink::<u32>::new(dir.path());
        let mut w = sink.open(&SinkContext::new(0, 1)).unwrap();
        w.write(&mut vec![
            Record::new(H8 + 1, 1),
            Record::new(H8 + HOUR_MS, 2),
        ])
        .unwrap();
        w.watermark(H8 + HOUR_MS + 10).unwrap(); // hour 08 closes
        w.write(&mut vec![
            Record::new(H8 + 5, 3),
            Record::new(NO_TIMESTAMP, 4),
        ])
        .unwrap();
        w.finish().unwrap();
        assert_eq!(
            lines_under(dir.path()),
            [
                ("no-timestamp".to_string(), "4".to_string()),
                ("year=2026/month=01/day=05/hour=08".into(), "1".into()),
                ("year=2026/month=01/day=05/hour=08".into(), "3".into()),
                ("year=2026/month=01/day=05/hour=09".into(), "2".into()),
            ]
        );
    }

    /// A batch is written in runs of one hour: runs that switch back and forth, and a run
    /// longer than `RUN_BYTES`, each line in its hour's file.
    #[test]
    fn runs_of_hours_in_a_batch_go_to_their_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let sink = PartitionedJsonLinesSink::<String>::new(dir.path());
        let mut w = sink.open(&SinkContext::new(0, 1)).unwrap();
        let long = |i: usize| format!("{i}{}", "x".repeat(RUN_BYTES / 3));
        let mut batch: Vec<Record<String>> = [H8, H8 + 1, H8 + HOUR_MS, H8 + 2, NO_TIMESTAMP]
            .iter()
            .enumerate()
            .map(|(i, &t)| Record::new(t, format!("short{i}")))
            .collect();
        batch.extend((0..7).map(|i| Record::new(H8 + HOUR_MS + 5, long(i))));
        batch.push(Record::new(H8 + 3, "last".to_string()));
        w.write(&mut batch).unwrap();
        assert!(batch.is_empty());
        w.finish().unwrap();
        let (h8, h9) = (
            "year=2026/month=01/day=05/hour=08",
            "year=2026/month=01/day=05/hour=09",
        );
        let mut want: Vec<(String, String)> = [
            ("no-timestamp", "\"short4\"".to_string()),
            (h8, "\"short0\"".into()),
            (h8, "\"short1\"".into()),
            (h8, "\"short3\"".into()),
            (h8, "\"last\"".into()),
            (h9, "\"short2\"".into()),
        ]
        .into_iter()
        .map(|(d, l)| (d.to_string(), l))
        .chain((0..7).map(|i| (h9.to_string(), format!("\"{}\"", long(i)))))
        .collect();
        want.sort();
        assert_eq!(lines_under(dir.path()), want);
    }

    #[test]
    fn under_checkpointing_hours_are_committed_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let sink = PartitionedJsonLinesSink::<u32>::new(dir.path());
        let mut cx = SinkContext::new(1, 2);
        cx.checkpointing = true;
        let mut w = sink.open(&cx).unwrap();
        w.write(&mut vec![Record::new(H8, 1), Record::new(H8 + HOUR_MS, 2)])
            .unwrap();
        let first = w.pre_commit(1).unwrap().unwrap();
        assert!(
            lines_under(dir.path()).is_empty(),
            "nothing visible before the commit"
        );
        sink.commit(&first).unwrap();
        w.write(&mut vec![Record::new(H8 + HOUR_MS + 1, 3)])
            .unwrap();
        let _second = w.pre_commit(2).unwrap().unwrap();
        w.write(&mut vec![Record::new(H8 + 2, 4)]).unwrap();
        drop(w); // killed: checkpoint 2 never completed, one file still in progress
        sink.recover(Some(1), &[first]).unwrap();
        assert_eq!(
            lines_under(dir.path()),
            [
                (
                    "year=2026/month=01/day=05/hour=08".to_string(),
                    "1".to_string()
                ),
                ("year=2026/month=01/day=05/hour=09".into(), "2".into()),
            ]
        );
    }
}
