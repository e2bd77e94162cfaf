//! The client engine: one `mio` loop per client thread, driving many
//! nonblocking connections, each a small state machine. (Over 500 lines:
//! the loop, the connection and the workloads' wire formats are one engine.)
//!
//! A connection goes `Connecting → Open → (Held, for idle) → Dead`. While
//! open, it keeps `pipeline` requests in flight: it appends each request to
//! its output buffer, stamps the write time, writes, and reads until the
//! oldest request's reply is complete ([`Workload::check`]); the latency
//! (write to complete reply) goes into the thread's histogram.
//!
//! Rules this loop keeps (the same ones as the server's event loop):
//! 1. mio is edge-triggered: sockets are registered `READABLE | WRITABLE`
//!    once, and readiness is remembered in the connection until an operation
//!    returns `WouldBlock`.
//! 2. A connection does at most [`MAX_ROUNDS_PER_TURN`] rounds of
//!    write-then-read per wake-up; one that still has work goes on the
//!    "again" list and the next poll does not sleep, so a fast connection
//!    cannot starve the others.
//! 3. Buffers are allocated once per connection and reused; nothing
//!    allocates per request.
//! 4. Every phase has a deadline: connecting ([`SETUP_TIMEOUT`]), warm-up,
//!    the measured window. A failed connection is counted as an error and
//!    left closed; it never panics and never stops the run.
//!
//! The file is longer than the house's ~600 lines because the connection's
//! state machine and the loop that drives it read best side by side.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::workload::{Expect, Reply, Workload};

/// How long connecting (and, for idle, the proving round trip) may take
/// before the connections still pending are counted as errors. SYNs lost to
/// a full listen backlog are retried by the kernel after 1 s, 3 s, 7 s.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Write-then-read rounds one connection may do per wake-up (rule 2).
pub(crate) const MAX_ROUNDS_PER_TURN: usize = 16;

/// Events taken from one `poll` call.
const EVENTS_CAPACITY: usize = 1024;

/// A connection's first input buffer; it doubles when a reply needs more.
const INITIAL_INPUT: usize = 4096;

/// The largest latency the histograms hold (60 s, in nanoseconds); longer
/// ones are recorded as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// What every client thread of one run is told.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The server.
    pub(crate) addr: SocketAddr,
    /// Requests to send and replies to expect.
    pub(crate) workload: Workload,
    /// Requests in flight per connection (at least 1).
    pub(crate) pipeline: usize,
    /// Requests completed before this long after the start are not counted.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) duration: Duration,
    /// Spread connections over 127.0.0.1..=127.0.0.N (1 = no bind).
    pub(crate) source_ips: u8,
    /// Idle: one proving round trip per connection, then hold.
    pub(crate) idle: bool,
}

/// What the threads share: the start line and a live request count.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Every client thread and the coordinator wait here once setup is done,
    /// so all warm-ups start together.
    pub(crate) start: Barrier,
    /// Requests counted so far, for the progress bar.
    pub(crate) done: AtomicU64,
}

/// One thread's counts; [`Tally::merge`] adds them up.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Latency of each counted request, in nanoseconds.
    pub(crate) latency: Histogram<u64>,
    /// Requests completed in the measured window (idle: proving round trips).
    pub(crate) requests: u64,
    /// Failed connections (connect, I/O, unexpected reply or close).
    pub(crate) errors: u64,
    /// Bytes read in the measured window.
    pub(crate) bytes_in: u64,
    /// Bytes written in the measured window.
    pub(crate) bytes_out: u64,
    /// Connections that completed setup.
    pub(crate) connected: u64,
    /// Idle: connections still up at the end.
    pub(crate) held: u64,
    /// Connections that got at least one counted reply: fewer than the
    /// connections opened when a server serves some and leaves others
    /// waiting (blocking mode).
    pub(crate) served: u64,
    /// Connections reopened because the server announced a close.
    pub(crate) reconnects: u64,
    /// The first error, for the user.
    pub(crate) first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            requests: 0,
            errors: 0,
            bytes_in: 0,
            bytes_out: 0,
            connected: 0,
            held: 0,
            served: 0,
            reconnects: 0,
            first_error: None,
        }
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn merge(&mut self, other: Tally) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.requests += other.requests;
        self.errors += other.errors;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.connected += other.connected;
        self.held += other.held;
        self.served += other.served;
        self.reconnects += other.reconnects;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// An empty tally, to merge into.
    pub(crate) fn empty() -> Self {
        Tally::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `connect` was called; waiting for the socket to become writable.
    Connecting,
    /// Connected; sending requests (once the run has started).
    Open,
    /// Idle workload: proven by one round trip, now only watched.
    Held,
    /// Failed or finished; the socket is closed.
    Dead,
}

