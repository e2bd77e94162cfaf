//! One connection of the event loop: its socket, its unsent output, the
//! readiness remembered from events, and the [`Dialogue`] that speaks its
//! protocol.
//!
//! [`Conn::pump`] does all the work the connection can do right now and says
//! what the loop should do next ([`Verdict`]). Which work is possible follows
//! from one [`Stage`] and the remembered [`Readiness`], in one place. This
//! file never registers, polls, runs a job or closes (the loop does), nor
//! keeps leftover input or counts requests (the dialogue does). It runs a
//! little past 500 lines because a connection's whole life (stages,
//! reading, writing, lingering, pub/sub delivery) is one state machine, and
//! the lesson points at its transitions side by side.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;

use super::mail::Slot;
use super::sources::{Accepted, ListenerService};
use super::sys;
use super::turn::{READ_BUDGET, READ_CHUNK, Scratch, Sink, Tally, Turn, shrink};
use crate::service::{Action, Cx, Dialogue, Job, JobOutput};
use crate::stats;

/// How long a connection the server closed first keeps reading (and
/// dropping) what the client still sends, so that its last reply is not
/// lost to a reset (nginx's lingering close, `lingering_timeout` 5 s).
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// What the loop should do with a connection after pumping it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing more to do until the next readiness event.
    Wait,
    /// It used its budget with work left: pump it again after the next poll.
    StillReady,
    /// Run this job (the loop decides where) and hand back its output with
    /// [`Conn::job_done`].
    Run(Job),
    /// Done, or failed: deregister and drop it (after this batch of events).
    Close,
}

/// Readiness remembered from events, cleared only when the socket says
/// `WouldBlock` (or a read/write comes back short): with edge-triggered
/// events a bit that is not remembered is lost (rule 5).
#[derive(Debug, Clone, Copy)]
struct Readiness {
    readable: bool,
    writable: bool,
    /// An event said the peer closed its side (`EPOLLRDHUP`). The FIN may sit
    /// behind the data in the queue, and no new edge will announce it, so a
    /// short read must not end reading: read on until `Ok(0)`.
    peer_closed: bool,
}

/// Where a connection is in its life (the uring loop's connections too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Reading and answering.
    Serving,
    /// Too much output waits for the client: nothing is read or fed until
    /// it drains below the limit (rule 6).
    Flushing,
    /// Its job is out; nothing is read or fed until it comes back.
    Job,
    /// Sending what is left; then closing (or lingering).
    Closing,
    /// All sent, our side shut: reading and dropping until the client closes
    /// too, or [`LINGER`] passes.
    Lingering,
    /// The loop has decided to close it (after this batch of events); events
    /// still queued for it are ignored.
    Closed,
}

/// One client connection.
pub(crate) struct Conn {
    /// Its slab key, which is also its token: for log lines.
    key: usize,
    socket: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Distinguishes this connection from others that used the same slab key
    /// before it (see rule 7 in `evloop.rs`).
    pub(crate) generation: u32,
    dialogue: Dialogue,
    /// What its listener serves: counters, timeouts.
    service: Arc<ListenerService>,
    /// Produced bytes the socket has not taken yet; `output[written..]` is
    /// pending. Unallocated whenever empty.
    output: Vec<u8>,
    written: usize,
    ready: Readiness,
    stage: Stage,
    /// Shutdown: answer what the client already sent, then close.
    finishing: bool,
    /// When the entry for this connection in the loop's timer heap comes
    /// due, if it has one (older entries for it are stale and skipped).
    timer_at: Option<Instant>,
    /// When the client last sent bytes (or the connection opened, or began
    /// lingering): the idle timer's reference (rule 9).
    last_input: Instant,
}

impl Conn {
    /// A connection just accepted, with a fresh service from its listener.
    pub(crate) fn new(
        key: usize,
        generation: u32,
        accepted: Accepted,
        service: Arc<ListenerService>,
        now: Instant,
    ) -> Conn {
        Conn {
            key,
            socket: accepted.stream,
            peer: accepted.peer,
            generation,
            dialogue: Dialogue::new(service.factory.make(), service.max_input),
            service,
            output: Vec::new(),
            written: 0,
            // A fresh socket has room in its send buffer; a write that finds
            // none clears `writable`.
            ready: Readiness {
                readable: false,
                writable: true,
                peer_closed: false,
            },
            stage: Stage::Serving,
            finishing: false,
            timer_at: None,
            last_input: now,
        }
    }

