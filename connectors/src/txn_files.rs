//! Two-phase commit for files, as used by [`JsonLinesSink`](crate::JsonLinesSink) and by
//! partitioned file sinks built on it.
//!
//! A writer appends to a hidden in-progress file `.{base}.inprogress` ([`TxnFile`]). On a
//! checkpoint barrier it flushes, fsyncs and renames the file to `.{name}.pending`, where
//! `name = {base}-c{checkpoint:010}.jsonl` (`{base}-cfinal.jsonl` at end of input), and fsyncs
//! the directory: the pre-commit. The transaction is the list of names, relative to the sink's
//! root ([`encode_txn`]). When the checkpoint is complete, [`TxnDir::commit`] renames each
//! pending file to its name (idempotently). [`TxnDir::recover`] runs before a restored job
//! starts: it commits the restored checkpoint's transactions, deletes every other hidden file,
//! and *rolls back* committed files of later checkpoints (their id is in their name), which the
//! restored job produces again: that happens only when the newest checkpoint was unreadable and
//! an older one was restored.
//!
//! Bases should hold a per-run token ([`run_token`]) so that runs never collide.
//!
//! # Early write-back
//!
//! The fsync of a pre-commit waits for the disk, on the worker thread. Left alone, the kernel
//! holds a checkpoint interval's output in memory and writes it at that fsync: seconds of a
//! worker doing nothing at every checkpoint of a busy sink. So every [`WRITEBACK_CHUNK`] a
//! [`TxnFile`] writes, it hands a duplicate of its file handle to a background thread (one per
//! process, `sluice-writeback`) that syncs it while the worker goes on, and the fsync of the
//! pre-commit finds little left to do. If that thread is behind (the disk is slower than the
//! output), the file is not queued again: the pre-commit's fsync is what makes the data durable,
//! as before. Directories a new file needed are handed to that thread too when they are
//! created, and synced again (by then, usually at no cost) at the file's pre-commit: an hourly
//! partition's first file no longer waits for four directory syncs on the worker.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sluice_engine::BoxError;

/// Write buffer of a [`TxnFile`].
const WRITE_BUFFER: usize = 64 * 1024;

/// How much a [`TxnFile`] writes before it asks the kernel to start writing it to disk (see
/// the module docs).
pub const WRITEBACK_CHUNK: u64 = 8 << 20;

/// The queue of the process's write-back thread, which starts on first use.
fn writeback() -> &'static crossbeam_channel::Sender<File> {
    static QUEUE: std::sync::OnceLock<crossbeam_channel::Sender<File>> = std::sync::OnceLock::new();
    QUEUE.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded::<File>(16);
        // If the thread cannot start, the queue fills and nothing is synced early.
        let _ = std::thread::Builder::new()
            .name("sluice-writeback".into())
            .spawn(move || {
                for f in rx {
                    // Errors surface where they matter: at the pre-commit's own fsync.
                    let _ = f.sync_data();
                }
            });
        tx
    })
}

/// Unique per job run (process id and start time).
pub fn run_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// Fsyncs a directory so that creations and renames in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Adds `what` and `path` to an I/O error's message, keeping its kind.
pub(crate) fn at_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// The committed name of a file with base `base` pre-committed for `checkpoint`.
fn committed_name(base: &str, checkpoint: u64) -> String {
    if checkpoint == u64::MAX {
        format!("{base}-cfinal.jsonl")
    } else {
        format!("{base}-c{checkpoint:010}.jsonl")
    }
}

/// The checkpoint a committed file belongs to, from its name (`u64::MAX`: the final one).
fn checkpoint_of(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("part-")?.strip_suffix(".jsonl")?;
    let (_, id) = stem.rsplit_once("-c")?;
    if id == "final" {
        return Some(u64::MAX);
    }
    (id.len() == 10 && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| id.parse().ok())
        .flatten()
}

/// An in-progress file.
#[derive(Debug)]
pub struct TxnFile {
    out: BufWriter<File>,
    /// Bytes appended so far.
    written: u64,
    /// Bytes whose write-back has been started.
    started: u64,
    /// Directory relative to the root ("" for the root itself).
    rel_dir: String,
    base: String,
    dir: PathBuf,
    /// When creating the file created its directory: the directory's ancestors up to the
    /// root, which hold the new entries, to sync at the pre-commit.
    new_dirs: Vec<PathBuf>,
}

