//! The io_uring loop's listening sockets, as `sources.rs` is the readiness
//! loop's: each keeps a multishot accept in the ring, admits at most
//! [`ACCEPTS_PER_WAKEUP`] connections a turn, and rests after `EMFILE`.
//!
//! A multishot accept takes every connection the kernel has queued, however
//! many: a storm of new clients would all be set up in one turn, ahead of
//! the clients already served. So what a turn brings beyond the cap waits,
//! already accepted, in the listener's backlog; its accept is cancelled (the
//! next clients wait in the kernel's listen queue) and armed again once the
//! backlog is admitted, a cap's worth per turn. When the process runs out of
//! descriptors, the accept is stopped for [`ACCEPT_PAUSE`](super::sources::ACCEPT_PAUSE)
//! (rule 3): a failing accept would otherwise complete again at once, in a
//! loop at 100% CPU.
//!
//! What it may not do: make connections (the loop admits what it hands
//! over), or wait.

use std::collections::VecDeque;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::Instant;

use io_uring::opcode;
use io_uring::types::Fd;

use super::sources::{ACCEPTS_PER_WAKEUP, ListenerService, accept_failed};
use super::uring_ring::{Op, Ring};

/// One TCP listener, listener `index` of its loop (its accepts' [`Op`]).
#[derive(Debug)]
pub(crate) struct Listening {
    index: usize,
    /// Dropped at shutdown.
    socket: Option<TcpListener>,
    pub(crate) service: Arc<ListenerService>,
    /// Its multishot accept is in the ring (until its last completion).
    armed: bool,
    /// A cancel of that accept is in the ring.
    stopping: bool,
    /// Until when accepting rests after `EMFILE` (rule 3).
    resting_until: Option<Instant>,
    /// Accepted beyond a turn's cap, to be admitted in the next turns, oldest first.
    backlog: VecDeque<TcpStream>,
    /// Connections handed to the loop this turn.
    admitted: usize,
}

impl Listening {
    pub(crate) fn new(index: usize, socket: TcpListener, service: ListenerService) -> Listening {
        Listening {
            index,
            socket: Some(socket),
            service: Arc::new(service),
            armed: false,
            stopping: false,
            resting_until: None,
            backlog: VecDeque::new(),
            admitted: 0,
        }
    }

    /// A turn begins: its cap starts again.
    pub(crate) fn new_turn(&mut self) {
        self.admitted = 0;
    }

    /// The oldest connection of the backlog, if this turn's cap allows one more.
    pub(crate) fn take_waiting(&mut self) -> Option<TcpStream> {
        if self.admitted >= ACCEPTS_PER_WAKEUP {
            return None;
        }
        let stream = self.backlog.pop_front()?;
        self.admitted += 1;
        Some(stream)
    }

    /// Its accept completed with `result`, a new descriptor or an error:
    /// the connection to admit now, if any.
    pub(crate) fn accepted(
        &mut self,
        result: i32,
        more: bool,
        ring: &mut Ring,
        now: Instant,
    ) -> Option<TcpStream> {
        self.armed &= more;
        self.stopping &= more;
        if result == -libc::ECANCELED {
            return None;
        }
        if result < 0 {
            let e = io::Error::from_raw_os_error(-result);
            self.resting_until = accept_failed(self.service.factory.name(), &e, now);
            if self.resting_until.is_some() {
                self.stop(ring); // rest, not fail again
            }
            return None;
        }
        // SAFETY: the kernel just opened this descriptor for us.
        let stream = unsafe { TcpStream::from_raw_fd(result) };
        self.socket.as_ref()?; // accepted as we stopped: dropping it closes it
        if self.admitted < ACCEPTS_PER_WAKEUP && self.backlog.is_empty() {
            self.admitted += 1;
            return Some(stream);
        }
        self.backlog.push_back(stream);
        self.stop(ring);
        None
    }

