//! `http` (seed 002, the "WEB服务应用" hello world): a small, correct
//! HTTP/1.1 server that answers `Hello, World`, and that curl, browsers and
//! load generators find ordinary.
//!
//! The seed sent `HTTP/1.1 200 OK\r\n\r\nHello, World` to whatever arrived and
//! closed: no `Content-Length`, no keep-alive. Here:
//!
//! - `GET`/`HEAD /`: `200`, `Content-Type: text/plain`, `Content-Length: 12`,
//!   body `Hello, World` (none for `HEAD`); `/metrics`: the server's
//!   counters, Prometheus text format 0.0.4; the query is ignored
//!   (`/metrics?x=1` is the metrics); any other path: `404`;
//! - every response has `Server: readyloop` and a `Date` (formatted at most
//!   once a second, `date.rs`) and a `Content-Length`;
//! - keep-alive is the HTTP/1.1 default; `Connection: close` is honoured;
//!   HTTP/1.0 closes unless it asks `Connection: keep-alive`; the
//!   [`MAX_REQUESTS`]th response on a connection closes it (nginx
//!   `keepalive_requests`);
//! - a request body, by `Content-Length` or `chunked`, is read and thrown
//!   away before the answer (`body.rs`), so the next request is found where
//!   this one ends; over `max_body` (default [`DEFAULT_MAX_BODY`], nginx's
//!   `client_max_body_size`) it gets `413` and the connection closes;
//!   `Expect: 100-continue` gets `100 Continue` at once, any other `Expect`
//!   `417` and a close;
//! - methods other than `GET`/`HEAD` get `405` with `Allow: GET, HEAD`,
//!   after their body, and the connection stays usable;
//! - malformed heads and bodies get `400`, heads over 8 KiB or 32 fields
//!   `431`, both with `Connection: close`, and the connection closes; so do
//!   ambiguous bodies (`Content-Length` with `Transfer-Encoding`, lengths
//!   that disagree: request smuggling, RFC 9112 6.3);
//! - a client turned away because the server is full gets a whole `503`.
//!
//! # States
//!
//! ```text
//!  open ──► Head ──head, no body─────────────────────────► answer ──keep-alive──► Head  (Answered)
//!            │  └──head and body (100 if asked)──► Body ──ended──┘  └──closing───► Done  (Last)
//!            │                                       │
//!            └──bad head (400, 431)──────────────────┴──bad chunks (400)─────────► Done  (Close)
//! ```
//!
//! An answer is closing for `Connection: close`, HTTP/1.0 without
//! keep-alive, the [`MAX_REQUESTS`]th request, a body over the limit (`413`,
//! on its `Content-Length` before any of it, or on the chunk size that
//! passes it) and an unknown `Expect` (`417`).
//!
//! Every transition happens in the one `match` in `Http::input`; one call
//! answers at most one request. `Done` consumes everything and asks to
//! close (a driver calls nothing after `Close`; this only keeps a buggy one
//! safe).
//!
//! Performance: heads are parsed into a stack array of headers, bodies are
//! skipped without copying, and responses are constant pieces and a cached
//! `Date` copied into `cx.out`, so the hello path allocates nothing. No I/O
//! and no clock here.

mod body;
mod date;
mod request;
mod response;

use std::sync::Arc;
use std::time::Duration;

use body::{Body, Progress};
use request::{Expect, Framing, Head, Method, Parsed, Reject, Target};
use response::{KeepAlive, Status};

use super::{Cx, Factory, Next, Service, Shared};
use crate::stats::Stats;

/// Responses per connection; the last one says `Connection: close`
/// (nginx `keepalive_requests`), so no client holds a connection forever.
pub const MAX_REQUESTS: u32 = 1000;

/// The largest request body read (and thrown away), in bytes: 1 MiB, nginx's
/// `client_max_body_size`. A larger one gets `413` and the connection closes.
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;

/// How long an idle keep-alive connection stays open: 75 s, nginx's
/// `keepalive_timeout`. `--idle-timeout` overrides it.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(75);

/// Where a connection is in its request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Throwing away a request body, then answering.
    Body { body: Body, answer: Answer },
    /// Closing: the last response is written.
    Done,
}

/// A response decided on but not yet written (it waits for the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    reply: Reply,
    /// False for `HEAD`: the head of the response only.
    with_body: bool,
    conn: KeepAlive,
}

/// Which response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Hello,
    Metrics,
    Status(Status),
}

/// One HTTP connection.
#[derive(Debug)]
pub struct Http {
    state: State,
    /// Responses decided on so far; at [`MAX_REQUESTS`] the connection closes.
    served: u32,
    /// The counters `/metrics` shows.
    stats: Arc<Stats>,
    /// Reused for each `/metrics` rendering.
    metrics: String,
    /// The largest body read; see [`DEFAULT_MAX_BODY`].
    max_body: u64,
}

impl Http {
    /// A fresh connection whose `/metrics` shows `stats`, reading bodies of
    /// up to `max_body` bytes.
    pub fn new(stats: Arc<Stats>, max_body: u64) -> Self {
        Http {
            state: State::Head,
            served: 0,
            stats,
            metrics: String::new(),
            max_body,
        }
    }

