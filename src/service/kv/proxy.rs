//! `kv` as a proxy in front of Redis (`--store redis://`), as twemproxy
//! is: each request is parsed by kv's own parser (so `--kv-max-bulk` and
//! the argument and frame limits hold before anything is sent), re-encoded
//! as a RESP array of bulk strings and sent as a [`Job::Remote`]; Redis'
//! reply comes back through `resume` and is written byte for byte.
//!
//! The upstream connections are shared: the event loop pipelines many
//! clients' requests onto a few, and a worker's blocking connection serves
//! every client that worker serves. So a command that would change that
//! connection for everyone, block it, or turn it into a stream that is not
//! one reply per command is never sent. [`route`] says, per command, what
//! happens: forwarded, answered here (the connection's own commands: QUIT,
//! HELLO, SELECT of the URL's database, CLIENT ID / GETNAME / SETNAME /
//! SETINFO, RESET), or refused with `-ERR <NAME> is not proxied: <why>`.
//! docs/PROTOCOLS.md has the table.
//!
//! # RESP3
//!
//! The upstream connections speak RESP2. A client that said `HELLO 3`
//! (redis-py's default since 8.0) gets Redis' own RESP3 replies, exactly:
//! its command is sent between `HELLO 3` and `HELLO 2` in one request
//! ([`Sent::InResp3`]), and only the middle reply is passed on. A request
//! is sent whole on one upstream connection, so no other client's command
//! runs while that connection is in RESP3. It costs two more commands per
//! request; a client that can, asks for RESP2 (redis-py: `protocol=2`).
//!
//! A reply is passed on whole, however large (each bulk at most 512 MiB,
//! as Redis' own limit): the dialogue then feeds this client nothing more
//! until its output drains below `--max-output`, so one client holds at
//! most one reply and one request in memory here.
//!
//! No I/O here, like every service: the driver sends the job.

use super::args::{self, is};
use super::conn::{self, Session};
use super::reply::Reply;
use super::resp::{self, Parser, Request, parse_i64};
use crate::remote::{self, Answer};
use crate::service::{Cx, Job, JobOutput, Next, Service};

/// One client connection of the proxy.
#[derive(Debug)]
pub(crate) struct Proxy {
    parser: Parser,
    /// The database the upstream connections selected (`/DB` in the URL):
    /// `SELECT` of it is answered `+OK`, any other refused.
    db: u32,
    /// What the connection's own commands (CLIENT SETNAME, HELLO) keep.
    session: Session,
    /// The client switched to RESP3 (`HELLO 3`).
    resp3: bool,
    /// A request is out to Redis; `resume` writes its reply.
    waiting: Option<Sent>,
}

/// How a request went to Redis, to find the client's reply in what comes
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The command alone, on a connection in RESP2: one reply.
    Plain,
    /// `HELLO 3`, the command, `HELLO 2`: three replies, the middle one
    /// the client's, in RESP3. The upstream connection is back in RESP2
    /// after it, and a request is sent whole on one connection, so no
    /// other client's command runs in between.
    InResp3,
}

/// The reply when Redis could not be reached (or its answer is unusable).
const UNAVAILABLE: &[u8] = b"-ERR store unavailable\r\n";

/// What the proxy does with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Re-encoded and sent to Redis; its reply passed back verbatim.
    Forward,
    /// Answered by the proxy: about this client's connection only.
    Local(Local),
    /// Answered with an error, never sent.
    Refuse(Why),
}

/// The commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    /// `+OK`, then close.
    Quit,
    /// The `HELLO` reply, in the protocol asked (`HELLO 3` switches this
    /// client to RESP3); `HELLO ... AUTH` is refused, as `AUTH` is.
    Hello,
    /// CLIENT ID, GETNAME, SETNAME, SETINFO.
    Client,
    /// `+OK` for the URL's database.
    Select,
    /// `+RESET`: the client's name is forgotten.
    Reset,
}

/// Why a command is not sent to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    PubSub,
    Transaction,
    Blocking,
    Stream,
    SharedConnection,
    Client,
    Select,
    Admin,
}

impl Why {
    /// The reason, after `ERR <NAME> is not proxied: `.
    fn reason(self) -> &'static str {
        match self {
            Why::PubSub => "pub/sub needs a connection of its own to Redis (PUBLISH is forwarded)",
            Why::Transaction => {
                "a transaction needs a connection of its own to Redis (EVAL is forwarded, and atomic)"
            }
            Why::Blocking => {
                "it would block the upstream connection other clients share (use the non-blocking form)"
            }
            Why::Stream => "it turns the connection into a stream, not one reply per command",
            Why::SharedConnection => "it would change the upstream connection other clients share",
            Why::Client => {
                "only CLIENT ID, GETNAME, SETNAME and SETINFO are answered, by the proxy; \
                 the rest are about the upstream connections, which clients share"
            }
            Why::Select => "this server serves the database of its --store URL only",
            Why::Admin => "server administration: run it against Redis directly",
        }
    }
}

