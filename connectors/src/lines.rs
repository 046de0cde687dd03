//! Line-oriented sources: [`LinesSource`] (raw text lines), [`BadLine`] (what a line that
//! cannot become a record turns into instead), and the reader they share with
//! [`JsonLinesSource`](crate::JsonLinesSource).
//!
//! The one rule everything here keeps: every input line becomes exactly one record, `Ok` or
//! `Err(BadLine)`. Bad input neither fails the job nor vanishes.
//!
//! Submodules: `framing` (bounded splitting of bytes into lines) and `stdin` (reading standard
//! input on its own thread).

mod framing;
mod stdin;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::PathBuf;

use sluice_engine::source::{Source, SourceOutput, SourceStatus, Split, SplitReader};
use sluice_engine::BoxError;

use self::framing::{Framed, LineFramer};

/// The default limit on a line's length: 64 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// The [`BadLine::source`] of a line read from standard input.
pub const STDIN_NAME: &str = "-";

/// An input line that could not be turned into a record, with where it came from and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The raw line without its terminator, lossily decoded if it is not UTF-8; for a
    /// [`TooLong`](BadLineReason::TooLong) line, its first 1 KiB.
    pub line: String,
    /// Byte offset of the line's first byte in its input.
    pub offset: u64,
    /// The file path the line was read from, or `"-"` for standard input.
    pub source: String,
    /// What is wrong with it.
    pub reason: BadLineReason,
}

/// Why a line is a [`BadLine`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadLineReason {
    /// Empty or only whitespace.
    Empty,
    /// Not valid UTF-8.
    NotUtf8,
    /// Longer than the configured limit.
    TooLong {
        /// The line's length in bytes, without its terminator.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// Not JSON, or not JSON of the expected shape; the message is `serde_json`'s.
    InvalidJson(String),
}

impl fmt::Display for BadLineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty line"),
            Self::NotUtf8 => f.write_str("not valid UTF-8"),
            Self::TooLong { len, limit } => {
                write!(f, "line of {len} bytes exceeds the limit of {limit}")
            }
            Self::InvalidJson(msg) => write!(f, "invalid JSON: {msg}"),
        }
    }
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.source, self.offset, self.reason
        )
    }
}

impl std::error::Error for BadLine {}

/// A good line of a [`LinesSource`]: its text, and where it was read, so that whoever finds it
/// invalid later (a validation step's dead letters) can say where it came from.
///
/// It dereferences to its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Line {
    /// The line without its terminator (and without a UTF-8 byte order mark at the start of
    /// an input).
    pub text: String,
    /// Byte offset of the line's first byte in its input.
    pub offset: u64,
    /// Which input the line was read from: its index in [`LinesSource::files`]' list (0 for
    /// standard input).
    pub input: u32,
}

