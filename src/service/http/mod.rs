//! `http` (seed 002, the "WEB服务应用" hello world): a small, correct
//! HTTP/1.1 server that answers `Hello, World`.
//!
//! The seed sent `HTTP/1.1 200 OK\r\n\r\nHello, World` to whatever arrived and
//! closed: no `Content-Length`, no keep-alive. Here:
//!
//! - `GET`/`HEAD` of any path: `200`, `Content-Type: text/plain`,
//!   `Content-Length: 12`, body `Hello, World` (none for `HEAD`);
//!   `GET /metrics`: the server's counters, Prometheus text format 0.0.4;
//! - keep-alive is the HTTP/1.1 default; `Connection: close` is honoured;
//!   HTTP/1.0 closes unless it asks `Connection: keep-alive`;
//! - the [`MAX_REQUESTS`]th response on a connection closes it (nginx
//!   `keepalive_requests`);
//! - pipelined requests are answered in order, one per `input` call;
//! - a body on `GET`/`HEAD` with `Content-Length` is read and thrown away
//!   before the answer; one with `Transfer-Encoding` (we decode no chunked
//!   bodies) gets `400`;
//! - malformed heads get `400`, heads over 8 KiB or 32 fields `431`, both
//!   with `Connection: close`, and the connection closes;
//! - other methods get `405` with `Allow: GET, HEAD`; the connection stays
//!   open if the request has no body, since the next request is then found
//!   exactly where this one ended; with a body it closes.
//!
//! # States
//!
//! ```text
//!            ┌───── answered, keep-alive ──────┐      ┌── n body bytes skipped,
//!            ▼                                 │      ▼   answered, keep-alive ──► Head
//!  open ──► Head ──complete head, no body──► answer ──┴── answered, close ──► Done
//!            │  └──complete head, Content-Length: n > 0 ──► Body(n)
//!            └──partial head over 8 KiB, or bad head ──► 400/431 ──► Done
//! ```
//!
//! Every transition happens in the one `match` in [`Http::input`]. `Done`
//! consumes everything and asks to close (a driver calls nothing after
//! `Close`; this only keeps a buggy one safe).
//!
//! Performance: heads are parsed into a stack array of headers, and the
//! hello responses are precomputed byte strings copied into `cx.out`, so the
//! hello path allocates nothing. No I/O and no clock here.

mod request;
mod response;

use std::sync::Arc;

use request::{Body, Head, Method, Parsed, Target};
use response::Conn;

use super::{Cx, Factory, FnFactory, Next, Service, Shared};
use crate::stats::Stats;

/// Responses per connection; the last one says `Connection: close`
/// (nginx `keepalive_requests`), so no client holds a connection forever.
pub const MAX_REQUESTS: u32 = 1000;

/// Where a connection is in its request/response cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Throwing away `remaining` body bytes, then answering.
    Body { remaining: u64, answer: Answer },
    /// Closing: the last response is written.
    Done,
}

/// A `200` decided on but not yet written (it waits for the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Answer {
    target: Target,
    with_body: bool,
    conn: Conn,
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
}

impl Http {
    /// A fresh connection whose `/metrics` shows `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        Http {
            state: State::Head,
            served: 0,
            stats,
            metrics: String::new(),
        }
    }

    /// What this response says about the connection: what the client asked,
    /// unless this is the last response the connection may carry.
    fn conn(&mut self, head: &Head, may_keep: bool) -> Conn {
        self.served = self.served.saturating_add(1);
        match (
            head.keep_alive && may_keep && self.served < MAX_REQUESTS,
            head.http10,
        ) {
            (false, _) => Conn::Close,
            (true, false) => Conn::Keep,
            (true, true) => Conn::Keep10,
        }
    }

    /// Writes a `200` and says what happens next.
    fn answer(&mut self, answer: Answer, cx: &mut Cx<'_>) -> Next {
        match answer.target {
            Target::Hello => response::hello(cx.out, answer.conn, answer.with_body),
            Target::Metrics => {
                self.metrics.clear();
                self.stats.render_prometheus(&mut self.metrics);
                response::metrics(cx.out, answer.conn, answer.with_body, &self.metrics);
            }
        }
        self.after(answer.conn)
    }

    /// The state and instruction after a response with `conn`.
    fn after(&mut self, conn: Conn) -> Next {
        if conn == Conn::Close {
            self.state = State::Done;
            Next::Last
        } else {
            self.state = State::Head;
            Next::Answered
        }
    }
}

impl Service for Http {
    /// Answers the first complete request in `input`.
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        match self.state {
            State::Done => (input.len(), Next::Close),
            State::Body { remaining, answer } => {
                let take = usize::try_from(remaining).map_or(input.len(), |r| r.min(input.len()));
                let remaining = remaining - take as u64;
                if remaining > 0 {
                    self.state = State::Body { remaining, answer };
                    return (take, Next::Wait);
                }
                (take, self.answer(answer, cx))
            }
            State::Head => match request::parse(input) {
                Parsed::Partial => (0, Next::Wait),
                Parsed::Reject(why) => {
                    log::debug!("peer={} refused request: {why:?}", cx.peer);
                    response::reject(cx.out, why);
                    self.state = State::Done;
                    (input.len(), Next::Last)
                }
                Parsed::Complete(head) => {
                    let with_body = head.method == Method::Get;
                    let next = match (head.method, head.body) {
                        (Method::Other, body) => {
                            let conn = self.conn(&head, body == Body::None);
                            response::method_not_allowed(cx.out, conn);
                            self.after(conn)
                        }
                        (_, Body::Encoded) => {
                            response::reject(cx.out, request::Reject::BadRequest);
                            self.after(Conn::Close)
                        }
                        (_, Body::Length(remaining)) => {
                            let conn = self.conn(&head, true);
                            let answer = Answer {
                                target: head.target,
                                with_body,
                                conn,
                            };
                            self.state = State::Body { remaining, answer };
                            Next::Wait
                        }
                        (_, Body::None) => {
                            let conn = self.conn(&head, true);
                            let answer = Answer {
                                target: head.target,
                                with_body,
                                conn,
                            };
                            self.answer(answer, cx)
                        }
                    };
                    (head.len, next)
                }
            },
        }
    }

    fn in_body(&self) -> bool {
        matches!(self.state, State::Body { .. })
    }
}

/// The factory the registry uses; every connection shares the server's stats.
/// How long an idle keep-alive connection stays open: 75 s, nginx's
/// `keepalive_timeout`. `--idle-timeout` overrides it.
pub const KEEP_ALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(75);

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    let stats = Arc::clone(&shared.stats);
    FnFactory::with_idle_timeout("http", KEEP_ALIVE_IDLE, move || {
        Box::new(Http::new(Arc::clone(&stats)))
    })
}

#[cfg(test)]
mod tests;
