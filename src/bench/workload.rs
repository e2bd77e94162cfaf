//! What the load generator says and what it expects back, per workload.
//!
//! Pure: requests are written into a caller-owned buffer, replies are checked
//! in a caller-owned slice, and nothing here touches a socket or the clock. A
//! connection keeps one `Expect` per request in flight and asks
//! `Workload::check` whether the bytes received so far hold a complete reply
//! for the oldest one. Nothing allocates per request.

use std::io::Write as _;

/// The workloads `bench --workload` knows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `--size` bytes (a line ending in `\n`), expected back unchanged.
    Echo,
    /// The line `bench`, expected back as `Hello BENCH\n`.
    Hello,
    /// A `--size`-byte lower-case line, expected back upper-cased.
    Upper,
    /// `GET/task_01/x` three times, then `POST/bench_<conn>=v/x`; replies end `\r\n`.
    Todo,
    /// HTTP/1.1 keep-alive `GET /`; the reply is read by its `Content-Length`.
    Http,
    /// RESP `GET key` nine times, then `SET key v`.
    Kv,
    /// Open every connection, prove it with one echo round trip, then hold it.
    Idle,
}

impl Kind {
    /// The service a spawned server runs for this workload.
    pub fn service(self) -> &'static str {
        match self {
            Kind::Echo | Kind::Idle => "echo",
            Kind::Hello => "hello",
            Kind::Upper => "upper",
            Kind::Todo => "todo",
            Kind::Http => "http",
            Kind::Kv => "kv",
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Idle => "idle",
            other => other.service(),
        }
    }
}

/// One in-flight request in every [`TODO_WRITE_EVERY`] (or
/// [`KV_WRITE_EVERY`]) is a write; the rest are reads, as in most caches.
pub const TODO_WRITE_EVERY: u64 = 4;
/// See [`TODO_WRITE_EVERY`].
pub const KV_WRITE_EVERY: u64 = 10;

/// The smallest `--size`: one byte of payload and the `\n` that ends the line.
pub const MIN_SIZE: usize = 2;

/// What the reply to one request must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Exactly [`Workload::expected`].
    Exact,
    /// One line ending in `\n`, any content (todo `GET`).
    Line,
    /// One line ending in `\n` that starts with `submit success` (todo `POST`).
    Submitted,
    /// An HTTP/1.1 response with a `Content-Length`.
    Http,
    /// One RESP reply that is not an error.
    Resp,
}

/// The outcome of looking at the bytes received for the oldest request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Not all of the reply is there yet.
    Incomplete,
    /// A complete, correct reply of this many bytes. `close` says the server
    /// announced it will close the connection after it (HTTP `Connection: close`).
    Done { len: usize, close: bool },
    /// The bytes are not the expected reply; the reason is for the error count.
    Bad(&'static str),
}

/// A workload's fixed request and reply bytes, built once per run.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    kind: Kind,
    /// The request of echo, hello, upper and idle (the same every time).
    request: Vec<u8>,
    /// The reply [`Expect::Exact`] wants.
    expected: Vec<u8>,
}

const HELLO_NAME: &[u8] = b"bench\n";
const HELLO_REPLY: &[u8] = b"Hello BENCH\n";
const HTTP_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
const KV_GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
const KV_SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$1\r\nv\r\n";
const TODO_GET: &[u8] = b"GET/task_01/x\n";
/// Response headers `bench` parses; more are an error.
const MAX_HTTP_HEADERS: usize = 32;

impl Workload {
    /// The workload `kind` with `size`-byte messages (echo, upper, idle).
    pub(crate) fn new(kind: Kind, size: usize) -> Self {
        let line: Vec<u8> = (0..size.max(MIN_SIZE) - 1)
            .map(|i| b'a' + (i % 26) as u8)
            .chain(std::iter::once(b'\n'))
            .collect();
        let (request, expected) = match kind {
            Kind::Echo | Kind::Idle => (line.clone(), line),
            Kind::Upper => (line.clone(), line.to_ascii_uppercase()),
            Kind::Hello => (HELLO_NAME.to_vec(), HELLO_REPLY.to_vec()),
            Kind::Todo | Kind::Http | Kind::Kv => (Vec::new(), Vec::new()),
        };
        Workload {
            kind,
            request,
            expected,
        }
    }

    /// Appends request number `seq` of connection `conn` to `out`.
    pub(crate) fn write_request(&self, conn: usize, seq: u64, out: &mut Vec<u8>) -> Expect {
        match self.kind {
            Kind::Echo | Kind::Idle | Kind::Upper | Kind::Hello => {
                out.extend_from_slice(&self.request);
                Expect::Exact
            }
            Kind::Todo if seq % TODO_WRITE_EVERY == TODO_WRITE_EVERY - 1 => {
                // Writing into a Vec cannot fail; one key per connection keeps
                // the store (and its log) from growing with the run's length.
                let _ = writeln!(out, "POST/bench_{conn}=v/x");
                Expect::Submitted
            }
            Kind::Todo => {
                out.extend_from_slice(TODO_GET);
                Expect::Line
            }
            Kind::Http => {
                out.extend_from_slice(HTTP_REQUEST);
                Expect::Http
            }
            Kind::Kv => {
                let set = seq % KV_WRITE_EVERY == KV_WRITE_EVERY - 1;
                out.extend_from_slice(if set { KV_SET } else { KV_GET });
                Expect::Resp
            }
        }
    }

