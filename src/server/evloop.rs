//! The event loop: one thread, one `mio::Poll`, every socket in it.
//!
//! This is the file to read to learn how a readiness-based server works. It
//! is seed 002's `select` server grown up:
//!
//! ```python
//! inputs = [sk1,]
//! while True:
//!     readable_list, writeable_list, error_list = select.select(inputs, [], inputs, 1)
//!     for r in readable_list:
//!         if sk1 == r:                       # the listener: a new client
//!             request, address = r.accept()
//!             request.setblocking(0)
//!             inputs.append(request)
//!         else:                              # a client sent something
//!             received = r.recv(1024)
//!             if received: print 'received data:', received
//!             else: inputs.remove(r)         # it closed
//! ```
//!
//! Here `Poll::poll` is `select`, the [`Slab`] of connections is `inputs`
//! (the slab key is the `mio::Token`, so an event finds its connection in
//! O(1) instead of a scan), and each connection's protocol lives in a
//! service that never sees a socket. The loop keeps twelve rules, numbered
//! in `docs/DESIGN.md`; each is a comment where the code keeps it.
//!
//! On writability: select and level-triggered epoll (Redis,
//! `examples/05_epoll.rs`) ask for writable events only while output is
//! pending. mio on Linux is edge-triggered, so each connection is registered
//! `READABLE | WRITABLE` once and *remembers* readiness until `WouldBlock`
//! (rule 5): no `epoll_ctl` per request.
//!
//! One thread means one: a single loop's process has no other until a job
//! starts the offload pool (signals arrive in this poll too), because a
//! second thread makes every socket call dearer in the kernel (`sys.rs`
//! says why).
//!
//! What it must not do: parse a protocol (services and their dialogue do),
//! keep per-byte state about a connection (`connection.rs` does), or block
//! (jobs go to the offload pool, the console prints from its own thread).
//! Listeners and datagrams are in `sources.rs`, the console in `console.rs`,
//! the connections to the store on Redis in `upstream.rs`: the loop is
//! their Redis client, one more kind of socket in the same poll.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;

mod setup;

use super::connection::{Conn, Verdict};
use super::console::Console;
use super::mail::MailQueue;
use super::offload::{Pool, Ticket};
use super::sources::{Accepted, Sources};
use super::timers::{Housekeeper, Timers};
use super::turn::{Scratch, Turn};
use super::upstream::{UPSTREAM_BASE, Upstreams};
use super::{Listener, Options, Shutdown};
use crate::remote::Answer;
use crate::service::{Job, JobOutput};
use crate::signals::SignalSource;
use crate::stats::{self, Stats};

// Rule 1: tokens are slab keys; the reserved ones live far outside the slab's range.
/// Listener `i` (TCP or UDP) has token `LISTENER_BASE + i`.
pub(super) const LISTENER_BASE: usize = usize::MAX / 2;
/// The waker other threads use to interrupt `poll`: a shutdown request, or
/// offloaded jobs that finished. One waker per poll, shared by `Arc`.
const WAKER: Token = Token(usize::MAX);
/// Stdin, when the console is on (seed 002 selects on `sys.stdin` too).
const CONSOLE: Token = Token(usize::MAX - 1);
/// SIGTERM, SIGINT, SIGHUP, when this is the process's only loop: the
/// signal handler writes a byte to a pipe that is in this poll.
const SIGNALS: Token = Token(usize::MAX - 2);

/// Events taken from the kernel per `poll` call; more wait for the next call.
const EVENTS_CAPACITY: usize = 1024;