impl std::ops::Deref for Line {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

/// A source of raw text lines: `Ok(`[`Line`]`)` (its text without the terminator, and where it
/// was) or `Err(`[`BadLine`]`)`, for callers that validate lines themselves.
///
/// It reads one or more files (one split per file) or standard input (one split), and emits
/// one record per input line. Bad input never fails the job and never vanishes: every line
/// becomes exactly one record, so downstream can route the errors to a dead-letter output and
/// count on `good + bad == lines`. A line is bad when it is
///
/// - empty or only whitespace ([`BadLineReason::Empty`]),
/// - longer than the limit, `\n` / `\r\n` not counted ([`BadLineReason::TooLong`]; default
///   64 KiB, see [`max_line_bytes`](Self::max_line_bytes)). It is skipped to its newline without
///   being held in memory; its first 1 KiB is kept in [`BadLine::line`],
/// - not UTF-8 ([`BadLineReason::NotUtf8`]),
/// - or, for [`JsonLinesSource`](crate::JsonLinesSource), not a valid value of the target type
///   ([`BadLineReason::InvalidJson`]).
///
/// A UTF-8 byte order mark at the very start of an input (as some Windows tools write) is not
/// part of the first line.
///
/// Records carry no timestamp. Lines are read into a reused buffer; the only allocation per good
/// line is the `String` of its text.
///
/// # Stripes: one file read by several workers
///
/// By default a file is one split, read and decoded by one worker. With
/// [`stripes(n)`](Self::stripes) each file is `n` splits: stripe `r` emits the lines that
/// *start* in a [`STRIPE_BLOCK`]-byte block whose number is `r` modulo `n`, so every line
/// belongs to exactly one stripe, and each stripe covers the whole file in file order (its
/// event time advances as the file's does, which keeps per-split watermarks and alignment
/// meaningful). A stripe seeks over the blocks of the others, reading only the line each skip
/// lands in. Which line goes where depends on the bytes only, never on timing. Standard input,
/// and a path that is not a regular file (a named pipe, `/dev/stdin`), is always one split: it
/// cannot seek.
///
/// # Checkpointing
///
/// A split's position is the byte offset of its next unread line (for a stripe, of the next
/// line it would look at). Opening a file split at a
/// position seeks there. The position must be inside the file and at the start of a line (the
/// byte before it a `\n`), or the open fails: restoring against a different file is an error,
/// not garbage. Standard input cannot seek: only position 0 is accepted.
///
/// # Standard input
///
/// Standard input is read on a dedicated thread and handed over in batches through a bounded
/// channel, so a worker never blocks on it: when no line is ready the reader reports
/// [`SourceStatus::Pending`], and [`SourceStatus::Finished`] at end of input. Read at most one
/// standard-input source per process.
///
/// # Examples
///
/// ```
/// use sluice_connectors::{CollectSink, LinesSource};
/// use sluice_engine::{Config, StreamEnv};
///
/// let path = std::env::temp_dir().join(format!("sluice-lines-doc-{}.txt", std::process::id()));
/// std::fs::write(&path, "one\n\ntwo\n")?;
/// let env = StreamEnv::new(Config::default());
/// let out = CollectSink::new();
/// env.source(LinesSource::files([&path])).sink(out.clone());
/// env.execute()?;
/// let lines = out.values();
/// assert_eq!(lines.iter().filter(|l| l.is_ok()).count(), 2);
/// assert_eq!(lines[2].as_ref().map(|l| (l.text.as_str(), l.offset)), Ok(("two", 5)));
/// assert_eq!(lines.iter().filter(|l| l.is_err()).count(), 1); // the empty line
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LinesSource {
    inner: LineSource<Raw>,
}

/// The size of the blocks that [`LinesSource::stripes`] deals out: 64 KiB, some hundreds of
/// typical event lines.
pub const STRIPE_BLOCK: u64 = 64 * 1024;

impl LinesSource {
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
    /// [`DEFAULT_MAX_LINE_BYTES`]).
    pub fn max_line_bytes(self, n: usize) -> Self {
        Self {
            inner: self.inner.max_line_bytes(n),
        }
    }

    /// Reads each file as `n` splits, its stripes (see [Stripes](Self#stripes-one-file-read-by-several-workers));
    /// default 1, and 0 counts as 1. The split ids depend on `n`: a checkpoint restores only
    /// into a source with the same number of stripes.
    pub fn stripes(self, n: usize) -> Self {
        Self {
            inner: self.inner.stripes(n),
        }
    }
}

impl Source<Result<Line, BadLine>> for LinesSource {
    fn splits(&self, parallelism: usize) -> Result<Vec<Split>, BoxError> {
        self.inner.splits(parallelism)
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<Result<Line, BadLine>>>, BoxError> {
        self.inner.open(split, position)
    }
}

/// Turns a well-formed (non-empty, UTF-8, short enough) line into a value.
pub(crate) trait Decode: 'static {
    /// The value of a good line.
    type Out;
    /// Decodes `line`, found at byte `offset` of input number `input`, or says why it is bad.
    fn decode(line: &str, offset: u64, input: u32) -> Result<Self::Out, BadLineReason>;
}

/// The line itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw;

impl Decode for Raw {
    type Out = Line;

    #[inline]
    fn decode(line: &str, offset: u64, input: u32) -> Result<Line, BadLineReason> {
        Ok(Line {
            text: line.to_owned(),
            offset,
            input,
        })
    }
}

#[derive(Debug, Clone)]
enum Input {
    Files(Vec<PathBuf>),
    Stdin,
}

/// The line source behind [`LinesSource`] and [`JsonLinesSource`](crate::JsonLinesSource),
/// generic over how a good line is decoded.
pub(crate) struct LineSource<D> {
    input: Input,
    max_line_bytes: usize,
    /// Splits per file (at least 1).
    stripes: usize,
    _decode: PhantomData<fn() -> D>,
}

impl<D> Clone for LineSource<D> {
    fn clone(&self) -> Self {
        Self {
            input: self.input.clone(),
            max_line_bytes: self.max_line_bytes,
            stripes: self.stripes,
            _decode: PhantomData,
        }
    }
}

impl<D> fmt::Debug for LineSource<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineSource")
            .field("input", &self.input)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("stripes", &self.stripes)
            .finish()
    }
}

