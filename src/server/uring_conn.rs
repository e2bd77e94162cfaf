//! One connection of the io_uring loop: its socket, its output, the
//! operations it has in the ring, and the [`Dialogue`] that speaks its
//! protocol.
//!
//! The readiness connection (`connection.rs`) *does* I/O when the kernel
//! says it may. This one only *reacts*: the loop hands it what a completion
//! says (bytes received, bytes sent, end of input, a finished job) and it
//! answers with a [`Verdict`]; then the loop asks what it wants in the ring
//! ([`Conn::next_send`], [`Conn::wants_recv`]) and submits that. So this
//! file never touches the ring, and never reads or writes the socket.
//!
//! The one rule a completion driver adds: a buffer handed to the kernel is
//! the kernel's until the completion comes back. Output therefore lives in
//! two buffers: `sending`, which a send in flight reads and nobody touches,
//! and `output`, which the dialogue appends to meanwhile. When a send
//! completes, the next one takes whatever gathered in `output`: one send per
//! connection per turn, however many replies it holds. Both buffers come
//! from the loop's [`Spares`] and go back when empty, so an idle connection
//! holds none (rule 12) and a busy one allocates nothing per request (rule 11).

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{io, mem};

use super::connection::LINGER;
use super::mail::Slot;
use super::sources::ListenerService;
use super::timers::Timed;
use super::turn::{READ_CHUNK, Turn};
use super::uring_ring::Target;
use crate::service::{Action, Cx, Dialogue, Job, JobOutput};
use crate::stats;

/// What the loop does after telling a connection something.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Nothing now: sync its operations with the ring and wait.
    Go,
    /// Run this job and hand its output to [`Conn::job_done`].
    Run(Job),
    /// Done, or failed: cancel what it has in the ring, then drop it.
    Close,
}

pub(crate) use super::connection::Stage;

/// The connection's multishot receive in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recv {
    /// None in the ring.
    Off,
    /// Armed: each arrival completes with a buffer from the ring.
    Armed,
    /// Asked to stop (back-pressure, too much input behind a job, closing);
    /// its last completion has not come back yet.
    Cancelling,
}

/// Output buffers kept by the loop for whichever connection has output.
#[derive(Debug, Default)]
pub(crate) struct Spares(Vec<Vec<u8>>);

/// Buffers kept in [`Spares`] at most; more are freed.
const SPARES: usize = 256;
/// A buffer grown past this (one large reply) is freed, not kept.
const SPARE_KEEP: usize = 4 * READ_CHUNK;

impl Spares {
    fn take(&mut self) -> Vec<u8> {
        self.0.pop().unwrap_or_default()
    }

    fn give(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() > 0 && buffer.capacity() <= SPARE_KEEP && self.0.len() < SPARES {
            buffer.clear();
            self.0.push(buffer);
        }
    }
}

/// One client connection.
pub(crate) struct Conn {
    key: usize,
    socket: TcpStream,
    /// How the ring's operations name `socket`.
    pub(crate) target: Target,
    peer: SocketAddr,
    pub(crate) generation: u32,
    dialogue: Dialogue,
    service: Arc<ListenerService>,
    /// Replies not yet handed to the kernel.
    output: Vec<u8>,
    /// Replies handed to the kernel; `sending[sent..]` is not sent yet.
    sending: Vec<u8>,
    sent: usize,
    /// A send reading `sending` is in the ring.
    pub(crate) send_in_flight: bool,
    pub(crate) recv: Recv,
    /// Everything it has in the ring was asked to stop (it is closing).
    pub(crate) cancelled: bool,
    /// It is on the loop's list of connections to sync this turn.
    pub(crate) dirty: bool,
    stage: Stage,
    /// The last receive emptied the socket (no `SOCK_NONEMPTY`): what is
    /// buffered is all that arrived (for a job's `--framing read` rest).
    drained: bool,
    /// The client finished sending (a receive completed with 0 bytes).
    peer_closed: bool,
    /// Shutdown: answer what the client already sent, then close.
    finishing: bool,
    /// When its entry in the loop's timers comes due, if it has one.
    timer_at: Option<Instant>,
    /// When the client last sent bytes (or it opened, or began lingering).
    last_input: Instant,
}

