//! The event loop's listening sockets: TCP listeners that accept, UDP
//! sockets that answer datagrams. The loop asks them to serve when they are
//! readable; this file keeps the fairness caps, the rest after `EMFILE`, and
//! the refusal of clients over `--max-conns`, so that `evloop.rs` keeps to
//! the lesson.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Registry, Token};

use super::evloop::LISTENER_BASE;
use super::udp::Datagrams;
use super::{Listener, Options};
use crate::service::Factory;
use crate::stats::{self, ServiceStats, Stats};

/// Connections accepted per listener per wake-up (Redis'
/// `max-new-connections-per-cycle`): a connection storm cannot starve the
/// clients already connected. A listener that hits it goes on the "still
/// ready" list.
pub(crate) const ACCEPTS_PER_WAKEUP: usize = 10;
/// UDP datagrams handled per socket per wake-up, for the same fairness.
pub(crate) const DATAGRAMS_PER_WAKEUP: usize = 64;
/// How long a listener rests after the process ran out of file descriptors
/// (`EMFILE`/`ENFILE`), as nginx and libuv do, instead of spinning on an
/// accept that keeps failing.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(500);

/// What a TCP listener gives each connection it accepts, fixed at start.
#[derive(Debug)]
pub(crate) struct ListenerService {
    pub(crate) factory: Arc<dyn Factory>,
    /// Idle connections close after this long (rule 9).
    pub(crate) idle_timeout: Option<Duration>,
    /// The input backstop for its connections (see `Factory::max_input`).
    pub(crate) max_input: usize,
    pub(crate) counters: Arc<ServiceStats>,
}

impl ListenerService {
    /// What `factory`'s listener gives its connections under `options`.
    pub(crate) fn new(factory: Arc<dyn Factory>, options: &Options, stats: &Stats) -> Self {
        ListenerService {
            idle_timeout: options.idle_timeout.or_else(|| factory.idle_timeout()),
            max_input: options.max_input.max(factory.max_input().unwrap_or(0)),
            counters: stats.service(factory.name()),
            factory,
        }
    }
}

/// A connection just accepted, for the loop to admit.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Which listener took it (its index in [`Sources`]).
    pub(crate) listener: usize,
}

/// One listening socket.
#[derive(Debug)]
struct Source {
    kind: Kind,
    /// Until when accepting rests after `EMFILE` (rule 3).
    resting_until: Option<Instant>,
}

#[derive(Debug)]
enum Kind {
    Tcp {
        socket: TcpListener,
        service: Arc<ListenerService>,
    },
    Udp {
        socket: UdpSocket,
    },
}

/// Every listening socket of one loop, registered in its poll.
#[derive(Debug)]
pub(crate) struct Sources {
    sources: Vec<Source>,
    /// Buffers for UDP, shared by every UDP socket of the loop.
    datagrams: Datagrams,
    /// Connections this loop accepted (`--loops N` shows how they spread).
    accepted_here: Arc<AtomicU64>,
    /// Accepted in this wake-up, for the loop to admit (kept to reuse its memory).
    accepted: Vec<Accepted>,
}