/// One connection.
#[derive(Debug)]
struct Conn {
    /// Index over all threads: picks the source address and the todo key.
    id: usize,
    /// `None` once dead.
    stream: Option<TcpStream>,
    state: State,
    /// True once this connection reached its setup goal or died during setup.
    settled: bool,
    /// Requests not yet fully written start at `out[written..]`.
    out: Vec<u8>,
    written: usize,
    /// Received bytes not yet matched to a request are `input[..filled]`.
    input: Vec<u8>,
    filled: usize,
    /// Write time and expected reply of each request in flight, oldest first.
    in_flight: VecDeque<(Instant, Expect)>,
    /// Requests sent on this connection (the workload's sequence number).
    seq: u64,
    /// Remembered readiness (rule 1).
    readable: bool,
    writable: bool,
    /// The server said it will close after the reply in flight (HTTP).
    closing: bool,
    /// A reply was counted on this connection in the measured window.
    served: bool,
}

/// One client thread's loop.
struct Client<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    poll: Poll,
    conns: Vec<Conn>,
    tally: Tally,
    /// Connections that hit [`MAX_ROUNDS_PER_TURN`] and still have work.
    again: Vec<usize>,
    /// Setup goals not yet reached.
    unsettled: usize,
    /// Whether open connections send requests (false during setup).
    sending: bool,
    /// Replies to requests written from here on are counted (`None`: not yet).
    measure_from: Option<Instant>,
    /// Requests counted but not yet added to `shared.done`: the shared
    /// counter is updated once per turn, not per request, so client threads
    /// do not bounce its cache line between cores.
    unreported: u64,
}

/// Runs connections `first..first + count` of `plan` on this thread and
/// returns their counts. Waits once on `shared.start`, whatever happens.
pub(crate) fn run_thread(plan: &Plan, first: usize, count: usize, shared: &Shared) -> Tally {
    let poll = match Poll::new() {
        Ok(poll) => poll,
        Err(e) => {
            let mut tally = Tally::new();
            tally.errors = count as u64;
            tally.first_error = Some(format!("cannot create a mio Poll: {e}"));
            shared.start.wait();
            return tally;
        }
    };
    let mut client = Client {
        plan,
        shared,
        poll,
        conns: Vec::with_capacity(count),
        tally: Tally::new(),
        again: Vec::new(),
        unsettled: count,
        sending: false,
        measure_from: None,
        unreported: 0,
    };
    client.setup(first, count);
    shared.start.wait();
    client.run();
    client.finish()
}