impl<D: Decode> LineSource<D> {
    pub(crate) fn files<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        Self::new(Input::Files(paths.into_iter().map(Into::into).collect()))
    }

    pub(crate) fn stdin() -> Self {
        Self::new(Input::Stdin)
    }

    fn new(input: Input) -> Self {
        Self {
            input,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            stripes: 1,
            _decode: PhantomData,
        }
    }

    pub(crate) fn max_line_bytes(mut self, n: usize) -> Self {
        self.max_line_bytes = n;
        self
    }

    pub(crate) fn stripes(mut self, n: usize) -> Self {
        self.stripes = n.max(1);
        self
    }

    /// How many stripes `path` is read in: one unless it is a regular file (a pipe or a
    /// device cannot seek, and is read whole by one worker).
    fn stripes_of(&self, path: &std::path::Path) -> usize {
        if self.stripes > 1 && std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            self.stripes
        } else {
            1
        }
    }

    /// The id of stripe `r` of `stripes` of the file `path` (the path alone for one stripe).
    fn split_id(path: &std::path::Path, r: usize, stripes: usize) -> String {
        if stripes == 1 {
            path.display().to_string()
        } else {
            format!("{} [stripe {r} of {stripes}]", path.display())
        }
    }
}

impl<D: Decode> Source<Result<D::Out, BadLine>> for LineSource<D> {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        match &self.input {
            Input::Stdin => Ok(vec![Split::new("stdin", 0)]),
            Input::Files(paths) => {
                let mut splits: Vec<Split> = Vec::with_capacity(paths.len() * self.stripes);
                // The same file under two names would be read twice: compare where they lead.
                let real: Vec<PathBuf> = paths
                    .iter()
                    .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
                    .collect();
                for (i, path) in paths.iter().enumerate() {
                    if let Some(j) = real[..i].iter().position(|r| *r == real[i]) {
                        return Err(format!(
                            "file `{}` is listed twice (also as `{}`)",
                            path.display(),
                            paths[j].display()
                        )
                        .into());
                    }
                    let stripes = self.stripes_of(path);
                    for r in 0..stripes {
                        let id = Self::split_id(path, r, stripes);
                        splits.push(Split::new(id, i * self.stripes + r));
                    }
                }
                Ok(splits)
            }
        }
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<Result<D::Out, BadLine>>>, BoxError> {
        let position = position.unwrap_or(0);
        match &self.input {
            Input::Stdin => {
                if position != 0 {
                    return Err(format!(
                        "standard input cannot seek: cannot resume at byte {position}"
                    )
                    .into());
                }
                let feed = stdin::spawn(io::stdin(), self.max_line_bytes)?;
                Ok(Box::new(LineReader::<D, _>::new(
                    feed,
                    STDIN_NAME,
                    0,
                    self.max_line_bytes,
                )))
            }
            Input::Files(paths) => {
                let (file_index, stripe) = (split.index / self.stripes, split.index % self.stripes);
                let path = paths
                    .get(file_index)
                    .ok_or_else(|| format!("split `{}` is not a file of this source", split.id))?;
                let stripes = self.stripes_of(path);
                if Self::split_id(path, stripe, stripes) != split.id {
                    return Err(format!("split `{}` is not a file of this source", split.id).into());
                }
                let name = path.display().to_string();
                let (file, len) = open_at(File::open(path), position, &name)?;
                let feed = FileFeed {
                    framer: LineFramer::new(file, position, self.max_line_bytes),
                    line: Vec::new(),
                    name: name.clone(),
                    stripe: stripe as u64,
                    stripes: stripes as u64,
                    len,
                    ended: false,
                };
                let input = u32::try_from(file_index)
                    .map_err(|_| format!("split `{}`: too many input files", split.id))?;
                Ok(Box::new(LineReader::<D, _>::new(
                    feed,
                    &name,
                    input,
                    self.max_line_bytes,
                )))
            }
        }
    }
}