impl Sources {
    /// Makes `listeners` non-blocking and registers each under
    /// `LISTENER_BASE + i` (rule 1).
    pub(crate) fn register(
        listeners: Vec<Listener>,
        registry: &Registry,
        options: &Options,
        stats: &Stats,
        loop_index: usize,
    ) -> io::Result<Sources> {
        let mut sources = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let token = Token(LISTENER_BASE + i);
            let kind = match listener {
                Listener::Tcp { socket, factory } => {
                    socket.set_nonblocking(true)?;
                    let mut socket = TcpListener::from_std(socket);
                    registry.register(&mut socket, token, Interest::READABLE)?;
                    Kind::Tcp {
                        socket,
                        service: Arc::new(ListenerService::new(factory, options, stats)),
                    }
                }
                Listener::Udp { socket } => {
                    socket.set_nonblocking(true)?;
                    let mut socket = UdpSocket::from_std(socket);
                    registry.register(&mut socket, token, Interest::READABLE)?;
                    Kind::Udp { socket }
                }
            };
            sources.push(Source {
                kind,
                resting_until: None,
            });
        }
        Ok(Sources {
            sources,
            datagrams: Datagrams::new(),
            accepted_here: stats.event_loop(loop_index),
            accepted: Vec::new(),
        })
    }

    /// The service behind TCP listener `i`.
    pub(crate) fn service_of(&self, i: usize) -> Arc<ListenerService> {
        match &self.sources[i].kind {
            Kind::Tcp { service, .. } => Arc::clone(service),
            Kind::Udp { .. } => unreachable!("source {i} is a UDP socket, not a listener"),
        }
    }

    /// Serves readable source `i`: accepts while `room` lasts (refusing the
    /// rest with the service's busy line), for [`take_accepted`](Self::take_accepted),
    /// or answers datagrams. Returns true when it stopped at its cap with
    /// work left.
    pub(crate) fn serve(&mut self, i: usize, mut room: usize, stats: &Stats, now: Instant) -> bool {
        let Some(source) = self.sources.get_mut(i) else {
            return false;
        };
        if source.resting_until.is_some() {
            return false;
        }
        let (socket, service) = match &source.kind {
            Kind::Tcp { socket, service } => (socket, service),
            Kind::Udp { socket } => {
                return self
                    .datagrams
                    .serve_many(socket, DATAGRAMS_PER_WAKEUP, stats);
            }
        };
        let name = service.factory.name();
        // Rule 2: accept until `WouldBlock`, but at most a few per wake-up.
        for _ in 0..ACCEPTS_PER_WAKEUP {
            match socket.accept() {
                Ok((stream, peer)) if room == 0 => refuse(stream, peer, service, stats),
                Ok((stream, peer)) => {
                    // Replies are small and written whole: no Nagle delay.
                    if let Err(e) = stream.set_nodelay(true) {
                        log::debug!("peer={peer}: cannot set TCP_NODELAY: {e}");
                    }
                    stats::add(&self.accepted_here, 1);
                    self.accepted.push(Accepted {
                        stream,
                        peer,
                        listener: i,
                    });
                    room -= 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    source.resting_until = accept_failed(name, &e, now);
                    if source.resting_until.is_some() {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// A connection accepted by [`serve`](Self::serve), not yet admitted.
    pub(crate) fn take_accepted(&mut self) -> Option<Accepted> {
        self.accepted.pop()
    }

    /// Sources whose rest ended by `now`; they accept again from here on.
    pub(crate) fn rested(&mut self, now: Instant) -> Vec<usize> {
        let mut rested = Vec::new();
        for (i, source) in self.sources.iter_mut().enumerate() {
            if source.resting_until.is_some_and(|until| until <= now) {
                source.resting_until = None;
                rested.push(i);
            }
        }
        rested
    }

    /// When the nearest rest ends, for the poll timeout.
    pub(crate) fn next_rest_end(&self) -> Option<Instant> {
        self.sources.iter().filter_map(|s| s.resting_until).min()
    }

    /// Shutdown: deregister and drop every listening socket.
    pub(crate) fn close(&mut self, registry: &Registry) {
        for source in &mut self.sources {
            let _ = match &mut source.kind {
                Kind::Tcp { socket, .. } => registry.deregister(socket),
                Kind::Udp { socket } => registry.deregister(socket),
            };
        }
        self.sources.clear();
    }
}

/// The server is full: tell the client in its protocol, then drop it.
pub(crate) fn refuse(
    mut stream: impl Write,
    peer: SocketAddr,
    service: &ListenerService,
    stats: &Stats,
) {
    stats::add(&stats.refused, 1);
    log::debug!(
        "{}: refusing peer={peer}: the server is full",
        service.factory.name()
    );
    let _ = stream.write(service.factory.busy_reply()); // best effort: the socket is new, its buffer empty
}

/// What a failed accept means: `Some(until)` when the process is out of
/// descriptors and the listener must rest until then (rule 3: the pending
/// connection stays in the backlog and the listener stays ready, so
/// retrying at once would spin at 100% CPU); `None` when one client gave up
/// (`ECONNABORTED` and friends). Logged either way.
pub(crate) fn accept_failed(name: &str, e: &io::Error, now: Instant) -> Option<Instant> {
    if !is_out_of_descriptors(e) {
        log::debug!("{name}: accept failed: {e}");
        return None;
    }
    log::error!(
        "{name}: out of file descriptors ({e}): not accepting for {ACCEPT_PAUSE:?}; \
         raise `ulimit -n` or lower --max-conns"
    );
    Some(now + ACCEPT_PAUSE)
}

/// `EMFILE` (this process) or `ENFILE` (the whole system) is out of descriptors.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}