impl Conn {
    /// A connection just accepted, with a fresh service from its listener.
    pub(crate) fn new(
        key: usize,
        generation: u32,
        socket: TcpStream,
        target: Target,
        peer: SocketAddr,
        service: Arc<ListenerService>,
        now: Instant,
    ) -> Conn {
        Conn {
            key,
            socket,
            target,
            peer,
            generation,
            dialogue: Dialogue::new(service.factory.make(), service.max_input),
            service,
            output: Vec::new(),
            sending: Vec::new(),
            sent: 0,
            send_in_flight: false,
            recv: Recv::Off,
            cancelled: false,
            dirty: false,
            stage: Stage::Serving,
            drained: false,
            peer_closed: false,
            finishing: false,
            timer_at: None,
            last_input: now,
        }
    }

    /// The greeting, if the service has one.
    pub(crate) fn open(&mut self, turn: Turn<'_>, spares: &mut Spares) -> Verdict {
        let action = self.talk(turn, spares, Dialogue::open);
        self.act(action, turn, spares)
    }

    /// A receive completed with `bytes`. `more` is the kernel's word that
    /// more data is already waiting in the socket; without it the socket is
    /// drained for now (each completion counts as one read).
    pub(crate) fn received(
        &mut self,
        bytes: &[u8],
        more: bool,
        turn: Turn<'_>,
        spares: &mut Spares,
    ) -> Verdict {
        if matches!(self.stage, Stage::Lingering | Stage::Closed) {
            return Verdict::Go; // bytes nobody will answer: dropped
        }
        self.last_input = turn.now;
        self.drained = !more;
        stats::add(&turn.stats.bytes_in, bytes.len() as u64);
        log::trace!("{} received {} bytes", self.tag(), bytes.len());
        let mut action = self.talk(turn, spares, |d, cx| d.received(bytes, cx));
        if action == Action::Read && !more {
            action = self.talk(turn, spares, Dialogue::drained);
        }
        self.act(action, turn, spares)
    }

    /// A receive completed with 0 bytes: the client finished sending.
    pub(crate) fn ended(&mut self, turn: Turn<'_>, spares: &mut Spares) -> Verdict {
        self.peer_closed = true;
        match self.stage {
            Stage::Lingering | Stage::Closed => Verdict::Close,
            _ => {
                log::trace!("{} received EOF", self.tag());
                let action = self.talk(turn, spares, Dialogue::ended);
                self.act(action, turn, spares)
            }
        }
    }

    /// The send of `sending[sent..]` completed having taken `n` bytes.
    pub(crate) fn sent(&mut self, n: usize, turn: Turn<'_>, spares: &mut Spares) -> Verdict {
        self.send_in_flight = false;
        self.sent += n;
        stats::add(&turn.stats.bytes_out, n as u64);
        log::trace!("{} sent {n} bytes", self.tag());
        if self.sent >= self.sending.len() {
            spares.give(mem::take(&mut self.sending));
            self.sent = 0;
        }
        self.progress(turn, spares)
    }

    /// The job from the last [`Verdict::Run`] finished.
    pub(crate) fn job_done(
        &mut self,
        done: JobOutput,
        turn: Turn<'_>,
        spares: &mut Spares,
    ) -> Verdict {
        self.stage = Stage::Serving;
        let drained = self.drained;
        let action = self.talk(turn, spares, |d, cx| d.job_done(done, drained, cx));
        self.act(action, turn, spares)
    }

    /// Its pub/sub doorbell rang: let the service write its mail (after its
    /// job, if one is out).
    pub(crate) fn deliver(&mut self, turn: Turn<'_>, spares: &mut Spares) -> Verdict {
        if !matches!(self.stage, Stage::Serving | Stage::Flushing) {
            return Verdict::Go;
        }
        let action = self.talk(turn, spares, Dialogue::deliver);
        self.act(action, turn, spares)
    }

