//! A sink that writes JSON Lines files into a directory, one file per worker: [`JsonLinesSink`].
//! Exactly-once under checkpointing (two-phase commit: in-progress, pending, committed files).
//!
//! The output reads back with [`JsonLinesSource`](crate::JsonLinesSource).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::partitioned_sink::{LineEncoder, SerdeJson};
use crate::txn_files::{at_path, encode_txn, run_token, TxnDir, TxnFile};
use sluice_engine::sink::{Sink, SinkContext, SinkWriter};
use sluice_engine::{BoxError, Record};

/// Write buffer per worker.
const WRITE_BUFFER: usize = 64 * 1024;

/// Writes every value as one line of JSON to `dir/part-{worker}.jsonl`; under checkpointing,
/// exactly once, to one committed file per worker and checkpoint.
///
/// # Exactly-once output
///
/// In a job with checkpointing ([`Config::checkpoint_dir`](sluice_engine::Config::checkpoint_dir))
/// each worker writes to a hidden in-progress file `.part-{worker}-{run}-{seq}.inprogress`.
/// On a checkpoint barrier the file is flushed, fsynced and renamed to `….pending` (pre-commit);
/// when the checkpoint is complete it is renamed to `part-{worker}-{run}-{seq}-c{id}.jsonl`
/// (commit). See [`txn_files`](crate::txn_files) for the protocol.
/// On restore, pending files the restored checkpoint covers are committed and every other
/// in-progress or pending file is deleted, so the visible `part-*.jsonl` files hold every output
/// record exactly once. `{run}` is unique per job run, so files of a restored run never collide
/// with committed files of an earlier one. Readers should ignore names starting with `.`.
///
/// The directory is created if it is missing. Each worker creates (or truncates) its own part
/// file, so workers never contend for a file; part files of an earlier run with more workers are
/// left alone. Writes are buffered and flushed at end of input; a value is serialized into a
/// reused buffer first, so a value that fails to serialize leaves no partial line behind.
///
/// # Errors
///
/// Opening fails if the directory cannot be created or the part file cannot be created (the
/// message names the path); a write or flush error, or a value the encoder cannot encode
/// (for `serde_json`, a map with non-string keys, say), fails the job. I/O errors keep their
/// [`io::ErrorKind`], so [`JobError::is_retryable`](sluice_engine::JobError::is_retryable)
/// can judge them.
///
/// # Examples
///
/// ```
/// use sluice_connectors::{JsonLinesSink, VecSource};
/// use sluice_engine::{Config, StreamEnv};
///
/// let dir = std::env::temp_dir().join(format!("sluice-json-sink-doc-{}", std::process::id()));
/// let env = StreamEnv::new(Config::default());
/// env.source(VecSource::new(vec![(1, "a"), (2, "b")])).sink(JsonLinesSink::new(&dir));
/// env.execute()?;
/// assert_eq!(std::fs::read_to_string(dir.join("part-0.jsonl"))?, "[1,\"a\"]\n[2,\"b\"]\n");
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Encoding
///
/// [`new`](Self::new) writes each value with `serde_json`; [`with_encoder`](Self::with_encoder)
/// takes a [`LineEncoder`] of your own (a hand-written writer for a hot type, say), as
/// [`PartitionedJsonLinesSink`](crate::PartitionedJsonLinesSink) does.
pub struct JsonLinesSink<T, E = SerdeJson> {
    dir: PathBuf,
    encoder: Arc<E>,
    _t: PhantomData<fn(T)>,
}

impl<T, E> Clone for JsonLinesSink<T, E> {
    fn clone(&self) -> Self {
        Self {
            dir: self.dir.clone(),
            encoder: self.encoder.clone(),
            _t: PhantomData,
        }
    }
}

impl<T, E> fmt::Debug for JsonLinesSink<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("dir", &self.dir)
            .finish()
    }
}

impl<T: Serialize + 'static> JsonLinesSink<T> {
    /// A sink writing into `dir`, one `serde_json` line per value.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self::with_encoder(dir, SerdeJson)
    }
}