/// Everything the loop owns. One instance per loop thread.
#[derive(Debug)]
struct Loop {
    poll: Poll,
    conns: Slab<Conn>,
    sources: Sources,
    /// Buffers lent to the connection being pumped (rules 11 and 12).
    scratch: Scratch,
    /// Worker threads for slow jobs; `None` with `--offload 0` (jobs run inline).
    pool: Option<Pool>,
    /// Connections to the store on Redis (`--store redis://`), if any.
    upstreams: Option<Upstreams>,
    /// Sources and connections that stopped with work left (a spent budget
    /// or accept cap). Edge-triggered events will not repeat themselves, so
    /// the next `poll` does not sleep and these are served again after it.
    still_ready: Vec<Token>,
    /// Idle, request and linger deadlines (rule 9).
    timers: Timers,
    /// The services' periodic work (kv's expiry), on the first loop only.
    housekeeper: Option<Housekeeper>,
    /// Connections to close once the current batch of events is handled.
    to_close: Vec<usize>,
    /// Counts accepts; each connection gets the next value (rule 7).
    next_generation: u32,
    /// Set when shutdown began: the instant by which everyone must be gone.
    shutdown_deadline: Option<Instant>,
    options: Options,
    stats: Arc<Stats>,
    console: Option<Console>,
    shutdown: Shutdown,
    /// Connections whose pub/sub doorbell rang (woken through the waker).
    mail: Arc<MailQueue>,
    /// The time of this wake-up, read once after `poll` returns.
    now: Instant,
    wall: SystemTime,
}

/// Serves `listeners` on this thread until `shutdown` is triggered and every
/// connection has finished (or [`Options::shutdown_grace`] has passed:
/// then [`Stats::unfinished`] counts those left). With `signals`, the
/// process's signals are read here too. Setting up (the poll, its waker,
/// the pool, the listeners) is in `evloop/setup.rs`.
pub(super) fn run(
    index: usize,
    listeners: Vec<Listener>,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    mut signals: Option<&mut SignalSource>,
) -> io::Result<()> {
    let mut lp = Loop::new(index, listeners, options, stats, shutdown)?;
    if let Some(signals) = &mut signals {
        signals.register(lp.poll.registry(), SIGNALS)?;
    }
    lp.run(signals)
}

impl Loop {
    fn run(&mut self, mut signals: Option<&mut SignalSource>) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            // Rule 10: shutdown is an event like any other (the waker).
            if self.shutdown.is_requested() && self.shutdown_deadline.is_none() {
                self.begin_shutdown();
            }
            // What the last turn counted reaches the shared counters before
            // the loop sleeps or returns.
            self.scratch.sink.tally.publish(&self.stats);
            if let Some(deadline) = self.shutdown_deadline
                && super::shutdown_over(self.conns.len(), deadline, &self.stats, "event loop")
            {
                return Ok(());
            }

