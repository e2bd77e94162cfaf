//! The driver contract, implemented once.
//!
//! A [`Dialogue`] wraps one connection's [`Service`] with everything the
//! contract on that trait asks a driver to keep: the input the service has
//! not consumed yet, whether a job is out, whether the client has finished,
//! when the request being received began, and how many requests were
//! answered. A driver only moves bytes: it hands the dialogue what it read
//! ([`received`](Dialogue::received)), says when the socket is drained or
//! the client closed, hands back finished jobs, and does what the returned
//! [`Action`] says. The event loop, the blocking driver of the other modes
//! and the unit-test harness ([`super::testing`]) all drive this same code.
//!
//! Back-pressure lives here too: between two requests the dialogue looks at
//! how much output is waiting ([`Cx::full_at`]) and stops feeding the
//! service once it passes the limit, whatever the pipelining. So one read of
//! 1,800 tiny requests for a large value costs one reply's worth of memory
//! at a time, not 1,800 (a reply larger than the limit is still made whole).
//!
//! No I/O here: like the services it drives, this is a pure state machine.

use std::time::Instant;

use super::{Cx, Eof, Job, JobOutput, Next, Service};

/// What the driver does after a call into the dialogue.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Read more when it comes: everything buffered has been offered.
    Read,
    /// The output waiting for the client is over its limit: read nothing
    /// and call [`Dialogue::proceed`] once it has drained below.
    Flush,
    /// Run this job (on a pool, or inline) and hand its output to
    /// [`Dialogue::job_done`]; read nothing meanwhile.
    Run(Job),
    /// Send what was written, then close. Nothing more is fed.
    Close,
}

/// Where the conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Input is offered to the service as it comes.
    Serving,
    /// A job is out; nothing is fed until it comes back.
    Job,
    /// The job for the client's last request (asked at end of input) is
    /// out; once it is back, the dialogue closes.
    LastJob,
    /// Feeding stopped because the client has too much output waiting.
    Flushing,
    /// Send what is written, then close.
    Closing,
}

/// One connection's service and the contract's bookkeeping. Drivers use
/// `Dialogue<dyn Service>`; tests may name the service's own type.
pub struct Dialogue<S: Service + ?Sized = dyn Service> {
    service: Box<S>,
    /// Received bytes the service has not consumed (a partial request, or
    /// requests held back by a job or by back-pressure). Unallocated when
    /// empty, so an idle connection holds no buffer.
    input: Vec<u8>,
    phase: Phase,
    /// The job the service asked for, until the driver is handed it. Boxed:
    /// jobs are rare and large, dialogues common and kept small.
    job: Option<Box<Job>>,
    /// The client has finished sending.
    ended: bool,
    /// Unconsumed input at which the service is presumed stuck: the
    /// drivers' backstop behind the services' own limits.
    max_input: usize,
    /// When the request now being received began (its first byte), or,
    /// while it is in its body, when its last bytes came.
    request_since: Option<Instant>,
    /// Requests answered since the driver last asked.
    answered: u32,
}

impl<S: Service + ?Sized> Dialogue<S> {
    /// A dialogue over `service`, giving up on a client that leaves more than
    /// `max_input` bytes unconsumed.
    pub fn new(service: Box<S>, max_input: usize) -> Dialogue<S> {
        Dialogue {
            service,
            input: Vec::new(),
            phase: Phase::Serving,
            job: None,
            ended: false,
            max_input,
            request_since: None,
            answered: 0,
        }
    }

    /// The connection was just accepted: the service may greet.
    pub fn open(&mut self, cx: &mut Cx<'_>) -> Action {
        let next = self.service.open(cx);
        self.apply(next);
        self.action()
    }

    /// Bytes arrived. They are offered to the service at once (straight from
    /// `bytes` when nothing was left over) and whatever it leaves is kept.
    pub fn received(&mut self, bytes: &[u8], cx: &mut Cx<'_>) -> Action {
        if self.ended || self.phase == Phase::Closing {
            return self.action(); // reading after the end changes nothing
        }
        if self.request_since.is_none() || self.service.in_body() {
            self.request_since = Some(cx.now);
        }
        if self.input.is_empty() && self.phase == Phase::Serving {
            let consumed = self.feed(bytes, cx);
            if consumed < bytes.len() {
                self.input.extend_from_slice(&bytes[consumed..]);
            }
        } else {
            self.input.extend_from_slice(bytes);
            self.feed_buffered(cx);
        }
        self.after_feeding(cx)
    }

