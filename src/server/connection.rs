//! One connection of the event loop: socket, buffers, remembered readiness,
//! and the service that speaks its protocol.
//!
//! [`Conn::pump`] does all the work the connection can do right now and says
//! what the loop should do next ([`Verdict`]). What work is possible is a pure
//! function of the connection's state ([`Conn::wants_read`]), computed in one
//! place. This file never registers, polls or closes: that is the loop's job.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use super::Options;
use crate::service::{self, Cx, Job, JobOutput, Next, Service};
use crate::stats::{self, ServiceStats, Stats};
use std::sync::Arc;

/// Bytes asked for per `read` call: 16 KiB, as Redis reads.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Bytes one connection may read per turn of the loop before others get
/// theirs. A connection that spends it with data still waiting goes on the
/// loop's "still ready" list (edge-triggered: no new event will remind us).
pub(crate) const READ_BUDGET: usize = 4 * READ_CHUNK;

/// Buffers owned by the loop and lent to whichever connection is pumped.
///
/// In the steady state (a request arrives whole, its reply is written whole)
/// bytes pass through these and the connection's own buffers stay empty and
/// unallocated: no allocation per request (rule 11) and no buffer memory per
/// idle connection (rule 12).
#[derive(Debug)]
pub(crate) struct Scratch {
    read: Box<[u8]>,
    write: Vec<u8>,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            read: vec![0; READ_CHUNK].into_boxed_slice(),
            write: Vec::with_capacity(READ_CHUNK),
        }
    }
}

/// What the loop should do with a connection after pumping it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing more to do until the next readiness event.
    Wait,
    /// It used its budget with work left: pump it again after the next poll.
    StillReady,
    /// Done, or failed: deregister and drop it (after this batch of events).
    Close,
}

/// Where a connection's offloaded job is.
#[derive(Debug)]
enum JobState {
    None,
    /// The service asked for it; the loop has not taken it yet. Boxed: a
    /// job is rare and large, a connection common and kept small.
    Asked(Box<Job>),
    /// On the pool; the connection waits for `resume`.
    Running,
}

/// One client connection.
pub(crate) struct Conn {
    /// Its slab key, which is also its token: for log lines.
    key: usize,
    pub(crate) socket: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Distinguishes this connection from others that used the same slab key
    /// before it (see rule 7 in `evloop.rs`).
    pub(crate) generation: u32,
    service: Box<dyn Service>,
    /// The counters of this connection's service.
    service_stats: Arc<ServiceStats>,
    /// Unconsumed input at which the driver closes: the options' backstop,
    /// or the service's own larger bound ([`crate::service::Factory::max_input`]).
    max_input: usize,
    /// Received bytes the service has not consumed (a partial request).
    /// Unallocated whenever empty.
    input: Vec<u8>,
    /// Produced bytes the socket has not taken yet; `output[written..]` is
    /// pending. Unallocated whenever empty.
    output: Vec<u8>,
    written: usize,
    /// Readiness remembered from events, cleared only when the socket says
    /// `WouldBlock` (or a read/write comes back short): with edge-triggered
    /// events a bit that is not remembered is lost.
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// An event said the peer closed its side (`EPOLLRDHUP`). The FIN may sit
    /// behind the data in the queue, and no new edge will announce it, so a
    /// short read must not end reading: read on until `Ok(0)`.
    pub(crate) peer_closed: bool,
    /// The service said `Close`, or the client sent EOF: send what is
    /// pending, read nothing more, then close.
    closing: bool,
    /// Shutdown: answer what the client already sent, then close.
    finishing: bool,
    /// The client sent EOF: read nothing more; close once all is answered.
    input_ended: bool,
    /// The offloaded job this connection waits for, if any. While there is
    /// one, nothing is read or fed (the driver contract), so replies stay in order.
    job: JobState,
    /// A job just finished: input that arrived behind its request is still
    /// buffered and must be offered to the service before reading more.
    refeed: bool,
    /// When the client last sent bytes (or the connection opened): the
    /// idle timer's reference (rule 9).
    pub(crate) last_input: Instant,
    /// Set once the loop decided to close it; events still queued for it in
    /// the current batch are ignored.
    pub(crate) closed: bool,
}

