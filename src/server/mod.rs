//! Server modes: the drivers that own the sockets and host the services.
//!
//! Every mode takes *bound* listeners ([`Listener`]) and a [`Shutdown`]
//! handle, never addresses: `main` binds (and reports a port in use before
//! anything starts), tests bind `127.0.0.1:0` and read the port back.
//!
//! - [`evloop`]: one thread, one `mio::Poll`, every socket in it (the default
//!   and the lesson).
//! - [`threaded`]: a thread per connection, or a bounded pool of them, like
//!   `socketserver.ThreadingTCPServer`.
//! - [`blocking`]: one client at a time, like `socketserver.TCPServer`.
//! - [`forking`]: a process per connection, like `socketserver.ForkingTCPServer`.
//! - [`uring`]: one thread, one io_uring: completions instead of readiness.
//!
//! The modes share the service code, the counters, and (for the last two)
//! the blocking per-connection driver in [`stream`].

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::service::Factory;
use crate::stats::Stats;
use offload::Wake;

mod accept;
mod blocking;
mod connection;
mod console;
pub mod evloop;
mod forking;
mod mail;
mod offload;
mod sources;
mod stream;
mod sys;
mod threaded;
mod timers;
mod turn;
mod udp;
mod upstream;
pub mod uring;
mod uring_accept;
mod uring_bufs;
mod uring_conn;
mod uring_ring;

pub use uring_ring::available as uring_available;

/// How connections are served. One flag switches it; the services are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One thread, one `mio::Poll`: every connection in one event loop.
    Evloop,
    /// A thread per connection (`--threads N`: a pool of N).
    Threaded,
    /// One connection at a time; the next waits in the listen backlog.
    Blocking,
    /// A process per connection (fork); each child has its own copy of
    /// the store, so a todo POST is seen by that connection only.
    Forking,
    /// One thread, one io_uring: the kernel is told what to read and send
    /// and says when it is done (Linux 6.0 or later).
    Uring,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Evloop => "evloop",
            Mode::Threaded => "threaded",
            Mode::Blocking => "blocking",
            Mode::Forking => "forking",
            Mode::Uring => "uring",
        })
    }
}

/// A bound socket and what to serve on it.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener; each connection gets a fresh service from `factory`.
    Tcp {
        /// Bound and listening (see [`bind_tcp`]).
        socket: TcpListener,
        /// Makes the service of each accepted connection.
        factory: Arc<dyn Factory>,
    },
    /// A UDP socket: each datagram is echoed back, unless its source would
    /// answer back ([`crate::service::udp`]).
    Udp {
        /// Bound.
        socket: UdpSocket,
    },
}

impl Listener {
    /// The service's name, for log lines.
    pub fn service_name(&self) -> &'static str {
        match self {
            Listener::Tcp { factory, .. } => factory.name(),
            Listener::Udp { .. } => "udp",
        }
    }

    /// The address actually bound (port 0 becomes the real port).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp { socket, .. } => socket.local_addr(),
            Listener::Udp { socket } => socket.local_addr(),
        }
    }
}

/// The listen backlog: 511, as Redis' `tcp-backlog` (mio's own `bind` uses
/// 128, too few for a burst of a thousand connects). The kernel clamps it
/// to `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 511;

/// Binds a TCP listener with `SO_REUSEADDR` and a backlog of [`LISTEN_BACKLOG`].
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_tcp_with(addr, false)
}

/// Binds one of several TCP listeners sharing `addr` with `SO_REUSEPORT`:
/// the kernel spreads new connections over them, one per event loop (the
/// way nginx's `reuseport` uses more than one core).
pub fn bind_tcp_shared(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_tcp_with(addr, true)
}

