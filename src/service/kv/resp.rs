//! RESP request parsing, incremental: a frame split over many reads is
//! parsed in O(its size), whatever the split.
//!
//! Requests are multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what clients
//! send) or inline (`GET k\r\n`, typed in `nc` or sent by
//! `redis-benchmark`'s `PING_INLINE`; split as Redis' `sdssplitargs` does,
//! with `"..."` and `'...'` quoting).
//!
//! # How state is kept
//!
//! The fast path needs no copy: when a whole frame is in the input given to
//! [`Parser::parse`], its arguments are ranges of that input. When the
//! input ends inside a frame, the parser copies what it has into its own
//! buffer, tells the caller it consumed all of it, and remembers where it
//! stopped (`pos`) and in which part of the frame (`State`); the next call
//! appends the new bytes and goes on from there. A header line (`*n`, `$n`)
//! is at most [`MAX_HEADER`] bytes, so the only bytes ever looked at twice
//! are those of one header; an inline line is scanned from where the last
//! call stopped. Each byte is copied at most once.
//!
//! A bulk is never allocated from its declared length: the buffer grows
//! with the bytes that actually arrive, so `$536870912` costs nothing until
//! half a gigabyte is sent.
//!
//! # Limits, as Redis'
//!
//! | limit | default | over it |
//! |---|---|---|
//! | bulk length | `--kv-max-bulk`, 512 MiB (`proto-max-bulk-len`) | `invalid bulk length` |
//! | arguments | [`MAX_ARGS`], 1,048,576 | `invalid multibulk length` |
//! | inline request | [`MAX_INLINE`], 64 KiB (`PROTO_INLINE_MAX_SIZE`) | `too big inline request` |
//! | whole request | [`MAX_FRAME`], 1008 MiB (`client-query-buffer-limit`) | `request over 1008 MiB` |
//!
//! `--kv-max-bulk` may be lowered, not raised: the store's log takes a
//! key and a value of 512 MiB each in one record, no more.
//!
//! Over a limit the caller answers `-ERR Protocol error: <reason>` and
//! closes: the rest of the stream cannot be framed.
//!
//! No I/O here, and nothing about commands: [`one_request`] hands a whole
//! request to the service's own function.

use std::ops::Range;

use super::inline::split_inline;
use crate::service::{Cx, Next};

/// The most arguments in one request (Redis' multibulk limit, 1M).
pub(crate) const MAX_ARGS: usize = 1024 * 1024;
/// The longest inline request line, without its `\n` (Redis'
/// `PROTO_INLINE_MAX_SIZE`, 64 KiB).
pub(crate) const MAX_INLINE: usize = 64 * 1024;
/// The default longest bulk string (`--kv-max-bulk`), as Redis'
/// `proto-max-bulk-len`: 512 MiB.
pub const DEFAULT_MAX_BULK: usize = 512 * 1024 * 1024;
/// The most bytes one request may take, headers included: 1 GiB less
/// 16 MiB, about Redis' `client-query-buffer-limit` (1 GiB). Without it a
/// million arguments of 512 MiB each would be accepted; with it one
/// request costs at most this. The 16 MiB keep the largest log record one
/// request can make (a score takes 12 bytes there, 7 in a frame, for at
/// most a million of them) under the log's 1 GiB record limit.
pub(crate) const MAX_FRAME: usize = (1 << 30) - (16 << 20);
/// The longest `*<count>` or `$<len>` line, CRLF included: a number needs
/// at most 20 digits. Longer is a protocol error.
const MAX_HEADER: usize = 32;
/// A buffer grown past this by one big frame is released after it, so a
/// burst does not pin memory to an idle connection.
const KEEP_CAPACITY: usize = 64 * 1024;

