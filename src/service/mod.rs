//! Services: protocol logic with no I/O in it.
//!
//! A service turns the bytes a client sent into the bytes to send back, plus an
//! instruction ([`Next`]) for the driver. It never touches a socket, a file or
//! the clock: the driver (event loop, threaded, blocking or forking mode) owns
//! all of that. So every service runs unchanged under every mode, and every
//! service is unit-tested by feeding it bytes, in any split, without a network.
//!
//! This module may not depend on `crate::server`: drivers know services, not the
//! other way round.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub mod dialogue;
pub mod echo;
pub mod framing;
pub mod hello;
pub mod http;
pub mod kv;
pub mod menu;
pub mod once;
mod registry;
pub mod slow;
#[doc(hidden)] // for unit tests and fuzz/, not an API
pub mod testing;
pub mod todo;
pub mod udp;
pub mod upload;
pub mod upper;

pub use dialogue::{Action, Dialogue};
pub use registry::{Entry, Prepare, REGISTRY, Transport, by_name};

use crate::stats::Stats;
use crate::store::Store;

/// What a service says after a call. Instructions are data; a service never
/// performs them itself. The [`Dialogue`] counts requests: `Answered` and
/// `Last` count one each, `AnsweredMany(n)` n, so no service counts its own.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// One request answered (its reply is in `out`). More input may be
    /// behind it: call `input` again with the rest.
    Answered,
    /// `n` requests answered at once, like `n` times `Answered`: a proxy
    /// that sent a client's pipelined requests upstream as one job writes
    /// all their replies in `resume`.
    AnsweredMany(u32),
    /// Nothing to answer until more bytes arrive. The bytes consumed, if
    /// any, went into the service's own state (an upload's body, a partly
    /// parsed frame).
    Wait,
    /// One request answered, and it was the last: send `out`, then close
    /// (HTTP `Connection: close`, hello's `--quit--`).
    Last,
    /// Send what is in `out`, then close, answering nothing (a protocol
    /// error the service cannot recover from).
    Close,
    /// Run this job off the protocol's thread; feed no input until
    /// [`Service::resume`] has been called with its output.
    Offload(Job),
}

/// What a service says when the client has finished sending.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Eof {
    /// Nothing left to answer: close once `out` is sent.
    Close,
    /// An unterminated last request was answered: close once it is sent.
    Answered,
    /// The last request needs this job: run it, `resume`, send, close.
    Offload(Job),
}

/// Slow work, described rather than done, so that tests can assert on what
/// was asked and the driver can choose where to run it. Each service that
/// offloads owns its own work and result types; these enums only route them.
#[derive(Debug, PartialEq, Eq)]
pub enum Job {
    /// The `slow` service's sleeping and hashing.
    Slow(slow::Work),
    /// The `upload` service's file creation, chunk writes and commit.
    Upload(upload::Work),
    /// Store work: wait until a change is on disk (`--fsync always`).
    Store(crate::store::Work),
    /// Commands for the store on Redis (`--store redis://`). The event loop
    /// pipelines them onto its upstream connections instead of running them
    /// here; elsewhere [`Job::run`] sends them on the worker's own blocking
    /// connection.
    Remote(crate::remote::Request),
    /// Panics when run: tests of what drivers do with a job that panics.
    #[cfg(test)]
    Panic,
}

impl Job {
    /// Does the work, on whatever thread the driver picked. Blocking is
    /// fine here (sleeping, fsync): this is the one place that may.
    pub fn run(self) -> JobOutput {
        match self {
            Job::Slow(work) => JobOutput::Slow(slow::run(work)),
            Job::Upload(work) => JobOutput::Upload(upload::run(work)),
            Job::Store(work) => JobOutput::Store(crate::store::run(work)),
            Job::Remote(request) => JobOutput::Remote(crate::remote::blocking::run(request)),
            #[cfg(test)]
            Job::Panic => panic!("a test job panicked on purpose"),
        }
    }
}

