//! The event loop: one thread, one `mio::Poll`, every socket in it.
//!
//! This is the file to read to learn how a readiness-based server works. It
//! is seed 002's `select.select` loop grown up:
//!
//! ```python
//! while inputs:
//!     readable, writable, exceptional = select.select(inputs, outputs, inputs)
//!     for s in readable:
//!         if s is server: connection, addr = s.accept(); inputs.append(connection)
//!         else: data = s.recv(1024); ...
//! ```
//!
//! Here `Poll::poll` is `select`, the [`Slab`] of connections is `inputs`
//! (the slab key is the `mio::Token`, so an event finds its connection in
//! O(1)), and each connection's protocol lives in a service that never sees
//! a socket. The numbered rules are those of DESIGN.md; each is a comment
//! where the code keeps it.
//!
//! On writability: the select and level-triggered epoll idiom (Redis,
//! `examples/05_epoll.rs`) asks for writable events only while output is
//! pending, re-registering each time. mio on Linux is edge-triggered, so we
//! register `READABLE | WRITABLE` once per connection and *remember*
//! readiness in the connection until the socket answers `WouldBlock`: no
//! `epoll_ctl` per request, and a connection whose back-pressure lifts goes
//! on without waiting for an event that would never come.
//!
//! What it must not do: parse a protocol (services do), or keep per-byte
//! state about a connection (`connection.rs` does). It is longer than the
//! house aim of ~400 lines because every source the loop serves is here in
//! one place, as a reader of the lesson expects: listeners, connections,
//! UDP, the offload waker, idle timers, the console and shutdown.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::connection::{Conn, Scratch, Verdict};
use super::console::{self, Command, Console};
use super::offload::{Pool, Ticket};
use super::timers::{Deadline, IdleTimers};
use super::udp::Datagrams;
use super::{Listener, Options, Shutdown};
use crate::service::Factory;
use crate::stats::{self, ServiceStats, Stats};

// Rule 1: tokens are slab keys; the reserved ones live far outside the slab's range.
/// Listener `i` (TCP or UDP) has token `LISTENER_BASE + i`.
const LISTENER_BASE: usize = usize::MAX / 2;
/// The waker other threads use to interrupt `poll`: a shutdown request, or
/// offloaded jobs that finished. One waker per poll, shared by `Arc`.
const WAKER: Token = Token(usize::MAX);
/// Stdin, when the console is on (seed 002 selects on `sys.stdin` too).
const CONSOLE: Token = Token(usize::MAX - 1);

/// Events taken from the kernel per `poll` call; more wait for the next call.
const EVENTS_CAPACITY: usize = 1024;
/// Connections accepted per listener per wake-up (Redis'
/// `max-new-connections-per-cycle`): a connection storm cannot starve the
/// clients already connected. A listener that hits it goes on the "still
/// ready" list.
pub const ACCEPTS_PER_WAKEUP: usize = 10;
/// UDP datagrams handled per socket per wake-up, for the same fairness.
pub const DATAGRAMS_PER_WAKEUP: usize = 64;
/// How long a listener rests after the process ran out of file descriptors
/// (`EMFILE`/`ENFILE`), as nginx and libuv do, instead of spinning on an
/// accept that keeps failing.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(500);

/// What a TCP listener gives each connection it accepts, fixed at start.
#[derive(Debug)]
struct ListenerService {
    factory: Arc<dyn Factory>,
    /// Idle connections close after this long (rule 9).
    idle_timeout: Option<Duration>,
    /// The input backstop for its connections (see `Factory::max_input`).
    max_input: usize,
    counters: Arc<ServiceStats>,
}

/// A listening socket in the loop.
#[derive(Debug)]
struct Source {
    kind: SourceKind,
    /// Until when accepting rests after `EMFILE` (rule 3).
    paused_until: Option<Instant>,
}