/// What [`Parser::parse`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole request; `consumed` bytes of this input were its end. Read
    /// it with [`Parser::request`], then call [`Parser::done`].
    Request {
        /// Bytes of the input this call used.
        consumed: usize,
    },
    /// Not a whole request yet: all the input was consumed into the
    /// parser's state.
    Partial,
    /// Nothing to run (`*0`, `*-1`, a blank line): skip `consumed` bytes.
    Empty {
        /// Bytes of the input to drop.
        consumed: usize,
    },
    /// Malformed: the reason, for `-ERR Protocol error: <reason>`.
    Malformed(String),
}

/// Where in a frame the parser stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first byte of a frame.
    Start,
    /// In an inline line; bytes before `pos` hold no `\n`.
    Inline,
    /// Before the `$` line of an argument; `left` arguments to go.
    BulkHeader { left: usize },
    /// In a bulk's bytes, which end at `end` (CRLF after it).
    Bulk { left: usize, end: usize },
}

/// One connection's RESP parser.
#[derive(Debug)]
pub(crate) struct Parser {
    /// The start of a frame that did not fit in one input (empty on the
    /// fast path).
    buf: Vec<u8>,
    /// The current request's arguments, as ranges of its frame bytes (or
    /// of [`Parser::inline`] for an inline request).
    args: Vec<Range<usize>>,
    /// An inline request's arguments, unquoted.
    inline: Vec<u8>,
    /// Where the parse of the frame stopped (an offset in the frame).
    pos: usize,
    state: State,
    /// Where the complete request's bytes are.
    source: Source,
    /// The longest bulk accepted (`--kv-max-bulk`).
    max_bulk: usize,
}

/// Where a complete request's argument ranges point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Into the input of the call that completed it.
    Input,
    /// Into [`Parser::buf`].
    Buffer,
    /// Into [`Parser::inline`].
    Inline,
}

/// A parsed request: its arguments as byte slices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    data: &'a [u8],
    args: &'a [Range<usize>],
}

impl<'a> Request<'a> {
    /// A request whose words are `args`, ranges of `data` (a queued
    /// `MULTI` command).
    pub(crate) fn new(data: &'a [u8], args: &'a [Range<usize>]) -> Request<'a> {
        Request { data, args }
    }

    /// The bytes the words are ranges of, and the ranges (to queue it).
    pub(crate) fn parts(&self) -> (&'a [u8], &'a [Range<usize>]) {
        (self.data, self.args)
    }

    /// How many words, the command name included.
    pub(crate) fn len(&self) -> usize {
        self.args.len()
    }

    /// Word `i`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`: callers check arity first.
    pub(crate) fn arg(&self, i: usize) -> &'a [u8] {
        &self.data[self.args[i].clone()]
    }

    /// Words `from..`, in order.
    pub(crate) fn args_from(
        &self,
        from: usize,
    ) -> impl ExactSizeIterator<Item = &'a [u8]> + Clone + 'a {
        let data = self.data;
        self.args[from..].iter().map(move |r| &data[r.clone()])
    }
}

/// A step of the frame machine: go on, or stop with this result.
enum Step {
    /// Need more bytes.
    More,
    /// The frame ends at this offset.
    Done(usize),
    /// Nothing to run; the frame ends at this offset.
    Skip(usize),
    Bad(String),
}

impl Parser {
    /// A parser refusing bulks over `max_bulk` bytes.
    pub(crate) fn new(max_bulk: usize) -> Parser {
        Parser {
            buf: Vec::new(),
            args: Vec::new(),
            inline: Vec::new(),
            pos: 0,
            state: State::Start,
            source: Source::Input,
            max_bulk,
        }
    }

