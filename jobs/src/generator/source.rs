//! [`CityGenerator`] as a split-based [`Source<String>`].
//!
//! # Checkpointing
//!
//! Source split `i` is simulated split `i`; its position is the number of lines it has
//! emitted. `open(split, Some(k))` re-simulates the split from the start and skips its first
//! `k` lines, so a restored split emits exactly the lines it had not emitted (the simulation is
//! deterministic). The skip costs as much as generating the skipped lines (about half a second
//! per million).

use std::time::Instant;

use sluice_engine::source::{Source, SourceOutput, SourceStatus, Split, SplitReader};
use sluice_engine::BoxError;

use super::{CityGenerator, GeneratedLine, Pacer, SplitLines, TimedLine};

impl Source<GeneratedLine> for CityGenerator {
    /// One split per simulated split ([`GeneratorConfig::splits`](super::GeneratorConfig));
    /// the parallelism plays no part, so the data does not depend on it.
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        let n = self.cfg.splits;
        Ok((0..n)
            .map(|i| Split::new(format!("city-{i}-of-{n}"), i))
            .collect())
    }

    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<GeneratedLine>>, BoxError> {
        let n = self.cfg.splits;
        if split.index >= n || split.id != format!("city-{}-of-{n}", split.index) {
            return Err(format!(
                "split `{}` is not a split of this generator (it has {n} splits)",
                split.id
            )
            .into());
        }
        let mut lines = self.split_lines(split.index);
        let position = position.unwrap_or(0);
        for _ in 0..position {
            if lines.next_timed().is_none() {
                break;
            }
        }
        Ok(Box::new(CityReader {
            lines,
            next: None,
            position,
            done: false,
            pacer: Pacer::new(self.cfg.pace, self.cfg.start_ms, n),
        }))
    }
}

struct CityReader {
    lines: SplitLines,
    /// A line drawn but held back by the pacer.
    next: Option<TimedLine>,
    position: u64,
    done: bool,
    pacer: Pacer,
}

impl SplitReader<GeneratedLine> for CityReader {
    fn poll(
        &mut self,
        out: &mut SourceOutput<'_, GeneratedLine>,
    ) -> Result<SourceStatus, BoxError> {
        let now = Instant::now();
        while !out.is_full() {
            let line = match self.next.take() {
                Some(l) => l,
                None => match self.lines.next_timed() {
                    Some(l) => l,
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            if self.pacer.wait(now, line.release).is_some() {
                self.next = Some(line);
                return Ok(SourceStatus::Pending);
            }
            self.pacer.emitted(1);
            self.position += 1;
            out.push_at(line.ts, line.line);
        }
        Ok(if self.done {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn position(&self) -> u64 {
        self.position
    }
}