/// What happens to `req` (at least one word). Names are matched in any
/// case; names longer than any listed here are forwarded (Redis answers
/// an unknown command itself).
pub(crate) fn route(req: &Request<'_>, db: u32) -> Route {
    let mut buf = [0; 16];
    match args::upper(req.arg(0), &mut buf) {
        b"SUBSCRIBE" | b"UNSUBSCRIBE" | b"PSUBSCRIBE" | b"PUNSUBSCRIBE" | b"SSUBSCRIBE"
        | b"SUNSUBSCRIBE" => Route::Refuse(Why::PubSub),
        b"MULTI" | b"EXEC" | b"DISCARD" | b"WATCH" | b"UNWATCH" => Route::Refuse(Why::Transaction),
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
        | b"BZMPOP" | b"WAIT" | b"WAITAOF" => Route::Refuse(Why::Blocking),
        b"XREAD" | b"XREADGROUP" if blocks(req) => Route::Refuse(Why::Blocking),
        b"MONITOR" | b"SYNC" | b"PSYNC" | b"REPLCONF" => Route::Refuse(Why::Stream),
        b"AUTH" | b"READONLY" | b"READWRITE" | b"ASKING" => Route::Refuse(Why::SharedConnection),
        b"SHUTDOWN" | b"DEBUG" | b"REPLICAOF" | b"SLAVEOF" | b"FAILOVER" | b"MODULE" => {
            Route::Refuse(Why::Admin)
        }
        b"CONFIG" if req.len() >= 2 && is(req, 1, "GET") => Route::Forward,
        b"CONFIG" => Route::Refuse(Why::Admin),
        b"CLIENT" if req.len() >= 2 => match args::upper(req.arg(1), &mut [0; 16]) {
            b"ID" | b"GETNAME" | b"SETNAME" | b"SETINFO" => Route::Local(Local::Client),
            _ => Route::Refuse(Why::Client),
        },
        b"CLIENT" => Route::Refuse(Why::Client),
        b"SELECT" if req.len() == 2 && parse_i64(req.arg(1)) != Some(i64::from(db)) => {
            Route::Refuse(Why::Select)
        }
        b"SELECT" => Route::Local(Local::Select),
        b"QUIT" => Route::Local(Local::Quit),
        b"HELLO" => Route::Local(Local::Hello),
        b"RESET" => Route::Local(Local::Reset),
        _ => Route::Forward,
    }
}

/// The key a Redis Cluster routes `req` by: its first key, `None` for a
/// command about no key (any node answers it). A command whose keys span
/// slots is routed by the first, and Redis answers it `-CROSSSLOT`. A
/// guess that is wrong costs one `-MOVED`, which the client follows, never
/// a wrong answer: a node runs only commands on the slots it serves.
pub(crate) fn first_key<'a>(req: &Request<'a>) -> Option<&'a [u8]> {
    let mut buf = [0; 16];
    let at = match args::upper(req.arg(0), &mut buf) {
        b"PING" | b"ECHO" | b"INFO" | b"DBSIZE" | b"TIME" | b"KEYS" | b"SCAN" | b"RANDOMKEY"
        | b"FLUSHDB" | b"FLUSHALL" | b"COMMAND" | b"CONFIG" | b"CLUSTER" | b"LASTSAVE"
        | b"SCRIPT" | b"FUNCTION" | b"LATENCY" | b"SLOWLOG" | b"ROLE" | b"LOLWUT" | b"SAVE"
        | b"BGSAVE" | b"BGREWRITEAOF" | b"SWAPDB" | b"PUBLISH" | b"PUBSUB" | b"ACL" => {
            return None;
        }
        // numkeys, then the keys.
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            return (req.len() > 3 && parse_i64(req.arg(2)).is_some_and(|n| n > 0))
                .then(|| req.arg(3));
        }
        b"ZINTER" | b"ZUNION" | b"ZDIFF" | b"ZINTERCARD" | b"SINTERCARD" | b"LMPOP" | b"ZMPOP" => 2,
        // A subcommand or an operation first.
        b"OBJECT" | b"MEMORY" | b"BITOP" | b"XINFO" | b"XGROUP" => 2,
        b"XREAD" | b"XREADGROUP" => (1..req.len()).find(|&i| is(req, i, "STREAMS"))? + 1,
        _ => 1,
    };
    (at < req.len()).then(|| req.arg(at))
}

/// True when an XREAD or XREADGROUP has a BLOCK option (before STREAMS;
/// a group or consumer named BLOCK does not count).
fn blocks(req: &Request<'_>) -> bool {
    let mut i = 1;
    while i < req.len() {
        if is(req, i, "BLOCK") {
            return true;
        }
        if is(req, i, "STREAMS") {
            return false;
        }
        i += if is(req, i, "GROUP") {
            3
        } else if is(req, i, "COUNT") {
            2
        } else {
            1
        };
    }
    false
}