    /// Parses from the front of `input` (the bytes after what earlier calls
    /// consumed): at most one request.
    pub(crate) fn parse(&mut self, input: &[u8]) -> Parsed {
        if self.buf.is_empty() && self.state == State::Start {
            // The fast path: the frame starts at input[0].
            match self.step(input) {
                Step::Done(end) => {
                    self.source = match self.source {
                        Source::Inline => Source::Inline,
                        _ => Source::Input,
                    };
                    return Parsed::Request { consumed: end };
                }
                Step::Skip(end) => {
                    self.reset();
                    return Parsed::Empty { consumed: end };
                }
                Step::Bad(reason) => return Parsed::Malformed(reason),
                Step::More => {
                    self.buf.extend_from_slice(input);
                    return Parsed::Partial;
                }
            }
        }
        let before = self.buf.len();
        self.buf.extend_from_slice(input);
        let buf = std::mem::take(&mut self.buf);
        let step = self.step(&buf);
        self.buf = buf;
        match step {
            Step::Done(end) => {
                if self.source != Source::Inline {
                    self.source = Source::Buffer;
                }
                Parsed::Request {
                    consumed: end - before,
                }
            }
            Step::Skip(end) => {
                self.reset();
                Parsed::Empty {
                    consumed: end - before,
                }
            }
            Step::Bad(reason) => Parsed::Malformed(reason),
            Step::More => Parsed::Partial,
        }
    }

    /// The request [`parse`](Self::parse) just completed; `input` is the
    /// same input that call was given.
    pub(crate) fn request<'a>(&'a self, input: &'a [u8]) -> Request<'a> {
        let data = match self.source {
            Source::Input => input,
            Source::Buffer => &self.buf,
            Source::Inline => &self.inline,
        };
        Request {
            data,
            args: &self.args,
        }
    }

    /// True while a frame is partly received (its rest is awaited).
    pub(crate) fn in_frame(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The request was run: get ready for the next frame.
    pub(crate) fn done(&mut self) {
        self.reset();
    }

    fn reset(&mut self) {
        self.args.clear();
        self.buf.clear();
        self.inline.clear();
        for buf in [&mut self.buf, &mut self.inline] {
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::new();
            }
        }
        if self.args.capacity() > KEEP_CAPACITY {
            self.args = Vec::new();
        }
        self.pos = 0;
        self.state = State::Start;
        self.source = Source::Input;
    }

    /// Runs the frame machine over `frame` (all of the frame's bytes so
    /// far) from where it stopped.
    fn step(&mut self, frame: &[u8]) -> Step {
        loop {
            match self.state {
                State::Start => {
                    let Some(&first) = frame.first() else {
                        return Step::More;
                    };
                    if first != b'*' {
                        self.state = State::Inline;
                        continue;
                    }
                    let Some((count, next)) = (match header(frame, 0, "mbulk") {
                        Ok(found) => found,
                        Err(reason) => return Step::Bad(reason),
                    }) else {
                        return Step::More;
                    };
                    if count > MAX_ARGS as i64 {
                        return Step::Bad("invalid multibulk length".to_owned());
                    }
                    if count <= 0 {
                        return Step::Skip(next);
                    }
                    self.pos = next;
                    self.state = State::BulkHeader {
                        left: count as usize,
                    };
                }
                State::BulkHeader { left } => {
                    let Some(&first) = frame.get(self.pos) else {
                        return Step::More;
                    };
                    if first != b'$' {
                        let shown = if first.is_ascii_graphic() || first == b' ' {
                            first as char
                        } else {
                            ' '
                        };
                        return Step::Bad(format!("expected '$', got '{shown}'"));
                    }
                    let Some((len, start)) = (match header(frame, self.pos, "bulk") {
                        Ok(found) => found,
                        Err(reason) => return Step::Bad(reason),
                    }) else {
                        return Step::More;
                    };
                    if !(0..=self.max_bulk as i64).contains(&len) {
                        return Step::Bad("invalid bulk length".to_owned());
                    }
                    if start + len as usize + 2 > MAX_FRAME {
                        return Step::Bad("request over 1008 MiB (kv's limit)".to_owned());
                    }
                    self.pos = start;
                    self.state = State::Bulk {
                        left,
                        end: start + len as usize,
                    };
                }
                State::Bulk { left, end } => {
                    match frame.get(end..end + 2) {
                        None => return Step::More,
                        Some(b"\r\n") => {}
                        Some(_) => {
                            return Step::Bad("expected CRLF after a bulk string".to_owned());
                        }
                    }
                    self.args.push(self.pos..end);
                    self.pos = end + 2;
                    if left == 1 {
                        return Step::Done(self.pos);
                    }
                    self.state = State::BulkHeader { left: left - 1 };
                }
                State::Inline => {
                    let newline = frame[self.pos..].iter().position(|&b| b == b'\n');
                    let Some(newline) = newline.map(|at| self.pos + at) else {
                        self.pos = frame.len();
                        // `+ 1`: a `\r` before the `\n` is not part of the line.
                        if frame.len() > MAX_INLINE + 1 {
                            return Step::Bad("too big inline request".to_owned());
                        }
                        return Step::More;
                    };
                    let line = &frame[..newline];
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if line.len() > MAX_INLINE {
                        return Step::Bad("too big inline request".to_owned());
                    }
                    if let Err(reason) = split_inline(line, &mut self.inline, &mut self.args) {
                        return Step::Bad(reason.to_owned());
                    }
                    self.source = Source::Inline;
                    if self.args.is_empty() {
                        return Step::Skip(newline + 1);
                    }
                    return Step::Done(newline + 1);
                }
            }
        }
    }
}

