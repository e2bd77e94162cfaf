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
//! most one reply and one request in memory here. A pipeline goes up in
//! batches, and a batch holds at most one command whose reply can be
//! large ([`SMALL_REPLIES`]), so its replies cost that one reply and some
//! short ones.
//!
//! # Redis Cluster
//!
//! Over a cluster (`--store redis-cluster://`) each command goes up alone,
//! routed by its first key ([`first_key`]): the blocking client sends it
//! to the master of that key's slot and follows `-MOVED`/`-ASK`. A
//! pipeline is not batched there: its commands may be on different slots,
//! and a redirected batch could have had some of its commands run already.
//!
//! No I/O here, like every service: the driver sends the job.

use super::args::{self, is};
use super::conn::{self, Session};
use super::reply::Reply;
use super::resp::{self, Parsed, Parser, Request, parse_i64};
use crate::remote::{self, Answer, Redis};
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
    /// The store is a Redis Cluster: each command goes up alone, routed by
    /// its first key.
    cluster: bool,
    /// A batch is out to Redis; `resume` writes its replies.
    waiting: Option<Sent>,
}

/// How a batch of the client's commands went to Redis, to find the
/// client's replies in what comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    /// How many of the client's commands, back to back (a pipeline).
    commands: u32,
    /// Between `HELLO 3` and `HELLO 2`: two more replies, first and last,
    /// and the client's in RESP3. The upstream connection is back in RESP2
    /// after it, and a request is sent whole on one connection, so no
    /// other client's command runs in between.
    resp3: bool,
    /// More commands may join: every command so far has a small reply
    /// ([`small_reply`]).
    open: bool,
}

/// The most commands of one client sent upstream as one batch, and the
/// size past which no further command joins it: a pipelined client costs
/// one job per batch, not per command.
const MAX_BATCH: u32 = 128;
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Commands whose reply is small whatever the data: a status, an integer,
/// a short number, or (`PING`, `ECHO`) the request's own argument. A batch
/// takes any number of these and at most one other command, last (a `GET`
/// may answer 512 MiB): the batch's replies, which wait whole in memory,
/// then cost at most one unbounded reply, as without batching (rule 6).
const SMALL_REPLIES: &[&str] = &[
    "APPEND",
    "DECR",
    "DECRBY",
    "DEL",
    "ECHO",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "HDEL",
    "HEXISTS",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HLEN",
    "HSET",
    "HSETNX",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "LLEN",
    "LPUSH",
    "LPUSHX",
    "MSET",
    "MSETNX",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PING",
    "PSETEX",
    "PTTL",
    "PUBLISH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SCARD",
    "SETEX",
    "SETNX",
    "SISMEMBER",
    "SREM",
    "STRLEN",
    "TTL",
    "UNLINK",
    "ZADD",
    "ZCARD",
    "ZINCRBY",
    "ZREM",
];