/// Adds `name` to an I/O error's message, keeping its kind (so retryability is preserved).
fn in_file(e: io::Error, name: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{name}: {e}"))
}

/// Seeks a freshly opened file to `position`, checking that a line starts there. Returns the
/// file and its length.
fn open_at(file: io::Result<File>, position: u64, name: &str) -> io::Result<(File, u64)> {
    let mut file = file.map_err(|e| in_file(e, name))?;
    let len = file.metadata().map_err(|e| in_file(e, name))?.len();
    if position == 0 {
        return Ok((file, len));
    }
    let misplaced = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: cannot resume at byte {position}: {what}"),
        )
    };
    if position > len {
        return Err(misplaced(&format!("the file has only {len} bytes")));
    }
    if position < len {
        let mut before = [0u8];
        file.seek(SeekFrom::Start(position - 1))
            .and_then(|_| file.read_exact(&mut before))
            .map_err(|e| in_file(e, name))?;
        if before[0] != b'\n' {
            return Err(misplaced("no line starts there"));
        }
    }
    file.seek(SeekFrom::Start(position))
        .map_err(|e| in_file(e, name))?;
    Ok((file, len))
}

/// What a [`LineFeed`] has next.
pub(crate) enum Next<'a> {
    /// A line and its bytes (see [`LineFramer::next_line`]).
    Line(Framed, &'a [u8]),
    /// Nothing yet; ask again later.
    Pending,
    /// The input is exhausted.
    End,
}

/// A stream of framed lines: a file read in place, or standard input's channel.
pub(crate) trait LineFeed {
    /// The next line, if one is ready.
    fn next(&mut self) -> Result<Next<'_>, BoxError>;
    /// Byte offset of the next line to be returned.
    fn position(&self) -> u64;
}

/// A file (or one stripe of it), read directly on the worker (disk reads do not block for
/// long).
struct FileFeed {
    framer: LineFramer<File>,
    line: Vec<u8>,
    name: String,
    /// Which stripe of how many (0 of 1: the whole file).
    stripe: u64,
    stripes: u64,
    /// The file's length when it was opened, or last looked at.
    len: u64,
    /// A skip ran into the end of the file.
    ended: bool,
}

impl FileFeed {
    /// Moves past the lines of other stripes. `false` at the end of the file.
    fn skip_others(&mut self) -> io::Result<bool> {
        loop {
            let block = self.framer.offset() / STRIPE_BLOCK;
            let behind = (self.stripe + self.stripes - block % self.stripes) % self.stripes;
            if behind == 0 {
                return Ok(true);
            }
            let target = (block + behind) * STRIPE_BLOCK;
            if target >= self.len {
                // Unless the file has grown since it was opened, nothing of ours is left.
                self.len = self.framer.get_ref().metadata()?.len();
                if target >= self.len {
                    return Ok(false);
                }
            }
            if !self.framer.skip_to(target, &mut self.line)? {
                return Ok(false);
            }
        }
    }
}

impl LineFeed for FileFeed {
    fn next(&mut self) -> Result<Next<'_>, BoxError> {
        if self.ended {
            return Ok(Next::End);
        }
        if self.stripes > 1 && !self.skip_others().map_err(|e| in_file(e, &self.name))? {
            self.ended = true;
            return Ok(Next::End);
        }
        self.line.clear();
        match self.framer.next_line(&mut self.line) {
            Ok(Some(framed)) => Ok(Next::Line(framed, &self.line)),
            Ok(None) => Ok(Next::End),
            Err(e) => Err(in_file(e, &self.name).into()),
        }
    }

    fn position(&self) -> u64 {
        // Past the last line of this stripe: the end (a skip may have stopped mid-line).
        if self.ended {
            self.len.max(self.framer.offset())
        } else {
            self.framer.offset()
        }
    }
}

/// Reads one split: classifies each framed line and decodes the good ones.
struct LineReader<D, F> {
    feed: F,
    name: String,
    /// The split's index: [`Line::input`].
    input: u32,
    limit: usize,
    _decode: PhantomData<fn() -> D>,
}

