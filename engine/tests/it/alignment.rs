//! Watermark alignment: a split far ahead in event time waits for the others.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::prelude::*;
use sluice_engine::BoxError;

use super::support::{channel_sink, run_ok};

/// Two splits over the same number of records: split 0's event time advances 1000 times
/// faster than split 1's.
struct TwoSpeeds {
    records: u64,
}

struct Reader {
    split: usize,
    step: i64,
    next: u64,
    end: u64,
}

impl Source<(usize, i64)> for TwoSpeeds {
    fn splits(&self, _parallelism: usize) -> Result<Vec<Split>, BoxError> {
        Ok(vec![Split::new("fast", 0), Split::new("slow", 1)])
    }
    fn open(
        &self,
        split: &Split,
        position: Option<u64>,
    ) -> Result<Box<dyn SplitReader<(usize, i64)>>, BoxError> {
        Ok(Box::new(Reader {
            split: split.index,
            step: if split.index == 0 { 1_000 } else { 1 },
            next: position.unwrap_or(0),
            end: self.records,
        }))
    }
}

impl SplitReader<(usize, i64)> for Reader {
    fn poll(&mut self, out: &mut SourceOutput<'_, (usize, i64)>) -> Result<SourceStatus, BoxError> {
        while !out.is_full() && self.next < self.end {
            let ts = self.next as i64 * self.step;
            out.push_at(ts, (self.split, ts));
            self.next += 1;
        }
        Ok(if self.next == self.end {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }
    fn position(&self) -> u64 {
        self.next
    }
}

const RECORDS: u64 = 20_000;

/// The largest lead in event time of the fast split over the slow one, while the slow one was
/// still running.
fn max_lead(parallelism: usize, drift: Option<Duration>) -> i64 {
    let latest = Arc::new([AtomicI64::new(i64::MIN), AtomicI64::new(i64::MIN)]);
    let lead = Arc::new(AtomicI64::new(0));
    let env = StreamEnv::new(Config::default().parallelism(parallelism).batch_size(16));
    let mut strategy = Watermarks::monotonous();
    if let Some(d) = drift {
        strategy = strategy.align_splits(d);
    }
    let (l, m) = (latest.clone(), lead.clone());
    let slow_end = RECORDS as i64 - 1;
    let (sink, out) = channel_sink();
    env.source(TwoSpeeds { records: RECORDS })
        .with_watermarks(strategy)
        .inspect(move |&(split, ts)| {
            l[split].fetch_max(ts, Ordering::SeqCst);
            let slow = l[1].load(Ordering::SeqCst);
            if split == 0 && slow < slow_end {
                m.fetch_max(ts - slow.max(0), Ordering::SeqCst);
            }
        })
        .sink(sink);
    let (_, values) = run_ok(&env, &out);
    assert_eq!(values.len() as u64, 2 * RECORDS, "every record arrives");
    lead.load(Ordering::SeqCst)
}

#[test]
fn aligned_splits_stay_within_the_drift_at_any_parallelism() {
    for p in [1, 2] {
        // 10 s of drift, plus one batch of the fast split (16 s) and some slack for the moment
        // the slow split's progress becomes visible to the fast one's worker.
        let lead = max_lead(p, Some(Duration::from_secs(10)));
        assert!(lead <= 60_000, "p={p}: the fast split led by {lead} ms");
    }
}

#[test]
fn without_alignment_the_fast_split_runs_ahead() {
    // The contrast that shows the test above can fail: at 2 workers each split runs at its own
    // pace, and the fast one covers its 20,000 s of event time long before the slow one ends.
    let lead = max_lead(2, None);
    assert!(lead > 60_000, "lead {lead} ms");
}