    /// Arms its multishot accept unless one is in the ring, it rests, or
    /// connections it accepted still wait.
    pub(crate) fn arm(&mut self, ring: &mut Ring, now: Instant) {
        let Some(socket) = &self.socket else {
            return;
        };
        self.resting_until = self.resting_until.filter(|&until| until > now);
        if !self.armed && self.resting_until.is_none() && self.backlog.is_empty() {
            let accept = opcode::AcceptMulti::new(Fd(socket.as_raw_fd())).flags(libc::SOCK_CLOEXEC);
            ring.push(accept.build(), Op::Accept(self.index));
            self.armed = true;
        }
    }

    /// When the loop must come back to it without a completion: at once
    /// while connections wait in its backlog, else when its rest ends.
    pub(crate) fn due(&self, now: Instant) -> Option<Instant> {
        match self.backlog.is_empty() {
            true => self.resting_until,
            false => Some(now),
        }
    }

    /// Shutdown: stop accepting, close the socket and what waits in the backlog.
    pub(crate) fn close(&mut self, ring: &mut Ring) {
        self.stop(ring);
        self.socket = None;
        self.backlog.clear();
    }

    /// Cancels its accept, if it is in the ring and not being cancelled yet.
    fn stop(&mut self, ring: &mut Ring) {
        if self.armed && !self.stopping {
            let cancel = opcode::AsyncCancel::new(Op::Accept(self.index).encode()).build();
            ring.push(cancel, Op::Cancel);
            self.stopping = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use io_uring::cqueue;

    use super::*;
    use crate::server::Options;
    use crate::server::uring_ring::available;
    use crate::service::FnFactory;
    use crate::service::echo::Echo;
    use crate::stats::Stats;

    /// Clients queued in the listen backlog before the accept is armed: the
    /// multishot accept takes them all in its first turn, the loop is handed
    /// a cap's worth per turn, and every one of them in the end.
    #[test]
    fn a_storm_of_clients_is_admitted_a_cap_per_turn() {
        if let Err(reason) = available() {
            eprintln!("SKIPPED: the accept cap: {reason}");
            return;
        }
        const CLIENTS: usize = 3 * ACCEPTS_PER_WAKEUP - 5;
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| TcpStream::connect(socket.local_addr().unwrap()).unwrap())
            .collect();
        let factory = FnFactory::new("echo", || Box::new(Echo));
        let service = ListenerService::new(factory, &Options::default(), &Stats::default());
        let mut listening = Listening::new(0, socket, service);
        let mut ring = Ring::new().unwrap();
        let (mut admitted, mut most_in_a_turn, mut backlog_used) = (0, 0, false);
        for _turn in 0..100 {
            let now = Instant::now();
            listening.arm(&mut ring, now);
            let deadline = listening
                .due(now)
                .unwrap_or(now + Duration::from_millis(100));
            ring.wait(Some(deadline)).unwrap();
            listening.new_turn();
            let mut this_turn = 0;
            while listening.take_waiting().is_some() {
                this_turn += 1;
            }
            let mut done = Vec::new();
            ring.completions(&mut done);
            for (op, result, flags) in done {
                if op == Op::Accept(0) {
                    let more = cqueue::more(flags);
                    this_turn +=
                        usize::from(listening.accepted(result, more, &mut ring, now).is_some());
                }
            }
            backlog_used |= !listening.backlog.is_empty();
            most_in_a_turn = most_in_a_turn.max(this_turn);
            admitted += this_turn;
            if admitted == CLIENTS {
                break;
            }
        }
        assert_eq!(admitted, CLIENTS, "every client is admitted in the end");
        assert_eq!(
            most_in_a_turn, ACCEPTS_PER_WAKEUP,
            "a turn admits at most the cap"
        );
        assert!(backlog_used, "the first turn took more than the cap");
        listening.close(&mut ring);
        assert!(ring.drain(), "the accept was cancelled and came back");
        drop(clients);
    }
}
