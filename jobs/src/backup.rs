//! The raw-event backup: valid events as JSON Lines in the reference's hourly-partitioned layout,
//! `DIR/year=YYYY/month=MM/day=DD/hour=HH/part-W.jsonl`, by event time (UTC). An event read as
//! text (a file, standard input) is stored as the line it came in (without surrounding
//! whitespace): fields the jobs do not know are kept, as in the reference's backup of the
//! parsed payload. A generated event is written in the wire format.
//!
//! Each worker writes its own part file per hour. A file stays open until the watermark passes
//! the end of its hour, then it is flushed and closed; an event that arrives for a closed hour
//! (late data) reopens the file in append mode, so nothing is dropped.
//!
//! # Exactly once, under checkpointing
//!
//! The sink is a [`PartitionedJsonLinesSink`] that writes each event with [`EventJson`]. In a job with checkpoints it follows the same two-phase commit as
//! [`JsonLinesSink`](sluice_connectors::JsonLinesSink), per hour directory: a worker writes
//! hidden in-progress files `.part-{worker}-{run}-{seq}.inprogress`; on a checkpoint
//! barrier each is flushed, fsynced and renamed to `….pending` (the directory fsynced too), and
//! the transaction lists their paths relative to the backup directory; when the checkpoint is
//! complete they are renamed to `part-{worker}-{run}-{seq}-c{checkpoint}.jsonl`. On restore the
//! restored checkpoint's files are committed, every other in-progress or pending file under the
//! tree is deleted, and files committed by newer checkpoints are rolled back
//! ([`txn_files`](sluice_connectors::txn_files) has the protocol). `{run}` is unique per job
//! run, so a restored run never overwrites a committed file, and `{seq}` per file, so an hour receives a new file after every checkpoint that
//! covered it. Readers should ignore names starting with `.`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sluice_connectors::{hour_partition, LineEncoder, PartitionedJsonLinesSink};
use sluice_engine::sink::{Sink, SinkContext, SinkWriter};
use sluice_engine::{BoxError, Record, Timestamp};

use crate::event::RideEvent;
use crate::ridehail::Progress;

const HOUR_MS: i64 = 3_600_000;

/// Writes [`RideEvent`]s in the hourly-partitioned layout under a directory: a
/// [`PartitionedJsonLinesSink`] with the events' own JSON writer, plus a watermark gauge.
#[derive(Debug, Clone)]
pub struct BackupSink {
    inner: Arc<PartitionedJsonLinesSink<RideEvent, EventJson>>,
    gauge: Option<Arc<Progress>>,
}

/// The backup's line encoder: an event read as text is stored as the line it was read from
/// ([`RideEventData::raw_line`](crate::event::RideEventData::raw_line)), unknown fields and
/// all, as a raw backup should; an event made as data (the generator's) is written in the wire
/// format by [`RideEventData::write_json`](crate::event::RideEventData::write_json).
#[derive(Debug, Clone, Copy)]
pub struct EventJson;

impl LineEncoder<RideEvent> for EventJson {
    #[inline]
    fn encode(&self, value: &RideEvent, line: &mut Vec<u8>) -> Result<(), BoxError> {
        match value.raw_line() {
            Some(raw) => line.extend_from_slice(raw.as_bytes()),
            None => value.write_json(line),
        }
        Ok(())
    }
}

impl BackupSink {
    /// A sink writing under `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(PartitionedJsonLinesSink::with_encoder(dir, EventJson)),
            gauge: None,
        }
    }

    /// Also records the watermark it reaches in `progress` (for a progress display).
    pub fn with_watermark_gauge(mut self, progress: Arc<Progress>) -> Self {
        self.gauge = Some(progress);
        self
    }

    /// The directory of the hour that holds `ts`.
    pub fn hour_dir(dir: &Path, ts: Timestamp) -> PathBuf {
        dir.join(hour_partition(ts.div_euclid(HOUR_MS) * HOUR_MS))
    }
}

impl Sink<RideEvent> for BackupSink {
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<RideEvent>>, BoxError> {
        let inner = self.inner.open(cx)?;
        Ok(match &self.gauge {
            None => inner,
            Some(g) => Box::new(Gauged {
                inner,
                gauge: g.clone(),
            }),
        })
    }

    fn commit(&self, txn: &[u8]) -> Result<(), BoxError> {
        self.inner.commit(txn)
    }

    fn recover(&self, restored: Option<u64>, txns: &[Vec<u8>]) -> Result<(), BoxError> {
        self.inner.recover(restored, txns)
    }
}

/// Passes everything on, recording the watermark in the progress gauge.
struct Gauged {
    inner: Box<dyn SinkWriter<RideEvent>>,
    gauge: Arc<Progress>,
}

impl SinkWriter<RideEvent> for Gauged {
    fn write(&mut self, batch: &mut Vec<Record<RideEvent>>) -> Result<(), BoxError> {
        self.inner.write(batch)
    }