    /// The greeting, if the service has one.
    pub(crate) fn open(&mut self, scratch: &mut Scratch, turn: Turn<'_>) -> Verdict {
        match self.talk(&mut scratch.sink, turn, Dialogue::open) {
            Ok(action) => self.act(action).unwrap_or_else(|| self.pump(scratch, turn)),
            Err(e) => self.fail(e),
        }
    }

    /// An event for this connection: remember what it says (rule 5), then
    /// do the work it allows.
    pub(crate) fn on_event(
        &mut self,
        event: &Event,
        scratch: &mut Scratch,
        turn: Turn<'_>,
    ) -> Verdict {
        if event.is_error() && self.stage == Stage::Job {
            // Reset while its job runs: nobody is left to answer, so free the
            // slot now. The job's output will find another generation there
            // (rule 7).
            log::debug!("{} reset while its job runs: closing", self.tag());
            return Verdict::Close;
        }
        // An error or a hang-up counts as both: the next read or write says which.
        let broken = event.is_error() || event.is_read_closed();
        self.ready.readable |= event.is_readable() || broken;
        self.ready.peer_closed |= event.is_read_closed();
        self.ready.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
        self.pump(scratch, turn)
    }

    /// The server is shutting down: read what already arrived (one read to
    /// find out, since readiness may have been cleared by a short read),
    /// answer it, send everything, then close.
    pub(crate) fn finish(&mut self) {
        self.finishing = true;
        self.ready.readable = true;
    }

    /// Does every piece of work that readiness and stage allow, within one
    /// turn's budget.
    pub(crate) fn pump(&mut self, scratch: &mut Scratch, turn: Turn<'_>) -> Verdict {
        let mut budget = READ_BUDGET;
        loop {
            // Output first, so replies leave in the order they were made.
            if self.pending() > 0
                && self.ready.writable
                && let Err(e) = self.flush(&mut scratch.sink.tally)
            {
                return self.fail(e);
            }
            let action = match self.stage {
                Stage::Closed => return Verdict::Close,
                Stage::Job => return Verdict::Wait, // for the job, not the socket
                Stage::Closing if self.pending() > 0 => return Verdict::Wait, // for writable
                Stage::Closing => return self.linger(turn.now),
                Stage::Flushing if self.pending() >= turn.options.max_output => {
                    return Verdict::Wait; // rule 4: writable events bring us back
                }
                Stage::Flushing => self.talk(&mut scratch.sink, turn, Dialogue::proceed),
                Stage::Serving | Stage::Lingering => {
                    if !self.ready.readable || self.pending() >= turn.options.max_output {
                        let answered_all = self.finishing && self.pending() == 0;
                        return if answered_all {
                            Verdict::Close
                        } else {
                            Verdict::Wait
                        };
                    }
                    if budget == 0 {
                        return Verdict::StillReady;
                    }
                    budget = budget.saturating_sub(READ_CHUNK);
                    self.read(scratch, turn)
                }
            };
            match action {
                Ok(action) => {
                    if let Some(verdict) = self.act(action) {
                        return verdict;
                    }
                }
                Err(e) => return self.fail(e),
            }
        }
    }

    /// Its pub/sub doorbell rang: let the service write its mail.
    pub(crate) fn deliver(&mut self, scratch: &mut Scratch, turn: Turn<'_>) -> Verdict {
        if !matches!(self.stage, Stage::Serving | Stage::Flushing) {
            return self.pump(scratch, turn); // the mail waits for the job
        }
        match self.talk(&mut scratch.sink, turn, Dialogue::deliver) {
            Ok(action) => self.act(action).unwrap_or_else(|| self.pump(scratch, turn)),
            Err(e) => self.fail(e),
        }
    }