    /// The socket is drained for now: what the client sent has all arrived.
    /// A service that frames by reads (`--framing read`) answers what is
    /// buffered as one message; others ignore it.
    pub fn drained(&mut self, cx: &mut Cx<'_>) -> Action {
        if self.offer_drained(cx) {
            return self.after_feeding(cx);
        }
        self.action()
    }

    /// The client finished sending. What it sent is answered first; the
    /// service may then answer an unterminated last request.
    pub fn ended(&mut self, cx: &mut Cx<'_>) -> Action {
        self.ended = true;
        self.feed_buffered(cx);
        self.after_feeding(cx)
    }

    /// The job from the last [`Action::Run`] finished. `drained`: the
    /// socket was drained when the job was handed out, and nothing was read
    /// since, so input still buffered behind the job's request is all that
    /// arrived (under `--framing read`, a message: a header that came in
    /// the same read as the end of an upload's body).
    pub fn job_done(&mut self, done: JobOutput, drained: bool, cx: &mut Cx<'_>) -> Action {
        debug_assert!(
            matches!(self.phase, Phase::Job | Phase::LastJob),
            "a job came back nobody asked for"
        );
        let last = self.phase == Phase::LastJob;
        self.phase = Phase::Serving;
        let next = self.service.resume(done, cx);
        self.apply(next);
        if self.phase == Phase::Serving {
            let next = self.service.deliver(cx); // mail that waited for the job
            self.apply(next);
        }
        if last {
            self.phase = Phase::Closing; // that was the client's last request
            return self.action();
        }
        // Requests that arrived behind the job's were held: offer them now.
        self.feed_buffered(cx);
        if drained {
            self.offer_drained(cx);
        }
        self.after_feeding(cx)
    }

    /// The connection's doorbell rang (pub/sub mail). The service writes
    /// its mail now if it is between requests; otherwise the mail waits for
    /// [`job_done`](Self::job_done) or [`proceed`](Self::proceed). While the
    /// client's output is full (flushing) the service is still asked, so it
    /// can cut off a subscriber that fell too far behind; it writes nothing
    /// past `cx.full_at`.
    pub fn deliver(&mut self, cx: &mut Cx<'_>) -> Action {
        if matches!(self.phase, Phase::Serving | Phase::Flushing) {
            let next = self.service.deliver(cx);
            self.apply(next);
        }
        self.action()
    }

    /// After [`Action::Flush`]: the client's output drained below its limit.
    pub fn proceed(&mut self, cx: &mut Cx<'_>) -> Action {
        if self.phase == Phase::Flushing {
            self.phase = Phase::Serving;
            let next = self.service.deliver(cx); // mail that waited for room
            self.apply(next);
            self.feed_buffered(cx);
            return self.after_feeding(cx);
        }
        self.action()
    }

    /// Requests answered since the last call; the driver adds them to the
    /// counters. Counting happens here, once, for every service.
    #[inline]
    pub fn take_answered(&mut self) -> u32 {
        std::mem::take(&mut self.answered)
    }

