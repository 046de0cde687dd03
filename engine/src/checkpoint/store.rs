//! Checkpoints on disk.
//!
//! A checkpoint is a directory `chk-<id>` (a savepoint: `savepoint-<id>`) holding two files:
//! `state.bin`, every operator instance's snapshot, and `_metadata`, written last. A directory
//! without `_metadata` is an unfinished checkpoint and does not exist as far as restore is
//! concerned. Both files are framed the same way:
//!
//! ```text
//! magic "SLCK" | format version u32 LE | body length u64 LE | CRC-32 of body u32 LE | body
//! ```
//!
//! and the body is bincode. Each file is written to a temporary name, fsynced, renamed into
//! place, and the directory fsynced, so a crash leaves either the old or the new file, never a
//! torn one; a corrupted or truncated file fails its length or checksum test on read.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::checkpoint::CheckpointData;

const MAGIC: &[u8; 4] = b"SLCK";
/// Version of the checkpoint format. Bumped on any incompatible change of [`CheckpointData`].
pub(crate) const FORMAT_VERSION: u32 = 3;
const HEADER: usize = 4 + 4 + 8 + 4;

pub(crate) const STATE_FILE: &str = "state.bin";
pub(crate) const METADATA_FILE: &str = "_metadata";

/// The small record written last; its presence makes a checkpoint complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Metadata {
    pub(crate) id: u64,
    pub(crate) state_len: u64,
    pub(crate) state_crc: u32,
    pub(crate) parallelism: usize,
    pub(crate) operators: usize,
    /// Every operator instance had finished: the job was complete.
    pub(crate) finished: bool,
}

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a sluice checkpoint file (bad magic)")]
    Magic { path: PathBuf },
    #[error("{path} has format version {found}; this build reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("{path} is truncated: {found} bytes of body, header says {expected}")]
    Truncated {
        path: PathBuf,
        found: usize,
        expected: usize,
    },
    #[error("{path} is corrupt: checksum mismatch")]
    Checksum { path: PathBuf },
    #[error("{path} cannot be decoded: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: the state file does not match its metadata ({what})")]
    Mismatch { path: PathBuf, what: &'static str },
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("bincode serialization into memory cannot fail")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(bytes)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads a framed file; returns its body and the body's checksum.
fn unframe(path: &Path) -> Result<(Vec<u8>, u32), ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io)?;
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        if bytes.len() < HEADER && MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            return Err(ReadError::Truncated {
                path: path.to_path_buf(),
                found: 0,
                expected: HEADER,
            });
        }
        return Err(ReadError::Magic {
            path: path.to_path_buf(),
        });
    }
    let version = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(ReadError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let body = bytes.split_off(HEADER);
    if body.len() != len {
        return Err(ReadError::Truncated {
            path: path.to_path_buf(),
            found: body.len(),
            expected: len,
        });
    }
    if crc32fast::hash(&body) != crc {
        return Err(ReadError::Checksum {
            path: path.to_path_buf(),
        });
    }
    Ok((body, crc))
}

/// Writes `bytes` to `dir/name` atomically and durably: temporary file, fsync, rename, fsync of
/// the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// A checkpoint directory's name.
pub(crate) fn dir_name(id: u64, savepoint: bool) -> String {
    if savepoint {
        format!("savepoint-{id:010}")
    } else {
        format!("chk-{id:010}")
    }
}

/// Writes a complete checkpoint under `root`; returns its directory and the state's size.
pub(crate) fn write(
    root: &Path,
    data: &CheckpointData,
    savepoint: bool,
) -> std::io::Result<(PathBuf, u64)> {
    let dir = root.join(dir_name(data.id, savepoint));
    fs::create_dir_all(&dir)?;
    let body = encode(data);
    let meta = Metadata {
        id: data.id,
        state_len: body.len() as u64,
        state_crc: crc32fast::hash(&body),
        parallelism: data.parallelism,
        operators: data.instances.len(),
        finished: data.is_finished(),
    };
    write_atomic(&dir, STATE_FILE, &frame(&body))?;
    // The metadata goes last: until it exists, the checkpoint does not.
    write_atomic(&dir, METADATA_FILE, &frame(&encode(&meta)))?;
    sync_dir(root)?;
    Ok((dir, body.len() as u64))
}

/// Reads and verifies the checkpoint in `dir`.
pub(crate) fn read(dir: &Path) -> Result<CheckpointData, ReadError> {
    let meta_path = dir.join(METADATA_FILE);
    let (meta_body, _) = unframe(&meta_path)?;
    let meta: Metadata = decode(&meta_body).map_err(|e| ReadError::Decode {
        path: meta_path.clone(),
        message: e.to_string(),
    })?;
    let state_path = dir.join(STATE_FILE);
    let (body, crc) = unframe(&state_path)?;
    if body.len() as u64 != meta.state_len || crc != meta.state_crc {
        return Err(ReadError::Mismatch {
            path: state_path,
            what: "length or checksum",
        });
    }
    let data: CheckpointData = decode(&body).map_err(|e| ReadError::Decode {
        path: state_path.clone(),
        message: e.to_string(),
    })?;
    if data.id != meta.id || data.instances.len() != meta.operators {
        return Err(ReadError::Mismatch {
            path: state_path,
            what: "checkpoint id or operator count",
        });
    }
    Ok(data)
}