    /// Shutdown began: answer what already arrived, send it all, close.
    pub(crate) fn finish(&mut self, turn: Turn<'_>, spares: &mut Spares) -> Verdict {
        self.finishing = true;
        self.progress(turn, spares)
    }

    /// The send in flight failed.
    pub(crate) fn send_failed(&mut self, error: io::Error) -> Verdict {
        self.send_in_flight = false;
        self.fail(error)
    }

    /// A failed operation: log why (quietly for a client that just left).
    /// Rule 8: an error closes this connection, never the server.
    pub(crate) fn fail(&mut self, error: io::Error) -> Verdict {
        match error.kind() {
            _ if error.raw_os_error() == Some(libc::ECANCELED) => {} // we asked for it
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                log::debug!("{} went away: {error}", self.tag())
            }
            _ if self.stage == Stage::Lingering => {}
            _ => log::warn!("{} closed on error: {error}", self.tag()),
        }
        Verdict::Close
    }

    /// The loop decided to close it.
    pub(crate) fn close(&mut self) {
        self.stage = Stage::Closed;
    }

    /// Closed, and nothing of it left in the ring: it may be dropped.
    pub(crate) fn is_done(&self) -> bool {
        self.stage == Stage::Closed && self.recv == Recv::Off && !self.send_in_flight
    }

    /// The next send to submit, if none is in flight and output waits: the
    /// address and length of `sending[sent..]`, which stays untouched until
    /// [`sent`](Self::sent).
    pub(crate) fn next_send(&mut self) -> Option<(*const u8, u32)> {
        if self.send_in_flight || self.stage == Stage::Closed {
            return None;
        }
        if self.sending.is_empty() {
            if self.output.is_empty() {
                return None;
            }
            self.sending = mem::take(&mut self.output); // `talk` takes a spare when it needs one
            self.sent = 0;
        }
        self.send_in_flight = true;
        let rest = &self.sending[self.sent..];
        Some((rest.as_ptr(), u32::try_from(rest.len()).unwrap_or(u32::MAX)))
    }

    /// True when its receive should be armed: serving with its output under
    /// the limit (rule 6: a client that does not read is not read), or
    /// lingering. During a job too, while what waits behind the job is under
    /// the input limit: a client that resets meanwhile frees its slot at
    /// once (its job's output finds another generation there, rule 7).
    /// Never after the client's EOF.
    pub(crate) fn wants_recv(&self, max_output: usize) -> bool {
        !self.peer_closed
            && match self.stage {
                Stage::Serving => self.pending() < max_output,
                Stage::Job => self.dialogue.buffered() < self.service.max_input,
                Stage::Lingering => true,
                _ => false,
            }
    }

    /// True once the loop decided to close it.
    pub(crate) fn is_closed(&self) -> bool {
        self.stage == Stage::Closed
    }

    /// `conn=<key>/<generation> peer=<addr>`, as the readiness loop logs.
    pub(crate) fn tag(&self) -> Tag<'_> {
        Tag(self)
    }

    /// Bytes produced and not yet taken by the kernel.
    fn pending(&self) -> usize {
        self.sending.len() - self.sent + self.output.len()
    }

    /// Calls the dialogue with a context writing into `output`, which stops
    /// being fed once the pending output reaches the limit (back-pressure).
    fn talk(
        &mut self,
        turn: Turn<'_>,
        spares: &mut Spares,
        call: impl FnOnce(&mut Dialogue, &mut Cx<'_>) -> Action,
    ) -> Action {
        if self.output.capacity() == 0 {
            self.output = spares.take();
        }
        let in_flight = self.sending.len() - self.sent;
        let slot = Slot {
            queue: turn.mail,
            key: self.key,
            generation: self.generation,
        };
        let mut cx = Cx::new(&mut self.output, turn.now, turn.wall, self.peer);
        cx.full_at = turn.options.max_output.saturating_sub(in_flight);
        cx.doorbells = Some(&slot);
        let action = call(&mut self.dialogue, &mut cx);
        let answered = u64::from(self.dialogue.take_answered());
        if answered > 0 {
            stats::add(&turn.stats.requests, answered);
            stats::add(&self.service.counters.requests, answered);
        }
        if self.output.is_empty() {
            spares.give(mem::take(&mut self.output)); // rule 12
        }
        action
    }

    /// Moves to the stage an action asks for, then sees what follows.
    fn act(&mut self, action: Action, turn: Turn<'_>, spares: &mut Spares) -> Verdict {
        match action {
            Action::Flush if self.stage == Stage::Job => return Verdict::Go, // its job is still out
            Action::Read => self.stage = Stage::Serving,
            Action::Flush => self.stage = Stage::Flushing,
            Action::Close => self.stage = Stage::Closing,
            Action::Run(job) => {
                self.stage = Stage::Job;
                return Verdict::Run(job);
            }
        }
        self.progress(turn, spares)
    }

    /// What the stage allows now that output may have drained.
    fn progress(&mut self, turn: Turn<'_>, spares: &mut Spares) -> Verdict {
        let idle = self.pending() == 0 && !self.send_in_flight;
        match self.stage {
            Stage::Closed => Verdict::Close,
            Stage::Flushing if self.pending() < turn.options.max_output => {
                let action = self.talk(turn, spares, Dialogue::proceed);
                self.act(action, turn, spares)
            }
            Stage::Closing if idle => self.linger(turn.now),
            Stage::Serving if self.finishing && idle && !self.data_waiting() => Verdict::Close,
            _ => Verdict::Go,
        }
    }

    /// Everything is sent. If we close first while the client may still be
    /// sending, shut our side and drop its bytes for a while, so that the
    /// kernel does not answer them with a reset that destroys our last
    /// reply (nginx's lingering close; see `connection.rs`).
    fn linger(&mut self, now: Instant) -> Verdict {
        if self.peer_closed || self.finishing || self.socket.shutdown(Shutdown::Write).is_err() {
            return Verdict::Close;
        }
        self.stage = Stage::Lingering;
        self.last_input = now;
        Verdict::Go
    }

    /// Bytes are waiting in the socket that no receive has taken yet (asked
    /// only during shutdown, to know whether the client is answered).
    fn data_waiting(&self) -> bool {
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer we pass.
        let ok = unsafe { libc::ioctl(self.socket.as_raw_fd(), libc::FIONREAD, &mut waiting) } == 0;
        ok && waiting > 0
    }
}