fn bind_tcp_with(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Limits every mode keeps. Each default is a named constant saying what
/// happens when it is hit.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections served at once; one more gets the service's busy line and
    /// is closed.
    pub max_conns: usize,
    /// Bytes a client may have sent that its service has not consumed yet.
    /// Services bound their own input; this is the driver's backstop.
    pub max_input: usize,
    /// Unsent output above which a connection stops being read until the
    /// client catches up (back-pressure).
    pub max_output: usize,
    /// Threaded mode: `Some(n)` serves with a pool of `n` threads; `None`
    /// starts a thread per connection.
    pub threads: Option<usize>,
    /// How long a shutdown waits for connections to finish what they have.
    pub shutdown_grace: Duration,
    /// Idle connections are closed after this long without input. `None`:
    /// each service's default (HTTP: 75 s keep-alive; others: never).
    pub idle_timeout: Option<Duration>,
    /// A request must arrive whole within this long of its first byte (or,
    /// in a body, of its last read): a client sending a byte now and then
    /// (slowloris) cannot hold a slot. `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// Event loop: read `stats`, `conns`, `quit` from stdin (the first
    /// loop only). Meant for a terminal in the foreground.
    pub console: bool,
    /// Event loop: worker threads for slow jobs, started with the first
    /// job. 0 runs jobs on the loop thread itself, where they stall every
    /// client (for teaching).
    pub offload_workers: usize,
    /// Work done on a timer for the services, off any request (kv's active
    /// expiry). The first event loop runs it from its own timer; the other
    /// modes from a thread of their own.
    pub housekeeping: Option<Housekeeping>,
    /// The one Redis server (`--store redis://`) the event loop pipelines
    /// todo's and kv's requests onto, over its own connections. `None` with
    /// the file store, and with a Redis Cluster, whose requests go through
    /// the offload pool (`remote::blocking`'s cluster client), as they do in
    /// the other modes.
    pub store: Option<crate::remote::StoreUrl>,
    /// Event loop: connections each loop keeps to [`Options::store`]
    /// (`--store-conns`).
    pub store_conns: usize,
}

/// Periodic work for the services: `run` does one round at a wall-clock
/// time and says whether more is due at once.
#[derive(Clone)]
pub struct Housekeeping {
    /// How often a round is due.
    pub every: Duration,
    /// One round; true when it stopped with more due (run again soon).
    pub run: Arc<dyn Fn(std::time::SystemTime) -> bool + Send + Sync>,
}

impl fmt::Debug for Housekeeping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Housekeeping")
            .field("every", &self.every)
            .finish()
    }
}

impl Housekeeping {
    /// Runs the rounds on this thread until `shutdown` (the modes without
    /// an event loop).
    pub fn run_until(&self, shutdown: &Shutdown) {
        while !shutdown.is_requested() {
            let more = (self.run)(std::time::SystemTime::now());
            std::thread::sleep(if more {
                Duration::from_millis(1)
            } else {
                self.every
            });
        }
    }
}

/// [`Options::offload_workers`]' default. Jobs are disk writes and sleeps
/// more than CPU work, so more threads than cores is fine (nginx's thread
/// pools default to 32).
pub const DEFAULT_OFFLOAD_WORKERS: usize = 4;

/// [`Options::store_conns`]' default: two connections carry every
/// request of a loop, pipelined (twemproxy keeps one per server).
pub const DEFAULT_STORE_CONNS: usize = 2;

/// [`Options::max_conns`]'s default, as Redis' `maxclients`; clamped at start
/// to the open-file limit minus [`FD_RESERVE`].
pub const DEFAULT_MAX_CONNS: usize = 10_000;
/// File descriptors kept free for listeners, logs and the store.
pub const FD_RESERVE: usize = 32;
/// [`Options::max_input`]'s default: 1 MiB, Redis' pre-auth query limit.
pub const DEFAULT_MAX_INPUT: usize = 1024 * 1024;
/// [`Options::max_output`]'s default: 1 MiB.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;

/// [`Options::request_timeout`]'s default: 60 s, nginx's
/// `client_header_timeout` and `client_body_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// [`Options::shutdown_grace`]'s default: 10 s, as Redis and nginx.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Default for Options {
    fn default() -> Self {
        Options {
            max_conns: DEFAULT_MAX_CONNS,
            max_input: DEFAULT_MAX_INPUT,
            max_output: DEFAULT_MAX_OUTPUT,
            threads: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            offload_workers: DEFAULT_OFFLOAD_WORKERS,
            idle_timeout: None,
            housekeeping: None,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            console: false,
            store: None,
            store_conns: DEFAULT_STORE_CONNS,
        }
    }
}

/// Asks a running server to stop, from any thread. Cheap to clone.
///
/// Each event loop registers its waker here, so a request wakes the
/// loop at once instead of waiting for the next event.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    requested: AtomicBool,
    wakers: Mutex<Vec<Arc<dyn Wake>>>,
}