impl TxnFile {
    /// Creates `root/rel_dir/.{base}.inprogress`, creating the directories (made durable by
    /// the write-back thread now, and for certain by [`pre_commit`](Self::pre_commit)).
    ///
    /// # Errors
    ///
    /// An I/O error naming the path.
    pub fn create(root: &Path, rel_dir: &str, base: String) -> io::Result<Self> {
        let dir = if rel_dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel_dir)
        };
        let mut new_dirs = Vec::new();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| at_path(e, "cannot create", &dir))?;
            // The new directories must be durable before a pending file in them is: the
            // pre-commit syncs them. The write-back thread syncs them now, so that the
            // pre-commit finds nothing left to do and the worker does not wait here.
            for d in dir.ancestors().skip(1) {
                if let Ok(f) = File::open(d) {
                    let _ = writeback().try_send(f);
                }
                new_dirs.push(d.to_path_buf());
                if d == root {
                    break;
                }
            }
        }
        let path = dir.join(format!(".{base}.inprogress"));
        let f = File::create(&path).map_err(|e| at_path(e, "cannot create", &path))?;
        Ok(Self {
            out: BufWriter::with_capacity(WRITE_BUFFER, f),
            written: 0,
            started: 0,
            rel_dir: rel_dir.to_string(),
            base,
            dir,
            new_dirs,
        })
    }

    fn in_progress(&self) -> PathBuf {
        self.dir.join(format!(".{}.inprogress", self.base))
    }

    /// Appends bytes.
    ///
    /// # Errors
    ///
    /// An I/O error naming the file.
    #[inline]
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self.out.write_all(bytes) {
            return Err(at_path(e, "cannot write", &self.in_progress()));
        }
        self.written += bytes.len() as u64;
        if self.written - self.started >= WRITEBACK_CHUNK {
            self.start_writeback()?;
        }
        Ok(())
    }

    /// Hands what was written since the last call to the kernel, and the file to the
    /// write-back thread (see the module docs). Done every [`WRITEBACK_CHUNK`]; a writer that is
    /// done with a file before its pre-commit (a partition whose time has passed) calls it too.
    ///
    /// # Errors
    ///
    /// An I/O error writing out the buffer.
    #[cold]
    pub fn start_writeback(&mut self) -> io::Result<()> {
        self.out
            .flush()
            .map_err(|e| at_path(e, "cannot write", &self.in_progress()))?;
        // A failure to duplicate the handle or a full queue only means no early write-back.
        if let Ok(f) = self.out.get_ref().try_clone() {
            let _ = writeback().try_send(f);
        }
        self.started = self.written;
        Ok(())
    }

    /// Flushes, fsyncs and renames the file to pending for `checkpoint`, and fsyncs its
    /// directory. Returns the name to list in the transaction (relative to the root).
    ///
    /// # Errors
    ///
    /// An I/O error naming the file.
    pub fn pre_commit(self, checkpoint: u64) -> io::Result<String> {
        let inprogress = self.in_progress();
        let file = self
            .out
            .into_inner()
            .map_err(|e| at_path(e.into_error(), "cannot write", &inprogress))?;
        file.sync_all()
            .map_err(|e| at_path(e, "cannot sync", &inprogress))?;
        drop(file);
        let name = committed_name(&self.base, checkpoint);
        let pending = self.dir.join(format!(".{name}.pending"));
        fs::rename(&inprogress, &pending).map_err(|e| at_path(e, "cannot rename", &inprogress))?;
        // The rename must survive a crash: the checkpoint will refer to the pending file. So
        // must the directories leading to it, if creating the file created them.
        sync_dir(&self.dir).map_err(|e| at_path(e, "cannot sync", &self.dir))?;
        for d in &self.new_dirs {
            sync_dir(d).map_err(|e| at_path(e, "cannot sync", d))?;
        }
        Ok(if self.rel_dir.is_empty() {
            name
        } else {
            format!("{}/{name}", self.rel_dir)
        })
    }
}

/// A transaction: the pre-committed names, one per line.
pub fn encode_txn<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut txn = String::new();
    for n in names {
        txn.push_str(n);
        txn.push('\n');
    }
    txn.into_bytes()
}

/// The committing side of a sink writing under one root directory.
#[derive(Debug, Clone)]
pub struct TxnDir {
    root: PathBuf,
}