/// The result of a [`Job`], handed back to the service that asked for it.
#[derive(Debug, PartialEq, Eq)]
pub enum JobOutput {
    /// A [`Job::Slow`] is done.
    Slow(slow::Done),
    /// A [`Job::Upload`] is done (or failed; the reason is inside).
    Upload(upload::Done),
    /// A [`Job::Store`] is done.
    Store(crate::store::Done),
    /// A [`Job::Remote`] is answered (or the store was unavailable).
    Remote(crate::remote::Answer),
    /// The job panicked; the message says where. The service answers with an
    /// error reply; the worker and the server go on. Whatever the job owned
    /// was dropped while unwinding (an upload's temporary file is removed).
    Panicked(String),
}

/// What a service sees of the world during one call.
///
/// Passed instead of a bare output buffer so that adding a field later does
/// not touch every service.
#[derive(Debug)]
pub struct Cx<'a> {
    /// Bytes to send to the client. Append only; the driver drains it.
    pub out: &'a mut Vec<u8>,
    /// The time of this call, read once per wake-up by the driver (services
    /// never read the clock, so tests can use any instant).
    pub now: Instant,
    /// The wall-clock time of this call, read with `now`: for what must
    /// mean the same after a restart (expiry deadlines) or to a person
    /// (HTTP `Date`).
    pub wall: SystemTime,
    /// The client's address, for log lines.
    pub peer: SocketAddr,
    /// The length of `out` at which the client has as much output waiting
    /// as it may: the [`Dialogue`] feeds no further request past it until
    /// the driver has sent some (back-pressure). Services ignore it.
    pub full_at: usize,
    /// Makes this connection's doorbell, for a service that subscribes to
    /// pub/sub channels (see [`crate::broker`]). `None`: this driver cannot
    /// deliver (unit tests that do not ask for it).
    pub doorbells: Option<&'a dyn Doorbells>,
}

/// What a driver lends a service so that it can receive pub/sub mail: the
/// doorbell of the connection being served.
pub trait Doorbells: fmt::Debug {
    /// A doorbell that makes the driver call [`Dialogue::deliver`] for this
    /// connection.
    fn doorbell(&self) -> Box<dyn crate::broker::Doorbell>;
}

impl<'a> Cx<'a> {
    /// A context writing to `out`, for the client at `peer`, with no limit
    /// on waiting output.
    pub fn new(out: &'a mut Vec<u8>, now: Instant, wall: SystemTime, peer: SocketAddr) -> Self {
        Cx {
            out,
            now,
            wall,
            peer,
            full_at: usize::MAX,
            doorbells: None,
        }
    }
}

/// One connection's protocol state.
///
/// # Driver contract
///
/// [`Dialogue`] keeps this contract for every driver; it is written here so
/// that a service author knows what will be asked of them.
///
/// 1. [`open`](Service::open) is called once, right after the connection is
///    accepted (a greeting goes into `cx.out`).
/// 2. [`input`](Service::input) gets *all* the bytes received and not yet
///    consumed, and handles **at most one request** from their front. It
///    returns how many bytes it consumed and a [`Next`]. After
///    [`Next::Answered`] it is called again with the rest, unless the
///    client's waiting output is over its limit (then once it has drained).
///    `(0, Wait)` means "need more bytes". A service never returns `Wait`
///    with its unconsumed input over its own limit: it writes an error reply
///    and returns [`Next::Close`] instead, so services bound their buffers.
/// 3. After [`Next::Offload`], no input is fed until
///    [`resume`](Service::resume) has been called with the job's output, so
///    replies stay in order.
/// 4. [`drained`](Service::drained) is called when the socket is drained
///    for now, with what `input` left: a service that frames by reads
///    (`--framing read`) answers it as one message there.
/// 5. [`eof`](Service::eof) is called once when the client has finished
///    sending and everything before was answered, with what `input` left
///    (an unterminated last line). The connection then closes, after the
///    job if the last request needs one.
/// 6. After [`Next::Last`] or [`Next::Close`], `out` is sent and the
///    connection closed; nothing more is called.
///
/// Protocol errors are replies, not Rust errors: no method here fails.
pub trait Service: Send {
    /// The connection was just accepted.
    fn open(&mut self, cx: &mut Cx<'_>) -> Next {
        let _ = cx;
        Next::Wait
    }

