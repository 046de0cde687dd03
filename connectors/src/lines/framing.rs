//! Bounded line framing: splits a byte stream into lines without ever holding more than
//! `max + 1` bytes of one line.
//!
//! A line ends at `\n` (a `\r` before it is dropped too) or at the end of input. A line longer
//! than the limit is skipped to its newline: only its first [`BAD_LINE_HEAD`] bytes are kept, and
//! its full length is reported, so one runaway line costs neither memory nor the lines after it.

use std::io::{self, BufRead, BufReader, Read, Seek};

/// How much of a too-long line is kept for the dead-letter record.
pub(crate) const BAD_LINE_HEAD: usize = 1024;

/// Read buffer size: large reads for files, and large enough that standard input's own buffer is
/// bypassed.
const READ_BUFFER: usize = 64 * 1024;

/// Where a line was and what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framed {
    /// Byte offset of the line's first byte.
    pub(crate) offset: u64,
    /// Byte offset just past the line's terminator: where the next line starts.
    pub(crate) next: u64,
    /// Length of the line without its terminator (`\n` or `\r\n`).
    pub(crate) len: u64,
    /// Whether `len` exceeds the limit; then only the line's head was kept.
    pub(crate) too_long: bool,
}

/// Splits a reader into lines.
pub(crate) struct LineFramer<R> {
    inner: BufReader<R>,
    max: usize,
    offset: u64,
}

impl<R: Read> LineFramer<R> {
    /// A framer over `inner`, whose first byte is at byte offset `offset` of its input.
    pub(crate) fn new(inner: R, offset: u64, max: usize) -> Self {
        Self {
            inner: BufReader::with_capacity(READ_BUFFER, inner),
            max,
            offset,
        }
    }

    /// The input.
    pub(crate) fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// Byte offset of the next unread byte: the start of the next line.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the next [`next_line`](Self::next_line) has to read from the input (and so may
    /// block on a pipe or terminal).
    pub(crate) fn buffer_is_empty(&self) -> bool {
        self.inner.buffer().is_empty()
    }

    /// Reads the next line and appends its bytes (without terminator; for a too-long line, its
    /// first [`BAD_LINE_HEAD`] bytes) to `out`. `None` at the end of input.
    ///
    /// # Errors
    ///
    /// A read error of the input. The bytes appended so far are then unspecified.
    pub(crate) fn next_line(&mut self, out: &mut Vec<u8>) -> io::Result<Option<Framed>> {
        let start = out.len();
        let offset = self.offset;
        // Bytes of the line before its `\n`; we keep at most max + 1 of them (a trailing `\r`
        // may still be dropped) before deciding the line is too long.
        let keep = self.max.saturating_add(1);
        let mut total = 0u64;
        let mut too_long = false;
        let mut last_cr = false;
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let newline = memchr::memchr(b'\n', available);
            let chunk = &available[..newline.unwrap_or(available.len())];
            total += chunk.len() as u64;
            if let Some(&last) = chunk.last() {
                last_cr = last == b'\r';
            }
            let kept = out.len() - start;
            too_long |= kept + chunk.len() > keep;
            // Past the limit, keep only the head (which may be all of a short limit's line).
            let cap = if too_long { BAD_LINE_HEAD } else { keep };
            out.extend_from_slice(&chunk[..cap.saturating_sub(kept).min(chunk.len())]);
            let used = chunk.len() + usize::from(newline.is_some());
            self.inner.consume(used);
            self.offset += used as u64;
            if newline.is_some() {
                break;
            }
        }
        let len = total - u64::from(last_cr);
        if last_cr && (out.len() - start) as u64 == total {
            // We kept the whole line, `\r` included.
            out.pop();
        }
        if len > self.max as u64 {
            // Either we stopped keeping bytes, or the line is exactly one byte over.
            too_long = true;
            out.truncate(start + BAD_LINE_HEAD);
        }
        Ok(Some(Framed {
            offset,
            next: self.offset,
            len,
            too_long,
        }))
    }
}

