//! The event loop as a Redis client (`--store redis://`): a few
//! non-blocking connections to the store in the loop's own `Poll`, onto
//! which the `Job::Remote` requests of every client connection are
//! pipelined, and whose replies are routed back to the client that asked.
//!
//! ```text
//!   client conns ── submit(Ticket, Request) ──► Pipeline (one per upstream)
//!        ▲                                        │ tend: one write for all
//!        │                                        ▼
//!        └── tend() answers ◄── cut replies ◄── the store (FIFO per connection)
//! ```
//!
//! Requests are appended while the loop handles a batch of events and
//! written once after it ([`Upstreams::tend`]): at 50 clients, one `write`
//! carries many requests. Replies come back in order per connection, so a
//! [`Pipeline`] hands each to the oldest ticket it owes; a ticket whose
//! connection was closed meanwhile is dropped by the loop (rule 7).
//!
//! Faults. A connection that fails to connect, breaks, sends what is not
//! RESP, or leaves its oldest request unanswered for [`TIMEOUT`] is dropped:
//! every request on it is answered [`Answer::Unavailable`] (the service
//! turns that into its error reply), and it connects again after a backoff
//! (100 ms doubling to 2 s, those of `remote::blocking`). While no upstream
//! is connected, [`Upstreams::submit`] refuses at once: nothing queues for
//! a store that is not there. Only the first connect, at start, takes
//! requests before it is up: they wait behind its `SELECT`, within the
//! same timeout. A connection the store closes while it owes nothing,
//! after serving at least 2 s (Redis' idle `timeout`), is made again at
//! once and counts as a first connect: an idle close costs no request.
//!
//! Bounds. Each upstream takes requests while under [`MAX_UNSENT`] bytes
//! unwritten and [`MAX_IN_FLIGHT`] requests unanswered (one request may pass
//! the byte cap, as one reply may pass `--max-output`). When every upstream
//! is at a cap, requests wait in a FIFO here, and their clients read
//! nothing meanwhile (their dialogue is in its job phase): the FIFO holds at
//! most one request per open client connection (a closed one's is
//! forgotten). Replies read are bounded by the requests in flight; bytes
//! nobody asked for are a fault.
//!
//! Shutdown needs nothing of its own: a client waiting for a reply stays
//! open in its job phase, and the loop tends its upstreams until every
//! client is gone, so requests in flight are answered (or time out) first,
//! within `--shutdown-timeout`.
//!
//! What it must not do: block (connects are non-blocking, the address is
//! resolved once when the loop is set up), know a service's protocol, or
//! touch client connections (it gives tickets and answers back to the loop).
//! The uring loop does not use it: its Remote jobs go to the offload pool.

mod pipeline;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::evloop::LISTENER_BASE;
use super::offload::Ticket;
use crate::remote::blocking::{IO_TIMEOUT, RETRY_FIRST, RETRY_MAX};
use crate::remote::{Answer, Request, StoreUrl};
use crate::stats::{self, Stats};
use pipeline::{Owner, Pipeline};

/// Upstream `i` has token `UPSTREAM_BASE + i`: above the listeners'
/// range, below the waker's and the console's (rule 1).
pub(crate) const UPSTREAM_BASE: usize = LISTENER_BASE + LISTENER_BASE / 2;

/// How long the oldest request on an upstream may wait for its replies (or
/// a connect for its answer) before the connection counts as lost: the
/// blocking client's timeout, so every mode gives up on the store alike.
pub(crate) const TIMEOUT: Duration = IO_TIMEOUT;
/// Requests unanswered per upstream connection at most; more wait here.
pub(crate) const MAX_IN_FLIGHT: usize = 1024;
/// Bytes appended and not yet written per upstream at most; more wait here.
pub(crate) const MAX_UNSENT: usize = 1024 * 1024;
/// Bytes asked for per `read` of an upstream.
const READ_CHUNK: usize = 16 * 1024;

/// Where one upstream connection is in its life.
#[derive(Debug)]
enum Link {
    /// No socket; connect again at `retry_at`.
    Down { retry_at: Instant },
    /// A non-blocking connect is under way: writable means it finished.
    Connecting(TcpStream),
    /// Connected: requests are written and replies read.
    Up(TcpStream),
}