    /// When the request now being received began, if one is under way and
    /// the client (not a job) is who we wait for: the driver closes a
    /// client that takes too long over it (slowloris).
    #[inline]
    pub fn request_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Serving => self.request_since,
            _ => None,
        }
    }

    /// True while a job is out for this connection.
    #[inline]
    pub fn waiting_for_job(&self) -> bool {
        matches!(self.phase, Phase::Job | Phase::LastJob)
    }

    /// Bytes received and not consumed yet.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Offers `input` to the service one request at a time, while it answers
    /// and the output stays under its limit. Returns the bytes consumed.
    #[inline]
    fn feed(&mut self, input: &[u8], cx: &mut Cx<'_>) -> usize {
        let mut consumed = 0;
        while self.phase == Phase::Serving && consumed < input.len() {
            if cx.out.len() >= cx.full_at {
                self.phase = Phase::Flushing; // back-pressure, one reply at a time
                break;
            }
            let (n, next) = self.service.input(&input[consumed..], cx);
            debug_assert!(
                n <= input.len() - consumed,
                "a service consumed more than given"
            );
            consumed = (consumed + n).min(input.len());
            // `Wait` after taking bytes: part of a request (a header before
            // its body); the rest may already be here.
            let go_on =
                matches!(next, Next::Answered | Next::AnsweredMany(_) | Next::Wait) && n > 0;
            if self.apply(next) && consumed == input.len() {
                self.request_since = None; // answered, nothing partial behind it
            }
            if !go_on {
                break; // it needs more bytes, or said something else
            }
        }
        consumed
    }

    /// Offers what is buffered to [`Service::drained`], then feeds what it
    /// leaves. Returns false when there was nothing to offer.
    fn offer_drained(&mut self, cx: &mut Cx<'_>) -> bool {
        if self.phase != Phase::Serving || self.ended || self.input.is_empty() {
            return false;
        }
        let input = std::mem::take(&mut self.input);
        let (consumed, next) = self.service.drained(&input, cx);
        self.input = input;
        self.consume(consumed);
        if self.apply(next) && self.input.is_empty() {
            self.request_since = None;
        }
        self.feed_buffered(cx);
        true
    }

    /// [`feed`](Self::feed) over the buffered input.
    fn feed_buffered(&mut self, cx: &mut Cx<'_>) {
        if self.phase == Phase::Serving && !self.input.is_empty() {
            let input = std::mem::take(&mut self.input);
            let consumed = self.feed(&input, cx);
            self.input = input;
            self.consume(consumed);
        }
    }

    /// Drops the first `n` buffered bytes; frees the buffer once empty.
    fn consume(&mut self, n: usize) {
        if n >= self.input.len() {
            self.input = Vec::new();
        } else if n > 0 {
            self.input.drain(..n);
        }
    }

    /// What every feeding ends with: at end of input, the last request;
    /// otherwise the backstop on unconsumed input.
    #[inline]
    fn after_feeding(&mut self, cx: &mut Cx<'_>) -> Action {
        if self.phase == Phase::Serving && self.ended {
            let rest = std::mem::take(&mut self.input);
            self.phase = Phase::Closing;
            match self.service.eof(&rest, cx) {
                Eof::Close => {}
                Eof::Answered => self.answered += 1,
                Eof::Offload(job) => {
                    self.job = Some(Box::new(job));
                    self.phase = Phase::LastJob;
                }
            }
        } else if self.phase == Phase::Serving && self.input.len() >= self.max_input {
            log::warn!(
                "peer={} sent {} bytes its service did not consume: closing",
                cx.peer,
                self.input.len()
            );
            self.phase = Phase::Closing;
        }
        self.action()
    }

    /// Applies what the service said. Returns true when it answered a request.
    #[inline]
    fn apply(&mut self, next: Next) -> bool {
        self.answered += match next {
            Next::Answered => 1,
            Next::AnsweredMany(n) => n,
            Next::Wait => return false,
            Next::Last => {
                self.phase = Phase::Closing;
                1
            }
            Next::Close => {
                self.phase = Phase::Closing;
                return false;
            }
            Next::Offload(job) => {
                self.job = Some(Box::new(job));
                self.phase = Phase::Job;
                return false;
            }
        };
        true
    }

    /// The action the current phase asks of the driver.
    #[inline]
    fn action(&mut self) -> Action {
        match self.phase {
            Phase::Serving => Action::Read,
            Phase::Flushing => Action::Flush,
            Phase::Closing => Action::Close,
            Phase::Job | Phase::LastJob => match self.job.take() {
                Some(job) => Action::Run(*job),
                None => Action::Flush, // already handed out: wait for it, read nothing
            },
        }
    }
}

