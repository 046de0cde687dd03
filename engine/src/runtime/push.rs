//! The runtime's operator interface: what an upstream operator calls on its downstream.
//!
//! Operators are chained: a forward edge is a direct call through `dyn Push<T>`, once per
//! *batch*, never once per record. The caller owns the batch vector; the callee must leave it
//! empty (it may drain it, move its records elsewhere, or swap it) so the caller can reuse the
//! allocation.

use std::any::Any;

use crate::error::OpResult;
use crate::record::Record;
use crate::time::Timestamp;

/// Receiver side of a forward edge.
pub(crate) trait Push<T> {
    /// A batch of records. The callee must leave `batch` empty.
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult;
    /// The input's watermark advanced to `wm`.
    fn watermark(&mut self, wm: Timestamp) -> OpResult;
    /// The predicate of an operator that drops whatever fails it at once (a filter), so that a
    /// fan-out need not clone records for it that it would drop. Default: none (keeps all).
    fn predicate(&self) -> Option<&dyn Fn(&T) -> bool> {
        None
    }
    /// `n` records were not pushed because they failed [`predicate`](Self::predicate): count
    /// them as received.
    fn skipped(&mut self, _n: usize) {}
    /// The input became idle: exclude it from watermark computation until it sends again.
    fn idle(&mut self) -> OpResult {
        Ok(())
    }
    /// Processing time advanced to `now`. May be delivered more than once for the same `now`.
    fn tick(&mut self, now: Timestamp) -> OpResult;
    /// End of input. Implies a final watermark of `Timestamp::MAX`. Called exactly once.
    fn end(&mut self) -> OpResult;
    /// Checkpoint barrier `n`: every record pushed before it belongs to checkpoint `n`. The
    /// operator snapshots its state (once every input has delivered `n`) and forwards it to
    /// every output, main and side.
    fn barrier(&mut self, n: u64) -> OpResult;
}

/// A boxed pusher.
pub(crate) type BoxPush<T> = Box<dyn Push<T>>;

/// A type-erased `BoxPush<T>`, used while wiring a graph whose node types differ.
pub(crate) type AnyPush = Box<dyn Any>;

/// Wraps a typed pusher for the wiring phase.
pub(crate) fn erase<T: 'static>(p: BoxPush<T>) -> AnyPush {
    Box::new(p)
}

/// Recovers the typed pushers of one output port, joining several consumers with a [`Tee`].
pub(crate) fn join_outputs<T: Clone + 'static>(outputs: Vec<AnyPush>) -> BoxPush<T> {
    let mut typed: Vec<BoxPush<T>> = outputs
        .into_iter()
        .map(|p| {
            *p.downcast::<BoxPush<T>>()
                .expect("graph wiring: edge type mismatch (a bug in sluice)")
        })
        .collect();
    match typed.len() {
        0 => Box::new(Discard),
        1 => typed.pop().expect("one element"),
        _ => Box::new(Tee {
            outs: typed,
            copy: Vec::new(),
        }),
    }
}

/// The downstream of an output nobody consumes.
pub(crate) struct Discard;

impl<T> Push<T> for Discard {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        batch.clear();
        Ok(())
    }
    fn watermark(&mut self, _: Timestamp) -> OpResult {
        Ok(())
    }
    fn tick(&mut self, _: Timestamp) -> OpResult {
        Ok(())
    }
    fn end(&mut self) -> OpResult {
        Ok(())
    }
    fn barrier(&mut self, _: u64) -> OpResult {
        Ok(())
    }
}

/// Fan-out: a stream consumed by several operators. Every consumer but the last gets a clone.
pub(crate) struct Tee<T> {
    outs: Vec<BoxPush<T>>,
    /// The clones for one consumer, emptied by it: kept from batch to batch, so that they are
    /// written to memory still in cache rather than to a fresh allocation each time.
    copy: Vec<Record<T>>,
}

impl<T: Clone> Push<T> for Tee<T> {
    fn push(&mut self, batch: &mut Vec<Record<T>>) -> OpResult {
        let (last, rest) = self.outs.split_last_mut().expect("tee has outputs");
        let copy = &mut self.copy;
        for out in rest {
            // Clone only what the consumer keeps: most fan-outs feed filters.
            match out.predicate() {
                None => copy.extend_from_slice(batch),
                Some(keep) => {
                    copy.extend(batch.iter().filter(|r| keep(&r.value)).cloned());
                    out.skipped(batch.len() - copy.len());
                }
            }
            if !copy.is_empty() {
                out.push(copy)?;
                copy.clear();
            }
        }
        last.push(batch)
    }
    fn watermark(&mut self, wm: Timestamp) -> OpResult {
        self.outs.iter_mut().try_for_each(|o| o.watermark(wm))
    }
    fn idle(&mut self) -> OpResult {
        self.outs.iter_mut().try_for_each(|o| o.idle())
    }
    fn tick(&mut self, now: Timestamp) -> OpResult {
        self.outs.iter_mut().try_for_each(|o| o.tick(now))
    }
    fn end(&mut self) -> OpResult {
        self.outs.iter_mut().try_for_each(|o| o.end())
    }
    fn barrier(&mut self, n: u64) -> OpResult {
        self.outs.iter_mut().try_for_each(|o| o.barrier(n))
    }
}