/// The id of a regular checkpoint directory named `chk-<id>` (complete or not).
pub(crate) fn checkpoint_id(dir_name: &str) -> Option<u64> {
    dir_name.strip_prefix("chk-")?.parse().ok()
}

/// The regular checkpoints under `root` that have metadata, newest first.
pub(crate) fn list(root: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(id) = entry.file_name().to_str().and_then(checkpoint_id) else {
            continue;
        };
        if entry.path().join(METADATA_FILE).exists() {
            found.push((id, entry.path()));
        }
    }
    found.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(found)
}

/// The largest checkpoint or savepoint id ever used under `root` (complete or not).
pub(crate) fn max_id(root: &Path) -> std::io::Result<u64> {
    let mut max = 0;
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let id = name
            .strip_prefix("chk-")
            .or_else(|| name.strip_prefix("savepoint-"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            max = max.max(id);
        }
    }
    Ok(max)
}

/// Deletes all but the newest `keep` complete regular checkpoints, and any incomplete one older
/// than the newest complete one. Savepoints are never deleted.
pub(crate) fn retain(root: &Path, keep: usize) -> std::io::Result<()> {
    let complete = list(root)?;
    let newest = complete.first().map_or(0, |c| c.0);
    for (_, dir) in complete.iter().skip(keep.max(1)) {
        fs::remove_dir_all(dir)?;
    }
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let Some(id) = entry.file_name().to_str().and_then(checkpoint_id) else {
            continue;
        };
        if id < newest && !entry.path().join(METADATA_FILE).exists() {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::InstanceState;

    fn data(id: u64) -> CheckpointData {
        CheckpointData {
            id,
            parallelism: 2,
            max_parallelism: 8,
            names: vec!["source".into(), "sink".into()],
            instances: vec![
                vec![InstanceState::default(), InstanceState::default()],
                vec![
                    InstanceState {
                        txn: Some(b"part-0".to_vec()),
                        groups: vec![(3, vec![1, 2, 3])],
                        ..InstanceState::default()
                    },
                    InstanceState {
                        finished: true,
                        ..InstanceState::default()
                    },
                ],
            ],
        }
    }

    #[test]
    fn a_written_checkpoint_reads_back_identically() {
        let root = tempfile::tempdir().unwrap();
        let (dir, bytes) = write(root.path(), &data(7), false).unwrap();
        assert!(bytes > 0);
        assert_eq!(dir.file_name().unwrap(), "chk-0000000007");
        let back = read(&dir).unwrap();
        assert_eq!(back.id, 7);
        assert_eq!(back.instances[1][0].txn.as_deref(), Some(&b"part-0"[..]));
        assert_eq!(back.instances[1][0].groups, vec![(3, vec![1, 2, 3])]);
        assert!(back.instances[1][1].finished);
        assert!(!back.is_finished());
    }

    #[test]
    fn damage_is_detected_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        let (dir, _) = write(root.path(), &data(1), false).unwrap();
        let state = dir.join(STATE_FILE);
        let good = fs::read(&state).unwrap();

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        fs::write(&state, &flipped).unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Checksum { .. })));

        fs::write(&state, &good[..good.len() - 3]).unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Truncated { .. })));

        fs::write(&state, &good[..10]).unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Truncated { .. })));

        let mut version = good.clone();
        version[4] = 99;
        fs::write(&state, &version).unwrap();
        let err = read(&dir).unwrap_err();
        assert!(err.to_string().contains("format version 99"), "{err}");

        fs::write(&state, b"not a checkpoint at all").unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Magic { .. })));

        // Intact again, but another checkpoint's state under this metadata.
        fs::write(&state, frame(&encode(&data(2)))).unwrap();
        assert!(matches!(read(&dir), Err(ReadError::Mismatch { .. })));
    }

    #[test]
    fn retention_keeps_the_newest_and_every_savepoint() {
        let root = tempfile::tempdir().unwrap();
        for id in 1..=5 {
            write(root.path(), &data(id), id == 2).unwrap();
        }
        // An unfinished checkpoint older than the newest complete one goes too.
        fs::create_dir_all(root.path().join("chk-0000000000")).unwrap();
        retain(root.path(), 2).unwrap();
        let mut left: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["chk-0000000004", "chk-0000000005", "savepoint-0000000002"]
        );
        assert_eq!(max_id(root.path()).unwrap(), 5);
        let listed: Vec<u64> = list(root.path()).unwrap().iter().map(|c| c.0).collect();
        assert_eq!(listed, [5, 4]);
    }
}