impl Shutdown {
    /// A handle nobody has triggered yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks the server to stop: stop accepting, finish, return from `run`.
    pub fn trigger(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        for waker in self.wakers().iter() {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake an event loop for shutdown: {e}");
            }
        }
    }

    /// True once [`trigger`](Self::trigger) was called.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Wakes `waker` on shutdown (at once if shutdown was already asked).
    fn register(&self, waker: Arc<impl Wake + 'static>) -> io::Result<()> {
        self.wakers().push(waker.clone());
        if self.is_requested() {
            waker.wake()?;
        }
        Ok(())
    }

    fn wakers(&self) -> std::sync::MutexGuard<'_, Vec<Arc<dyn Wake>>> {
        crate::sync::lock(&self.inner.wakers)
    }
}

/// During shutdown, whether a loop may return: every connection is gone, or
/// the grace period ran out (the ones left are counted in
/// [`Stats::unfinished`], and the process exits with code 3).
pub(crate) fn shutdown_over(
    open: usize,
    deadline: std::time::Instant,
    stats: &Stats,
    what: &str,
) -> bool {
    if open == 0 {
        log::info!("{what} stopped");
        return true;
    }
    if std::time::Instant::now() < deadline {
        return false;
    }
    log::warn!("{open} connections still open after the grace period: closing them");
    crate::stats::add(&stats.unfinished, open as u64);
    true
}

/// Serves with one event loop per group of listeners, each on its own
/// thread (`--loops N`). The groups are independent: they share the
/// counters, the store and the shutdown handle, nothing else.
pub fn run_loops(
    groups: Vec<Vec<Listener>>,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> io::Result<()> {
    log::info!("serving in evloop mode with {} loops", groups.len());
    let mut threads = Vec::new();
    for (index, listeners) in groups.into_iter().enumerate() {
        for listener in &listeners {
            // Scripts read the port from this line: keep it ending with the address.
            log::info!(
                "loop {index}: {} listening on {}",
                listener.service_name(),
                listener.local_addr()?
            );
        }
        let (options, stats, shutdown) = (options.clone(), Arc::clone(&stats), shutdown.clone());
        let thread = std::thread::Builder::new()
            .name(format!("loop-{index}"))
            .spawn(move || evloop::run(index, listeners, &options, stats, shutdown, None))?;
        threads.push(thread);
    }
    let mut result = Ok(());
    for thread in threads {
        let outcome = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("an event loop panicked")));
        if let Err(e) = outcome {
            // One loop failing stops them all.
            shutdown.trigger();
            result = Err(e);
        }
    }
    result
}

/// Serves `listeners` in `mode` until `shutdown` is triggered.
///
/// Returns when every connection is closed. Errors are the server's own
/// (the poll failed, a thread could not start); a connection's error
/// closes that connection only.
pub fn run(
    listeners: Vec<Listener>,
    mode: Mode,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
) -> io::Result<()> {
    announce(mode, &listeners)?;
    match mode {
        Mode::Evloop => evloop::run(0, listeners, options, stats, shutdown, None),
        Mode::Threaded => threaded::run(listeners, options, stats, shutdown),
        Mode::Blocking => blocking::run(listeners, options, stats, shutdown),
        Mode::Forking => forking::run(listeners, options, stats, shutdown),
        Mode::Uring => uring::run(listeners, options, stats, shutdown),
    }
}

/// Serves `listeners` in one event loop on this thread until `shutdown` is
/// triggered, like [`run`] in [`Mode::Evloop`], except that the loop reads
/// the process's `signals` itself: no thread turns them into wake-ups.
pub fn run_evloop(
    listeners: Vec<Listener>,
    options: &Options,
    stats: Arc<Stats>,
    shutdown: Shutdown,
    signals: &mut crate::signals::SignalSource,
) -> io::Result<()> {
    announce(Mode::Evloop, &listeners)?;
    evloop::run(0, listeners, options, stats, shutdown, Some(signals))
}

/// The log lines that say what is served where.
fn announce(mode: Mode, listeners: &[Listener]) -> io::Result<()> {
    log::info!("serving in {mode} mode");
    for listener in listeners {
        // Scripts read the port from this line: keep it ending with the address.
        let addr = listener.local_addr()?;
        log::info!("{} listening on {addr}", listener.service_name());
    }
    Ok(())
}
