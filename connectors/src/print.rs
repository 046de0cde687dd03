//! A sink that prints every record to standard output, one line each: [`PrintSink`].
//!
//! For demos and debugging. Lines of one batch are written together, under one lock of
//! stdout, so the lines of different workers never interleave mid-line.

use std::fmt::{self, Debug};
use std::io::{self, Write};
use std::sync::Arc;

use sluice_engine::sink::{Sink, SinkContext, SinkWriter};
use sluice_engine::{BoxError, Record};

/// Writes one value into the output buffer.
type Format<T> = Arc<dyn Fn(&T, &mut Vec<u8>) -> io::Result<()> + Send + Sync>;

/// Prints each value on its own line: `[prefix][:worker]> value`.
///
/// The value is printed with [`Debug`] ([`new`](Self::new)) or with a function of your own
/// ([`with_format`](Self::with_format)). The line starts with the [`prefix`](Self::prefix), if
/// any, then the worker index (from 0) when the job runs on more than one worker, as Flink's
/// `print()` does: `surge:1> (7, 2.0)`, `surge> (7, 2.0)`, `1> (7, 2.0)`, or just `(7, 2.0)`.
///
/// Each batch is formatted into a reused buffer and written with one lock of stdout; nothing is
/// allocated per record except what a custom format function allocates.
///
/// # Errors
///
/// A failed write to stdout (a closed pipe, say) fails the job.
///
/// # Examples
///
/// ```
/// use sluice_connectors::{PrintSink, VecSource};
/// use sluice_engine::{Config, StreamEnv};
///
/// let env = StreamEnv::new(Config::default());
/// env.source(VecSource::new(vec![1, 2])).sink(PrintSink::new().prefix("n"));
/// env.execute().unwrap(); // prints "n> 1" and "n> 2"
/// ```
pub struct PrintSink<T> {
    format: Format<T>,
    prefix: String,
}

impl<T> Clone for PrintSink<T> {
    fn clone(&self) -> Self {
        Self {
            format: self.format.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

impl<T> Debug for PrintSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrintSink")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl<T: Debug> Default for PrintSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Debug> PrintSink<T> {
    /// Prints values with their `Debug` format.
    pub fn new() -> Self {
        Self {
            format: Arc::new(|v, out| write!(out, "{v:?}")),
            prefix: String::new(),
        }
    }
}

impl<T> PrintSink<T> {
    /// Prints values as `format` renders them (for types without `Debug`, or a nicer line).
    pub fn with_format(format: impl Fn(&T) -> String + Send + Sync + 'static) -> Self {
        Self {
            format: Arc::new(move |v, out| out.write_all(format(v).as_bytes())),
            prefix: String::new(),
        }
    }

    /// Starts every line with `prefix` (to tell several print sinks apart).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

impl<T: Send + 'static> Sink<T> for PrintSink<T> {
    fn open(&self, cx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, BoxError> {
        Ok(Box::new(PrintWriter {
            format: self.format.clone(),
            head: line_head(&self.prefix, cx.worker, cx.parallelism),
            buf: Vec::new(),
        }))
    }
}

/// What starts every line of one worker.
fn line_head(prefix: &str, worker: usize, parallelism: usize) -> String {
    match (prefix.is_empty(), parallelism > 1) {
        (true, false) => String::new(),
        (false, false) => format!("{prefix}> "),
        (true, true) => format!("{worker}> "),
        (false, true) => format!("{prefix}:{worker}> "),
    }
}

struct PrintWriter<T> {
    format: Format<T>,
    head: String,
    buf: Vec<u8>,
}

impl<T> PrintWriter<T> {
    /// Formats `batch` into `self.buf`, one line per record, and empties the batch.
    fn render(&mut self, batch: &mut Vec<Record<T>>) -> io::Result<()> {
        self.buf.clear();
        for record in batch.drain(..) {
            self.buf.extend_from_slice(self.head.as_bytes());
            (self.format)(&record.value, &mut self.buf)?;
            self.buf.push(b'\n');
        }
        Ok(())
    }
}

impl<T> SinkWriter<T> for PrintWriter<T> {
    fn write(&mut self, batch: &mut Vec<Record<T>>) -> Result<(), BoxError> {
        self.render(batch)?;
        let mut stdout = io::stdout().lock();
        stdout.write_all(&self.buf)?;
        stdout.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sluice_engine::time::NO_TIMESTAMP;

    use super::*;

    fn render<T: Send + 'static>(
        sink: &PrintSink<T>,
        worker: usize,
        p: usize,
        values: Vec<T>,
    ) -> String {
        let mut w = PrintWriter {
            format: sink.format.clone(),
            head: line_head(&sink.prefix, worker, p),
            buf: Vec::new(),
        };
        let mut batch: Vec<_> = values
            .into_iter()
            .map(|v| Record::new(NO_TIMESTAMP, v))
            .collect();
        w.render(&mut batch).unwrap();
        assert!(batch.is_empty());
        String::from_utf8(w.buf).unwrap()
    }

    #[test]
    fn lines_carry_prefix_and_worker_only_when_useful() {
        let plain = PrintSink::new();
        assert_eq!(render(&plain, 0, 1, vec![(1, "a")]), "(1, \"a\")\n");
        assert_eq!(render(&PrintSink::new(), 1, 2, vec![3, 4]), "1> 3\n1> 4\n");
        let named = PrintSink::new().prefix("surge");
        assert_eq!(render(&named, 0, 1, vec![5]), "surge> 5\n");
        assert_eq!(render(&named, 1, 3, vec![5]), "surge:1> 5\n");
    }

    #[test]
    fn custom_format_needs_no_debug() {
        struct Opaque(u8);
        let sink = PrintSink::with_format(|o: &Opaque| format!("#{}", o.0)).prefix("x");
        assert_eq!(render(&sink, 0, 1, vec![Opaque(7)]), "x> #7\n");
    }
}