    /// Bytes arrived: handle at most one request. Returns `(consumed, next)`.
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next);

    /// The socket is drained for now; `rest` is what `input` left. Only a
    /// service that frames by reads does anything here.
    fn drained(&mut self, rest: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        let _ = (rest, cx);
        (0, Next::Wait)
    }

    /// The client closed its sending side; no more input will come. `rest`
    /// holds the bytes `input` left unconsumed (an unterminated last line).
    fn eof(&mut self, rest: &[u8], cx: &mut Cx<'_>) -> Eof {
        let _ = (rest, cx);
        Eof::Close
    }

    /// An offloaded job finished. Only services that return
    /// [`Next::Offload`] need this; the default closes the connection, since
    /// a job nobody asked for is a driver bug.
    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        log::error!("peer={} unexpected job output {done:?}", cx.peer);
        Next::Close
    }

    /// Its mailbox was rung (pub/sub): write what arrived, unless `cx.out`
    /// is already at `cx.full_at` (then leave it in the mailbox, which
    /// bounds it). Called between requests only, never while a job is out.
    /// `Close` cuts off a subscriber that fell too far behind.
    fn deliver(&mut self, cx: &mut Cx<'_>) -> Next {
        let _ = cx;
        Next::Wait
    }

    /// True while the request being received is in its body: the driver's
    /// request timer then runs between reads (nginx `client_body_timeout`)
    /// instead of from the request's first byte (`client_header_timeout`).
    fn in_body(&self) -> bool {
        false
    }
}

/// A service behind a reference or a box is the same service (tests drive
/// one they keep, drivers a boxed one).
macro_rules! forward_service {
    ($($wrapper:ty),*) => {$(
        impl<S: Service + ?Sized> Service for $wrapper {
            fn open(&mut self, cx: &mut Cx<'_>) -> Next {
                (**self).open(cx)
            }
            fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
                (**self).input(input, cx)
            }
            fn drained(&mut self, rest: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
                (**self).drained(rest, cx)
            }
            fn eof(&mut self, rest: &[u8], cx: &mut Cx<'_>) -> Eof {
                (**self).eof(rest, cx)
            }
            fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
                (**self).resume(done, cx)
            }
            fn deliver(&mut self, cx: &mut Cx<'_>) -> Next {
                (**self).deliver(cx)
            }
            fn in_body(&self) -> bool {
                (**self).in_body()
            }
        }
    )*};
}
forward_service!(&mut S, Box<S>);

/// Settings every service may read, fixed at start.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The longest line a line service accepts, in bytes, without its `\n`.
    pub max_line: usize,
    /// How line services cut their input into messages (`--framing`).
    pub framing: framing::Framing,
    /// Where `upload` stores files (and its temporary files, so that the
    /// final rename stays on one file system).
    pub upload_dir: PathBuf,
    /// The largest file `upload` accepts, in bytes; a bigger size in a
    /// header is refused before any byte is written.
    pub max_upload: u64,
    /// The largest HTTP request body read, in bytes (`413` above it).
    pub max_body: u64,
    /// The longest bulk string `kv` accepts (`--kv-max-bulk`); a longer
    /// declared length is a protocol error.
    pub kv_max_bulk: usize,
}

/// [`Limits::max_line`]'s default: 64 KiB, Redis' inline-command limit. A longer
/// line gets an error reply and the connection is closed.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// [`Limits::upload_dir`]'s default, relative to the working directory.
/// `serve` creates it at start when an `upload` listener is configured.
pub const DEFAULT_UPLOAD_DIR: &str = "./readyloop-data/uploads";

