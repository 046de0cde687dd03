//! Combining the watermarks of several inputs.
//!
//! An operator with several inputs (a union, or the receiving end of an exchange, whose inputs
//! are the sending workers) has the *minimum* of its live inputs' watermarks. An input that is
//! idle or has ended does not hold the minimum back. The combined watermark only moves forward.

use crate::time::Timestamp;

/// What changed in the combined output of a [`WatermarkTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The combined watermark advanced to this value.
    Watermark(Timestamp),
    /// Every input that has not ended is idle.
    Idle,
}

#[derive(Debug, Clone, Copy)]
struct Input {
    wm: Timestamp,
    idle: bool,
    ended: bool,
}

/// Tracks per-input watermarks, idleness and end of input; emits the combined watermark.
#[derive(Debug, Clone)]
pub(crate) struct WatermarkTracker {
    inputs: Vec<Input>,
    current: Timestamp,
    idle: bool,
    live: usize,
}

impl WatermarkTracker {
    pub(crate) fn new(inputs: usize) -> Self {
        Self {
            inputs: vec![
                Input {
                    wm: Timestamp::MIN,
                    idle: false,
                    ended: false,
                };
                inputs
            ],
            current: Timestamp::MIN,
            idle: false,
            live: inputs,
        }
    }

    /// The combined watermark emitted so far.
    #[cfg(test)]
    pub(crate) fn current(&self) -> Timestamp {
        self.current
    }

    /// Whether every input has ended.
    #[cfg(test)]
    pub(crate) fn all_ended(&self) -> bool {
        self.live == 0
    }

    /// Input `i` reported watermark `wm` (which also makes it active again).
    pub(crate) fn watermark(&mut self, i: usize, wm: Timestamp) -> Option<Progress> {
        let input = &mut self.inputs[i];
        input.idle = false;
        if wm > input.wm {
            input.wm = wm;
        }
        self.recompute()
    }

    /// Input `i` sent data: it is active again.
    #[inline]
    pub(crate) fn active(&mut self, i: usize) {
        if self.inputs[i].idle {
            self.inputs[i].idle = false;
            self.idle = false;
        }
    }

    /// Input `i` became idle.
    pub(crate) fn idle(&mut self, i: usize) -> Option<Progress> {
        self.inputs[i].idle = true;
        self.recompute()
    }

    /// Input `i` ended. Returns `true` when it was the last live input.
    pub(crate) fn end(&mut self, i: usize) -> bool {
        let input = &mut self.inputs[i];
        if !input.ended {
            input.ended = true;
            self.live -= 1;
        }
        self.live == 0
    }

    /// Input `i` ended; also reports any watermark progress this allows for the other inputs.
    pub(crate) fn end_progress(&mut self, i: usize) -> (bool, Option<Progress>) {
        let all = self.end(i);
        if all {
            return (true, None);
        }
        (false, self.recompute())
    }

    fn recompute(&mut self) -> Option<Progress> {
        let mut min = Timestamp::MAX;
        let mut any_active = false;
        for input in &self.inputs {
            if !input.ended && !input.idle {
                any_active = true;
                min = min.min(input.wm);
            }
        }
        if !any_active {
            if self.live > 0 && !self.idle {
                self.idle = true;
                return Some(Progress::Idle);
            }
            return None;
        }
        self.idle = false;
        if min > self.current {
            self.current = min;
            return Some(Progress::Watermark(min));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_watermark_is_the_minimum_of_inputs() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.watermark(0, 10), None);
        assert_eq!(t.watermark(1, 5), Some(Progress::Watermark(5)));
        assert_eq!(t.watermark(1, 20), Some(Progress::Watermark(10)));
        assert_eq!(t.current(), 10);
    }

    #[test]
    fn watermark_never_goes_backwards() {
        let mut t = WatermarkTracker::new(1);
        assert_eq!(t.watermark(0, 10), Some(Progress::Watermark(10)));
        assert_eq!(t.watermark(0, 3), None);
        assert_eq!(t.current(), 10);
    }

    #[test]
    fn idle_input_does_not_hold_back_the_others() {
        let mut t = WatermarkTracker::new(2);
        t.watermark(0, 100);
        assert_eq!(t.idle(1), Some(Progress::Watermark(100)));
        // Resuming with a lower watermark holds further progress but never regresses.
        t.active(1);
        assert_eq!(t.watermark(1, 50), None);
        assert_eq!(t.watermark(0, 200), None);
        assert_eq!(t.watermark(1, 150), Some(Progress::Watermark(150)));
    }

    #[test]
    fn all_inputs_idle_makes_the_output_idle_once() {
        let mut t = WatermarkTracker::new(2);
        assert_eq!(t.idle(0), None);
        assert_eq!(t.idle(1), Some(Progress::Idle));
        assert_eq!(t.idle(1), None);
        assert_eq!(t.watermark(0, 7), Some(Progress::Watermark(7)));
    }

    #[test]
    fn ended_inputs_are_excluded_and_the_last_end_is_reported() {
        let mut t = WatermarkTracker::new(3);
        t.watermark(0, 10);
        t.watermark(1, 20);
        t.watermark(2, 30);
        assert_eq!(t.end_progress(0), (false, Some(Progress::Watermark(20))));
        assert_eq!(t.end_progress(1), (false, Some(Progress::Watermark(30))));
        assert_eq!(t.end_progress(2), (true, None));
        assert!(t.all_ended());
    }
}
