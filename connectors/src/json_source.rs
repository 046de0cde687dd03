//! A source of JSON Lines: one JSON value per line, from files or standard input.
//!
//! [`JsonLinesSource<T>`] emits `Ok(T)` for every line that deserializes into `T` and
//! `Err(`[`BadLine`]`)` for every other line, with the raw line, where it was and why it was
//! refused. It shares framing, bad-line rules, positions and standard-input handling with
//! [`LinesSource`](crate::LinesSource), whose docs give the full contract.
//!
//! Each line is parsed straight out of the reader's reused buffer: the only allocations per
//! line are the ones the value itself needs.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use sluice_engine::source::{Source, Split, SplitReader};
use sluice_engine::BoxError;

use crate::lines::{BadLine, BadLineReason, Decode, LineSource};

/// Reads JSON Lines into values of `T`: `Ok(T)` per good line, `Err(`[`BadLine`]`)` per bad one.
///
/// Every input line becomes exactly one record. What makes a line bad, how positions work
/// (`# Checkpointing`: the byte offset of the next line) and how standard input is read are as
/// for [`LinesSource`](crate::LinesSource); in addition, a line that does not deserialize into
/// `T` is a [`BadLineReason::InvalidJson`]. Unknown fields are ignored unless `T` says
/// otherwise (`#[serde(deny_unknown_fields)]`). Records carry no timestamp.
///
/// # Examples
///
/// ```
/// use serde::Deserialize;
/// use sluice_connectors::{CollectSink, JsonLinesSource};
/// use sluice_engine::{Config, StreamEnv};
///
/// #[derive(Clone, Debug, Deserialize)]
/// struct Ride { fare: f64 }
///
/// let path = std::env::temp_dir().join(format!("sluice-json-doc-{}.jsonl", std::process::id()));
/// std::fs::write(&path, "{\"fare\": 12.5}\nnot json\n")?;
/// let env = StreamEnv::new(Config::default());
/// let out = CollectSink::new();
/// env.source(JsonLinesSource::<Ride>::files([&path])).sink(out.clone());
/// env.execute()?;
/// let records = out.values();
/// assert_eq!(records[0].as_ref().unwrap().fare, 12.5);
/// assert_eq!(records[1].as_ref().unwrap_err().line, "not json");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JsonLinesSource<T> {
    inner: LineSource<Json<T>>,
}

impl<T> Clone for JsonLinesSource<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for JsonLinesSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesSource")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T: DeserializeOwned + 'static> JsonLinesSource<T> {
    /// Reads `paths`, one split per file. The paths must be distinct.
    pub fn files<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        Self {
            inner: LineSource::files(paths),
        }
    }

    /// Reads standard input (one split).
    pub fn stdin() -> Self {
        Self {
            inner: LineSource::stdin(),
        }
    }

    /// Sets the longest acceptable line, in bytes without the terminator (default
    /// [`DEFAULT_MAX_LINE_BYTES`](crate::DEFAULT_MAX_LINE_BYTES)).
    pub fn max_line_bytes(self, n: usize) -> Self {
        Self {
            inner: self.inner.max_line_bytes(n),
        }
    }

    /// Reads each file as `n` splits, as [`LinesSource::stripes`](crate::LinesSource::stripes)
    /// does.
    pub fn stripes(self, n: usize) -> Self {
        Self {
            inner: self.inner.stripes(n),
        }
    }
}

impl<T: DeserializeOwned + 'static> Source<Result<T, BadLine>> for JsonLinesSource<T> {
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError> {
        self.inner.splits(parallelism)
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<Result<T, BadLine>>>, BoxError> {
        self.inner.open(split, position)
    }
}

/// Decodes a line as JSON into `T`.
struct Json<T>(PhantomData<fn() -> T>);

impl<T: DeserializeOwned + 'static> Decode for Json<T> {
    type Out = T;

    #[inline]
    fn decode(line: &str, _offset: u64, _input: u32) -> Result<T, BadLineReason> {
        serde_json::from_str(line).map_err(|e| BadLineReason::InvalidJson(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[test]
    fn decodes_values_and_explains_failures() {
        assert_eq!(
            Json::<Point>::decode(r#" {"x": 1, "y": 2, "extra": true} "#, 0, 0),
            Ok(Point { x: 1, y: 2 })
        );
        let Err(BadLineReason::InvalidJson(msg)) = Json::<Point>::decode(r#"{"x": 1}"#, 0, 0)
        else {
            panic!("a missing field is invalid");
        };
        assert!(msg.contains("missing field `y`"), "{msg}");
        assert!(matches!(
            Json::<Point>::decode("{\"x\": 1, \"y\": 2} trailing", 0, 0),
            Err(BadLineReason::InvalidJson(_))
        ));
    }
}