/// One connection to the store and its pipeline.
#[derive(Debug)]
struct Upstream {
    link: Link,
    pipeline: Pipeline,
    /// Remembered from edge-triggered events until a write would block (rule 5).
    writable: bool,
    /// The wait before the next connect after a failure.
    backoff: Duration,
    /// Its last connection failed and no new one is in use yet: requests
    /// are refused rather than queued on a connect that may never finish.
    lost: bool,
    /// When its connection came up, while it is up.
    up_since: Option<Instant>,
}

impl Upstream {
    /// Whether requests may be given to it: connected, or making its very
    /// first connection (a loop's first clients need not race its connect).
    fn takes_requests(&self) -> bool {
        match self.link {
            Link::Up(_) => true,
            Link::Connecting(_) => !self.lost,
            Link::Down { .. } => false,
        }
    }
}

/// Every upstream connection of one loop, the requests waiting for room on
/// them, and the answers ready for the loop to deliver.
#[derive(Debug)]
pub(crate) struct Upstreams {
    url: StoreUrl,
    /// The store's addresses, resolved at set-up; connects rotate over them.
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    /// `SELECT db`, encoded once, written first on every new connection.
    select: Vec<u8>,
    conns: Vec<Upstream>,
    /// Requests no upstream had room for, oldest first.
    waiting: VecDeque<(Ticket, Request)>,
    /// Replies (or `Unavailable`) cut since the loop last took them.
    answers: Vec<(Ticket, Answer)>,
    chunk: Box<[u8]>,
    stats: Arc<Stats>,
}