impl Client<'_> {
    /// Opens every connection and waits until each is connected (idle: and
    /// proven by one round trip), has failed, or [`SETUP_TIMEOUT`] passed.
    fn setup(&mut self, first: usize, count: usize) {
        for id in first..first + count {
            self.conns.push(Conn {
                id,
                stream: None,
                state: State::Dead,
                settled: false,
                out: Vec::new(),
                written: 0,
                input: vec![0; INITIAL_INPUT],
                filled: 0,
                in_flight: VecDeque::with_capacity(self.plan.pipeline),
                seq: 0,
                readable: false,
                writable: false,
                closing: false,
                served: false,
            });
            self.open(id - first);
        }
        // Idle connections prove themselves during setup.
        self.sending = self.plan.idle;
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while self.unsettled > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.turn(&mut events, deadline - now);
        }
        for i in 0..self.conns.len() {
            if !self.conns[i].settled {
                self.fail(i, "timed out connecting".into());
            }
        }
    }

    /// The warm-up and the measured window.
    fn run(&mut self) {
        let start = Instant::now();
        let warmup = if self.plan.idle {
            Duration::ZERO
        } else {
            self.plan.warmup
        };
        let measure_from = start + warmup;
        let end = measure_from + self.plan.duration;
        if !self.plan.idle {
            self.sending = true;
            // Connections remember they are writable: start them all.
            for i in 0..self.conns.len() {
                self.drive(i);
            }
        }
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            if self.measure_from.is_none() && now >= measure_from {
                self.measure_from = Some(measure_from);
            }
            let next = if self.measure_from.is_none() {
                measure_from
            } else {
                end
            };
            self.turn(&mut events, next - now);
        }
    }

    /// The counts, after checking which idle connections are still up.
    fn finish(mut self) -> Tally {
        for i in 0..self.conns.len() {
            if self.conns[i].state != State::Held {
                continue;
            }
            let mut byte = [0u8; 1];
            let result = self.conns[i]
                .stream
                .as_mut()
                .map_or(Ok(0), |s| s.read(&mut byte));
            match result {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tally.held += 1,
                Ok(0) => self.fail(i, "server closed an idle connection".into()),
                Ok(_) => self.fail(i, "unexpected bytes on an idle connection".into()),
                Err(e) => self.fail(i, format!("idle connection failed: {e}")),
            }
        }
        self.tally
    }

    /// One `poll` and the work it allows.
    fn turn(&mut self, events: &mut Events, timeout: Duration) {
        let timeout = if self.again.is_empty() {
            timeout
        } else {
            Duration::ZERO
        };
        if let Err(e) = self.poll.poll(events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            // Poll failing is not something a retry fixes; end the phase's
            // work for every connection rather than spin.
            for i in 0..self.conns.len() {
                self.fail(i, format!("mio poll failed: {e}"));
            }
            return;
        }
        let mut again = std::mem::take(&mut self.again);
        for event in events.iter() {
            let i = event.token().0;
            let Some(conn) = self.conns.get_mut(i) else {
                continue;
            };
            // Errors and hang-ups are seen by the next read or write.
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                conn.readable = true;
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                conn.writable = true;
            }
            self.drive(i);
        }
        for i in again.drain(..) {
            self.drive(i);
        }
        // Keep the allocation of the list for the next turn.
        if self.again.is_empty() {
            self.again = again;
        }
        if self.unreported > 0 {
            self.shared.done.fetch_add(self.unreported, Relaxed);
            self.unreported = 0;
        }
    }

    /// Opens (or reopens) connection `i` and registers it as token `i`.
    fn open(&mut self, i: usize) {
        let plan = self.plan;
        let conn = &mut self.conns[i];
        let source = source_address(plan.addr, plan.source_ips, conn.id);
        let result = connect(plan.addr, source).and_then(|mut stream| {
            self.poll.registry().register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match result {
            Ok(stream) => {
                conn.stream = Some(stream);
                conn.state = State::Connecting;
                conn.out.clear();
                conn.written = 0;
                conn.filled = 0;
                conn.in_flight.clear();
                conn.readable = false;
                conn.writable = false;
                conn.closing = false;
            }
            Err(e) => self.fail(i, format!("connect to {}: {e}", plan.addr)),
        }
    }

    /// Closes connection `i` and counts an error.
    fn fail(&mut self, i: usize, why: String) {
        let conn = &mut self.conns[i];
        if conn.state == State::Dead && conn.stream.is_none() && conn.settled {
            return;
        }
        if let Some(mut stream) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        conn.state = State::Dead;
        self.tally.errors += 1;
        if self.tally.first_error.is_none() {
            self.tally.first_error = Some(why);
        }
        self.settle(i);
    }

    /// Marks connection `i`'s setup goal as reached (or given up).
    fn settle(&mut self, i: usize) {
        if !self.conns[i].settled {
            self.conns[i].settled = true;
            self.unsettled -= 1;
        }
    }

    /// Does all the work connection `i`'s readiness allows, up to the round
    /// limit (rule 2).
    fn drive(&mut self, i: usize) {
        match self.conns[i].state {
            State::Dead => return,
            State::Connecting => {
                if !self.finish_connect(i) {
                    return;
                }
            }
            State::Open | State::Held => {}
        }
        for _ in 0..MAX_ROUNDS_PER_TURN {
            match self.round(i) {
                Ok(true) => {}
                Ok(false) => return,
                Err(why) => {
                    self.fail(i, why);
                    return;
                }
            }
        }
        self.again.push(i);
    }

    /// Whether connection `i` finished connecting; fails it if it could not.
    fn finish_connect(&mut self, i: usize) -> bool {
        let conn = &mut self.conns[i];
        if !conn.writable && !conn.readable {
            return false;
        }
        let Some(stream) = conn.stream.as_ref() else {
            return false;
        };
        match stream.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => {
                self.fail(i, format!("connect to {}: {e}", self.plan.addr));
                return false;
            }
        }
        match stream.peer_addr() {
            Ok(_) => {}
            // A spurious wake-up: still connecting.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
            Err(e) => {
                self.fail(i, format!("connect to {}: {e}", self.plan.addr));
                return false;
            }
        }
        // Small requests must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        conn.state = State::Open;
        // A reconnect (after an announced close) is not a new connection.
        if conn.seq == 0 {
            self.tally.connected += 1;
        }
        if !self.plan.idle {
            self.settle(i);
        }
        true
    }

    /// One round of queue, write, read, match replies. `Ok(true)` when
    /// something happened and another round may do more.
    fn round(&mut self, i: usize) -> Result<bool, String> {
        let plan = self.plan;
        let measuring = self.measure_from.is_some();
        let conn = &mut self.conns[i];
        let Some(stream) = conn.stream.as_mut() else {
            return Ok(false);
        };
        let mut progress = false;

        // 1. Keep `pipeline` requests in flight.
        let may_send = self.sending
            && conn.state == State::Open
            && !conn.closing
            && !(plan.idle && conn.seq > 0);
        if may_send {
            let now = Instant::now();
            while conn.in_flight.len() < plan.pipeline {
                let expect = plan
                    .workload
                    .write_request(conn.id, conn.seq, &mut conn.out);
                conn.seq += 1;
                conn.in_flight.push_back((now, expect));
            }
        }

        // 2. Write what is pending; partial writes are normal.
        let mut write_error = None;
        while conn.writable && conn.written < conn.out.len() {
            match stream.write(&conn.out[conn.written..]) {
                Ok(0) => return Err("the server stopped accepting bytes".into()),
                Ok(n) => {
                    conn.written += n;
                    progress = true;
                    if measuring {
                        self.tally.bytes_out += n as u64;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Acted on after reading, like a read error (step 3).
                    write_error = Some(e);
                    conn.writable = false;
                }
            }
        }
        if conn.written == conn.out.len() {
            conn.out.clear();
            conn.written = 0;
        }

        // 3. Read until WouldBlock. An end or a reset is acted on only after
        // the bytes before it were matched: a server that closes after an
        // announced last reply may reset the connection (unread pipelined
        // requests make the kernel send RST), and that reply still counts.
        let mut eof = false;
        let mut read_error = None;
        while conn.readable {
            if conn.filled == conn.input.len() {
                let bigger = conn.input.len() * 2;
                conn.input.resize(bigger, 0);
            }
            match stream.read(&mut conn.input[conn.filled..]) {
                Ok(0) => {
                    eof = true;
                    conn.readable = false;
                }
                Ok(n) => {
                    conn.filled += n;
                    progress = true;
                    if measuring {
                        self.tally.bytes_in += n as u64;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    read_error = Some(e);
                    conn.readable = false;
                }
            }
        }

        // 4. Match replies to requests, oldest first.
        let now = Instant::now();
        let mut start = 0;
        while let Some(&(sent, expect)) = conn.in_flight.front() {
            match plan.workload.check(expect, &conn.input[start..conn.filled]) {
                Reply::Incomplete => break,
                Reply::Bad(why) => return Err(why.into()),
                Reply::Done { len, close } => {
                    start += len;
                    conn.in_flight.pop_front();
                    // Idle counts its proving round trips (made during setup).
                    if plan.idle || self.measure_from.is_some_and(|from| sent >= from) {
                        let ns = now.duration_since(sent).as_nanos() as u64;
                        self.tally
                            .latency
                            .saturating_record(ns.clamp(1, MAX_LATENCY_NS));
                        self.tally.requests += 1;
                        self.unreported += 1;
                        if !conn.served {
                            conn.served = true;
                            self.tally.served += 1;
                        }
                    }
                    if close {
                        // Nothing after this reply will be answered: the
                        // pipelined requests behind it are resent on the
                        // new connection, not counted as failures.
                        conn.closing = true;
                        conn.in_flight.clear();
                        start = conn.filled;
                    }
                }
            }
        }
        if conn.in_flight.is_empty() && start < conn.filled {
            return Err("the server sent bytes no request asked for".into());
        }
        conn.input.copy_within(start..conn.filled, 0);
        conn.filled -= start;

        if plan.idle && conn.state == State::Open && conn.seq > 0 && conn.in_flight.is_empty() {
            conn.state = State::Held;
            self.settle(i);
        }
        let conn = &mut self.conns[i];
        if conn.closing && conn.in_flight.is_empty() {
            // The server announced the close (HTTP keep-alive limit): open a
            // new connection instead of counting an error.
            if let Some(mut stream) = conn.stream.take() {
                let _ = self.poll.registry().deregister(&mut stream);
            }
            self.tally.reconnects += 1;
            self.open(i);
            return Ok(false);
        }
        if let Some(e) = read_error {
            return Err(format!("read: {e}"));
        }
        if let Some(e) = write_error {
            return Err(format!("write: {e}"));
        }
        if eof {
            return Err("the server closed the connection".into());
        }
        Ok(progress)
    }
}

/// The source address of connection `id`: 127.0.0.(1 + id mod n) when the
/// target is on loopback and `n > 1`; otherwise the kernel picks.
fn source_address(target: SocketAddr, n: u8, id: usize) -> Option<IpAddr> {
    if n <= 1 || !target.ip().is_loopback() || !target.is_ipv4() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::new(
        127,
        0,
        0,
        1 + (id % n as usize) as u8,
    )))
}

/// Starts a nonblocking connect to `addr`, from `source` if given.
fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    if let Some(ip) = source {
        // Let connect() pick the port, so a source port is unique per
        // (source, destination) pair rather than per source address: that
        // is what lets N source addresses carry N times the connections.
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_on_loopback_only() {
        let local: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(source_address(local, 1, 5), None);
        assert_eq!(
            source_address(local, 3, 4),
            Some("127.0.0.2".parse().unwrap())
        );
        let remote: SocketAddr = "10.0.0.1:9".parse().unwrap();
        assert_eq!(source_address(remote, 3, 4), None);
    }
}
