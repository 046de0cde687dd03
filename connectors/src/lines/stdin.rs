//! Reading standard input without blocking a worker.
//!
//! A read from a pipe or terminal blocks until input arrives, and a blocked worker would stall
//! every operator it runs. So a dedicated thread frames the input into lines and sends them, in
//! batches, over a bounded channel; the split reader only ever does `try_recv`. The bound keeps
//! backpressure: when the job falls behind, the thread stops reading.
//!
//! A batch is sent as soon as the thread's read buffer is drained (the next read might block),
//! so interactive input is not held back waiting for a full batch; piped input still moves in
//! large batches. Emptied batches travel back to the thread to be refilled, so lines cost no
//! allocation in steady state.
//!
//! The thread ends at end of input, after a read error (which it reports), or when it next
//! has a batch to send and finds the reader gone. A thread blocked in a read of an idle terminal
//! cannot be interrupted; it ends with the process.

use std::io::{self, Read};
use std::ops::Range;
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use sluice_engine::BoxError;

use super::framing::{Framed, LineFramer};
use super::{LineFeed, Next};

/// Batches in flight between the thread and the reader.
const CHANNEL_BATCHES: usize = 4;
/// A batch is sent when it holds this many lines...
const BATCH_LINES: usize = 1024;
/// ...or this many bytes.
const BATCH_BYTES: usize = 256 * 1024;

/// Lines framed by the thread: their bytes back to back in `data`.
#[derive(Default)]
struct LineBatch {
    data: Vec<u8>,
    lines: Vec<(Framed, Range<usize>)>,
}

enum Chunk {
    Lines(LineBatch),
    Failed(io::Error),
    End,
}

/// The reader's end of the channel.
pub(crate) struct ChannelFeed {
    rx: Receiver<Chunk>,
    recycle: Sender<LineBatch>,
    batch: LineBatch,
    at: usize,
    position: u64,
    finished: bool,
}

/// Starts a thread that frames `input` into lines of at most `max` bytes.
///
/// # Errors
///
/// The thread could not be spawned.
pub(crate) fn spawn<R: Read + Send + 'static>(input: R, max: usize) -> io::Result<ChannelFeed> {
    let (tx, rx) = bounded(CHANNEL_BATCHES);
    let (recycle, recycled) = bounded(CHANNEL_BATCHES + 2);
    thread::Builder::new()
        .name("sluice-stdin".into())
        .spawn(move || pump(LineFramer::new(input, 0, max), &tx, &recycled))?;
    Ok(ChannelFeed {
        rx,
        recycle,
        batch: LineBatch::default(),
        at: 0,
        position: 0,
        finished: false,
    })
}

/// The thread's loop: frame, batch, send; stop at the end of input or when nobody listens.
fn pump<R: Read>(mut framer: LineFramer<R>, tx: &Sender<Chunk>, recycled: &Receiver<LineBatch>) {
    loop {
        let mut batch = recycled.try_recv().unwrap_or_default();
        let last = loop {
            let start = batch.data.len();
            match framer.next_line(&mut batch.data) {
                Ok(Some(framed)) => {
                    batch.lines.push((framed, start..batch.data.len()));
                    if batch.lines.len() >= BATCH_LINES
                        || batch.data.len() >= BATCH_BYTES
                        || framer.buffer_is_empty()
                    {
                        break None;
                    }
                }
                Ok(None) => break Some(Chunk::End),
                Err(e) => {
                    batch.data.truncate(start);
                    break Some(Chunk::Failed(e));
                }
            }
        };
        if !batch.lines.is_empty() && tx.send(Chunk::Lines(batch)).is_err() {
            return;
        }
        if let Some(last) = last {
            // The reader may be gone already; then there is nobody to tell.
            let _ = tx.send(last);
            return;
        }
    }
}

impl LineFeed for ChannelFeed {
    fn next(&mut self) -> Result<Next<'_>, BoxError> {
        while self.at == self.batch.lines.len() {
            if self.finished {
                return Ok(Next::End);
            }
            match self.rx.try_recv() {
                Ok(Chunk::Lines(full)) => {
                    let mut done = std::mem::replace(&mut self.batch, full);
                    self.at = 0;
                    done.data.clear();
                    done.lines.clear();
                    // If the thread has enough spare batches, this one is simply dropped.
                    let _ = self.recycle.try_send(done);
                }
                Ok(Chunk::End) => self.finished = true,
                Ok(Chunk::Failed(e)) => {
                    return Err(
                        io::Error::new(e.kind(), format!("reading standard input: {e}")).into(),
                    )
                }
                Err(TryRecvError::Empty) => return Ok(Next::Pending),
                Err(TryRecvError::Disconnected) => {
                    return Err("the standard input reader thread stopped unexpectedly".into())
                }
            }
        }
        let (framed, range) = self.batch.lines[self.at].clone();
        self.at += 1;
        self.position = framed.next;
        Ok(Next::Line(framed, &self.batch.data[range]))
    }

    fn position(&self) -> u64 {
        self.position
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use super::*;

    /// Polls `feed` until it ends, giving up after a few seconds.
    fn collect(feed: &mut ChannelFeed) -> Vec<(u64, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut lines = Vec::new();
        loop {
            match feed.next().unwrap() {
                Next::Line(f, bytes) => lines.push((f.offset, bytes.to_vec())),
                Next::Pending => {
                    assert!(Instant::now() < deadline, "reader thread stalled");
                    thread::yield_now();
                }
                Next::End => return lines,
            }
        }
    }

    #[test]
    fn delivers_every_line_with_offsets() {
        let input: Vec<u8> = (0..5000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut feed = spawn(io::Cursor::new(input.clone()), 100).unwrap();
        let lines = collect(&mut feed);
        assert_eq!(lines.len(), 5000);
        assert_eq!(lines[4999].1, b"line 4999");
        assert_eq!(lines[1].0, 7);
        assert_eq!(feed.position(), input.len() as u64);
        // After the end it stays ended.
        assert!(matches!(feed.next().unwrap(), Next::End));
    }

    #[test]
    fn pending_until_input_arrives() {
        let (mut writer, reader) = pipe();
        let mut feed = spawn(reader, 100).unwrap();
        assert!(matches!(feed.next().unwrap(), Next::Pending));
        writer.write_all(b"hello\n").unwrap();
        drop(writer);
        assert_eq!(collect(&mut feed), [(0, b"hello".to_vec())]);
    }

    #[test]
    fn read_errors_are_reported() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut feed = spawn(Broken, 100).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = loop {
            match feed.next() {
                Err(e) => break e,
                Ok(Next::Pending) if Instant::now() < deadline => thread::yield_now(),
                Ok(_) => panic!("expected an error"),
            }
        };
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }

    /// An in-process pipe: a reader that blocks until the writer writes or is dropped.
    fn pipe() -> (impl Write, impl Read + Send + 'static) {
        struct W(Sender<Vec<u8>>);
        impl Write for W {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.send(buf.to_vec()).map_err(io::Error::other)?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        struct R(Receiver<Vec<u8>>, io::Cursor<Vec<u8>>);
        impl Read for R {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                loop {
                    let n = self.1.read(buf)?;
                    if n > 0 {
                        return Ok(n);
                    }
                    match self.0.recv() {
                        Ok(chunk) => self.1 = io::Cursor::new(chunk),
                        Err(_) => return Ok(0),
                    }
                }
            }
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        (W(tx), R(rx, io::Cursor::new(Vec::new())))
    }
}