impl Upstreams {
    /// `count` connections to the store at `url`, connecting now,
    /// registered under `UPSTREAM_BASE + i`. Resolving the host name is
    /// the one blocking step, done here before the loop serves anyone.
    pub(crate) fn start(
        url: &StoreUrl,
        count: usize,
        registry: &Registry,
        stats: Arc<Stats>,
        now: Instant,
    ) -> io::Result<Upstreams> {
        let addrs: Vec<SocketAddr> = url.authority().to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(io::Error::other(format!("{url} resolves to no address")));
        }
        let mut upstreams = Upstreams {
            url: url.clone(),
            addrs,
            next_addr: 0,
            select: Request::command(&[b"SELECT", url.db.to_string().as_bytes()]).commands,
            conns: Vec::with_capacity(count),
            waiting: VecDeque::new(),
            answers: Vec::new(),
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            stats,
        };
        for i in 0..count.max(1) {
            upstreams.conns.push(Upstream {
                link: Link::Down { retry_at: now },
                pipeline: Pipeline::default(),
                writable: false,
                backoff: RETRY_FIRST,
                lost: false,
                up_since: None,
            });
            upstreams.connect(i, registry, now);
        }
        Ok(upstreams)
    }

    /// Takes a client's request. False when no upstream takes requests
    /// (none is connected): the loop answers `Unavailable` at once instead
    /// of queueing it.
    pub(crate) fn submit(&mut self, ticket: Ticket, request: Request, now: Instant) -> bool {
        if !self.conns.iter().any(Upstream::takes_requests) {
            return false;
        }
        self.waiting.push_back((ticket, request));
        self.feed(now);
        true
    }

    /// Its connection closed: a request of `ticket` still waiting for room
    /// is dropped, so the line holds one request per open connection at
    /// most. One already on a pipeline is answered and dropped by the loop.
    pub(crate) fn forget(&mut self, ticket: Ticket) {
        if !self.waiting.is_empty() {
            self.waiting.retain(|(waiting, _)| *waiting != ticket);
        }
    }

    /// Moves waiting requests onto upstreams with room, oldest first, each
    /// to the least busy connection (one that is up before one connecting).
    fn feed(&mut self, now: Instant) {
        while let Some((ticket, request)) = self.waiting.pop_front() {
            let roomy = self
                .conns
                .iter_mut()
                .filter(|c| c.takes_requests())
                .filter(|c| {
                    c.pipeline.in_flight() < MAX_IN_FLIGHT && c.pipeline.unsent_len() < MAX_UNSENT
                })
                .min_by_key(|c| {
                    (
                        matches!(c.link, Link::Connecting(_)),
                        c.pipeline.in_flight(),
                    )
                });
            let Some(upstream) = roomy else {
                self.waiting.push_front((ticket, request));
                return; // back-pressure: they wait for replies to free room
            };
            stats::add(&self.stats.store_commands, request.replies as u64);
            upstream.pipeline.push(
                Owner::Client(ticket),
                &request.commands,
                request.replies,
                now + TIMEOUT,
            );
        }
    }

    /// Once per turn of the loop, after its events: reconnects upstreams
    /// whose backoff ended, drops those whose oldest request is past its
    /// deadline, writes what every connected one has pending (so one write
    /// carries many requests), and returns every answer cut (or failed)
    /// since the last call, for the loop to give to its connections.
    pub(crate) fn tend(&mut self, registry: &Registry, now: Instant) -> Vec<(Ticket, Answer)> {
        for i in 0..self.conns.len() {
            let upstream = &self.conns[i];
            match upstream.link {
                Link::Down { retry_at } if retry_at <= now => self.connect(i, registry, now),
                Link::Down { .. } => {}
                _ if upstream
                    .pipeline
                    .next_deadline()
                    .is_some_and(|at| at <= now) =>
                {
                    let what = format!("no reply within {TIMEOUT:?}");
                    self.fail(i, &what, registry, now);
                }
                _ => {}
            }
        }
        self.feed(now);
        for i in 0..self.conns.len() {
            if let Err(e) = self.write(i) {
                self.fail(i, &format!("write failed: {e}"), registry, now);
            }
        }
        std::mem::take(&mut self.answers)
    }

    /// Upstream `i` (its token less [`UPSTREAM_BASE`]) had an event.
    pub(crate) fn on_event(&mut self, i: usize, event: &Event, registry: &Registry, now: Instant) {
        let Some(upstream) = self.conns.get_mut(i) else {
            return;
        };
        let result = match &upstream.link {
            Link::Down { .. } => return, // an event for a socket already dropped
            Link::Connecting(stream) => match connected(stream) {
                Ok(false) => return, // a spurious event: still connecting
                Ok(true) => {
                    self.promote(i, now);
                    self.write(i).and_then(|()| self.read(i, event))
                }
                Err(e) => Err(e),
            },
            Link::Up(_) => {
                // Written in `tend`, after the batch; read on any hint: an
                // error or a hang-up shows itself in the read.
                upstream.writable |= event.is_writable() || event.is_write_closed();
                self.read(i, event)
            }
        };
        if let Err(e) = result {
            self.fail(i, &e.to_string(), registry, now);
        }
    }

    /// The nearest reconnect or request deadline, for the poll timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        (self.conns.iter())
            .filter_map(|c| match c.link {
                Link::Down { retry_at } => Some(retry_at),
                _ => c.pipeline.next_deadline(),
            })
            .min()
    }

    /// Starts a non-blocking connect for upstream `i`; its `SELECT` goes first.
    fn connect(&mut self, i: usize, registry: &Registry, now: Instant) {
        let addr = self.addrs[self.next_addr % self.addrs.len()];
        self.next_addr = self.next_addr.wrapping_add(1);
        let started = TcpStream::connect(addr).and_then(|mut stream| {
            stream.set_nodelay(true)?;
            let interest = Interest::READABLE | Interest::WRITABLE; // once: rule 5
            registry.register(&mut stream, Token(UPSTREAM_BASE + i), interest)?;
            Ok(stream)
        });
        match started {
            Ok(stream) => {
                let upstream = &mut self.conns[i];
                upstream.link = Link::Connecting(stream);
                upstream.writable = false;
                let deadline = now + TIMEOUT;
                upstream
                    .pipeline
                    .push(Owner::Select, &self.select, 1, deadline);
            }
            Err(e) => self.fail(i, &format!("cannot connect to {addr}: {e}"), registry, now),
        }
    }

    /// Upstream `i`'s connect finished: requests can be written.
    fn promote(&mut self, i: usize, now: Instant) {
        let upstream = &mut self.conns[i];
        // `Down` only for the moment it takes to move the stream over.
        if let Link::Connecting(stream) =
            std::mem::replace(&mut upstream.link, Link::Down { retry_at: now })
        {
            log::info!("store {}: connected (loop upstream {i})", self.url);
            upstream.link = Link::Up(stream);
            upstream.writable = true;
            upstream.up_since = Some(now);
        }
    }

    /// Writes upstream `i`'s pending requests until done or the socket is full.
    fn write(&mut self, i: usize) -> io::Result<()> {
        let upstream = &mut self.conns[i];
        let Link::Up(stream) = &mut upstream.link else {
            return Ok(());
        };
        while upstream.writable && upstream.pipeline.unsent_len() > 0 {
            match stream.write(upstream.pipeline.unsent()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    stats::add(&self.stats.store_writes, 1);
                    upstream.pipeline.sent(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => upstream.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads upstream `i` until `WouldBlock`, cutting replies as they come.
    /// Bounded: what the store may send is what was asked of it. A short
    /// read emptied the socket, so the read that would only say
    /// `WouldBlock` is skipped (as `connection.rs` does), unless the event
    /// said the store hung up: then read on to the end, or the FIN behind
    /// the data would raise no new edge.
    fn read(&mut self, i: usize, event: &Event) -> io::Result<()> {
        let upstream = &mut self.conns[i];
        let Link::Up(stream) = &mut upstream.link else {
            return Ok(());
        };
        let to_the_end = event.is_read_closed() || event.is_error();
        let was_selected = upstream.pipeline.selected();
        loop {
            match stream.read(&mut self.chunk) {
                Ok(0) => return Err(io::Error::other("the store closed the connection")),
                Ok(n) => {
                    (upstream.pipeline)
                        .received(&self.chunk[..n], &mut self.answers)
                        .map_err(|fault| io::Error::other(fault.0))?;
                    if n < self.chunk.len() && !to_the_end {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !was_selected && upstream.pipeline.selected() {
            // In use again: the next failure retries soon.
            (upstream.backoff, upstream.lost) = (RETRY_FIRST, false);
        }
        Ok(())
    }

    /// Drops upstream `i`: its requests are answered `Unavailable`, and it
    /// connects again after its backoff. With no upstream left to take
    /// them, the waiting requests are answered `Unavailable` too.
    fn fail(&mut self, i: usize, why: &str, registry: &Registry, now: Instant) {
        let upstream = &mut self.conns[i];
        if let Link::Connecting(stream) | Link::Up(stream) = &mut upstream.link {
            let _ = registry.deregister(stream); // mio's rule: before dropping
        }
        // A connection that served a while and owed nothing was most likely
        // closed for being idle (Redis' `timeout`, a restart): nothing was
        // lost, so connect again at once, taking requests meanwhile. Not
        // sooner than RETRY_MAX after the last one came up: no storm.
        let idle = upstream.pipeline.in_flight() == 0
            && (upstream.up_since).is_some_and(|since| now >= since + RETRY_MAX);
        upstream.up_since = None;
        if idle {
            log::info!(
                "store {}: loop upstream {i} closed while idle ({why}); connecting again",
                self.url
            );
            upstream.pipeline.fail(&mut self.answers);
            return self.connect(i, registry, now);
        }
        log::warn!(
            "store {} unavailable (loop upstream {i}): {why}; retrying in {:?}",
            self.url,
            upstream.backoff
        );
        upstream.link = Link::Down {
            retry_at: now + upstream.backoff,
        };
        upstream.backoff = (upstream.backoff * 2).min(RETRY_MAX);
        upstream.lost = true;
        upstream.pipeline.fail(&mut self.answers);
        if !self.conns.iter().any(Upstream::takes_requests) {
            let refused = self
                .waiting
                .drain(..)
                .map(|(t, _)| (t, Answer::Unavailable));
            self.answers.extend(refused);
        }
    }
}

/// Whether a non-blocking connect finished: `Ok(false)` while it is still
/// under way, an error if it failed (mio's documented check: `take_error`,
/// then `peer_addr`).
fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