    /// The job from the last [`Verdict::Run`] finished: let the service
    /// answer, then go on with whatever input waited behind the request.
    pub(crate) fn job_done(
        &mut self,
        done: JobOutput,
        scratch: &mut Scratch,
        turn: Turn<'_>,
    ) -> Verdict {
        self.stage = Stage::Serving;
        // Not readable: the last read was short (or would block) and no
        // event came during the job, so what is buffered is all that came.
        let drained = !self.ready.readable;
        match self.talk(&mut scratch.sink, turn, |dialogue, cx| {
            dialogue.job_done(done, drained, cx)
        }) {
            Ok(action) => self.act(action).unwrap_or_else(|| self.pump(scratch, turn)),
            Err(e) => self.fail(e),
        }
    }

    /// When this connection must next be looked at by the timers: the end of
    /// its idle time, of the request it is taking too long over, or of its
    /// lingering. `None`: no deadline applies now.
    #[inline]
    pub(crate) fn deadline(&self, request: Option<Duration>) -> Option<Instant> {
        match self.stage {
            Stage::Lingering => return Some(self.last_input + LINGER),
            Stage::Job | Stage::Closed => return None, // it waits for us, or is gone
            _ => {}
        }
        let idle = self
            .service
            .idle_timeout
            .map(|timeout| self.last_input + timeout);
        let Some(since) = self.dialogue.request_since() else {
            return idle; // the steady state: no request under way
        };
        let request = since + request?;
        Some(idle.map_or(request, |idle| idle.min(request)))
    }

