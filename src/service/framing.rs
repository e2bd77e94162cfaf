//! Newline framing, shared by every line service.
//!
//! TCP is a byte stream: one `recv()` may hold two messages, or half of one
//! (the "sticky packets" seed 002 worries about). A line service therefore
//! never sees raw reads; it implements [`LineHandler`] and is wrapped in
//! [`Lines`], which cuts the stream at `\n`, strips one trailing `\r`, checks
//! the line length and UTF-8, and hands over one `&str` line at a time.
//! The same lines come out whatever the split of the input.
//!
//! Pure: no I/O here, like the services it serves.

use super::{Cx, JobOutput, Next, Service};

/// A protocol that speaks one line in, some reply out.
pub trait LineHandler: Send {
    /// The connection was just accepted (a greeting goes here).
    fn open(&mut self, cx: &mut Cx<'_>) -> Next {
        let _ = cx;
        Next::Continue
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

/// Adapts a [`LineHandler`] to [`Service`]: frames by `\n`, bounded by `max_line`.
#[derive(Debug)]
pub struct Lines<H> {
    handler: H,
    /// The longest line accepted, without its `\n`. A longer one gets an
    /// error reply and the connection is closed (we cannot resynchronise
    /// without buffering it all).
    max_line: usize,
}

impl<H: LineHandler> Lines<H> {
    /// Wraps `handler`, accepting lines of at most `max_line` bytes.
    pub fn new(handler: H, max_line: usize) -> Self {
        Lines { handler, max_line }
    }
}

impl<H: LineHandler> Lines<H> {
    /// One line, `\n` already cut off: strip `\r`, check UTF-8, hand it over.
    fn frame(&mut self, line: &[u8], cx: &mut Cx<'_>) -> Next {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(line) => self.handler.line(line, cx),
            Err(_) => {
                self.handler.error("input is not valid UTF-8", cx);
                Next::Continue
            }
        }
    }
}

impl<H: LineHandler> Service for Lines<H> {
    fn open(&mut self, cx: &mut Cx<'_>) -> Next {
        self.handler.open(cx)
    }

    /// Handles every complete line in `input`, stopping early when the
    /// handler asks for anything but `Continue`.
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > self.max_line {
                    let reason = format!("line too long (the limit is {} bytes)", self.max_line);
                    self.handler.error(&reason, cx);
                    return (input.len(), Next::Close);
                }
                return (consumed, Next::Continue);
            };
            consumed += newline + 1;
            let next = self.frame(&rest[..newline], cx);
            if next != Next::Continue {
                return (consumed, next);
            }
        }
    }

    /// A last line without its `\n` still counts (`nc -N` sends one at EOF).
    /// If that last line needs a job, the driver runs it and closes after
    /// the reply.
    fn eof(&mut self, rest: &[u8], cx: &mut Cx<'_>) -> Next {
        if rest.is_empty() {
            return Next::Close;
        }
        match self.frame(rest, cx) {
            Next::Offload(job) => Next::Offload(job),
            _ => Next::Close,
        }
    }

    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        self.handler.resume(done, cx)
    }
}