impl Conn {
    pub(crate) fn new(
        key: usize,
        socket: TcpStream,
        peer: SocketAddr,
        generation: u32,
        service: Box<dyn Service>,
        service_stats: Arc<ServiceStats>,
        max_input: usize,
    ) -> Conn {
        Conn {
            key,
            socket,
            peer,
            generation,
            service,
            service_stats,
            max_input,
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            readable: false,
            // A fresh socket has room in its send buffer; a write that finds
            // none clears this.
            writable: true,
            peer_closed: false,
            closing: false,
            finishing: false,
            input_ended: false,
            job: JobState::None,
            refeed: false,
            last_input: Instant::now(),
            closed: false,
        }
    }

    /// The greeting, if the service has one.
    pub(crate) fn open(
        &mut self,
        scratch: &mut Scratch,
        options: &Options,
        now: Instant,
        stats: &Stats,
    ) -> Verdict {
        scratch.write.clear();
        let mut cx = Cx::new(&mut scratch.write, now, self.peer);
        let next = self.service.open(&mut cx);
        let requests = cx.requests;
        if let Err(e) = self.after_service(next, requests, scratch, options, stats) {
            return self.fail(e);
        }
        self.pump(scratch, options, now, stats)
    }

    /// The server is shutting down: read what already arrived (one read to
    /// find out, since readiness may have been cleared by a short read),
    /// answer it, send everything, then close.
    pub(crate) fn finish(&mut self) {
        self.finishing = true;
        self.readable = true;
    }

    /// Whether the loop should read from this client now: not while closing,
    /// and not while its unsent output or unconsumed input is over the limit
    /// (back-pressure, rule 6: a client that never reads cannot make us
    /// buffer without bound). Reading resumes by itself once the output
    /// drains, because `readable` is remembered (rule 4).
    fn wants_read(&self, options: &Options) -> bool {
        !self.closing
            && !self.input_ended
            && matches!(self.job, JobState::None)
            && self.output.len() - self.written < options.max_output
            && self.input.len() < self.max_input
    }