#[derive(Debug)]
enum SourceKind {
    Tcp {
        socket: TcpListener,
        service: Arc<ListenerService>,
    },
    Udp {
        socket: UdpSocket,
    },
}

/// Everything the loop owns. One instance per loop thread.
#[derive(Debug)]
struct Loop {
    poll: Poll,
    conns: Slab<Conn>,
    sources: Vec<Source>,
    /// Buffers lent to the connection being pumped (rules 11 and 12).
    scratch: Scratch,
    datagrams: Datagrams,
    /// Worker threads for slow jobs; `None` with `--offload 0` (jobs run inline).
    pool: Option<Pool>,
    /// Sources and connections that stopped with work left (a spent budget
    /// or accept cap). Edge-triggered events will not repeat themselves, so
    /// the next `poll` does not sleep and these are served again after it.
    still_ready: Vec<Token>,
    /// Idle deadlines (rule 9).
    timers: IdleTimers,
    /// Connections to close once the current batch of events is handled.
    to_close: Vec<usize>,
    /// Counts accepts; each connection gets the next value (rule 7).
    next_generation: u32,
    /// Set when shutdown began: the instant by which everyone must be gone.
    shutdown_deadline: Option<Instant>,
    options: Options,
    stats: Arc<Stats>,
    /// The console on stdin, if on.
    console: Option<Console>,
    shutdown: Shutdown,
    /// Connections this loop accepted (`--loops N` shows how they spread).
    accepted_here: Arc<std::sync::atomic::AtomicU64>,
}