impl<S: Service + ?Sized> std::fmt::Debug for Dialogue<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialogue")
            .field("phase", &self.phase)
            .field("buffered", &self.input.len())
            .field("ended", &self.ended)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{self, cx};
    use crate::service::{echo::Echo, slow};
    use std::time::Duration;

    /// Answers each `\n`-terminated request with a reply `size` bytes long.
    struct Big {
        size: usize,
    }

    impl Service for Big {
        fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
            match input.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    cx.out.resize(cx.out.len() + self.size, b'x');
                    (end + 1, Next::Answered)
                }
                None => (0, Next::Wait),
            }
        }
    }

    #[test]
    fn past_the_output_limit_no_request_is_fed_until_the_driver_sent_some() {
        let mut dialogue = Dialogue::new(Box::new(Big { size: 1000 }), 1 << 20);
        let mut out = Vec::new();
        let mut cx = cx(&mut out);
        cx.full_at = 2500; // the client may have 2,500 bytes waiting
        assert_eq!(
            dialogue.received(&b"a\n".repeat(250), &mut cx),
            Action::Flush
        );
        assert_eq!(
            dialogue.take_answered(),
            3,
            "one reply past the limit, not 250"
        );
        assert_eq!(cx.out.len(), 3000);
        assert_eq!(dialogue.buffered(), 247 * 2, "the rest waits, unparsed");
        cx.out.clear(); // the driver sent it all
        assert_eq!(dialogue.proceed(&mut cx), Action::Flush);
        assert_eq!(dialogue.take_answered(), 3);
        cx.full_at = usize::MAX;
        assert_eq!(dialogue.proceed(&mut cx), Action::Read);
        assert_eq!(dialogue.take_answered(), 244);
        assert_eq!(dialogue.buffered(), 0);
    }

    #[test]
    fn a_reply_bigger_than_the_limit_is_still_made_whole() {
        let mut dialogue = Dialogue::new(Box::new(Big { size: 10_000 }), 1 << 20);
        let mut out = Vec::new();
        let mut cx = cx(&mut out);
        cx.full_at = 100;
        assert_eq!(dialogue.received(b"a\na\n", &mut cx), Action::Flush);
        assert_eq!(cx.out.len(), 10_000);
    }

    #[test]
    fn requests_are_counted_here_once_whatever_the_split() {
        for chunks in testing::splits(b"one\ntwo\nthree") {
            let outcome = testing::run(Big { size: 1 }, &chunks);
            assert_eq!(outcome.answered, 2, "{chunks:?}"); // `three` has no `\n`
        }
        // Line services answer an unterminated last line at EOF: counted too.
        let hello = crate::service::framing::Lines::new(crate::service::upper::Upper, 64);
        assert_eq!(testing::run(hello, &[b"a\nb"]).answered, 2);
    }

    #[test]
    fn eof_is_asked_once_after_the_last_request_and_its_job() {
        // `sleep` at EOF: the job runs, its reply comes, then the close.
        let lines = crate::service::framing::Lines::new(slow::Slow, 64);
        let mut dialogue = Dialogue::new(Box::new(lines), 1 << 20);
        let mut out = Vec::new();
        let mut cx = cx(&mut out);
        assert_eq!(dialogue.received(b"sleep 1", &mut cx), Action::Read);
        let Action::Run(job) = dialogue.ended(&mut cx) else {
            panic!("the last request needs its job");
        };
        assert_eq!(dialogue.job_done(job.run(), true, &mut cx), Action::Close);
        assert_eq!(cx.out, b"slept 1\n");
        assert_eq!(dialogue.take_answered(), 1);
        assert_eq!(
            dialogue.ended(&mut cx),
            Action::Close,
            "nothing more is asked"
        );
    }

    #[test]
    fn input_left_over_the_backstop_closes() {
        let mut dialogue = Dialogue::new(Box::new(Big { size: 1 }), 8);
        let mut out = Vec::new();
        let mut cx = cx(&mut out);
        assert_eq!(dialogue.received(b"no newline yet", &mut cx), Action::Close);
    }

    #[test]
    fn the_request_timer_runs_from_the_first_byte_of_an_unanswered_request() {
        let mut dialogue = Dialogue::new(Box::new(Big { size: 1 }), 1 << 20);
        let mut out = Vec::new();
        let start = Instant::now();
        let mut cx = cx(&mut out);
        cx.now = start;
        let _ = dialogue.received(b"a\n", &mut cx);
        assert_eq!(
            dialogue.request_since(),
            None,
            "answered: no request under way"
        );
        let _ = dialogue.received(b"b", &mut cx);
        cx.now = start + Duration::from_secs(5);
        let _ = dialogue.received(b"c", &mut cx);
        assert_eq!(
            dialogue.request_since(),
            Some(start),
            "a byte does not reset it"
        );
        let _ = dialogue.received(b"\n", &mut cx);
        assert_eq!(dialogue.request_since(), None);
        // Echo answers whatever arrives: never a request under way.
        let mut echo = Dialogue::new(Box::new(Echo), 1 << 20);
        let _ = echo.received(b"x", &mut cx);
        assert_eq!(echo.request_since(), None);
    }
}