    /// Looks for the complete reply to a request of kind `expect` at the
    /// start of `buf`.
    pub(crate) fn check(&self, expect: Expect, buf: &[u8]) -> Reply {
        match expect {
            Expect::Exact => {
                let n = self.expected.len().min(buf.len());
                if buf[..n] != self.expected[..n] {
                    Reply::Bad("reply differs from the expected bytes")
                } else if n < self.expected.len() {
                    Reply::Incomplete
                } else {
                    done(n)
                }
            }
            Expect::Line | Expect::Submitted => match line_end(buf) {
                None => Reply::Incomplete,
                Some(_) if expect == Expect::Submitted && !buf.starts_with(b"submit success") => {
                    Reply::Bad("POST was not answered `submit success`")
                }
                Some(len) => done(len),
            },
            Expect::Http => check_http(buf),
            Expect::Resp => check_resp(buf),
        }
    }
}

fn done(len: usize) -> Reply {
    Reply::Done { len, close: false }
}

/// The length of the first line of `buf`, `\n` included.
fn line_end(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
}

fn check_http(buf: &[u8]) -> Reply {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HTTP_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Reply::Incomplete,
        Err(_) => return Reply::Bad("malformed HTTP response head"),
    };
    if response.code != Some(200) {
        return Reply::Bad("HTTP status is not 200");
    }
    let mut length = None;
    let mut close = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_none() {
                return Reply::Bad("HTTP Content-Length is not a number");
            }
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let Some(length) = length else {
        return Reply::Bad("HTTP response has no Content-Length");
    };
    if buf.len() < head + length {
        Reply::Incomplete
    } else {
        Reply::Done {
            len: head + length,
            close,
        }
    }
}

fn check_resp(buf: &[u8]) -> Reply {
    let Some(&first) = buf.first() else {
        return Reply::Incomplete;
    };
    let Some(line) = crlf_end(buf) else {
        return Reply::Incomplete;
    };
    match first {
        b'+' | b':' => done(line),
        b'-' => Reply::Bad("RESP error reply"),
        b'$' => {
            let digits = &buf[1..line - 2];
            if digits == b"-1" {
                return done(line);
            }
            let Some(n) = std::str::from_utf8(digits)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
            else {
                return Reply::Bad("RESP bulk length is not a number");
            };
            let total = line + n + 2;
            if buf.len() < total {
                Reply::Incomplete
            } else if &buf[total - 2..total] != b"\r\n" {
                Reply::Bad("RESP bulk string is not followed by CRLF")
            } else {
                done(total)
            }
        }
        _ => Reply::Bad("not a RESP reply"),
    }
}

/// The length of the first `\r\n`-terminated line of `buf`, terminator included.
fn crlf_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|i| i + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(kind: Kind, seq: u64) -> (Vec<u8>, Expect) {
        let mut out = Vec::new();
        let expect = Workload::new(kind, 8).write_request(7, seq, &mut out);
        (out, expect)
    }

    #[test]
    fn echo_wants_its_own_bytes_back() {
        let w = Workload::new(Kind::Echo, 8);
        let (req, e) = first(Kind::Echo, 0);
        assert_eq!(req, b"abcdefg\n");
        assert_eq!(w.check(e, b"abc"), Reply::Incomplete);
        assert_eq!(
            w.check(e, b"abx"),
            Reply::Bad("reply differs from the expected bytes")
        );
        assert_eq!(w.check(e, b"abcdefg\nabc"), done(8));
    }

    #[test]
    fn hello_and_upper_want_upper_case() {
        let w = Workload::new(Kind::Hello, 8);
        assert_eq!(w.check(Expect::Exact, b"Hello BENCH\n"), done(12));
        let w = Workload::new(Kind::Upper, 4);
        assert_eq!(w.check(Expect::Exact, b"ABC\n"), done(4));
    }

    #[test]
    fn todo_mixes_gets_and_posts() {
        assert_eq!(first(Kind::Todo, 0), (TODO_GET.to_vec(), Expect::Line));
        let (post, e) = first(Kind::Todo, 3);
        assert_eq!(post, b"POST/bench_7=v/x\n");
        let w = Workload::new(Kind::Todo, 8);
        assert_eq!(w.check(e, b"submit success\r\n"), done(16));
        assert!(matches!(w.check(e, b"no key match\r\n"), Reply::Bad(_)));
        assert_eq!(w.check(Expect::Line, b"see some"), Reply::Incomplete);
    }

    #[test]
    fn http_reads_head_and_body() {
        let w = Workload::new(Kind::Http, 8);
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello, World";
        assert_eq!(w.check(Expect::Http, &reply[..30]), Reply::Incomplete);
        assert_eq!(w.check(Expect::Http, &reply[..50]), Reply::Incomplete);
        assert_eq!(w.check(Expect::Http, reply), done(reply.len()));
        let closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            w.check(Expect::Http, closing),
            Reply::Done {
                len: closing.len(),
                close: true
            }
        );
        assert!(matches!(
            w.check(Expect::Http, b"HTTP/1.1 200 OK\r\n\r\n"),
            Reply::Bad(_)
        ));
    }

    #[test]
    fn resp_replies_of_every_shape() {
        let w = Workload::new(Kind::Kv, 8);
        let e = Expect::Resp;
        assert_eq!(w.check(e, b"$-1\r\n"), done(5));
        assert_eq!(w.check(e, b"$1\r\nv\r\n"), done(7));
        assert_eq!(w.check(e, b"$1\r\nv"), Reply::Incomplete);
        assert_eq!(w.check(e, b"+OK\r\n"), done(5));
        assert_eq!(w.check(e, b":12\r\n"), done(5));
        assert_eq!(w.check(e, b"+O"), Reply::Incomplete);
        assert!(matches!(w.check(e, b"-ERR x\r\n"), Reply::Bad(_)));
        assert_eq!(first(Kind::Kv, 9).0, KV_SET);
        assert_eq!(first(Kind::Kv, 0).0, KV_GET);
    }
}