/// [`Limits::max_upload`]'s default: 1 GiB. A header announcing more gets
/// `error ...` and the connection is closed; pass `--max-upload` to raise it.
pub const DEFAULT_MAX_UPLOAD: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            framing: framing::Framing::Newline,
            upload_dir: PathBuf::from(DEFAULT_UPLOAD_DIR),
            max_upload: DEFAULT_MAX_UPLOAD,
            max_body: http::DEFAULT_MAX_BODY,
            kv_max_bulk: kv::DEFAULT_MAX_BULK,
        }
    }
}

/// Where `todo` and `kv` keep their data (`--store`).
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded store, one process's map and log (`--store file:DIR`,
    /// `--data-dir`; the default).
    File(Store),
    /// A Redis server or cluster (`--store redis://`,
    /// `redis-cluster://`): `todo` and `kv` send it [`Job::Remote`]
    /// requests, routed by their key, and answer from its replies; `kv`
    /// becomes a proxy ([`kv`]'s docs say what it forwards and what it
    /// refuses).
    Redis(crate::remote::Redis),
}

/// What the services of one server share: the store, the counters, the limits.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Where `todo` and `kv` keep their data: the embedded store or Redis.
    pub backend: Backend,
    /// Counters of the whole server, all modes.
    pub stats: Arc<Stats>,
    /// Who listens to which pub/sub channel, for the whole process.
    pub broker: Arc<crate::broker::Broker>,
    /// Limits every service keeps.
    pub limits: Limits,
}

/// Makes one service value per connection. A listener owns one.
pub trait Factory: Send + Sync + fmt::Debug {
    /// The service's name, as given on the command line (`echo`, `http`, ...).
    fn name(&self) -> &'static str;
    /// A fresh service for a new connection.
    fn make(&self) -> Box<dyn Service>;
    /// How long a connection may sit idle before it is closed, unless
    /// `--idle-timeout` says otherwise. `None`: forever (Redis' `timeout 0`).
    fn idle_timeout(&self) -> Option<Duration> {
        None
    }
    /// The largest request this service buffers, if over the drivers'
    /// backstop (`Options::max_input`, 1 MiB): the drivers raise the
    /// backstop to it for this service's connections. The service must
    /// itself refuse anything larger (driver contract, step 2).
    fn max_input(&self) -> Option<usize> {
        None
    }
    /// What a client is told when the server is full, before it is closed.
    fn busy_reply(&self) -> &'static [u8] {
        b"error: server busy, try again later\n"
    }
}

/// A [`Factory`] for services that need nothing but a constructor.
///
/// `make` is a plain function so the factory stays `Debug` and `Sync`.
pub struct FnFactory {
    name: &'static str,
    idle_timeout: Option<Duration>,
    make: Box<dyn Fn() -> Box<dyn Service> + Send + Sync>,
}

impl FnFactory {
    /// A factory called `name` that builds each service with `make`.
    // Returns the trait object every caller (the registry) wants, not `Self`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        name: &'static str,
        make: impl Fn() -> Box<dyn Service> + Send + Sync + 'static,
    ) -> Arc<dyn Factory> {
        Arc::new(FnFactory {
            name,
            idle_timeout: None,
            make: Box::new(make),
        })
    }

    /// Like [`new`](Self::new), for a protocol whose idle connections are
    /// closed after `idle_timeout` by default (HTTP keep-alive).
    pub fn with_idle_timeout(
        name: &'static str,
        idle_timeout: Duration,
        make: impl Fn() -> Box<dyn Service> + Send + Sync + 'static,
    ) -> Arc<dyn Factory> {
        Arc::new(FnFactory {
            name,
            idle_timeout: Some(idle_timeout),
            make: Box::new(make),
        })
    }
}

impl fmt::Debug for FnFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnFactory")
            .field("name", &self.name)
            .finish()
    }
}

impl Factory for FnFactory {
    fn name(&self) -> &'static str {
        self.name
    }
    fn make(&self) -> Box<dyn Service> {
        (self.make)()
    }
    fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }
}
