//! Line framing, shared by every line service.
//!
//! TCP is a byte stream: one `recv()` may hold two messages, or half of one
//! (the "sticky packets" seed 002 worries about). A line service therefore
//! never sees raw reads; it implements [`LineHandler`] and is wrapped in
//! [`Lines`], which cuts the stream into messages, strips one trailing `\r`,
//! checks the length and UTF-8, and hands over one `&str` at a time.
//!
//! Two ways to cut, chosen by `--framing` ([`Framing`]):
//! - `newline` (the default): a message ends at `\n`. The same lines come out
//!   whatever the split of the input.
//! - `read`: a message is what arrived together, as the seeds' servers treat
//!   one `recv(1024)`. Their clients send `hello` with no newline and wait for
//!   the answer, so waiting for a `\n` would hang them. The service never sees
//!   a read: the driver says when the socket is drained
//!   ([`Service::drained`]), and what is buffered then is one message. Two
//!   messages sent quickly may arrive together and come out as one: the
//!   sticky-packet problem that `newline` framing solves.
//!
//! The line limit holds for every message, terminated or not, whatever the
//! split. Pure: no I/O here, like the services it serves.

use super::{Cx, Eof, JobOutput, Next, Service};

/// A protocol that speaks one line in, some reply out.
pub trait LineHandler: Send {
    /// The connection was just accepted (a greeting goes here).
    fn open(&mut self, cx: &mut Cx<'_>) -> Next {
        let _ = cx;
        Next::Wait
    }

    /// One complete line, without its `\n` or trailing `\r`.
    fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next;

    /// An offloaded job finished (see [`Service::resume`]).
    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        log::error!("peer={} unexpected job output {done:?}", cx.peer);
        Next::Close
    }

    /// Writes a framing error (line too long, not UTF-8) the way this
    /// protocol writes errors. The default is `error: <reason>\n`.
    fn error(&mut self, reason: &str, cx: &mut Cx<'_>) {
        cx.out.extend_from_slice(b"error: ");
        cx.out.extend_from_slice(reason.as_bytes());
        cx.out.push(b'\n');
    }
}

/// How a line service cuts its input into messages (`--framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// A message ends at `\n`.
    #[default]
    Newline,
    /// A message is what arrived together: the bytes buffered when the
    /// socket was drained (the seeds' `recv(1024)`).
    Read,
}

/// Adapts a [`LineHandler`] to [`Service`]: frames messages, bounded by `max_line`.
#[derive(Debug)]
pub struct Lines<H> {
    handler: H,
    /// The longest message accepted, without its `\n`. A longer one gets an
    /// error reply and the connection is closed (we cannot resynchronise
    /// without buffering it all).
    max_line: usize,
    framing: Framing,
}

impl<H: LineHandler> Lines<H> {
    /// Wraps `handler`, accepting lines of at most `max_line` bytes, cut at `\n`.
    pub fn new(handler: H, max_line: usize) -> Self {
        Lines {
            handler,
            max_line,
            framing: Framing::Newline,
        }
    }

    /// The same, cutting messages as `framing` says.
    pub fn framed(handler: H, max_line: usize, framing: Framing) -> Self {
        Lines {
            handler,
            max_line,
            framing,
        }
    }

    /// One message, `\n` already cut off: check its length, strip `\r`,
    /// check UTF-8, hand it over.
    fn frame(&mut self, line: &[u8], cx: &mut Cx<'_>) -> Next {
        if line.len() > self.max_line {
            return self.too_long(cx);
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(line) => self.handler.line(line, cx),
            Err(_) => {
                self.handler.error("input is not valid UTF-8", cx);
                Next::Answered
            }
        }
    }

    fn too_long(&mut self, cx: &mut Cx<'_>) -> Next {
        let reason = format!("line too long (the limit is {} bytes)", self.max_line);
        self.handler.error(&reason, cx);
        Next::Close
    }
}

impl<H: LineHandler> Service for Lines<H> {
    fn open(&mut self, cx: &mut Cx<'_>) -> Next {
        self.handler.open(cx)
    }

    /// Handles the first complete line of `input`, if there is one.
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        let newline = match self.framing {
            Framing::Newline => input.iter().position(|&b| b == b'\n'),
            Framing::Read => None, // a message ends when the socket is drained
        };
        match newline {
            Some(end) => (end + 1, self.frame(&input[..end], cx)),
            // Too long already, whatever comes next: refuse it now, so no
            // client makes us buffer more than the limit.
            None if input.len() > self.max_line => (input.len(), self.too_long(cx)),
            None => (0, Next::Wait),
        }
    }

    /// Under `read` framing, what arrived together is one message (one
    /// trailing `\n` dropped, as `nc` sends it).
    fn drained(&mut self, rest: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        if self.framing != Framing::Read {
            return (0, Next::Wait);
        }
        let message = rest.strip_suffix(b"\n").unwrap_or(rest);
        (rest.len(), self.frame(message, cx))
    }

    /// A last line without its `\n` still counts (`nc -N` sends one at EOF).
    /// If that last line needs a job, the driver runs it and closes after
    /// the reply.
    fn eof(&mut self, rest: &[u8], cx: &mut Cx<'_>) -> Eof {
        if rest.is_empty() {
            return Eof::Close;
        }
        let message = rest.strip_suffix(b"\n").unwrap_or(rest);
        match self.frame(message, cx) {
            Next::Offload(job) => Eof::Offload(job),
            Next::Answered | Next::Last => Eof::Answered,
            Next::Wait | Next::Close => Eof::Close,
        }
    }

    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        self.handler.resume(done, cx)
    }
}
