//! Deadlines for the event loop (rule 9): idle connections, requests that
//! take too long to arrive (slowloris), lingering closes. No thread per
//! connection, no busy loop, just the nearest deadline passed to `poll` as
//! its timeout.
//!
//! A min-heap of `(deadline, slab key, generation)`, at most one entry per
//! connection. Activity does not touch the heap (that would cost a heap
//! operation per request): when an entry comes due the loop asks the
//! connection for its real deadline now ([`Conn::deadline`]) and closes it,
//! or arms a new entry. So the heap costs one operation per idle period or
//! slow request, not per request.
//!
//! Both single-threaded loops use it: anything [`Timed`] can be timed (the
//! readiness loop's and the io_uring loop's connections).
//!
//! [`Conn::deadline`]: super::connection::Conn::deadline

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use slab::Slab;

use super::connection::Conn;

/// A connection the timers can watch: it says its own deadline when asked.
pub(crate) trait Timed {
    /// Tells it apart from earlier users of its slab key.
    fn generation(&self) -> u32;
    /// When it must next be looked at (`request`: the request timeout), if
    /// it has no entry armed already.
    fn deadline(&self, request: Option<Duration>) -> Option<Instant>;
    /// The timers took (`false`) or gave (`true`) its entry.
    fn set_timer_armed(&mut self, armed: bool);
    /// The loop decided to close it: nothing to time any more.
    fn is_closed(&self) -> bool;
    /// `conn=<token>/<generation> peer=<addr>`, for the log line.
    fn tag(&self) -> impl std::fmt::Display + '_;
}

impl Timed for Conn {
    fn generation(&self) -> u32 {
        self.generation
    }
    fn deadline(&self, request: Option<Duration>) -> Option<Instant> {
        Conn::deadline(self, request)
    }
    fn set_timer_armed(&mut self, armed: bool) {
        Conn::set_timer_armed(self, armed);
    }
    fn is_closed(&self) -> bool {
        Conn::is_closed(self)
    }
    fn tag(&self) -> impl std::fmt::Display + '_ {
        Conn::tag(self)
    }
}

/// One armed deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    pub(crate) at: Instant,
    pub(crate) key: usize,
    pub(crate) generation: u32,
}

/// The armed deadlines, nearest first.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Deadline>>,
}

impl Timers {
    /// Arms a deadline.
    fn arm(&mut self, deadline: Deadline) {
        self.heap.push(Reverse(deadline));
    }

    /// When the nearest deadline comes due.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// Arms an entry for connection `key` if a deadline applies to it now
    /// and it has none (a request answered in one read never gets one).
    pub(crate) fn arm_for(&mut self, key: usize, conn: &mut impl Timed, request: Option<Duration>) {
        if let Some(at) = conn.deadline(request) {
            conn.set_timer_armed(true);
            let generation = conn.generation();
            self.arm(Deadline {
                at,
                key,
                generation,
            });
        }
    }

    /// The connections whose deadline has passed at `now`, to be closed. An
    /// entry is checked against its connection only when it comes due
    /// (activity never touches the heap), and armed again if the connection
    /// moved on since.
    pub(crate) fn expired(
        &mut self,
        now: Instant,
        conns: &mut Slab<impl Timed>,
        request: Option<Duration>,
    ) -> Vec<usize> {
        let mut expired = Vec::new();
        while let Some(due) = self.pop_due(now) {
            let Some(conn) = conns.get_mut(due.key) else {
                continue;
            };
            if conn.generation() != due.generation || conn.is_closed() {
                continue; // that connection is gone; the slot holds another
            }
            conn.set_timer_armed(false);
            match conn.deadline(request) {
                Some(at) if at <= now => {
                    log::debug!("{} timed out: closing", conn.tag());
                    expired.push(due.key);
                }
                _ => self.arm_for(due.key, conn, request),
            }
        }
        expired
    }

    /// Takes the nearest deadline if it is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
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
    use std::time::Duration;

    #[test]
    fn pops_due_deadlines_nearest_first() {
        let start = Instant::now();
        let mut timers = Timers::default();
        for (key, ms) in [(1, 30), (2, 10), (3, 20)] {
            timers.arm(Deadline {
                at: start + Duration::from_millis(ms),
                key,
                generation: 0,
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
