//! The raw-event backup: valid events as JSON Lines in the reference's hourly-partitioned layout,
//! `DIR/year=YYYY/month=MM/day=DD/hour=HH/part-W.jsonl`, by event time (UTC).
//!
//! Each worker writes its own part file per hour. A file stays open until the watermark passes
//! the end of its hour, then it is flushed and closed; an event that arrives for a closed hour
//! (late data) reopens the file in append mode, so nothing is dropped.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sluice_engine::sink::{Sink, SinkContext, SinkWriter};
use sluice_engine::{BoxError, Record, Timestamp};

use crate::event::RideEvent;
use crate::ridehail::Progress;
use crate::timestamp::utc_parts;

const HOUR_MS: i64 = 3_600_000;

/// Writes [`RideEvent`]s in the hourly-partitioned layout under a directory.
#[derive(Debug, Clone)]
pub struct BackupSink {
    dir: PathBuf,
    gauge: Option<Arc<Progress>>,
}

impl BackupSink {
    /// A sink writing under `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
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
        let (y, m, d, h) = utc_parts(ts);
        dir.join(format!("year={y:04}"))
            .join(format!("month={m:02}"))
            .join(format!("day={d:02}"))
            .join(format!("hour={h:02}"))
    }
}

impl Sink<RideEvent> for BackupSink {
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<RideEvent>>, BoxError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create backup directory {}: {e}", self.dir.display()))?;
        Ok(Box::new(BackupWriter {
            dir: self.dir.clone(),
            worker: cx.worker,
            open: HashMap::new(),
            line: Vec::with_capacity(512),
            gauge: self.gauge.clone(),
        }))
    }
}

struct BackupWriter {
    dir: PathBuf,
    worker: usize,
    /// Open part files by hour start.
    open: HashMap<i64, BufWriter<File>>,
    line: Vec<u8>,
    gauge: Option<Arc<Progress>>,
}

impl BackupWriter {
    fn file(&mut self, hour: i64) -> Result<&mut BufWriter<File>, BoxError> {
        if !self.open.contains_key(&hour) {
            let dir = BackupSink::hour_dir(&self.dir, hour);
            fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let path = dir.join(format!("part-{}.jsonl", self.worker));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            self.open
                .insert(hour, BufWriter::with_capacity(64 * 1024, f));
        }
        Ok(self.open.get_mut(&hour).expect("just opened"))
    }
}

impl SinkWriter<RideEvent> for BackupWriter {
    fn write(&mut self, batch: &mut Vec<Record<RideEvent>>) -> Result<(), BoxError> {
        for r in batch.drain(..) {
            let hour = r.value.timestamp.div_euclid(HOUR_MS) * HOUR_MS;
            let mut line = std::mem::take(&mut self.line);
            line.clear();
            r.value.write_json(&mut line);
            line.push(b'\n');
            let res = self.file(hour).and_then(|f| {
                f.write_all(&line)
                    .map_err(|e| BoxError::from(format!("cannot write backup: {e}")))
            });
            self.line = line;
            res?;
        }
        Ok(())
    }

    fn watermark(&mut self, wm: Timestamp) -> Result<(), BoxError> {
        if let Some(g) = &self.gauge {
            g.watermark.fetch_max(wm, Ordering::Relaxed);
        }
        let done: Vec<i64> = self
            .open
            .keys()
            .copied()
            .filter(|h| h.saturating_add(HOUR_MS) <= wm)
            .collect();
        for h in done {
            if let Some(mut f) = self.open.remove(&h) {
                f.flush().map_err(|e| format!("cannot flush backup: {e}"))?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        for (_, mut f) in self.open.drain() {
            f.flush().map_err(|e| format!("cannot flush backup: {e}"))?;
        }
        Ok(())
    }
}
