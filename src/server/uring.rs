//! The completion loop: one thread, one io_uring, every socket in it.
//!
//! Read `evloop.rs` first. A readiness loop asks the kernel "which sockets
//! *may* I read?" and then reads each one itself: two system calls per
//! request (`recvfrom`, `sendto`) plus the `epoll_wait`, however clever the
//! user space. A completion loop tells the kernel up front what to do and
//! hears back when it *was* done:
//!
//! ```text
//!   submission queue (we write) ──► kernel does the I/O ──► completion queue (we read)
//!     accept (multishot)              accepts, receives,      { user_data, result, flags }
//!     recv   (multishot, a buffer     sends, reads the
//!             from the shared ring)   eventfd
//!     send   (one per connection)
//!     read   (the wake-up eventfd)
//! ```
//!
//! Both queues are memory shared with the kernel. One `io_uring_enter` per
//! turn ([`Ring::wait`]) hands over every send and receive the last turn
//! produced and sleeps until something completes: with 50 busy clients one
//! call carries the work of many requests, where epoll needs two calls for
//! each. Busy, the wait holds out (50 µs at most) for about as many
//! completions as the last turn brought, so that the loop sleeps and wakes
//! once per batch rather than once per arrival. Sockets are named by their
//! slot in a registered file table (`uring_ring.rs`), not by descriptor.
//!
//! What each completion is for travels in its `user_data` ([`Op`]). Three
//! things are new against readiness:
//! - *multishot*: one accept (or receive) submission completes again and
//!   again, until the kernel ends it (its completion lacks `F_MORE`): then
//!   it is armed again, if still wanted;
//! - *provided buffers* (`uring_bufs.rs`): a receive takes a buffer from a
//!   ring shared by all connections only when data arrives, so an idle
//!   connection holds none (rule 12);
//! - *ownership*: memory handed to the kernel stays put until its
//!   completion. A connection closes only when nothing of it is left in the
//!   ring: its operations are cancelled, their completions awaited, then
//!   the socket is dropped ([`Conn::is_done`]).
//!
//! Back-pressure (rule 6) cancels a connection's receive and arms it again
//! when the output drains; during a job it stays armed (up to the input
//! limit), so that a reset is noticed at once. Offloaded jobs and the shutdown
//! handle wake the loop through an eventfd whose read sits in the ring.
//! Timers are the readiness loop's (`timers.rs`): the nearest deadline is
//! the wait's timeout. Listeners (`uring_accept.rs`) admit at most a few new
//! connections a turn and rest after `EMFILE`, as the readiness loop's do. UDP sockets are served by a thread each, as the
//! threaded mode does (`accept.rs`): datagrams are not this file's lesson.
//!
//! What it must not do: parse a protocol, keep per-connection state
//! (`uring_conn.rs` does), or block anywhere but in the one wait.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};
use std::{io, mem};

use io_uring::types::{CancelBuilder, Fd};
use io_uring::{cqueue, opcode};
use slab::Slab;

use super::accept::serve_udp;
use super::mail::MailQueue;
use super::offload::{Pool, Ticket};
use super::sources::{ListenerService, refuse};
use super::timers::Timers;
use super::turn::Turn;
use super::uring_accept::Listening;
use super::uring_bufs::{BufRing, GROUP};
use super::uring_conn::{Conn, Recv, Spares, Verdict};
use super::uring_ring::{EventFd, Op, Ring, Target, on_target};
use super::{Listener, Options, Shutdown};
use crate::stats::{self, Stats};

pub use super::uring_bufs::RECV_POOL_BYTES;

/// What a turn lends a connection: settings, counters, the time of this
/// wake-up. (A macro, so that it borrows those fields only, not the loop.)
macro_rules! turn {
    ($loop:ident) => {
        Turn {
            options: &$loop.options,
            stats: &$loop.stats,
            now: $loop.now,
            wall: $loop.wall,
            mail: &$loop.mail,
        }
    };
}