impl<D: Decode, F: LineFeed> LineReader<D, F> {
    fn new(feed: F, name: &str, input: u32, limit: usize) -> Self {
        Self {
            feed,
            name: name.to_owned(),
            input,
            limit,
            _decode: PhantomData,
        }
    }

    /// Emits up to `budget` records through `emit`.
    #[inline]
    fn fill(
        &mut self,
        budget: usize,
        mut emit: impl FnMut(Result<D::Out, BadLine>),
    ) -> Result<SourceStatus, BoxError> {
        for _ in 0..budget {
            match self.feed.next()? {
                Next::Line(framed, bytes) => {
                    emit(classify::<D>(
                        &framed, bytes, &self.name, self.input, self.limit,
                    ));
                }
                Next::Pending => return Ok(SourceStatus::Pending),
                Next::End => return Ok(SourceStatus::Finished),
            }
        }
        Ok(SourceStatus::More)
    }
}

/// The record for one line (read from input number `input`, named `name`).
#[inline]
fn classify<D: Decode>(
    framed: &Framed,
    mut bytes: &[u8],
    name: &str,
    input: u32,
    limit: usize,
) -> Result<D::Out, BadLine> {
    if framed.offset == 0 {
        bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    }
    let bad = |reason| BadLine {
        line: String::from_utf8_lossy(bytes).into_owned(),
        offset: framed.offset,
        source: name.to_owned(),
        reason,
    };
    if framed.too_long {
        return Err(bad(BadLineReason::TooLong {
            len: framed.len,
            limit: limit as u64,
        }));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(BadLineReason::Empty));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(bad(BadLineReason::NotUtf8));
    };
    D::decode(text, framed.offset, input).map_err(bad)
}

/// The UTF-8 byte order mark, which some tools write at the start of a text file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

impl<D: Decode, F: LineFeed> SplitReader<Result<D::Out, BadLine>> for LineReader<D, F> {
    fn poll(
        &mut self,
        out: &mut SourceOutput<'_, Result<D::Out, BadLine>>,
    ) -> Result<SourceStatus, BoxError> {
        let budget = out.remaining();
        self.fill(budget, |r| out.push(r))
    }

    fn position(&self) -> u64 {
        self.feed.position()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn write(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn reader(
        path: &Path,
        position: Option<u64>,
        max: usize,
    ) -> Result<Box<LineReader<Raw, FileFeed>>, BoxError> {
        let name = path.display().to_string();
        let (file, len) = open_at(File::open(path), position.unwrap_or(0), &name)?;
        let feed = FileFeed {
            framer: LineFramer::new(file, position.unwrap_or(0), max),
            line: Vec::new(),
            name: name.clone(),
            stripe: 0,
            stripes: 1,
            len,
            ended: false,
        };
        Ok(Box::new(LineReader::new(feed, &name, 0, max)))
    }

    fn good(text: &str, offset: u64) -> Result<Line, BadLine> {
        Ok(Line {
            text: text.into(),
            offset,
            input: 0,
        })
    }

    fn drain(r: &mut LineReader<Raw, FileFeed>) -> Vec<Result<Line, BadLine>> {
        let mut out = Vec::new();
        while r.fill(2, |v| out.push(v)).unwrap() != SourceStatus::Finished {}
        out
    }

    #[test]
    fn every_line_becomes_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "in.txt", b"a\n  \n\xff\xfe\nb\r\nlast");
        let records = drain(&mut reader(&path, None, 100).unwrap());
        let name = path.display().to_string();
        assert_eq!(records.len(), 5);
        assert_eq!(records[0], good("a", 0));
        assert_eq!(
            records[1],
            Err(BadLine {
                line: "  ".into(),
                offset: 2,
                source: name.clone(),
                reason: BadLineReason::Empty
            })
        );
        let bad = records[2].as_ref().unwrap_err();
        assert_eq!((bad.offset, &bad.reason), (5, &BadLineReason::NotUtf8));
        assert_eq!(bad.line, "\u{FFFD}\u{FFFD}");
        assert_eq!(records[3], good("b", 8));
        assert_eq!(records[4], good("last", 11));
    }