    fn watermark(&mut self, wm: Timestamp) -> Result<(), BoxError> {
        self.gauge.watermark.fetch_max(wm, Ordering::Relaxed);
        self.inner.watermark(wm)
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.inner.finish()
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        self.inner.pre_commit(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::event::{parse_event, Validation};

    fn event(id: u32, time: &str) -> Record<RideEvent> {
        let line = format!(
            r#"{{"event_id":"e{id}","event_type":"DRIVER_OFFLINE","timestamp":"2026-01-05T{time}Z","driver_id":"d1"}}"#
        );
        let e = parse_event(&line, i64::MAX, &Validation::default()).unwrap();
        Record::new(e.timestamp, e)
    }

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ridehail-backup-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    /// Every file under `dir`, relative, with its line count.
    fn files(dir: &Path) -> Vec<(String, usize)> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, usize)>) {
            for e in fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    let n = fs::read_to_string(&p).unwrap().lines().count();
                    out.push((p.strip_prefix(root).unwrap().display().to_string(), n));
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    fn checkpointing(worker: usize) -> SinkContext {
        let mut cx = SinkContext::new(worker, 2);
        cx.checkpointing = true;
        cx
    }

    #[test]
    fn checkpointed_output_is_visible_only_once_committed() {
        let dir = temp("txn");
        let sink = BackupSink::new(&dir);
        sink.recover(None, &[]).unwrap();
        let mut w = sink.open(&checkpointing(1)).unwrap();
        w.write(&mut vec![event(1, "07:10:00"), event(2, "08:00:00")])
            .unwrap();
        // The watermark passes hour 07: its file is closed, but not visible.
        w.watermark(event(0, "08:00:01").timestamp).unwrap();
        // A late event for hour 07 goes to a new file.
        w.write(&mut vec![event(3, "07:59:00")]).unwrap();
        assert!(files(&dir).iter().all(|(f, _)| f.contains("/.part-1-")));
        let txn = w.pre_commit(1).unwrap().expect("something to commit");
        let names = std::str::from_utf8(&txn).unwrap();
        assert_eq!(names.lines().count(), 3, "{names}");
        assert!(files(&dir).iter().all(|(f, _)| f.ends_with(".pending")));
        sink.commit(&txn).unwrap();
        sink.commit(&txn).unwrap(); // idempotent
        let visible = files(&dir);
        assert_eq!(visible.len(), 3, "{visible:?}");
        for (f, n) in &visible {
            assert!(f.contains("/part-1-") && f.ends_with(".jsonl"), "{f}");
            assert!(!f.contains("/."), "{f}");
            assert_eq!(*n, 1);
        }
        assert_eq!(
            visible
                .iter()
                .filter(|(f, _)| f.contains("hour=07/"))
                .count(),
            2
        );
        // Nothing written since: nothing to commit.
        assert!(w.pre_commit(2).unwrap().is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn recover_commits_the_restored_transactions_and_drops_the_rest() {
        let dir = temp("recover");
        let sink = BackupSink::new(&dir);
        let mut w = sink.open(&checkpointing(0)).unwrap();
        w.write(&mut vec![event(1, "07:10:00")]).unwrap();
        let restored = w.pre_commit(1).unwrap().unwrap();
        // Pre-committed but not in the restored checkpoint, then in progress: both go.
        w.write(&mut vec![event(2, "09:10:00")]).unwrap();
        let _lost = w.pre_commit(2).unwrap().unwrap();
        w.write(&mut vec![event(3, "10:10:00")]).unwrap();
        w.finish().unwrap();
        drop(w);
        // A committed file of an earlier run stays.
        let kept = dir.join("year=2026/month=01/day=05/hour=06/part-0.jsonl");
        fs::create_dir_all(kept.parent().unwrap()).unwrap();
        fs::write(&kept, "{}\n").unwrap();

        sink.recover(Some(1), &[restored]).unwrap();
        let left = files(&dir);
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[0].0, "year=2026/month=01/day=05/hour=06/part-0.jsonl");
        assert!(left[1]
            .0
            .starts_with("year=2026/month=01/day=05/hour=07/part-0-"));
        // The hours that held only uncommitted files are gone.
        assert!(!dir.join("year=2026/month=01/day=05/hour=09").exists());
        assert!(!dir.join("year=2026/month=01/day=05/hour=10").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_checkpointing_the_layout_is_one_part_file_per_worker_and_hour() {
        let dir = temp("plain");
        let sink = BackupSink::new(&dir);
        let mut w = sink.open(&SinkContext::new(1, 2)).unwrap();
        w.write(&mut vec![event(1, "07:10:00")]).unwrap();
        w.watermark(event(0, "08:00:01").timestamp).unwrap();
        w.write(&mut vec![event(2, "07:59:00"), event(3, "08:01:00")])
            .unwrap();
        w.finish().unwrap();
        assert!(w.pre_commit(u64::MAX).unwrap().is_none());
        assert_eq!(
            files(&dir),
            [
                (
                    "year=2026/month=01/day=05/hour=07/part-1.jsonl".to_string(),
                    2
                ),
                (
                    "year=2026/month=01/day=05/hour=08/part-1.jsonl".to_string(),
                    1
                ),
            ]
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