    /// The response a complete head gets, once its body (if any) is read.
    fn decide(&mut self, head: &Head) -> Answer {
        self.served = self.served.saturating_add(1);
        let conn = match (head.keep_alive && self.served < MAX_REQUESTS, head.http10) {
            (false, _) => KeepAlive::Close,
            (true, false) => KeepAlive::Keep,
            (true, true) => KeepAlive::Keep10,
        };
        let reply = match (head.method, head.target) {
            (Method::Other, _) => Reply::Status(Status::MethodNotAllowed),
            (_, Target::Hello) => Reply::Hello,
            (_, Target::Metrics) => Reply::Metrics,
            (_, Target::Unknown) => Reply::Status(Status::NotFound),
        };
        Answer {
            reply,
            with_body: head.method != Method::Head,
            conn,
        }
    }

    /// Writes `answer`'s response; the connection goes on unless it closes.
    fn answer(&mut self, answer: Answer, cx: &mut Cx<'_>) -> Next {
        let date = date::http_date(cx.wall);
        let (out, conn, with_body) = (&mut *cx.out, answer.conn, answer.with_body);
        match answer.reply {
            Reply::Hello => response::hello(out, &date, conn, with_body),
            Reply::Metrics => {
                self.metrics.clear();
                self.stats.render_prometheus(&mut self.metrics);
                response::metrics(out, &date, conn, with_body, &self.metrics);
            }
            Reply::Status(status) => response::status(out, &date, status, conn, with_body),
        }
        if conn == KeepAlive::Close {
            self.state = State::Done;
            Next::Last
        } else {
            self.state = State::Head;
            Next::Answered
        }
    }

    /// Writes an error for a request that cannot be answered, and closes.
    fn refuse(&mut self, status: Status, cx: &mut Cx<'_>) -> Next {
        let date = date::http_date(cx.wall);
        response::status(cx.out, &date, status, KeepAlive::Close, true);
        self.state = State::Done;
        Next::Close
    }
}

impl Answer {
    /// This answer turned into `status`, after which the connection closes.
    fn closing(self, status: Status) -> Answer {
        Answer {
            reply: Reply::Status(status),
            conn: KeepAlive::Close,
            ..self
        }
    }
}

impl Service for Http {
    /// Handles at most one request from the front of `input`: every
    /// transition of the state diagram is here.
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        match &mut self.state {
            State::Done => (input.len(), Next::Close),
            State::Head => match request::parse(input) {
                Parsed::Partial => (0, Next::Wait),
                Parsed::Reject(why) => {
                    log::debug!("peer={} refused request: {why:?}", cx.peer);
                    let status = match why {
                        Reject::BadRequest => Status::BadRequest,
                        Reject::TooLarge => Status::HeadersTooLarge,
                    };
                    (input.len(), self.refuse(status, cx))
                }
                Parsed::Complete(head) => {
                    let answer = self.decide(&head);
                    let body = match (head.expect, head.framing) {
                        (Expect::Unknown, _) => Err(Status::ExpectationFailed),
                        (_, Framing::None) => Ok(None),
                        (_, Framing::Length(n)) if n > self.max_body => {
                            Err(Status::ContentTooLarge)
                        }
                        (_, Framing::Length(n)) => Ok(Some(Body::Length(n))),
                        (_, Framing::Chunked) => Ok(Some(Body::chunked())),
                    };
                    let body = match body {
                        Err(status) => return (head.len, self.answer(answer.closing(status), cx)),
                        Ok(None) => return (head.len, self.answer(answer, cx)),
                        Ok(Some(body)) => body,
                    };
                    if head.expect == Expect::Continue {
                        cx.out.extend_from_slice(response::CONTINUE);
                    }
                    self.state = State::Body { body, answer };
                    let (used, step) = self.input(&input[head.len..], cx);
                    (head.len + used, step)
                }
            },
            State::Body { body, answer } => {
                let answer = *answer;
                let (used, progress) = body.skip(input, self.max_body);
                let step = match progress {
                    Progress::More => Next::Wait,
                    Progress::Done => self.answer(answer, cx),
                    Progress::Malformed => self.refuse(Status::BadRequest, cx),
                    Progress::TooLarge => self.answer(answer.closing(Status::ContentTooLarge), cx),
                };
                (used, step)
            }
        }
    }

    fn in_body(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }
}

/// Makes one [`Http`] per connection, all sharing the server's counters.
#[derive(Debug)]
pub struct HttpFactory {
    stats: Arc<Stats>,
    max_body: u64,
}

impl Factory for HttpFactory {
    fn name(&self) -> &'static str {
        "http"
    }
    fn make(&self) -> Box<dyn Service> {
        Box::new(Http::new(Arc::clone(&self.stats), self.max_body))
    }
    fn idle_timeout(&self) -> Option<Duration> {
        Some(KEEP_ALIVE_IDLE)
    }
    fn busy_reply(&self) -> &'static [u8] {
        response::BUSY
    }
}

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    Arc::new(HttpFactory {
        stats: Arc::clone(&shared.stats),
        max_body: shared.limits.max_body,
    })
}

#[cfg(test)]
mod tests;