/// Whether `req`'s reply is small ([`SMALL_REPLIES`]; `SET` unless it
/// has `GET`, which answers the old value).
fn small_reply(req: &Request<'_>) -> bool {
    let mut upper = [0; 16];
    let name = args::upper(req.arg(0), &mut upper);
    if name == b"SET" {
        return !(3..req.len()).any(|i| is(req, i, "GET"));
    }
    SMALL_REPLIES.iter().any(|small| small.as_bytes() == name)
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
    /// A client connection to `store`.
    pub(crate) fn new(store: &Redis, max_bulk: usize, id: u64) -> Proxy {
        Proxy {
            parser: Parser::new(max_bulk),
            db: store.db(),
            cluster: store.is_cluster(),
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
            Route::Forward => {
                let mut commands = Vec::with_capacity(encoded_len(req) + 32);
                if self.resp3 {
                    remote::encode(&[b"HELLO", b"3"], &mut commands);
                }
                remote::encode_words(req.args_from(0), &mut commands);
                self.waiting = Some(Sent {
                    commands: 1,
                    resp3: self.resp3,
                    open: small_reply(req),
                });
                // The replies are counted when the batch is closed.
                let request = remote::Request::new(commands, 0);
                return Next::Offload(Job::Remote(match first_key(req) {
                    Some(key) if self.cluster => request.routed_by(key),
                    _ => request,
                }));
            }
            Route::Local(local) => self.local(local, req, &mut out),
            Route::Refuse(why) => {
                refuse(req.arg(0), why, &mut out);
                Next::Answered
            }
        };
        self.resp3 = out.resp3;
        next
    }

    /// Adds the complete commands behind the first of a batch to it, while
    /// they are forwarded ones, the batch is open (small replies so far)
    /// and under its caps; returns the bytes taken. A command that is not
    /// forwarded (or not whole) stays in `input` for after the batch's
    /// replies, so replies keep their order.
    fn gather(&mut self, input: &[u8], request: &mut remote::Request, cx: &mut Cx<'_>) -> usize {
        let sent = self.waiting.as_mut().expect("gather follows a forward");
        let mut consumed = 0;
        while sent.open && sent.commands < MAX_BATCH && request.commands.len() < MAX_BATCH_BYTES {
            let rest = &input[consumed..];
            if rest.is_empty() {
                break;
            }
            match self.parser.parse(rest) {
                Parsed::Request { consumed: len } => {
                    let req = self.parser.request(rest);
                    if route(&req, self.db) != Route::Forward {
                        self.parser.done(); // parsed again after the batch
                        break;
                    }
                    remote::encode_words(req.args_from(0), &mut request.commands);
                    sent.commands += 1;
                    sent.open = small_reply(&req);
                    self.parser.done();
                    consumed += len;
                }
                Parsed::Empty { consumed: len } => consumed += len,
                // The start of the next frame is kept by the parser.
                Parsed::Partial => return input.len(),
                Parsed::Malformed(_) => {
                    self.parser.done(); // the error is answered after the batch
                    break;
                }
            }
        }
        log::trace!(
            "peer={} kv proxy: {} commands in one batch",
            cx.peer,
            sent.commands
        );
        consumed
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

/// Every command of the batch answered `-ERR store unavailable`: one
/// reply per command, as the client counts them.
fn unavailable(sent: Sent, cx: &mut Cx<'_>) {
    for _ in 0..sent.commands {
        cx.out.extend_from_slice(UNAVAILABLE);
    }
}

/// `-ERR <NAME> is not proxied: <why>`.
fn refuse(name: &[u8], why: Why, out: &mut Reply<'_>) {
    let mut upper = [0; 16];
    // The name is one of the table's: printable.
    let name = String::from_utf8_lossy(args::upper(name, &mut upper));
    out.error(&format!("ERR {name} is not proxied: {}", why.reason()));
}

/// The client's replies in what Redis answered a batch sent `sent`
/// (whole replies, as many as asked: the driver read them so); `None` if
/// it is not there, which a driver bug would be.
fn client_replies(sent: Sent, replies: &[u8]) -> Option<&[u8]> {
    if !sent.resp3 {
        return Some(replies);
    }
    // HELLO 3's, the commands', HELLO 2's.
    let start = remote::reply::len(replies, 1).ok()??;
    let end = remote::reply::len(replies, 1 + sent.commands as usize).ok()??;
    Some(&replies[start..end])
}

/// About how long `req` is once encoded, to size the buffer once.
fn encoded_len(req: &Request<'_>) -> usize {
    req.args_from(0).map(|word| word.len() + 16).sum()
}

impl Service for Proxy {
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        // A detached parser: `run` needs `&mut self`.
        let mut parser = std::mem::replace(&mut self.parser, Parser::new(0));
        let (mut consumed, mut next) =
            resp::one_request(&mut parser, input, cx, |req, cx| self.run(req, cx));
        self.parser = parser;
        if let Next::Offload(Job::Remote(request)) = &mut next {
            // A pipeline: the commands already here go up with it (one
            // at a time to a cluster).
            if !self.cluster {
                consumed += self.gather(&input[consumed..], request, cx);
            }
            let sent = self.waiting.expect("a forward waits");
            if sent.resp3 {
                remote::encode(&[b"HELLO", b"2"], &mut request.commands);
            }
            request.replies = sent.commands as usize + if sent.resp3 { 2 } else { 0 };
        }
        (consumed, next)
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
            JobOutput::Remote(Answer::Replies(replies)) => match client_replies(sent, &replies) {
                Some(replies) => cx.out.extend_from_slice(replies),
                None => {
                    log::error!("peer={} kv proxy: replies cut short: {sent:?}", cx.peer);
                    unavailable(sent, cx);
                }
            },
            JobOutput::Remote(Answer::Unavailable) => unavailable(sent, cx),
            other => {
                log::error!("peer={} kv proxy: unexpected job output {other:?}", cx.peer);
                return Next::Close;
            }
        }
        match sent.commands {
            1 => Next::Answered,
            n => Next::AnsweredMany(n),
        }
    }

    fn in_body(&self) -> bool {
        self.parser.in_frame()
    }
}

#[cfg(test)]
mod tests;