impl<R: Read + Seek> LineFramer<R> {
    /// Moves to the first line that starts at byte `target` or later, reading only the line
    /// that `target` falls in (a line starts at `target` if and only if the byte before it is a
    /// `\n`). `target` must be past [`offset`](Self::offset). Returns `false` at the end of the
    /// input, leaving the framer there. `scratch` is cleared; a too-long line costs no memory.
    ///
    /// # Errors
    ///
    /// A read or seek error of the input.
    pub(crate) fn skip_to(&mut self, target: u64, scratch: &mut Vec<u8>) -> io::Result<bool> {
        debug_assert!(target > self.offset);
        let ahead = i64::try_from(target - 1 - self.offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "skip beyond 2^63 bytes"))?;
        // Within the buffer this keeps it; beyond, one seek.
        self.inner.seek_relative(ahead)?;
        self.offset = target - 1;
        scratch.clear();
        let more = self.next_line(scratch)?.is_some();
        scratch.clear();
        Ok(more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `input` read `step` bytes at a time (to cross buffer boundaries anywhere).
    fn frame(input: &[u8], max: usize, step: usize) -> Vec<(Framed, Vec<u8>)> {
        struct Trickle<'a>(&'a [u8], usize);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut framer = LineFramer::new(Trickle(input, step), 0, max);
        let mut lines = Vec::new();
        let mut buf = Vec::new();
        while let Some(f) = framer.next_line(&mut buf).unwrap() {
            lines.push((f, std::mem::take(&mut buf)));
        }
        lines
    }

    #[test]
    fn splits_on_newlines_and_strips_crlf() {
        for step in [1, 2, 3, 1000] {
            let lines = frame(b"ab\r\n\ncd\nef", 10, step);
            let text: Vec<_> = lines.iter().map(|(_, b)| b.as_slice()).collect();
            assert_eq!(text, [&b"ab"[..], b"", b"cd", b"ef"], "step {step}");
            let offsets: Vec<_> = lines
                .iter()
                .map(|(f, _)| (f.offset, f.next, f.len))
                .collect();
            assert_eq!(offsets, [(0, 4, 2), (4, 5, 0), (5, 8, 2), (8, 10, 2)]);
        }
    }

    #[test]
    fn no_line_after_a_final_newline() {
        assert_eq!(frame(b"a\n", 10, 7).len(), 1);
        assert!(frame(b"", 10, 7).is_empty());
    }

    #[test]
    fn too_long_line_keeps_head_and_reports_full_length() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\r\nok\n");
        for step in [1, 100, 4096, 100_000] {
            let lines = frame(&input, 100, step);
            assert_eq!(lines.len(), 2);
            let (f, head) = &lines[0];
            assert!(f.too_long);
            assert_eq!((f.offset, f.next, f.len), (0, 5002, 5000));
            assert_eq!(head.len(), BAD_LINE_HEAD);
            assert_eq!(lines[1].1, b"ok");
            assert!(!lines[1].0.too_long);
        }
    }

    #[test]
    fn limit_is_inclusive_and_ignores_the_terminator() {
        let lines = frame(b"12345\r\n123456\n", 5, 3);
        assert!(!lines[0].0.too_long);
        assert_eq!(lines[0].1, b"12345");
        assert!(lines[1].0.too_long);
        assert_eq!(lines[1].0.len, 6);
        assert_eq!(lines[1].1, b"123456", "a short too-long line is kept whole");
    }

    proptest::proptest! {
        /// After `skip_to(target)`, the framer is at the first line that starts at `target` or
        /// later (a line starts after every `\n`), and frames the rest as from there.
        #[test]
        fn skip_to_lands_on_the_first_line_at_or_after_the_target(
            input in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'b', b'\n', b'\r']), 0..300),
            target in 1u64..320,
            max in 1usize..20,
            first in 0usize..4,
        ) {
            let mut framer = LineFramer::new(io::Cursor::new(input.clone()), 0, max);
            let mut buf = Vec::new();
            // Read a few lines first, so that the skip starts anywhere.
            for _ in 0..first {
                if framer.next_line(&mut buf).unwrap().is_none() {
                    break;
                }
            }
            proptest::prop_assume!(target > framer.offset());
            let start = (target as usize - 1..input.len())
                .find(|&i| input[i] == b'\n')
                .map(|i| i + 1);
            let more = framer.skip_to(target, &mut buf).unwrap();
            let rest: Vec<_> = std::iter::from_fn(|| {
                buf.clear();
                framer.next_line(&mut buf).unwrap().map(|f| (f, buf.clone()))
            })
            .collect();
            match start {
                Some(s) if s < input.len() => {
                    proptest::prop_assert!(more);
                    let tail = io::Cursor::new(input[s..].to_vec());
                    let mut from = LineFramer::new(tail, s as u64, max);
                    let expected: Vec<_> = std::iter::from_fn(|| {
                        let mut b = Vec::new();
                        from.next_line(&mut b).unwrap().map(|f| (f, b))
                    })
                    .collect();
                    proptest::prop_assert_eq!(rest, expected);
                }
                // No line starts at or after the target.
                _ => proptest::prop_assert!(rest.is_empty()),
            }
        }
    }
}
