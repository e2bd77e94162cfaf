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
//! [`Conn::deadline`]: super::connection::Conn::deadline

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use slab::Slab;

use super::Housekeeping;
use super::connection::Conn;

/// A connection the timers can watch: it says its own deadline when asked.
/// Both single-threaded loops' connections are (the readiness loop's and
/// the io_uring loop's).
pub(crate) trait Timed {
    /// Tells it apart from earlier users of its slab key.
    fn generation(&self) -> u32;
    /// When it must next be looked at (`request`: the request timeout).
    fn deadline(&self, request: Option<Duration>) -> Option<Instant>;
    /// When its armed entry comes due, if it has one.
    fn timer_at(&self) -> Option<Instant>;
    /// The timers armed (`Some`) or took (`None`) its entry.
    fn set_timer_at(&mut self, at: Option<Instant>);
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
    fn timer_at(&self) -> Option<Instant> {
        Conn::timer_at(self)
    }
    fn set_timer_at(&mut self, at: Option<Instant>) {
        Conn::set_timer_at(self, at);
    }
    fn is_closed(&self) -> bool {
        Conn::is_closed(self)
    }
    fn tag(&self) -> impl std::fmt::Display + '_ {
        Conn::tag(self)
    }
}

/// How long one turn of housekeeping may hold the loop before it yields to
/// the clients (Redis' active expiry keeps to a quarter of its 100 ms).
const HOUSEKEEPING_BUDGET: Duration = Duration::from_millis(25);

/// The loop's periodic work for the services (kv's active expiry), due at
/// `next`.
#[derive(Debug)]
pub(crate) struct Housekeeper {
    work: Housekeeping,
    next: Instant,
}

impl Housekeeper {
    pub(crate) fn new(work: Housekeeping, now: Instant) -> Housekeeper {
        let next = now + work.every;
        Housekeeper { work, next }
    }

    /// When the next round is due, for the poll timeout.
    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    /// Runs rounds if one is due, within [`HOUSEKEEPING_BUDGET`]; one that
    /// stopped with more due makes the next come at once.
    pub(crate) fn run_due(&mut self, now: Instant, wall: std::time::SystemTime) {
        if now < self.next {
            return;
        }
        let mut more = (self.work.run)(wall);
        while more && now.elapsed() < HOUSEKEEPING_BUDGET {
            more = (self.work.run)(std::time::SystemTime::now());
        }
        self.next = if more { now } else { now + self.work.every };
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
    /// and its entry (if any) comes later: a request under way on a
    /// keep-alive connection must not wait for the 75 s idle entry. A
    /// request answered in one read never gets one.
    pub(crate) fn arm_for(&mut self, key: usize, conn: &mut impl Timed, request: Option<Duration>) {
        let Some(at) = conn.deadline(request) else {
            return;
        };
        if conn.timer_at().is_none_or(|armed| at < armed) {
            conn.set_timer_at(Some(at));
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
            if conn.timer_at() != Some(due.at) {
                continue; // an earlier entry replaced this one
            }
            conn.set_timer_at(None);
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