    #[test]
    fn too_long_lines_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = vec![b'y'; 3000];
        content.extend_from_slice(b"\nok\n");
        let path = write(dir.path(), "long.txt", &content);
        let records = drain(&mut reader(&path, None, 2048).unwrap());
        let bad = records[0].as_ref().unwrap_err();
        assert_eq!(
            bad.reason,
            BadLineReason::TooLong {
                len: 3000,
                limit: 2048
            }
        );
        assert_eq!(bad.line.len(), 1024);
        assert_eq!(
            bad.to_string(),
            format!(
                "{} at byte 0: line of 3000 bytes exceeds the limit of 2048",
                path.display()
            )
        );
        assert_eq!(records[1], good("ok", 3001));
    }

    #[test]
    fn position_is_the_next_line_and_resumes_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "in.txt", b"one\ntwo\nthree\n");
        let mut r = reader(&path, None, 100).unwrap();
        let mut out = Vec::new();
        assert_eq!(r.fill(1, |v| out.push(v)).unwrap(), SourceStatus::More);
        assert_eq!(r.position(), 4);
        let rest = drain(&mut reader(&path, Some(r.position()), 100).unwrap());
        assert_eq!(rest, [good("two", 4), good("three", 8)]);
        // The end of the file is a valid position, with nothing left to read.
        assert!(drain(&mut reader(&path, Some(14), 100).unwrap()).is_empty());
    }

    /// A byte order mark starts the first line of an input, not any other: the first line is
    /// good (and a line of only a mark is empty); offsets still count the mark's bytes.
    #[test]
    fn a_byte_order_mark_at_the_start_of_an_input_is_not_part_of_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "bom.txt", b"\xEF\xBB\xBFone\n\xEF\xBB\xBFtwo\n");
        let records = drain(&mut reader(&path, None, 100).unwrap());
        assert_eq!(records[0], good("one", 0));
        assert_eq!(records[1], good("\u{FEFF}two", 7));
        let path = write(dir.path(), "only.txt", b"\xEF\xBB\xBF\nx");
        let records = drain(&mut reader(&path, None, 100).unwrap());
        assert_eq!(
            records[0].as_ref().unwrap_err().reason,
            BadLineReason::Empty
        );
        assert_eq!(records[1], good("x", 4));
    }

    #[test]
    fn resuming_off_a_line_start_or_past_the_end_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "in.txt", b"one\ntwo\n");
        let err = reader(&path, Some(5), 100).err().unwrap();
        assert!(err.to_string().contains("no line starts there"), "{err}");
        let err = reader(&path, Some(9), 100).err().unwrap();
        assert!(err.to_string().contains("only 8 bytes"), "{err}");
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let src = LinesSource::files(["/definitely/not/here.jsonl"]);
        let split = &src.splits(1).unwrap()[0];
        let err = src.open(split, None).err().unwrap();
        assert!(
            err.to_string().contains("/definitely/not/here.jsonl"),
            "{err}"
        );
        let io = err.downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn duplicate_files_are_refused() {
        assert!(LinesSource::files(["a", "a"]).splits(1).is_err());
    }

    #[test]
    fn stdin_refuses_to_seek() {
        let src = LinesSource::stdin();
        let split = &src.splits(4).unwrap()[0];
        let err = src.open(split, Some(10)).err().unwrap();
        assert!(err.to_string().contains("cannot seek"), "{err}");
    }

    /// Every record of `split` of `src`, read `step` records per poll, reopened at its
    /// position after every poll when `reopen` (as a restore would).
    fn read_split(
        src: &LinesSource,
        split: &Split,
        step: usize,
        reopen: bool,
    ) -> Vec<Result<Line, BadLine>> {
        let mut out = Vec::new();
        let mut reader = src.open(split, None).unwrap();
        loop {
            let mut batch = Vec::new();
            let status = reader
                .poll(&mut SourceOutput::new(&mut batch, step))
                .unwrap();
            out.extend(batch.into_iter().map(|r| r.value));
            if status == SourceStatus::Finished {
                return out;
            }
            if reopen {
                reader = src.open(split, Some(reader.position())).unwrap();
            }
        }
    }

    #[test]
    fn stripes_share_out_every_line_once() {
        // Lines of many lengths, so that they start and end everywhere relative to the
        // blocks: some exactly at a block's start, a too-long one across two boundaries, a BOM,
        // bad lines, and no newline at the end.
        let mut content = b"\xEF\xBB\xBFfirst\n".to_vec();
        let mut n = 0u64;
        while content.len() < 5 * STRIPE_BLOCK as usize {
            n += 1;
            let len = (n * 7919 % 300) as usize;
            content.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, len));
            content.push(b'\n');
            if n.is_multiple_of(101) {
                content.extend_from_slice(b"\xff\n\n");
            }
            if n == 500 {
                content.resize(2 * STRIPE_BLOCK as usize, b'\n');
                content.extend_from_slice(b"at-a-block-start\n");
            }
            if n == 900 {
                content.extend(std::iter::repeat_n(b'L', 2 * STRIPE_BLOCK as usize));
                content.push(b'\n');
            }
        }
        content.extend_from_slice(b"last");
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "in.txt", &content);
        let whole = LinesSource::files([&path]).max_line_bytes(1000);
        let expected = read_split(&whole, &whole.splits(1).unwrap()[0], 1000, false);
        // The skip of stripe 0 over block 1 lands exactly on this line.
        assert!(expected.iter().any(|r| {
            matches!(r, Ok(l) if l.text == "at-a-block-start" && l.offset == 2 * STRIPE_BLOCK)
        }));
        for stripes in [2, 3, 7] {
            for (step, reopen) in [(1000, false), (3, true)] {
                let src = whole.clone().stripes(stripes);
                let splits = src.splits(1).unwrap();
                assert_eq!(splits.len(), stripes);
                let mut all = Vec::new();
                for split in &splits {
                    let got = read_split(&src, split, step, reopen);
                    let offset = |r: &Result<Line, BadLine>| match r {
                        Ok(l) => l.offset,
                        Err(b) => b.offset,
                    };
                    assert!(got.windows(2).all(|w| offset(&w[0]) < offset(&w[1])));
                    // (Seven stripes of this file leave some empty: a block with no line
                    // start, inside the long line.)
                    assert!(stripes > 3 || !got.is_empty(), "{} is empty", split.id);
                    all.extend(got.into_iter().map(|r| (offset(&r), r)));
                }
                all.sort_by_key(|(o, _)| *o);
                let all: Vec<_> = all.into_iter().map(|(_, r)| r).collect();
                assert_eq!(all, expected, "{stripes} stripes, {step} per poll");
            }
        }
    }

    /// One file under two names would be read twice; it used to be refused only when the
    /// names were equal.
    #[test]
    fn a_file_listed_twice_under_two_names_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.jsonl", b"{}\n");
        let b = write(dir.path(), "b.jsonl", b"{}\n");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let again = dir.path().join("sub").join("..").join("a.jsonl");
        assert_ne!(again, a, "a second name for the same file");
        let err = LinesSource::files([&a, &b, &again])
            .splits(1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("listed twice") && err.contains("a.jsonl"),
            "{err}"
        );
        assert_eq!(LinesSource::files([&a, &b]).splits(1).unwrap().len(), 2);
    }

    /// A pipe or a device cannot seek: it stays one split (`--input <(...)` at two workers
    /// would otherwise fail with "Illegal seek").
    #[cfg(unix)]
    #[test]
    fn what_is_not_a_regular_file_is_one_stripe() {
        let src = LinesSource::files(["/dev/null"]).stripes(3);
        let splits = src.splits(3).unwrap();
        assert_eq!(splits, [Split::new("/dev/null", 0)]);
        let mut r = src.open(&splits[0], None).unwrap();
        let mut batch = Vec::new();
        let status = r.poll(&mut SourceOutput::new(&mut batch, 10)).unwrap();
        assert_eq!((status, batch.len()), (SourceStatus::Finished, 0));
    }

    #[test]
    fn a_stripe_opens_only_as_a_stripe_of_the_same_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "in.txt", b"a\nb\n");
        let two = LinesSource::files([&path]).stripes(2);
        let splits = two.splits(3).unwrap();
        assert_eq!(splits[1].id, format!("{} [stripe 1 of 2]", path.display()));
        let three = LinesSource::files([&path]).stripes(3);
        assert!(three.open(&splits[1], None).is_err());
        // Nothing past the first block: stripe 1 is empty and ends at the end.
        let mut r = two.open(&splits[1], None).unwrap();
        let mut batch = Vec::new();
        let status = r.poll(&mut SourceOutput::new(&mut batch, 10)).unwrap();
        assert_eq!(
            (status, batch.len(), r.position()),
            (SourceStatus::Finished, 0, 4)
        );
    }
}