/// Serves `listeners` on this thread until `shutdown` is triggered and every
/// connection has finished (or [`Options::shutdown_grace`] has passed).
pub(super) fn run(
    index: usize,
    listeners: Vec<Listener>,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    shutdown.register(Arc::clone(&waker))?;
    let pool = match options.offload_workers {
        0 => None,
        workers => Some(Pool::start(workers, waker)?),
    };
    let mut sources = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let token = Token(LISTENER_BASE + i);
        let mut kind = match listener {
            Listener::Tcp { socket, factory } => {
                socket.set_nonblocking(true)?;
                let socket = TcpListener::from_std(socket);
                let service = ListenerService {
                    idle_timeout: options.idle_timeout.or_else(|| factory.idle_timeout()),
                    max_input: options.max_input.max(factory.max_input().unwrap_or(0)),
                    counters: stats.service(factory.name()),
                    factory,
                };
                SourceKind::Tcp {
                    socket,
                    service: Arc::new(service),
                }
            }
            Listener::Udp { socket } => {
                socket.set_nonblocking(true)?;
                SourceKind::Udp {
                    socket: UdpSocket::from_std(socket),
                }
            }
        };
        match &mut kind {
            SourceKind::Tcp { socket, .. } => {
                poll.registry()
                    .register(socket, token, Interest::READABLE)?
            }
            SourceKind::Udp { socket } => {
                poll.registry()
                    .register(socket, token, Interest::READABLE)?
            }
        }
        sources.push(Source {
            kind,
            paused_until: None,
        });
    }
    let mut event_loop = Loop {
        poll,
        conns: Slab::with_capacity(1024),
        still_ready: Vec::new(),
        sources,
        scratch: Scratch::new(),
        datagrams: Datagrams::new(),
        pool,
        timers: IdleTimers::default(),
        to_close: Vec::new(),
        next_generation: 0,
        shutdown_deadline: None,
        options: options.clone(),
        accepted_here: stats.event_loop(index),
        console: None,
        shutdown,
        stats,
    };
    if options.console && index == 0 {
        let stdin = 0;
        event_loop.poll.registry().register(
            &mut mio::unix::SourceFd(&stdin),
            CONSOLE,
            Interest::READABLE,
        )?;
        event_loop.console = Some(Console::default());
        println!("console: {}", console::HELP);
    }
    event_loop.run()
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            // Rule 10: shutdown is an event like any other (the waker).
            if self.shutdown.is_requested() && self.shutdown_deadline.is_none() {
                self.begin_shutdown();
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() {
                    log::info!("event loop stopped");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    log::warn!(
                        "{} connections still open after the grace period: closing them",
                        self.conns.len()
                    );
                    return Ok(());
                }
            }

            // Sleep until something is ready, or until the nearest deadline.
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue; // rule 8: a signal interrupted the wait
                }
                return Err(e);
            }
            let now = Instant::now();
            let ready = events.iter().count();
            stats::add(&self.stats.wakeups, 1);
            stats::add(&self.stats.events, ready as u64);
            log::trace!("poll woke: {ready} events");

            for event in events.iter() {
                match event.token() {
                    // Shutdown is checked at the top; finished jobs are handled here.
                    WAKER => self.complete_jobs(now),
                    CONSOLE => self.console(),
                    Token(t) if t >= LISTENER_BASE => self.serve_source(t - LISTENER_BASE, now),
                    token => {
                        log::trace!(
                            "conn={} event: readable={} writable={} closed={}",
                            token.0,
                            event.is_readable(),
                            event.is_writable(),
                            event.is_read_closed() || event.is_write_closed()
                        );
                        // Events are hints: a token may belong to a connection
                        // closed earlier in this batch. Ignore those.
                        let Some(conn) = self.conns.get_mut(token.0) else {
                            continue;
                        };
                        if conn.closed {
                            continue;
                        }
                        // Remember readiness (rule 5). An error or a hang-up
                        // counts as both: the next read or write reports it.
                        let broken = event.is_error() || event.is_read_closed();
                        conn.readable |= event.is_readable() || broken;
                        conn.peer_closed |= event.is_read_closed();
                        if event.is_error() && conn.waiting_for_job() {
                            // Reset while its job runs: nobody is left to
                            // answer, so free the slot now. The job's output
                            // will find another generation there (rule 7).
                            log::debug!("{} reset while its job runs: closing", conn.tag());
                            self.settle(token.0, Verdict::Close);
                            continue;
                        }
                        conn.writable |=
                            event.is_writable() || event.is_write_closed() || event.is_error();
                        self.pump(token.0, now);
                    }
                }
            }

            // Serve again what stopped with work left last time round.
            for token in std::mem::take(&mut self.still_ready) {
                match token.0 {
                    t if t >= LISTENER_BASE => self.serve_source(t - LISTENER_BASE, now),
                    key if self.conns.get(key).is_some_and(|c| !c.closed) => self.pump(key, now),
                    _ => {}
                }
            }
            self.resume_paused_sources(now);
            self.close_idle(now);

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
        let paused = self.sources.iter().filter_map(|s| s.paused_until);
        let nearest = paused
            .chain(self.shutdown_deadline)
            .chain(self.timers.next())
            .min()?;
        Some(nearest.saturating_duration_since(Instant::now()))
    }

    /// Lets the connection do its work and acts on the verdict.
    fn pump(&mut self, key: usize, now: Instant) {
        let conn = &mut self.conns[key];
        let verdict = conn.pump(&mut self.scratch, &self.options, now, &self.stats);
        self.settle(key, verdict);
    }

    /// Acts on a pump's verdict, and hands over a job the service asked for.
    fn settle(&mut self, key: usize, verdict: Verdict) {
        if let (Some(pool), Some(job)) = (&mut self.pool, self.conns[key].take_job()) {
            // Rule 7: the job carries (key, generation), not a reference.
            let ticket = Ticket {
                key,
                generation: self.conns[key].generation,
            };
            stats::add(&self.stats.offloaded, 1);
            pool.submit(ticket, job);
        }
        match verdict {
            Verdict::Wait => {}
            Verdict::StillReady => self.still_ready.push(Token(key)),
            Verdict::Close => {
                self.conns[key].closed = true;
                self.to_close.push(key);
            }
        }
    }

    /// Answers what was typed at the console, between two events.
    fn console(&mut self) {
        let Some(console) = &mut self.console else {
            return;
        };
        let commands = console.read();
        if console.closed {
            let stdin = 0;
            let _ = self
                .poll
                .registry()
                .deregister(&mut mio::unix::SourceFd(&stdin));
            self.console = None;
        }
        for command in commands {
            match command {
                Command::Stats => println!("{}", self.stats.summary()),
                Command::Conns => {
                    println!("{} connections", self.conns.len());
                    for (key, conn) in &self.conns {
                        println!("conn={key}/{} peer={} {conn:?}", conn.generation, conn.peer);
                    }
                }
                Command::Quit => {
                    println!("quitting: finishing {} connections", self.conns.len());
                    self.shutdown.trigger();
                }
                Command::Help => println!("{}", console::HELP),
            }
        }
    }

    /// Gives each finished job's output to the connection that asked for it,
    /// if that connection is still there.
    fn complete_jobs(&mut self, now: Instant) {
        let Some(pool) = &mut self.pool else { return };
        for (ticket, done) in pool.take_completions() {
            // Rule 7: between submit and now, the connection may have closed
            // and its slab slot been given to a new one. The generation tells
            // them apart; a stale output is dropped (its Drop cleans up, e.g.
            // an upload's temporary file).
            let Some(conn) = self.conns.get_mut(ticket.key) else {
                continue;
            };
            if conn.generation != ticket.generation || conn.closed {
                log::debug!(
                    "conn={}/{}: dropping the output of a job for a closed connection",
                    ticket.key,
                    ticket.generation
                );
                continue;
            }
            let verdict = conn.resume(done, &mut self.scratch, &self.options, now, &self.stats);
            self.settle(ticket.key, verdict);
        }
    }

    fn serve_source(&mut self, i: usize, now: Instant) {
        if self.shutdown_deadline.is_some() || self.sources[i].paused_until.is_some() {
            return;
        }
        match self.sources[i].kind {
            SourceKind::Tcp { .. } => self.accept(i, now),
            SourceKind::Udp { .. } => self.receive_datagrams(i),
        }
    }

    /// Rule 2: accept until `WouldBlock`, but at most [`ACCEPTS_PER_WAKEUP`].
    fn accept(&mut self, i: usize, now: Instant) {
        let SourceKind::Tcp { service, .. } = &self.sources[i].kind else {
            return;
        };
        let service = Arc::clone(service);
        let factory = &service.factory;
        log::trace!("{} listener readable: accepting", factory.name());
        for _ in 0..ACCEPTS_PER_WAKEUP {
            let SourceKind::Tcp { socket, .. } = &self.sources[i].kind else {
                return;
            };
            match socket.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, &service, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    // Rule 3: the pending connection stays in the backlog and
                    // the listener stays readable, so retrying now would spin
                    // at 100% CPU. Rest, keep serving the connected clients.
                    log::error!(
                        "{}: out of file descriptors ({e}): not accepting for {ACCEPT_PAUSE:?}; \
                         raise `ulimit -n` or lower --max-conns",
                        factory.name()
                    );
                    self.sources[i].paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
                // ECONNABORTED and friends: that one client gave up.
                Err(e) => log::debug!("{}: accept failed: {e}", factory.name()),
            }
        }
        self.still_ready.push(Token(LISTENER_BASE + i));
    }

    /// Rule 9: closes connections that received nothing for their timeout.
    /// A deadline is checked against the connection's last input only when
    /// it comes due, and armed again if the connection was active since.
    fn close_idle(&mut self, now: Instant) {
        while let Some(due) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(due.key) else {
                continue;
            };
            if conn.generation != due.generation || conn.closed {
                continue; // that connection is gone; the slot holds another
            }
            let idle_since = if conn.waiting_for_job() {
                now
            } else {
                conn.last_input
            };
            if idle_since + due.timeout > now {
                self.timers.arm(Deadline {
                    at: idle_since + due.timeout,
                    ..due
                });
                continue;
            }
            log::debug!("{} idle for {:?}: closing", conn.tag(), due.timeout);
            self.settle(due.key, Verdict::Close);
        }
    }

    fn resume_paused_sources(&mut self, now: Instant) {
        for i in 0..self.sources.len() {
            if self.sources[i]
                .paused_until
                .is_some_and(|until| until <= now)
            {
                self.sources[i].paused_until = None;
                self.serve_source(i, now);
            }
        }
    }

    /// Puts a new connection in the slab and the poll, or refuses it when full.
    fn admit(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        service: &ListenerService,
        now: Instant,
    ) {
        let factory = &service.factory;
        if self.conns.len() >= self.options.max_conns {
            stats::add(&self.stats.refused, 1);
            log::debug!(
                "{}: refusing peer={peer}: {} connections is the limit",
                factory.name(),
                self.options.max_conns
            );
            let _ = stream.write(factory.busy_reply()); // best effort: the socket is new, its buffer empty
            return;
        }
        // Replies are small and written whole: do not let Nagle hold them back.
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("peer={peer}: cannot set TCP_NODELAY: {e}");
        }
        // The slab key, known before insertion, is the token (rule 1).
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("peer={peer}: cannot register with the poll: {e}");
            return;
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let conn = entry.insert(Conn::new(
            key,
            stream,
            peer,
            generation,
            factory.make(),
            Arc::clone(&service.counters),
            service.max_input,
        ));
        stats::add(&self.stats.accepted, 1);
        stats::add(&service.counters.accepted, 1);
        stats::add(&self.accepted_here, 1);
        if let Some(timeout) = service.idle_timeout {
            self.timers.arm(Deadline {
                at: now + timeout,
                key,
                generation,
                timeout,
            });
        }
        log::debug!(
            "conn={key}/{} peer={peer} accepted by {}",
            conn.generation,
            factory.name()
        );
        let verdict = conn.open(&mut self.scratch, &self.options, now, &self.stats);
        self.settle(key, verdict);
    }

    fn receive_datagrams(&mut self, i: usize) {
        let SourceKind::Udp { socket } = &self.sources[i].kind else {
            return;
        };
        for _ in 0..DATAGRAMS_PER_WAKEUP {
            match self.datagrams.serve_one(socket, &self.stats) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // E.g. ECONNREFUSED: an earlier reply's ICMP "port unreachable".
                Err(e) => log::debug!("udp: {e}"),
            }
        }
        self.still_ready.push(Token(LISTENER_BASE + i));
    }

    /// Always deregister before dropping a socket (mio's rule).
    fn close(&mut self, key: usize) {
        let mut conn = self.conns.remove(key);
        if let Err(e) = self.poll.registry().deregister(&mut conn.socket) {
            log::debug!("{}: deregister failed: {e}", conn.tag());
        }
        stats::add(&self.stats.closed, 1);
        log::debug!("{} closed and deregistered", conn.tag());
    }

    /// Stop accepting at once; let every connection send what it has, then close.
    fn begin_shutdown(&mut self) {
        log::info!("shutting down: {} connections to finish", self.conns.len());
        for source in &mut self.sources {
            let registry = self.poll.registry();
            let _ = match &mut source.kind {
                SourceKind::Tcp { socket, .. } => registry.deregister(socket),
                SourceKind::Udp { socket } => registry.deregister(socket),
            };
        }
        self.sources.clear();
        self.still_ready.retain(|token| token.0 < LISTENER_BASE);
        self.shutdown_deadline = Some(Instant::now() + self.options.shutdown_grace);
        let now = Instant::now();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.conns[key].finish();
            self.pump(key, now);
        }
        for key in std::mem::take(&mut self.to_close) {
            self.close(key);
        }
    }
}

/// `EMFILE` (this process) or `ENFILE` (the whole system) is out of descriptors.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}