    /// Does every piece of work that readiness and state allow, within one
    /// turn's budget.
    pub(crate) fn pump(
        &mut self,
        scratch: &mut Scratch,
        options: &Options,
        now: Instant,
        stats: &Stats,
    ) -> Verdict {
        let mut budget = READ_BUDGET;
        loop {
            // Output first, so replies leave in the order they were made.
            if self.written < self.output.len()
                && self.writable
                && let Err(e) = self.flush(stats)
            {
                return self.fail(e);
            }
            if self.closing {
                return if self.written < self.output.len() {
                    Verdict::Wait // for the client to take the rest (writable)
                } else {
                    Verdict::Close
                };
            }
            if self.refeed && self.wants_read(options) {
                self.refeed = false;
                if !self.input.is_empty() {
                    if let Err(e) = self.input_arrived(0, scratch, options, now, stats) {
                        return self.fail(e);
                    }
                    continue;
                }
            }
            if !self.readable || !self.wants_read(options) {
                if self.finishing
                    && self.written == self.output.len()
                    && matches!(self.job, JobState::None)
                {
                    return Verdict::Close; // all it sent is answered
                }
                return Verdict::Wait;
            }
            if budget == 0 {
                return Verdict::StillReady;
            }
            // Rule 4: read until WouldBlock (edge-triggered), bounded by the budget.
            match self.socket.read(&mut scratch.read) {
                Ok(0) => {
                    log::trace!("{} read 0 bytes: EOF", self.tag());
                    if let Err(e) = self.end_of_input(scratch, options, now, stats) {
                        return self.fail(e);
                    }
                }
                Ok(n) => {
                    self.last_input = now;
                    stats::add(&stats.bytes_in, n as u64);
                    log::trace!("{} read {n} bytes", self.tag());
                    budget = budget.saturating_sub(n);
                    // A short read emptied the socket's receive queue; the next
                    // arrival raises a new edge. Skipping the read that would
                    // only say WouldBlock saves a syscall per request (nginx
                    // and tokio do the same).
                    if n < scratch.read.len() && !self.peer_closed {
                        self.readable = false;
                    }
                    if let Err(e) = self.input_arrived(n, scratch, options, now, stats) {
                        return self.fail(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(e),
            }
        }
    }

    /// `n` new bytes are in `scratch.read`: give the service everything
    /// unconsumed, keep what it leaves.
    fn input_arrived(
        &mut self,
        n: usize,
        scratch: &mut Scratch,
        options: &Options,
        now: Instant,
        stats: &Stats,
    ) -> io::Result<()> {
        let fresh = &scratch.read[..n];
        // Steady state: nothing left over from before, so the service reads
        // straight from the loop's buffer and only a partial request is copied.
        let input: &[u8] = if self.input.is_empty() {
            fresh
        } else {
            self.input.extend_from_slice(fresh);
            &self.input
        };
        scratch.write.clear();
        let out = output_buffer(&mut self.output, self.written, &mut scratch.write);
        let mut cx = Cx::new(out, now, self.peer);
        let (consumed, next) = service::feed(self.service.as_mut(), input, &mut cx);
        let requests = cx.requests;
        if self.input.is_empty() {
            self.input.extend_from_slice(&fresh[consumed..]);
        } else if consumed == self.input.len() {
            self.input = Vec::new();
        } else {
            self.input.drain(..consumed);
        }
        if self.input.len() >= self.max_input {
            // Services bound their own input; this is the driver's backstop.
            log::warn!(
                "{} sent {} bytes its service did not consume: closing",
                self.tag(),
                self.input.len()
            );
            return Err(io::Error::other("input limit"));
        }
        self.after_service(next, requests, scratch, options, stats)?;
        if self.output.len() - self.written > options.max_output_hard {
            log::warn!(
                "{} has {} bytes of unsent output, over the hard limit: closing",
                self.tag(),
                self.output.len() - self.written
            );
            return Err(io::Error::other("output limit"));
        }
        Ok(())
    }

    /// The client finished sending: the service may answer a last request.
    fn end_of_input(
        &mut self,
        scratch: &mut Scratch,
        options: &Options,
        now: Instant,
        stats: &Stats,
    ) -> io::Result<()> {
        scratch.write.clear();
        let out = output_buffer(&mut self.output, self.written, &mut scratch.write);
        let mut cx = Cx::new(out, now, self.peer);
        let next = self.service.eof(&self.input, &mut cx);
        let requests = cx.requests;
        self.input = Vec::new();
        self.input_ended = true;
        // Nothing more will come: close once answered, after the job if the
        // last request needs one (`after_service` turns Continue into Close).
        self.after_service(next, requests, scratch, options, stats)
    }

    /// Acts on what the service said, and sends what it wrote right away
    /// (rule 5: as Redis does before it sleeps, not on a later event).
    fn after_service(
        &mut self,
        mut next: Next,
        requests: u32,
        scratch: &mut Scratch,
        options: &Options,
        stats: &Stats,
    ) -> io::Result<()> {
        self.count_requests(requests, stats);
        // With `--offload 0` a job runs here, on the loop thread, and every
        // other client waits for it (the lesson of the `slow` service). Its
        // reply goes behind what the service already wrote.
        while options.offload_workers == 0
            && let Next::Offload(job) = next
        {
            self.output.extend_from_slice(&scratch.write);
            scratch.write.clear();
            let mut cx = Cx::new(&mut self.output, Instant::now(), self.peer);
            next = self.service.resume(job.run(), &mut cx);
            let requests = cx.requests;
            self.count_requests(requests, stats);
            self.refeed = true;
        }
        if self.input_ended && next == Next::Continue {
            next = Next::Close; // the client has finished: so have we
        }
        match next {
            Next::Continue => {}
            Next::Close => self.closing = true,
            Next::Offload(job) => self.job = JobState::Asked(Box::new(job)), // the loop takes it
        }
        if !scratch.write.is_empty() {
            self.send_scratch(&scratch.write, stats)?;
            scratch.write.clear();
        }
        if self.written < self.output.len() && self.writable {
            self.flush(stats)?;
        }
        Ok(())
    }

    fn count_requests(&self, requests: u32, stats: &Stats) {
        if requests > 0 {
            stats::add(&stats.requests, u64::from(requests));
            stats::add(&self.service_stats.requests, u64::from(requests));
        }
    }

    /// `conn=<token>/<generation> peer=<addr>`: how every log line about a
    /// connection starts.
    pub(crate) fn tag(&self) -> Tag<'_> {
        Tag(self)
    }

    /// True while an offloaded job runs for it: the client waits for us,
    /// so it is not idle.
    pub(crate) fn waiting_for_job(&self) -> bool {
        !matches!(self.job, JobState::None)
    }

    /// The job the service asked for, for the loop to hand to the pool.
    pub(crate) fn take_job(&mut self) -> Option<Job> {
        match std::mem::replace(&mut self.job, JobState::Running) {
            JobState::Asked(job) => Some(*job),
            other => {
                self.job = other;
                None
            }
        }
    }

    /// The pool finished this connection's job: let the service answer,
    /// then go on with whatever input waited behind the request.
    pub(crate) fn resume(
        &mut self,
        done: JobOutput,
        scratch: &mut Scratch,
        options: &Options,
        now: Instant,
        stats: &Stats,
    ) -> Verdict {
        self.job = JobState::None;
        self.refeed = true;
        scratch.write.clear();
        let out = output_buffer(&mut self.output, self.written, &mut scratch.write);
        let mut cx = Cx::new(out, now, self.peer);
        let next = self.service.resume(done, &mut cx);
        let requests = cx.requests;
        if let Err(e) = self.after_service(next, requests, scratch, options, stats) {
            return self.fail(e);
        }
        self.pump(scratch, options, now, stats)
    }

    /// Writes a reply that is still in the loop's buffer; whatever the socket
    /// does not take is copied into the connection's own output buffer.
    fn send_scratch(&mut self, bytes: &[u8], stats: &Stats) -> io::Result<()> {
        let sent = if self.writable {
            let sent = write_some(&mut self.socket, bytes, &mut self.writable, stats)?;
            log::trace!("{} wrote {sent} of {} bytes", self.tag(), bytes.len());
            sent
        } else {
            0
        };
        if sent < bytes.len() {
            self.output.extend_from_slice(&bytes[sent..]);
        }
        Ok(())
    }

    /// Writes queued output until it is gone or the socket is full.
    fn flush(&mut self, stats: &Stats) -> io::Result<()> {
        let pending = &self.output[self.written..];
        let sent = write_some(&mut self.socket, pending, &mut self.writable, stats)?;
        log::trace!(
            "{} wrote {sent} of {} queued bytes",
            self.tag(),
            pending.len()
        );
        self.written += sent;
        if self.written == self.output.len() {
            // Rule 12: an idle connection holds no buffer memory.
            self.output = Vec::new();
            self.written = 0;
        }
        Ok(())
    }

    /// Logs why the connection ends (quietly for a peer that just left) and
    /// says close. Rule 8: an error closes this connection, never the server.
    fn fail(&mut self, error: io::Error) -> Verdict {
        match error.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                log::debug!("{} went away: {error}", self.tag())
            }
            _ => log::warn!("{} closed on error: {error}", self.tag()),
        }
        Verdict::Close
    }
}

/// See [`Conn::tag`].
pub(crate) struct Tag<'a>(&'a Conn);

impl std::fmt::Display for Tag<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "conn={}/{} peer={}",
            self.0.key, self.0.generation, self.0.peer
        )
    }
}

/// Where a service writes: straight into the loop's scratch buffer in the
/// steady state, or behind the connection's queued output if some is still
/// unsent (replies must leave in order).
fn output_buffer<'a>(
    output: &'a mut Vec<u8>,
    written: usize,
    scratch: &'a mut Vec<u8>,
) -> &'a mut Vec<u8> {
    if written < output.len() {
        output
    } else {
        scratch
    }
}

/// Writes as much of `bytes` as the socket takes; clears `writable` when
/// the socket is full. Partial writes are normal.
fn write_some(
    socket: &mut TcpStream,
    bytes: &[u8],
    writable: &mut bool,
    stats: &Stats,
) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.write(&bytes[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                *writable = false;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stats::add(&stats.bytes_out, sent as u64);
    Ok(sent)
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("generation", &self.generation)
            .field("input", &self.input.len())
            .field("output", &(self.output.len() - self.written))
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("closing", &self.closing)
            .finish()
    }
}
