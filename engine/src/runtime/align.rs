//! Checkpoint barrier alignment for operators with several inputs (the receiving end of an
//! exchange, `union`): an input that has delivered `Barrier(n)` is held back, its later
//! messages queued, until every input that has not ended has delivered it too.

use std::collections::VecDeque;

use crate::record::Message;

/// Alignment state of one operator instance.
pub(crate) struct Aligner<M> {
    /// The barrier being aligned.
    aligning: Option<u64>,
    blocked: Vec<bool>,
    ended: Vec<bool>,
    held: VecDeque<(usize, Message<M>)>,
}

/// Messages held back during an alignment, in arrival order, with their input.
pub(crate) type Held<M> = VecDeque<(usize, Message<M>)>;

impl<M> Aligner<M> {
    pub(crate) fn new(inputs: usize) -> Self {
        Self {
            aligning: None,
            blocked: vec![false; inputs],
            ended: vec![false; inputs],
            held: VecDeque::new(),
        }
    }

    /// Whether `input` has delivered the barrier being aligned.
    #[inline]
    pub(crate) fn is_blocked(&self, input: usize) -> bool {
        self.blocked[input]
    }

    /// Queues `msg` if `input` is held back; otherwise hands it back to be handled now.
    #[inline]
    pub(crate) fn admit(&mut self, input: usize, msg: Message<M>) -> Option<Message<M>> {
        if self.blocked[input] {
            self.held.push_back((input, msg));
            return None;
        }
        Some(msg)
    }

    /// `input` delivered barrier `n`.
    pub(crate) fn barrier(&mut self, input: usize, n: u64) {
        debug_assert!(
            !matches!(self.aligning, Some(a) if a != n),
            "one barrier at a time"
        );
        self.aligning = Some(n);
        self.blocked[input] = true;
    }

    /// `input` ended: it no longer has to deliver barriers.
    pub(crate) fn end(&mut self, input: usize) {
        self.ended[input] = true;
    }

    /// If every live input has delivered the barrier being aligned: unblocks all inputs and
    /// returns the barrier, to forward, and what was held back, to handle next.
    pub(crate) fn release(&mut self) -> Option<(u64, Held<M>)> {
        let n = self.aligning?;
        if !(0..self.blocked.len()).all(|i| self.blocked[i] || self.ended[i]) {
            return None;
        }
        self.aligning = None;
        self.blocked.fill(false);
        Some((n, std::mem::take(&mut self.held)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_barrier_is_released_once_every_live_input_delivered_it() {
        let mut a = Aligner::<u32>::new(3);
        a.barrier(0, 7);
        assert!(a.admit(0, Message::Watermark(1)).is_none(), "held back");
        assert!(a.admit(1, Message::Watermark(2)).is_some(), "not blocked");
        assert!(a.release().is_none());
        a.end(2);
        assert!(a.release().is_none());
        a.barrier(1, 7);
        let (n, held) = a.release().expect("aligned");
        assert_eq!(n, 7);
        assert_eq!(held.len(), 1);
        assert!(!a.is_blocked(0) && !a.is_blocked(1));
        assert!(a.release().is_none());
    }
}