/// The timers ask a connection for its deadline as they do in the
/// readiness loop: idle, request under way, lingering.
impl Timed for Conn {
    fn generation(&self) -> u32 {
        self.generation
    }

    fn deadline(&self, request: Option<Duration>) -> Option<Instant> {
        match self.stage {
            Stage::Lingering => return Some(self.last_input + LINGER),
            Stage::Job | Stage::Closed => return None,
            _ => {}
        }
        let idle = self.service.idle_timeout.map(|t| self.last_input + t);
        let request = request
            .zip(self.dialogue.request_since())
            .map(|(timeout, since)| since + timeout);
        idle.into_iter().chain(request).min()
    }

    fn timer_at(&self) -> Option<Instant> {
        self.timer_at
    }

    fn set_timer_at(&mut self, at: Option<Instant>) {
        self.timer_at = at;
    }

    fn is_closed(&self) -> bool {
        Conn::is_closed(self)
    }

    fn tag(&self) -> impl std::fmt::Display + '_ {
        Conn::tag(self)
    }
}

/// See [`Conn::tag`].
pub(crate) struct Tag<'a>(&'a Conn);

impl std::fmt::Display for Tag<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conn = self.0;
        write!(
            f,
            "conn={}/{} peer={}",
            conn.key, conn.generation, conn.peer
        )
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} recv={:?} output={} {:?}",
            self.stage,
            self.recv,
            self.pending(),
            self.dialogue
        )
    }
}