impl TxnDir {
    /// The files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Makes the files of a transaction visible. Idempotent.
    ///
    /// # Errors
    ///
    /// A file that is neither pending nor committed (output would be lost), or an I/O error.
    pub fn commit(&self, txn: &[u8]) -> Result<(), BoxError> {
        let text = std::str::from_utf8(txn).map_err(|_| "a transaction is not UTF-8")?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        for rel in text.lines() {
            let (dir, name) = match rel.rsplit_once('/') {
                Some((d, n)) => (self.root.join(d), n),
                None => (self.root.clone(), rel),
            };
            let pending = dir.join(format!(".{name}.pending"));
            let committed = dir.join(name);
            match fs::rename(&pending, &committed) {
                Ok(()) => {}
                // Committed before (a commit is repeated on restore).
                Err(e) if e.kind() == io::ErrorKind::NotFound && committed.exists() => {}
                Err(e) => return Err(at_path(e, "cannot commit", &pending).into()),
            }
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for d in &dirs {
            sync_dir(d).map_err(|e| at_path(e, "cannot sync", d))?;
        }
        Ok(())
    }

    /// Before a job starts: commits `txns` (the restored checkpoint's), deletes every other
    /// in-progress or pending file, and, when restoring checkpoint `restored`, deletes committed
    /// files of later checkpoints that `txns` does not list. Directories left empty by the
    /// deletions are removed.
    ///
    /// # Errors
    ///
    /// As [`commit`](Self::commit); an I/O error naming the path.
    pub fn recover(&self, restored: Option<u64>, txns: &[Vec<u8>]) -> Result<(), BoxError> {
        let mut keep: HashSet<PathBuf> = HashSet::new();
        for txn in txns {
            self.commit(txn)?;
            let text = std::str::from_utf8(txn).map_err(|_| "a transaction is not UTF-8")?;
            keep.extend(text.lines().map(|rel| self.root.join(rel)));
        }
        match fs::metadata(&self.root) {
            Ok(_) => {
                self.clean(&self.root.clone(), restored, &keep)?;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(at_path(e, "cannot read", &self.root).into()),
        }
    }

    /// Returns whether `dir` became empty because of deletions.
    fn clean(
        &self,
        dir: &Path,
        restored: Option<u64>,
        keep: &HashSet<PathBuf>,
    ) -> io::Result<bool> {
        let (mut empty, mut removed) = (true, false);
        for entry in fs::read_dir(dir).map_err(|e| at_path(e, "cannot list", dir))? {
            let entry = entry.map_err(|e| at_path(e, "cannot list", dir))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(|e| at_path(e, "cannot inspect", &path))?;
            if kind.is_dir() {
                if self.clean(&path, restored, keep)? {
                    fs::remove_dir(&path).map_err(|e| at_path(e, "cannot remove", &path))?;
                    removed = true;
                } else {
                    empty = false;
                }
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let uncommitted = name.starts_with(".part-")
                && (name.ends_with(".inprogress") || name.ends_with(".pending"));
            let rolled_back = match (restored, checkpoint_of(&name)) {
                (Some(r), Some(c)) => c > r && !keep.contains(&path),
                _ => false,
            };
            if uncommitted || rolled_back {
                fs::remove_file(&path).map_err(|e| at_path(e, "cannot remove", &path))?;
                removed = true;
            } else {
                empty = false;
            }
        }
        Ok(empty && removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_names_carry_their_checkpoint() {
        assert_eq!(
            checkpoint_of(&committed_name("part-0-ab-000001", 42)),
            Some(42)
        );
        assert_eq!(
            checkpoint_of(&committed_name("part-0-ab-000001", u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(checkpoint_of("part-0.jsonl"), None);
        assert_eq!(checkpoint_of("notes-c0000000001.jsonl"), None);
    }

    fn visible(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(root).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                for f in visible(&e.path()) {
                    out.push(format!("{}/{f}", e.file_name().to_string_lossy()));
                }
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        out
    }

    /// A file written past several write-back chunks (each handing the file to the write-back
    /// thread while writing goes on) holds exactly what was written, in order.
    #[test]
    fn a_file_past_several_writeback_chunks_holds_every_byte_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let mut f = TxnFile::create(root, "", "part-0-run-000000".into()).unwrap();
        let mut expected = Vec::new();
        let mut i = 0u64;
        while (expected.len() as u64) < 3 * WRITEBACK_CHUNK + 12_345 {
            let line = format!("{i:08} some padding to make lines longer\n");
            f.write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
            i += 1;
        }
        assert!(f.started >= 3 * WRITEBACK_CHUNK, "write-back was started");
        let name = f.pre_commit(1).unwrap();
        TxnDir::new(root)
            .commit(&encode_txn([name.as_str()]))
            .unwrap();
        assert!(fs::read(root.join(&name)).unwrap() == expected);
    }

    #[test]
    fn restoring_an_older_checkpoint_rolls_back_what_newer_ones_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let dir = TxnDir::new(root);
        let mut txn_of = Vec::new();
        for (i, ckpt) in [5u64, 6, 7].into_iter().enumerate() {
            let mut f = TxnFile::create(root, "h=1", format!("part-0-run-{i:06}")).unwrap();
            f.write_all(format!("{ckpt}\n").as_bytes()).unwrap();
            let txn = encode_txn([f.pre_commit(ckpt).unwrap().as_str()]);
            dir.commit(&txn).unwrap();
            txn_of.push(txn);
        }
        // Data written after checkpoint 7, never pre-committed.
        let mut f = TxnFile::create(root, "h=2", "part-0-run-000003".into()).unwrap();
        f.write_all(b"x\n").unwrap();
        drop(f);
        // An unrelated file of the user's.
        fs::write(root.join("README"), b"keep").unwrap();
        assert_eq!(visible(root).len(), 5, "{:?}", visible(root));
        // Checkpoint 7 turned out unreadable: restore 6, whose transaction is the second file.
        dir.recover(Some(6), &[txn_of[1].clone()]).unwrap();
        assert_eq!(
            visible(root),
            [
                "README",
                "h=1/part-0-run-000000-c0000000005.jsonl",
                "h=1/part-0-run-000001-c0000000006.jsonl"
            ]
        );
    }
}
