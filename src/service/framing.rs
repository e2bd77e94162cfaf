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
            // client makes us buffer more than the limit. (Under `read`
            // framing a message's trailing `\n` is not part of it.)
            None if input.strip_suffix(b"\n").unwrap_or(input).len() > self.max_line => {
                (input.len(), self.too_long(cx))
            }
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
            Next::Answered | Next::AnsweredMany(_) | Next::Last => Eof::Answered,
            Next::Wait | Next::Close => Eof::Close,
        }
    }

    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        self.handler.resume(done, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{assert_dialogue, run};

    /// Writes each message back in brackets, so where one ends shows.
    struct Brackets;

    impl LineHandler for Brackets {
        fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next {
            cx.out.extend_from_slice(format!("[{line}]\n").as_bytes());
            Next::Answered
        }
    }

    fn read_framed() -> Lines<Brackets> {
        Lines::framed(Brackets, 10, Framing::Read)
    }

    #[test]
    fn under_read_framing_each_read_is_one_message() {
        let outcome = run(read_framed(), &[b"one", b"two\n", b"three\r\n", b"a\nb"]);
        assert_eq!(
            String::from_utf8_lossy(&outcome.out),
            "[one]\n[two]\n[three]\n[a\nb]\n"
        );
        assert_eq!((outcome.answered, outcome.closed), (4, false));
    }

    #[test]
    fn under_newline_framing_reads_do_not_matter() {
        let lines = || Lines::new(Brackets, 10);
        assert_dialogue(lines, b"one\ntwo\r\nlast", b"[one]\n[two]\n[last]\n");
        // An unterminated message waits for its newline (or the end).
        assert_eq!(run(lines(), &[b"one", b"two\n"]).out, b"[onetwo]\n");
    }

    #[test]
    fn the_limit_holds_for_every_line_and_every_message() {
        let refused = "error: line too long (the limit is 10 bytes)\n";
        let over: &[u8] = b"01234567890\n";
        // Newline framing: a line over the limit, terminated or not, whatever the split.
        for chunks in [
            vec![over],
            vec![&over[..6], &over[6..]],
            over.chunks(1).collect(),
        ] {
            let outcome = run(Lines::new(Brackets, 10), &chunks);
            assert_eq!(String::from_utf8_lossy(&outcome.out), refused, "{chunks:?}");
            assert!(outcome.closed, "{chunks:?}");
        }
        // Read framing: a read is a message (two reads, two messages).
        let outcome = run(read_framed(), &[over]);
        assert_eq!(String::from_utf8_lossy(&outcome.out), refused);
        assert!(outcome.closed);
        let outcome = run(read_framed(), &[&over[..6], &over[6..]]);
        assert_eq!(outcome.out, b"[012345]\n[67890]\n");
        for framing in [Framing::Newline, Framing::Read] {
            let at_limit = run(Lines::framed(Brackets, 10, framing), &[b"0123456789\n"]);
            assert_eq!(at_limit.out, b"[0123456789]\n", "{framing:?}");
        }
    }
}