            // `select`: sleep until something is ready, or the nearest deadline.
            if let Err(e) = self.poll.poll(&mut events, self.poll_timeout()) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue; // rule 8: a signal interrupted the wait
                }
                return Err(e);
            }
            (self.now, self.wall) = (Instant::now(), SystemTime::now());
            stats::add(&self.stats.wakeups, 1);
            stats::add(&self.stats.events, events.iter().count() as u64);
            log::trace!("poll woke: {} events", events.iter().count());

            for event in events.iter() {
                match event.token() {
                    // Shutdown is checked at the top; jobs and mail are handled here.
                    WAKER => {
                        self.complete_jobs();
                        self.deliver_mail();
                    }
                    // A signal is an event too: SIGTERM triggers the shutdown
                    // seen at the top, SIGHUP reopens the log.
                    SIGNALS => {
                        if let Some(signals) = &mut signals {
                            signals.act();
                        }
                    }
                    CONSOLE => {
                        if let Some(console) = &mut self.console {
                            console.serve(self.poll.registry(), &self.conns);
                        }
                    }
                    Token(t)
                        if t >= UPSTREAM_BASE
                            && let Some(up) = &mut self.upstreams =>
                    {
                        up.on_event(t - UPSTREAM_BASE, event, self.poll.registry(), self.now);
                    }
                    Token(t) if t >= LISTENER_BASE => self.serve_source(t - LISTENER_BASE),
                    Token(key) => {
                        log::trace!("conn={key} event: {event:?}");
                        self.drive(key, |conn, scratch, turn| {
                            conn.on_event(event, scratch, turn)
                        });
                    }
                }
            }

            // Serve again what stopped with work left last time round.
            for token in std::mem::take(&mut self.still_ready) {
                match token.0 {
                    t if t >= LISTENER_BASE => self.serve_source(t - LISTENER_BASE),
                    key => self.drive(key, Conn::pump),
                }
            }
            for i in self.sources.rested(self.now) {
                self.serve_source(i);
            }
            self.expire();
            if let Some(housekeeper) = &mut self.housekeeper {
                housekeeper.run_due(self.now, self.wall);
            }
            self.tend_upstreams();

            // Close after the batch, never during it, so that a slot freed
            // here cannot be reused by an accept while events for its old
            // connection are still in `events`.
            for key in std::mem::take(&mut self.to_close) {
                self.close(key);
            }
        }
    }

    /// Zero when something is still ready (do not sleep), else until the
    /// nearest deadline, else forever.
    fn poll_timeout(&self) -> Option<Duration> {
        if !self.still_ready.is_empty() {
            return Some(Duration::ZERO);
        }
        let deadlines = [
            self.sources.next_rest_end(),
            self.shutdown_deadline,
            self.timers.next(),
            self.housekeeper.as_ref().map(Housekeeper::next),
            self.upstreams.as_ref().and_then(Upstreams::next_deadline),
        ];
        let nearest = deadlines.into_iter().flatten().min()?;
        Some(nearest.saturating_duration_since(Instant::now()))
    }

    /// What a turn lends a connection: the settings and counters, the
    /// scratch buffers, and the slab to find it in.
    fn split(&mut self) -> (Turn<'_>, &mut Scratch, &mut Slab<Conn>) {
        let turn = Turn {
            options: &self.options,
            stats: &self.stats,
            now: self.now,
            wall: self.wall,
            mail: &self.mail,
        };
        (turn, &mut self.scratch, &mut self.conns)
    }

    /// Lets connection `key` do `work`, then acts on its verdict. Events are
    /// hints: a token may belong to a connection closed earlier in this
    /// batch, or to none. Those are ignored.
    fn drive(
        &mut self,
        key: usize,
        work: impl FnOnce(&mut Conn, &mut Scratch, Turn<'_>) -> Verdict,
    ) {
        let (turn, scratch, conns) = self.split();
        let Some(conn) = conns.get_mut(key).filter(|c| !c.is_closed()) else {
            return;
        };
        let verdict = work(conn, scratch, turn);
        self.settle(key, verdict);
    }

    /// Acts on a connection's verdict. A job goes to the pool, or, with
    /// `--offload 0`, runs right here on the loop thread, where every other
    /// client waits for it (the lesson of the `slow` service). A request
    /// for the store on Redis goes to this loop's own upstream connections,
    /// answered at once when the store is down.
    fn settle(&mut self, key: usize, mut verdict: Verdict) {
        while let Verdict::Run(job) = verdict {
            // Rule 7: the job carries (key, generation), not a reference.
            let ticket = Ticket {
                key,
                generation: self.conns[key].generation,
            };
            verdict = match (job, &mut self.upstreams, &mut self.pool) {
                (Job::Remote(request), Some(upstreams), _) => {
                    if upstreams.submit(ticket, request, self.now) {
                        Verdict::Wait
                    } else {
                        self.job_done(key, JobOutput::Remote(Answer::Unavailable))
                    }
                }
                (job, _, None) => {
                    self.scratch.sink.tally.publish(&self.stats); // the job may take long
                    self.job_done(key, job.run())
                }
                (job, _, Some(pool)) => {
                    stats::add(&self.stats.offloaded, 1);
                    pool.submit(ticket, job);
                    Verdict::Wait
                }
            };
        }
        match verdict {
            Verdict::Wait | Verdict::Run(_) => self.arm_timer(key),
            Verdict::StillReady => {
                self.still_ready.push(Token(key));
                self.arm_timer(key);
            }
            Verdict::Close => {
                if self.conns[key].mark_closed() {
                    self.to_close.push(key);
                }
            }
        }
    }

    /// Rule 9: a deadline that now applies to connection `key` (idle,
    /// request under way, lingering) gets its timer entry.
    fn arm_timer(&mut self, key: usize) {
        self.timers
            .arm_for(key, &mut self.conns[key], self.options.request_timeout);
    }

    /// Hands connection `key` its job's output; says what it does next.
    fn job_done(&mut self, key: usize, done: JobOutput) -> Verdict {
        let (turn, scratch, conns) = self.split();
        conns[key].job_done(done, scratch, turn)
    }

    /// Gives each finished job's output to the connection that asked for it.
    fn complete_jobs(&mut self) {
        let Some(pool) = &mut self.pool else { return };
        for (ticket, done) in pool.take_completions() {
            self.resume(ticket, done);
        }
    }

    /// The store on Redis: writes every request this turn produced (one
    /// write carries many clients' requests) and gives each reply to its
    /// connection, which may ask again; until nothing is left.
    fn tend_upstreams(&mut self) {
        while let Some(upstreams) = &mut self.upstreams {
            let answers = upstreams.tend(self.poll.registry(), self.now);
            if answers.is_empty() {
                return;
            }
            for (ticket, answer) in answers {
                self.resume(ticket, JobOutput::Remote(answer));
            }
        }
    }

    /// Gives a job's output to the connection that asked for it, if that
    /// connection is still there.
    fn resume(&mut self, Ticket { key, generation }: Ticket, done: JobOutput) {
        // Rule 7: between submit and now, the connection may have closed
        // and its slab slot been given to a new one. The generation tells
        // them apart; a stale output is dropped (its Drop cleans up, e.g.
        // an upload's temporary file).
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.generation == generation && !c.is_closed())
        {
            let verdict = self.job_done(key, done);
            self.settle(key, verdict);
        } else {
            log::debug!("conn={key}/{generation}: dropping a job output for a closed connection");
        }
    }

    /// Lets each connection whose doorbell rang write its pub/sub mail.
    fn deliver_mail(&mut self) {
        for (key, generation) in self.mail.take() {
            if self
                .conns
                .get(key)
                .is_some_and(|c| c.generation == generation)
            {
                self.drive(key, Conn::deliver);
            }
        }
    }

    /// A listener or a UDP socket is readable.
    fn serve_source(&mut self, i: usize) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        // Rule 2: accept until `WouldBlock`, at most a few per wake-up.
        let room = self.options.max_conns.saturating_sub(self.conns.len());
        if self.sources.serve(i, room, &self.stats, self.now) {
            self.still_ready.push(Token(LISTENER_BASE + i));
        }
        while let Some(new) = self.sources.take_accepted() {
            self.admit(new);
        }
    }

    /// Puts a new connection in the slab and the poll.
    fn admit(&mut self, mut new: Accepted) {
        let service = self.sources.service_of(new.listener);
        // The slab key, known before insertion, is the token (rule 1).
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE; // once: rule 5
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut new.stream, Token(key), interest)
        {
            log::error!("peer={}: cannot register with the poll: {e}", new.peer);
            return;
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        stats::add(&self.stats.accepted, 1);
        stats::add(&service.counters.accepted, 1);
        let conn = entry.insert(Conn::new(key, self.next_generation, new, service, self.now));
        log::debug!("{} accepted", conn.tag());
        self.drive(key, Conn::open);
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

    /// Always deregister before dropping a socket (mio's rule). A request
    /// still waiting for room on the upstreams is forgotten with it.
    fn close(&mut self, key: usize) {
        // Counted before the client can see its connection end.
        self.scratch.sink.tally.publish(&self.stats);
        let mut conn = self.conns.remove(key);
        if let Err(e) = self.poll.registry().deregister(conn.socket()) {
            log::debug!("{}: deregister failed: {e}", conn.tag());
        }
        if let Some(upstreams) = &mut self.upstreams {
            upstreams.forget(Ticket {
                key,
                generation: conn.generation,
            });
        }
        stats::add(&self.stats.closed, 1);
        log::debug!("{} closed and deregistered", conn.tag());
    }

    /// Stop accepting at once; let every connection send what it has, then close.
    fn begin_shutdown(&mut self) {
        log::info!("shutting down: {} connections to finish", self.conns.len());
        self.sources.close(self.poll.registry());
        self.still_ready.retain(|token| token.0 < LISTENER_BASE);
        self.shutdown_deadline = Some(Instant::now() + self.options.shutdown_grace);
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.conns[key].finish();
            self.drive(key, Conn::pump);
        }
        for key in std::mem::take(&mut self.to_close) {
            self.close(key);
        }
    }
}