/// The number on the `*`/`$` line at `at`, and where the line ends; `None`
/// while the line is incomplete.
fn header(frame: &[u8], at: usize, what: &str) -> Result<Option<(i64, usize)>, String> {
    let line = &frame[at + 1..];
    let window = &line[..line.len().min(MAX_HEADER)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if line.len() >= MAX_HEADER {
            return Err(format!("too big {what} count string"));
        }
        return Ok(None);
    };
    match line.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(format!("expected LF after CR in the {what} length")),
    }
    let invalid = || {
        let what = if what == "mbulk" { "multibulk" } else { what };
        format!("invalid {what} length")
    };
    let number = parse_i64(&line[..cr]).ok_or_else(invalid)?;
    Ok(Some((number, at + 1 + cr + 2)))
}

/// One `input` call of a RESP service (kv, and kv as a proxy): feeds the
/// front of `input` to `parser` and hands the first whole request to
/// `run`, whose [`Next`] it returns with the bytes consumed. A frame not
/// whole in `input` is consumed into the parser (`Wait`); a malformed one
/// is answered `-ERR Protocol error: <reason>` and closes.
pub(crate) fn one_request(
    parser: &mut Parser,
    input: &[u8],
    cx: &mut Cx<'_>,
    run: impl FnOnce(&Request<'_>, &mut Cx<'_>) -> Next,
) -> (usize, Next) {
    let mut consumed = 0;
    loop {
        let rest = &input[consumed..];
        if rest.is_empty() {
            return (consumed, Next::Wait);
        }
        match parser.parse(rest) {
            Parsed::Partial => return (input.len(), Next::Wait),
            Parsed::Empty { consumed: len } => consumed += len,
            Parsed::Malformed(reason) => {
                log::debug!("peer={} kv protocol error: {reason}", cx.peer);
                cx.out.extend_from_slice(b"-ERR Protocol error: ");
                cx.out.extend_from_slice(reason.as_bytes());
                cx.out.extend_from_slice(b"\r\n");
                return (input.len(), Next::Close);
            }
            Parsed::Request { consumed: len } => {
                let next = run(&parser.request(rest), cx);
                parser.done();
                return (consumed + len, next);
            }
        }
    }
}

/// Parses an integer as Redis' `string2ll`: optional `-`, digits, no `+`,
/// no spaces, no leading zeros.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == text.len(),
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical || digits.len() > 19 {
        return None;
    }
    // At most 19 digits: only i64::MIN's magnitude can overflow i64.
    let mut magnitude: u64 = 0;
    for &d in digits {
        magnitude = magnitude * 10 + u64::from(d - b'0');
    }
    if text[0] == b'-' {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests;