impl<T: 'static, E: LineEncoder<T>> JsonLinesSink<T, E> {
    /// A sink writing into `dir`, encoding each value with `encoder`.
    pub fn with_encoder(dir: impl Into<PathBuf>, encoder: E) -> Self {
        Self {
            dir: dir.into(),
            encoder: Arc::new(encoder),
            _t: PhantomData,
        }
    }
}

impl<T: 'static, E: LineEncoder<T>> Sink<T> for JsonLinesSink<T, E> {
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        if cx.checkpointing {
            fs::create_dir_all(&self.dir)
                .map_err(|e| at_path(e, "cannot create output directory", &self.dir))?;
            return Ok(Box::new(TxnWriter {
                dir: self.dir.clone(),
                prefix: format!("part-{}-{}", cx.worker, run_token()),
                seq: 0,
                current: None,
                line: Vec::new(),
                encoder: self.encoder.clone(),
            }));
        }
        Ok(Box::new(self.open_part(cx.worker)?))
    }

    fn commit(&self, txn: &[u8]) -> Result<(), BoxError> {
        TxnDir::new(&self.dir).commit(txn)
    }

    fn recover(&self, restored: Option<u64>, txns: &[Vec<u8>]) -> Result<(), BoxError> {
        TxnDir::new(&self.dir).recover(restored, txns)
    }
}

/// A writer under checkpointing: in-progress file, pending on pre-commit.
struct TxnWriter<E> {
    dir: PathBuf,
    /// `part-{worker}-{run}`.
    prefix: String,
    seq: u64,
    current: Option<TxnFile>,
    line: Vec<u8>,
    encoder: Arc<E>,
}

impl<T, E: LineEncoder<T>> SinkWriter<T> for TxnWriter<E> {
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.current.is_none() {
            let base = format!("{}-{:06}", self.prefix, self.seq);
            self.seq += 1;
            self.current = Some(TxnFile::create(&self.dir, "", base)?);
        }
        let out = self.current.as_mut().expect("just opened");
        for record in batch.drain(..) {
            self.line.clear();
            self.encoder
                .encode(&record.value, &mut self.line)
                .map_err(|e| format!("{e} (writing into {})", self.dir.display()))?;
            self.line.push(b'\n');
            out.write_all(&self.line)?;
        }
        Ok(())
    }

    fn pre_commit(&mut self, checkpoint: u64) -> Result<Option<Vec<u8>>, BoxError> {
        let Some(file) = self.current.take() else {
            return Ok(None);
        };
        let name = file.pre_commit(checkpoint)?;
        Ok(Some(encode_txn([name.as_str()])))
    }
}

impl<T, E> JsonLinesSink<T, E> {
    /// The file worker `worker` writes: `dir/part-{worker}.jsonl`.
    pub fn part_path(&self, worker: usize) -> PathBuf {
        self.dir.join(format!("part-{worker}.jsonl"))
    }

    /// Creates the directory and worker `worker`'s part file.
    fn open_part(&self, worker: usize) -> io::Result<JsonLinesWriter<E>> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| at_path(e, "cannot create output directory", &self.dir))?;
        let path = self.part_path(worker);
        let file = File::create(&path).map_err(|e| at_path(e, "cannot create", &path))?;
        Ok(JsonLinesWriter {
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            line: Vec::new(),
            path,
            encoder: self.encoder.clone(),
        })
    }
}

struct JsonLinesWriter<E> {
    out: BufWriter<File>,
    line: Vec<u8>,
    path: PathBuf,
    encoder: Arc<E>,
}