    /// One read, and what the dialogue makes of it.
    fn read(&mut self, scratch: &mut Scratch, turn: Turn<'_>) -> io::Result<Action> {
        let result = sys::recv(&self.socket, &mut scratch.read);
        if self.stage == Stage::Lingering {
            return Ok(match result {
                Ok(0) => Action::Close, // the client closed too: done
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready.readable = false;
                    Action::Read
                }
                Err(e) if e.kind() != io::ErrorKind::Interrupted => Action::Close,
                _ => Action::Read, // bytes nobody will answer: dropped
            });
        }
        let n = match result {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.ready.readable = false;
                if self.dialogue.buffered() == 0 {
                    return Ok(Action::Read);
                }
                return self.talk(&mut scratch.sink, turn, Dialogue::drained);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Action::Read),
            Err(e) => return Err(e),
        };
        if n == 0 {
            log::trace!("{} read 0 bytes: EOF", self.tag());
            self.ready.readable = false;
            self.ready.peer_closed = true;
            return self.talk(&mut scratch.sink, turn, Dialogue::ended);
        }
        self.last_input = turn.now;
        scratch.sink.tally.bytes_in += n as u64;
        log::trace!("{} read {n} bytes", self.tag());
        // A short read emptied the socket's receive queue; the next arrival
        // raises a new edge. Skipping the read that would only say WouldBlock
        // saves a syscall per request (nginx and tokio do the same).
        let drained = n < scratch.read.len() && !self.ready.peer_closed;
        if drained {
            self.ready.readable = false;
        }
        let fresh = &scratch.read[..n];
        let action = self.talk(&mut scratch.sink, turn, |dialogue, cx| {
            dialogue.received(fresh, cx)
        })?;
        // Only input left over can make a message of what arrived (`--framing
        // read`): in the steady state nothing is, and this costs nothing.
        if drained && action == Action::Read && self.dialogue.buffered() > 0 {
            return self.talk(&mut scratch.sink, turn, Dialogue::drained);
        }
        Ok(action)
    }

    /// Calls the dialogue with a context writing where replies must go, then
    /// sends what it wrote right away (rule 5: as Redis does before it
    /// sleeps, not on a later event).
    fn talk(
        &mut self,
        sink: &mut Sink,
        turn: Turn<'_>,
        call: impl FnOnce(&mut Dialogue, &mut Cx<'_>) -> Action,
    ) -> io::Result<Action> {
        let scratch = &mut sink.write;
        scratch.clear();
        // Straight into the loop's buffer in the steady state; behind the
        // queued output if some is still unsent (replies leave in order).
        let queued = self.pending() > 0;
        if queued && self.written > 0 {
            // What was sent goes before more is appended, so a slow reader
            // holds its unsent output only, not every reply since it fell behind.
            self.output.drain(..self.written);
            self.written = 0;
        }
        let (out, full_at) = if queued {
            (&mut self.output, self.written + turn.options.max_output)
        } else {
            (&mut *scratch, turn.options.max_output)
        };
        let slot = Slot {
            queue: turn.mail,
            key: self.key,
            generation: self.generation,
        };
        let mut cx = Cx::new(out, turn.now, turn.wall, self.peer);
        cx.full_at = full_at;
        cx.doorbells = Some(&slot);
        let action = call(&mut self.dialogue, &mut cx);
        let answered = u64::from(self.dialogue.take_answered());
        if answered > 0 {
            sink.tally.requests += answered;
            stats::add(&self.service.counters.requests, answered);
        }
        if !scratch.is_empty() {
            self.send_scratch(scratch, &mut sink.tally)?;
        }
        shrink(scratch);
        if self.pending() > 0 && self.ready.writable {
            self.flush(&mut sink.tally)?;
        }
        Ok(action)
    }

    /// Moves to the stage an action asks for. Returns a verdict when the
    /// loop must act now (a job to run), `None` to go on pumping.
    #[inline]
    fn act(&mut self, action: Action) -> Option<Verdict> {
        match action {
            Action::Read if self.stage == Stage::Lingering => {}
            Action::Read => self.stage = Stage::Serving,
            Action::Flush => self.stage = Stage::Flushing,
            Action::Close if self.stage == Stage::Lingering => return Some(Verdict::Close),
            Action::Close => self.stage = Stage::Closing,
            Action::Run(job) => {
                self.stage = Stage::Job;
                return Some(Verdict::Run(job));
            }
        }
        None
    }

    /// Everything is sent. If we are closing first while the client may still
    /// be sending, shut our side and drop its bytes for a while, so the
    /// kernel does not answer them with a reset that destroys our last reply.
    fn linger(&mut self, now: Instant) -> Verdict {
        if self.ready.peer_closed
            || self.finishing
            || self.socket.shutdown(Shutdown::Write).is_err()
        {
            return Verdict::Close;
        }
        self.stage = Stage::Lingering;
        self.last_input = now; // the linger deadline counts from here
        self.ready.readable = true;
        Verdict::Wait
    }

    /// When this connection's timer entry comes due, if it has one.
    pub(crate) fn timer_at(&self) -> Option<Instant> {
        self.timer_at
    }

    /// The timers armed (`Some`) or took (`None`) this connection's entry.
    pub(crate) fn set_timer_at(&mut self, at: Option<Instant>) {
        self.timer_at = at;
    }

    /// The loop decided to close it after this batch; true if it had not yet.
    pub(crate) fn mark_closed(&mut self) -> bool {
        std::mem::replace(&mut self.stage, Stage::Closed) != Stage::Closed
    }

    /// True once the loop decided to close it.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.stage == Stage::Closed
    }

    /// Bytes produced and not yet taken by the socket.
    #[inline]
    fn pending(&self) -> usize {
        self.output.len() - self.written
    }

    /// `conn=<token>/<generation> peer=<addr>`: how every log line about a
    /// connection starts.
    pub(crate) fn tag(&self) -> Tag<'_> {
        Tag(self)
    }

    /// The socket, for the loop to register and deregister.
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Writes a reply that is still in the loop's buffer; whatever the socket
    /// does not take is copied into the connection's own output buffer.
    #[inline]
    fn send_scratch(&mut self, bytes: &[u8], tally: &mut Tally) -> io::Result<()> {
        let sent = if self.ready.writable {
            let sent = write_some(&mut self.socket, bytes, &mut self.ready.writable, tally)?;
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
    fn flush(&mut self, tally: &mut Tally) -> io::Result<()> {
        let pending = &self.output[self.written..];
        let sent = write_some(&mut self.socket, pending, &mut self.ready.writable, tally)?;
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

/// Writes as much of `bytes` as the socket takes; clears `writable` when
/// the socket is full. Partial writes are normal.
fn write_some(
    socket: &mut TcpStream,
    bytes: &[u8],
    writable: &mut bool,
    tally: &mut Tally,
) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match sys::send(socket, &bytes[sent..]) {
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
    tally.bytes_out += sent as u64;
    Ok(sent)
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (stage, ready, output) = (self.stage, self.ready, self.pending());
        write!(f, "{stage:?} {ready:?} output={output} {:?}", self.dialogue)
    }
}
