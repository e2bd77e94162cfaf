//! Idle deadlines for the event loop (rule 9): no thread per connection, no
//! busy loop, just the nearest deadline passed to `poll` as its timeout.
//!
//! A min-heap of `(deadline, slab key, generation, timeout)`. Activity does
//! not touch the heap (that would cost a heap operation per request): a
//! connection records when it last received bytes, and when its entry comes
//! due the loop checks that time and, if the connection was active since,
//! arms a new entry. So the heap costs one operation per idle period, not
//! per request.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// One armed deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) key: usize,
    pub(crate) generation: u32,
    pub(crate) timeout: Duration,
}

/// The armed deadlines, nearest first.
#[derive(Debug, Default)]
pub(crate) struct IdleTimers {
    heap: BinaryHeap<Reverse<Deadline>>,
}

impl IdleTimers {
    /// Arms a deadline.
    pub(crate) fn arm(&mut self, deadline: Deadline) {
        self.heap.push(Reverse(deadline));
    }

    /// When the nearest deadline comes due.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// Takes the nearest deadline if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
        if self.next()? <= now {
            self.heap.pop().map(|Reverse(d)| d)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_due_deadlines_nearest_first() {
        let start = Instant::now();
        let timeout = Duration::from_secs(1);
        let mut timers = IdleTimers::default();
        for (key, ms) in [(1, 30), (2, 10), (3, 20)] {
            timers.arm(Deadline {
                at: start + Duration::from_millis(ms),
                key,
                generation: 0,
                timeout,
            });
        }
        assert_eq!(timers.next(), Some(start + Duration::from_millis(10)));
        let now = start + Duration::from_millis(25);
        let due: Vec<usize> = std::iter::from_fn(|| timers.pop_due(now))
            .map(|d| d.key)
            .collect();
        assert_eq!(due, vec![2, 3]);
        assert_eq!(timers.next(), Some(start + Duration::from_millis(30)));
    }
}