impl<T, E: LineEncoder<T>> SinkWriter<T> for JsonLinesWriter<E> {
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        for record in batch.drain(..) {
            self.line.clear();
            self.encoder
                .encode(&record.value, &mut self.line)
                .map_err(|e| format!("{e} (writing {})", self.path.display()))?;
            self.line.push(b'\n');
            self.out
                .write_all(&self.line)
                .map_err(|e| at_path(e, "cannot write", &self.path))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), BoxError> {
        self.out
            .flush()
            .map_err(|e| at_path(e, "cannot write", &self.path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use sluice_engine::time::NO_TIMESTAMP;

    use super::*;

    fn open<T: Serialize + 'static>(
        sink: &JsonLinesSink<T>,
        worker: usize,
    ) -> io::Result<Box<dyn SinkWriter<T>>> {
        Ok(Box::new(sink.open_part(worker)?))
    }

    #[test]
    fn writes_one_line_per_value_and_flushes_on_finish() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonLinesSink::new(dir.path().join("out"));
        let mut w = open(&sink, 1).unwrap();
        let mut batch = vec![
            Record::new(NO_TIMESTAMP, BTreeMap::from([("a", 1)])),
            Record::new(NO_TIMESTAMP, BTreeMap::from([("b", 2)])),
        ];
        w.write(&mut batch).unwrap();
        assert!(batch.is_empty());
        w.finish().unwrap();
        let text = fs::read_to_string(sink.part_path(1)).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn unserializable_value_fails_without_a_partial_line() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonLinesSink::new(dir.path());
        let mut w = open(&sink, 0).unwrap();
        let mut ok = vec![Record::new(NO_TIMESTAMP, BTreeMap::from([(vec![1u8], 1)]))];
        let err = w.write(&mut ok).unwrap_err();
        assert!(err.to_string().contains("cannot serialize"), "{err}");
        w.finish().unwrap();
        assert_eq!(fs::read_to_string(sink.part_path(0)).unwrap(), "");
    }

    #[test]
    fn unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let sink = JsonLinesSink::<u8>::new(blocker.join("sub"));
        let err = open(&sink, 0).err().unwrap();
        assert!(
            err.to_string().contains("cannot create output directory"),
            "{err}"
        );
        assert!(err.to_string().contains("sub"), "{err}");
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn checkpointing(worker: usize) -> SinkContext {
        let mut cx = SinkContext::new(worker, 2);
        cx.checkpointing = true;
        cx
    }

    #[test]
    fn under_checkpointing_output_is_visible_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonLinesSink::<u32>::new(dir.path());
        let mut w = sink.open(&checkpointing(0)).unwrap();
        // Nothing written: nothing to commit.
        assert_eq!(w.pre_commit(1).unwrap(), None);
        w.write(&mut vec![
            Record::new(NO_TIMESTAMP, 1),
            Record::new(NO_TIMESTAMP, 2),
        ])
        .unwrap();
        let visible = |d: &Path| names(d).into_iter().filter(|n| !n.starts_with('.')).count();
        assert_eq!(visible(dir.path()), 0);
        let txn = w.pre_commit(2).unwrap().expect("a transaction");
        assert!(names(dir.path())[0].ends_with(".pending"));
        assert_eq!(visible(dir.path()), 0);
        sink.commit(&txn).unwrap();
        // Idempotent: a restore commits the same transaction again.
        sink.commit(&txn).unwrap();
        let committed = names(dir.path());
        assert_eq!(committed.len(), 1);
        assert!(committed[0].starts_with("part-0-") && committed[0].ends_with(".jsonl"));
        assert_eq!(
            fs::read_to_string(dir.path().join(&committed[0])).unwrap(),
            "1\n2\n"
        );
    }

    #[test]
    fn recover_commits_what_the_checkpoint_lists_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let sink = JsonLinesSink::<u32>::new(dir.path());
        let mut w = sink.open(&checkpointing(1)).unwrap();
        w.write(&mut vec![Record::new(NO_TIMESTAMP, 1)]).unwrap();
        let kept = w.pre_commit(1).unwrap().unwrap();
        w.write(&mut vec![Record::new(NO_TIMESTAMP, 2)]).unwrap();
        let _lost = w.pre_commit(2).unwrap().unwrap();
        w.write(&mut vec![Record::new(NO_TIMESTAMP, 3)]).unwrap();
        // The process dies here: one pending file per checkpoint and one in-progress file.
        drop(w);
        sink.recover(Some(1), &[kept]).unwrap();
        let left = names(dir.path());
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(
            fs::read_to_string(dir.path().join(&left[0])).unwrap(),
            "1\n"
        );
        // A commit of a file that is neither pending nor committed is an error, not silence.
        let err = sink
            .commit(b"part-9-x-000000-c0000000001.jsonl")
            .unwrap_err();
        assert!(err.to_string().contains("cannot commit"), "{err}");
    }
}