/// Everything the loop owns. Field order is drop order: the ring goes
/// before the memory it may still point at.
struct Loop {
    ring: Ring,
    bufs: BufRing,
    conns: Slab<Conn>,
    listeners: Vec<Listening>,
    pool: Option<Pool>,
    wake: Arc<EventFd>,
    /// Connections whose pub/sub doorbell rang (it rings the eventfd).
    mail: Arc<MailQueue>,
    /// Where the eventfd read puts the counter; the kernel's while in flight.
    wake_buf: Box<[u8; 8]>,
    timers: Timers,
    spares: Spares,
    /// Connections whose operations may need submitting or cancelling.
    dirty: Vec<usize>,
    /// The completions of this turn, copied out of the queue.
    completions: Vec<(Op, i32, u32)>,
    next_generation: u32,
    shutdown_deadline: Option<Instant>,
    options: Options,
    stats: Arc<Stats>,
    accepted_here: Arc<AtomicU64>,
    shutdown: Shutdown,
    now: Instant,
    wall: SystemTime,
}

/// Serves `listeners` on this thread until `shutdown` is triggered and every
/// connection has finished (or the grace has passed: [`Stats::unfinished`]).
pub(super) fn run(
    listeners: Vec<Listener>,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let mut ring = Ring::new()?;
    ring.register_files(options.max_conns);
    let bufs = BufRing::register(&ring)?;
    let wake = Arc::new(EventFd::new()?);
    shutdown.register(Arc::clone(&wake))?;
    let pool = match options.offload_workers {
        0 => None,
        workers => Some(Pool::start(workers, Arc::clone(&wake) as _)?),
    };
    let mut tcp = Vec::new();
    let mut udp: Vec<JoinHandle<()>> = Vec::new();
    for listener in listeners {
        match listener {
            Listener::Tcp { socket, factory } => {
                let service = ListenerService::new(factory, options, &stats);
                tcp.push(Listening::new(tcp.len(), socket, service));
            }
            Listener::Udp { socket } => udp.push(serve_udp(socket, &stats, &shutdown)?),
        }
    }
    let mut lp = Loop {
        ring,
        bufs,
        conns: Slab::with_capacity(1024),
        listeners: tcp,
        pool,
        mail: MailQueue::new(Arc::clone(&wake)),
        wake,
        wake_buf: Box::new([0; 8]),
        timers: Timers::default(),
        spares: Spares::default(),
        dirty: Vec::new(),
        completions: Vec::new(),
        next_generation: 0,
        shutdown_deadline: None,
        options: options.clone(),
        accepted_here: stats.event_loop(0),
        stats,
        shutdown: shutdown.clone(),
        now: Instant::now(),
        wall: SystemTime::now(),
    };
    lp.arm_wake();
    let result = lp.run();
    if !lp.ring.drain() {
        log::warn!("io_uring operations still in flight at exit: leaking their memory");
        mem::forget(lp);
    }
    if result.is_err() {
        shutdown.trigger(); // the UDP threads stop with it
    }
    for thread in udp {
        let _ = thread.join();
    }
    result
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        loop {
            // Rule 10: shutdown is an event like any other (the eventfd).
            if self.shutdown.is_requested() && self.shutdown_deadline.is_none() {
                self.begin_shutdown();
            }
            self.sync();
            if let Some(deadline) = self.shutdown_deadline
                && super::shutdown_over(self.conns.len(), deadline, &self.stats, "io_uring loop")
            {
                return Ok(());
            }
            self.wait()?;
            (self.now, self.wall) = (Instant::now(), SystemTime::now());
            stats::add(&self.stats.wakeups, 1);
            self.reap();
            self.expire();
        }
    }

    /// Submits everything queued, sleeps until a completion or the nearest deadline.
    fn wait(&mut self) -> io::Result<()> {
        let deadlines = [
            self.listeners.iter().filter_map(|l| l.due(self.now)).min(),
            self.shutdown_deadline,
            self.timers.next(),
        ];
        self.ring.wait(deadlines.into_iter().flatten().min())
    }

    /// Admits what the listeners' backlogs may this turn, then takes every
    /// completion and hands each to whom it is for.
    fn reap(&mut self) {
        for i in 0..self.listeners.len() {
            self.listeners[i].new_turn();
            while let Some(stream) = self.listeners[i].take_waiting() {
                self.admit(i, stream);
            }
        }
        self.completions.clear();
        self.ring.completions(&mut self.completions);
        stats::add(&self.stats.events, self.completions.len() as u64);
        for i in 0..self.completions.len() {
            let (op, result, flags) = self.completions[i];
            match op {
                Op::Accept(i) => {
                    let listening = &mut self.listeners[i];
                    let more = cqueue::more(flags);
                    if let Some(stream) = listening.accepted(result, more, &mut self.ring, self.now)
                    {
                        self.admit(i, stream);
                    }
                }
                Op::Recv(key) => self.received(key, result, flags),
                Op::Send(key) => self.sent(key, result),
                // Cancelled only at exit; any other end (an error too) re-arms
                // it: a lost wake-up would strand jobs and a shutdown.
                Op::Wake if result != -libc::ECANCELED => {
                    if result < 0 {
                        let e = io::Error::from_raw_os_error(-result);
                        log::warn!("reading the wake-up eventfd failed: {e}");
                    }
                    self.complete_jobs();
                    self.deliver_mail();
                    self.arm_wake();
                }
                Op::Wake | Op::Cancel => {}
            }
        }
    }

    /// Submits what each touched connection now wants: its next send, its
    /// receive armed or cancelled, its timer; drops those that are done.
    fn sync(&mut self) {
        let max_output = self.options.max_output;
        let mut dirty = mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            let target = conn.target;
            if conn.is_closed() {
                if !conn.cancelled && (conn.recv != Recv::Off || conn.send_in_flight) {
                    let cancel = on_target!(target, |fd| CancelBuilder::fd(fd).all());
                    self.ring
                        .push(opcode::AsyncCancel2::new(cancel).build(), Op::Cancel);
                    conn.cancelled = true;
                }
                if conn.is_done() {
                    self.ring.release(target);
                    let conn = self.conns.remove(key); // drops the socket: close(2)
                    stats::add(&self.stats.closed, 1);
                    log::debug!("{} closed", conn.tag());
                }
                continue;
            }
            if let Some((bytes, len)) = conn.next_send() {
                let send = on_target!(target, |fd| opcode::Send::new(fd, bytes, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build());
                self.ring.push(send, Op::Send(key));
            }
            match (conn.wants_recv(max_output), conn.recv) {
                (true, Recv::Off) => {
                    let recv = on_target!(target, |fd| opcode::RecvMulti::new(fd, GROUP).build());
                    self.ring.push(recv, Op::Recv(key));
                    conn.recv = Recv::Armed;
                }
                (false, Recv::Armed) => {
                    let cancel = opcode::AsyncCancel::new(Op::Recv(key).encode()).build();
                    self.ring.push(cancel, Op::Cancel);
                    conn.recv = Recv::Cancelling;
                }
                _ => {}
            }
            self.timers.arm_for(key, conn, self.options.request_timeout);
        }
        dirty.clear();
        self.dirty = dirty;
        for listening in &mut self.listeners {
            listening.arm(&mut self.ring, self.now);
        }
    }

    /// Keeps a read of the eventfd in the ring.
    fn arm_wake(&mut self) {
        let read = opcode::Read::new(Fd(self.wake.fd()), self.wake_buf.as_mut_ptr(), 8);
        self.ring.push(read.build(), Op::Wake);
    }

    /// Admits a connection listener `i` accepted (refused when full).
    fn admit(&mut self, i: usize, stream: TcpStream) {
        let service = Arc::clone(&self.listeners[i].service);
        let Ok(peer) = stream.peer_addr() else {
            return; // reset before we got to it: nobody to serve
        };
        if self.conns.len() >= self.options.max_conns {
            return refuse(stream, peer, &service, &self.stats);
        }
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("peer={peer}: cannot set TCP_NODELAY: {e}");
        }
        stats::add(&self.stats.accepted, 1);
        stats::add(&service.counters.accepted, 1);
        stats::add(&self.accepted_here, 1);
        self.next_generation = self.next_generation.wrapping_add(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let target = self.ring.adopt(key, stream.as_raw_fd());
        let conn = Conn::new(
            key,
            self.next_generation,
            stream,
            target,
            peer,
            service,
            self.now,
        );
        log::debug!("{} accepted", conn.tag());
        entry.insert(conn);
        let verdict = self.conns[key].open(turn!(self), &mut self.spares);
        self.settle(key, verdict);
    }

    /// A receive completed: bytes in a provided buffer, end of input, or an
    /// error. The buffer goes back to the ring as soon as the dialogue has
    /// taken what it needs (it copies what it leaves unconsumed).
    fn received(&mut self, key: usize, result: i32, flags: u32) {
        let buffer = cqueue::buffer_select(flags);
        // A connection stays in the slab while it has an operation in flight.
        let conn = &mut self.conns[key];
        if !cqueue::more(flags) {
            conn.recv = Recv::Off; // the kernel ended it; `sync` re-arms it if wanted
        }
        let verdict = match (result, buffer) {
            (1.., Some(bid)) => {
                let bytes = self.bufs.filled(bid, result as usize);
                let more = cqueue::sock_nonempty(flags);
                conn.received(bytes, more, turn!(self), &mut self.spares)
            }
            (0, _) => conn.ended(turn!(self), &mut self.spares),
            // Out of buffers: armed again once buffers are back.
            (e, _) if e == -libc::ENOBUFS || e == -libc::ECANCELED => Verdict::Go,
            (e, _) => conn.fail(io::Error::from_raw_os_error(-e)),
        };
        if let Some(bid) = buffer {
            self.bufs.recycle(bid);
        }
        self.settle(key, verdict);
    }

    /// A send completed: some bytes were taken, or it failed.
    fn sent(&mut self, key: usize, result: i32) {
        let conn = &mut self.conns[key]; // in the slab while its send is in flight
        let verdict = match usize::try_from(result) {
            Ok(n) => conn.sent(n, turn!(self), &mut self.spares),
            Err(_) => conn.send_failed(io::Error::from_raw_os_error(-result)),
        };
        self.settle(key, verdict);
    }

    /// Acts on a connection's verdict: a job goes to the pool (or runs right
    /// here with `--offload 0`), a close is marked; either way the
    /// connection is synced with the ring before the next wait. Requests
    /// for the store on Redis (`Job::Remote`) go to the pool too, whose
    /// workers block on `remote::blocking`: only the readiness loop has
    /// upstream connections of its own (`upstream.rs`).
    fn settle(&mut self, key: usize, mut verdict: Verdict) {
        while let Verdict::Run(job) = verdict {
            let Some(pool) = &mut self.pool else {
                let done = job.run();
                verdict = self.conns[key].job_done(done, turn!(self), &mut self.spares);
                continue;
            };
            // Rule 7: the job carries (key, generation), not a reference.
            let generation = self.conns[key].generation;
            stats::add(&self.stats.offloaded, 1);
            pool.submit(Ticket { key, generation }, job);
            verdict = Verdict::Go;
        }
        let conn = &mut self.conns[key];
        if matches!(verdict, Verdict::Close) {
            conn.close();
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Gives each finished job's output to the connection that asked for it,
    /// if it is still there (rule 7).
    fn complete_jobs(&mut self) {
        let Some(pool) = &mut self.pool else { return };
        for (Ticket { key, generation }, done) in pool.take_completions() {
            match self.conns.get_mut(key) {
                Some(conn) if conn.generation == generation && !conn.is_closed() => {
                    let verdict = conn.job_done(done, turn!(self), &mut self.spares);
                    self.settle(key, verdict);
                }
                _ => log::debug!(
                    "conn={key}/{generation}: dropping a job output for a closed connection"
                ),
            }
        }
    }

    /// Lets each connection whose doorbell rang write its pub/sub mail.
    fn deliver_mail(&mut self) {
        for (key, generation) in self.mail.take() {
            if let Some(conn) =
                (self.conns.get_mut(key)).filter(|c| c.generation == generation && !c.is_closed())
            {
                let verdict = conn.deliver(turn!(self), &mut self.spares);
                self.settle(key, verdict);
            }
        }
    }

    /// Rule 9: closes connections whose deadline passed.
    fn expire(&mut self) {
        let request_timeout = self.options.request_timeout;
        for key in self
            .timers
            .expired(self.now, &mut self.conns, request_timeout)
        {
            stats::add(&self.stats.timed_out, 1);
            self.settle(key, Verdict::Close);
        }
    }

    /// Stop accepting at once; let every connection answer what it has, then close.
    fn begin_shutdown(&mut self) {
        log::info!("shutting down: {} connections to finish", self.conns.len());
        for listening in &mut self.listeners {
            listening.close(&mut self.ring);
        }
        self.shutdown_deadline = Some(Instant::now() + self.options.shutdown_grace);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let verdict = self.conns[key].finish(turn!(self), &mut self.spares);
            self.settle(key, verdict);
        }
    }
}