impl Proxy {
    /// A client connection; upstream connections use database `db`.
    pub(crate) fn new(db: u32, max_bulk: usize, id: u64) -> Proxy {
        Proxy {
            parser: Parser::new(max_bulk),
            db,
            session: Session {
                id,
                ..Session::default()
            },
            resp3: false,
            waiting: None,
        }
    }

    fn run(&mut self, req: &Request<'_>, cx: &mut Cx<'_>) -> Next {
        let mut out = Reply {
            out: cx.out,
            resp3: self.resp3,
        };
        let next = match route(req, self.db) {
            Route::Forward => return Next::Offload(Job::Remote(self.forward(req))),
            Route::Local(local) => self.local(local, req, &mut out),
            Route::Refuse(why) => {
                refuse(req.arg(0), why, &mut out);
                Next::Answered
            }
        };
        self.resp3 = out.resp3;
        next
    }

    /// The request for Redis: `req` re-encoded, in RESP3 if the client
    /// speaks it ([`Sent::InResp3`]).
    fn forward(&mut self, req: &Request<'_>) -> remote::Request {
        let words: Vec<&[u8]> = req.args_from(0).collect();
        let mut commands =
            Vec::with_capacity(64 + words.iter().map(|w| w.len() + 16).sum::<usize>());
        let sent = if self.resp3 {
            remote::encode(&[b"HELLO", b"3"], &mut commands);
            remote::encode(&words, &mut commands);
            remote::encode(&[b"HELLO", b"2"], &mut commands);
            Sent::InResp3
        } else {
            remote::encode(&words, &mut commands);
            Sent::Plain
        };
        self.waiting = Some(sent);
        let request = remote::Request::new(commands, if sent == Sent::InResp3 { 3 } else { 1 });
        match first_key(req) {
            Some(key) => request.routed_by(key),
            None => request,
        }
    }

    /// Answers a command about this client's connection.
    fn local(&mut self, which: Local, req: &Request<'_>, out: &mut Reply<'_>) -> Next {
        match which {
            Local::Quit => {
                out.ok();
                return Next::Last;
            }
            Local::Hello if (2..req.len()).any(|i| is(req, i, "AUTH")) => {
                refuse(req.arg(0), Why::SharedConnection, out)
            }
            Local::Hello => {
                conn::hello(&mut self.session, out.resp3, req, out);
            }
            Local::Client => conn::client(&mut self.session, req, out),
            Local::Select if req.len() != 2 => {
                out.error("ERR wrong number of arguments for 'select' command")
            }
            Local::Select => out.ok(),
            Local::Reset => {
                self.session.name = None;
                out.resp3 = false;
                out.simple("RESET");
            }
        }
        Next::Answered
    }
}

/// `-ERR <NAME> is not proxied: <why>`.
fn refuse(name: &[u8], why: Why, out: &mut Reply<'_>) {
    let mut upper = [0; 16];
    // The name is one of the table's: printable.
    let name = String::from_utf8_lossy(args::upper(name, &mut upper));
    out.error(&format!("ERR {name} is not proxied: {}", why.reason()));
}

/// The client's reply in what Redis answered a request sent `sent`
/// (whole replies, as many as asked: the driver read them so); `None` if
/// it is not there, which a driver bug would be.
fn client_reply(sent: Sent, replies: &[u8]) -> Option<&[u8]> {
    match sent {
        Sent::Plain => Some(replies),
        Sent::InResp3 => {
            // HELLO 3's, the command's, HELLO 2's.
            let start = remote::reply::len(replies, 1).ok()??;
            let end = remote::reply::len(replies, 2).ok()??;
            Some(&replies[start..end])
        }
    }
}

impl Service for Proxy {
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        // A detached parser: `run` needs `&mut self`.
        let mut parser = std::mem::replace(&mut self.parser, Parser::new(0));
        let done = resp::one_request(&mut parser, input, cx, |req, cx| self.run(req, cx));
        self.parser = parser;
        done
    }

    /// Redis answered (or could not be reached): its reply, verbatim.
    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        let Some(sent) = self.waiting.take() else {
            log::error!(
                "peer={} kv proxy: a job nobody waited for: {done:?}",
                cx.peer
            );
            return Next::Close;
        };
        match done {
            JobOutput::Remote(Answer::Replies(replies)) => match client_reply(sent, &replies) {
                Some(reply) => cx.out.extend_from_slice(reply),
                None => {
                    log::error!("peer={} kv proxy: replies cut short: {sent:?}", cx.peer);
                    cx.out.extend_from_slice(UNAVAILABLE);
                }
            },
            JobOutput::Remote(Answer::Unavailable) => cx.out.extend_from_slice(UNAVAILABLE),
            other => {
                log::error!("peer={} kv proxy: unexpected job output {other:?}", cx.peer);
                return Next::Close;
            }
        }
        Next::Answered
    }

    fn in_body(&self) -> bool {
        self.parser.in_frame()
    }
}

#[cfg(test)]
mod tests;
