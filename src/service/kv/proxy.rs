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
//! HELLO in RESP2, SELECT of the URL's database, CLIENT ID / GETNAME /
//! SETNAME / SETINFO, RESET), or refused with `-ERR <NAME> is not proxied:
//! <why>`. docs/PROTOCOLS.md has the table.
//!
//! Only RESP2 is spoken to the client: `HELLO 3` is refused with
//! `NOPROTO`, since Redis' replies are passed on as they are (in RESP2,
//! the protocol every upstream connection speaks).
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
    /// A request is out to Redis; `resume` writes its reply.
    waiting: bool,
}

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
    /// The RESP2 `HELLO` reply; `HELLO 3` is `NOPROTO`.
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
            waiting: false,
        }
    }

    fn run(&mut self, req: &Request<'_>, cx: &mut Cx<'_>) -> Next {
        let mut out = Reply {
            out: cx.out,
            resp3: false,
        };
        match route(req, self.db) {
            Route::Forward => {
                let words: Vec<&[u8]> = req.args_from(0).collect();
                let mut commands =
                    Vec::with_capacity(16 + words.iter().map(|w| w.len() + 16).sum::<usize>());
                remote::encode(&words, &mut commands);
                self.waiting = true;
                return Next::Offload(Job::Remote(remote::Request {
                    commands,
                    replies: 1,
                }));
            }
            Route::Refuse(why) => {
                let mut name = [0; 16];
                let name = args::upper(req.arg(0), &mut name);
                // The name is one of the table's: printable.
                let name = String::from_utf8_lossy(name);
                out.error(&format!("ERR {name} is not proxied: {}", why.reason()));
            }
            Route::Local(Local::Quit) => {
                out.ok();
                return Next::Last;
            }
            Route::Local(Local::Hello) if req.len() >= 2 && parse_i64(req.arg(1)) == Some(3) => {
                out.error(
                    "NOPROTO unsupported protocol version: kv in front of Redis speaks RESP2 only (redis-py: protocol=2)",
                );
            }
            Route::Local(Local::Hello) => {
                conn::hello(&mut self.session, false, req, &mut out);
            }
            Route::Local(Local::Client) => conn::client(&mut self.session, req, &mut out),
            Route::Local(Local::Select) if req.len() != 2 => {
                out.error("ERR wrong number of arguments for 'select' command")
            }
            Route::Local(Local::Select) => out.ok(),
            Route::Local(Local::Reset) => {
                self.session.name = None;
                out.simple("RESET");
            }
        }
        Next::Answered
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
        if !std::mem::take(&mut self.waiting) {
            log::error!(
                "peer={} kv proxy: a job nobody waited for: {done:?}",
                cx.peer
            );
            return Next::Close;
        }
        match done {
            JobOutput::Remote(Answer::Replies(reply)) => cx.out.extend_from_slice(&reply),
            JobOutput::Remote(Answer::Unavailable) => {
                cx.out.extend_from_slice(b"-ERR store unavailable\r\n")
            }
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
mod tests {
    use super::*;
    use crate::service::testing::{assert_dialogue, run_until_job};

    fn proxy() -> Proxy {
        Proxy::new(2, 1024, 7)
    }

    /// The job the proxy asks for on `input`, and what it wrote first.
    fn forwarded(input: &[u8]) -> Vec<u8> {
        let (outcome, job) = run_until_job(proxy(), &[input]);
        assert_eq!(outcome.out, b"", "nothing answered before Redis");
        match job {
            Some(Job::Remote(request)) => {
                assert_eq!(request.replies, 1);
                request.commands
            }
            other => panic!("{input:?} was not forwarded: {other:?}"),
        }
    }

    #[test]
    fn requests_are_re_encoded_as_arrays_of_bulk_strings() {
        let array = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n";
        assert_eq!(forwarded(array), array);
        // Inline, quoted: the same command, binary-safe on the way up.
        assert_eq!(
            forwarded(b"set k \"a\\r\\nb\"\r\n"),
            b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"
        );
        assert_eq!(forwarded(b"PING\n"), b"*1\r\n$4\r\nPING\r\n");
        // Names are forwarded as the client spelled them; CONFIG GET and
        // an XREAD without BLOCK are plain commands.
        assert_eq!(
            forwarded(b"config get save\r\n"),
            b"*3\r\n$6\r\nconfig\r\n$3\r\nget\r\n$4\r\nsave\r\n"
        );
        assert_eq!(
            forwarded(b"XREADGROUP GROUP BLOCK c COUNT 1 STREAMS s >\r\n")[..4],
            *b"*9\r\n"
        );
        // Unknown to kv, and too long a name for the table: Redis decides.
        assert_eq!(
            forwarded(b"FROBNICATE_A_VERY_LONG_NAME\r\n"),
            b"*1\r\n$27\r\nFROBNICATE_A_VERY_LONG_NAME\r\n"
        );
    }

    #[test]
    fn kv_limits_hold_before_anything_is_sent() {
        // A bulk over --kv-max-bulk (1024 here) is a protocol error, and
        // nothing goes to Redis.
        let (outcome, job) = run_until_job(proxy(), &[b"*2\r\n$3\r\nGET\r\n$2000\r\n"]);
        assert_eq!(job, None);
        assert!(outcome.closed);
        assert_eq!(outcome.out, b"-ERR Protocol error: invalid bulk length\r\n");
    }

    #[test]
    fn refused_commands_are_answered_here_and_never_sent() {
        for (input, why) in [
            (&b"SUBSCRIBE news\r\n"[..], Why::PubSub),
            (b"psubscribe n*\r\n", Why::PubSub),
            (b"SUNSUBSCRIBE\r\n", Why::PubSub),
            (b"MULTI\r\n", Why::Transaction),
            (b"exec\r\n", Why::Transaction),
            (b"WATCH k\r\n", Why::Transaction),
            (b"BLPOP l 0\r\n", Why::Blocking),
            (b"BZPOPMIN z 1\r\n", Why::Blocking),
            (b"BLMOVE a b LEFT RIGHT 0\r\n", Why::Blocking),
            (b"WAIT 1 0\r\n", Why::Blocking),
            (b"XREAD COUNT 2 BLOCK 0 STREAMS s $\r\n", Why::Blocking),
            (
                b"XREADGROUP GROUP g c BLOCK 5 STREAMS s >\r\n",
                Why::Blocking,
            ),
            (b"MONITOR\r\n", Why::Stream),
            (b"PSYNC ? -1\r\n", Why::Stream),
            (b"AUTH secret\r\n", Why::SharedConnection),
            (b"READONLY\r\n", Why::SharedConnection),
            (b"SHUTDOWN NOSAVE\r\n", Why::Admin),
            (b"DEBUG SLEEP 10\r\n", Why::Admin),
            (b"CONFIG SET save x\r\n", Why::Admin),
            (b"CLIENT REPLY OFF\r\n", Why::Client),
            (b"CLIENT KILL ID 1\r\n", Why::Client),
            (b"CLIENT\r\n", Why::Client),
            (b"SELECT 0\r\n", Why::Select),
        ] {
            let (outcome, job) = run_until_job(proxy(), &[input]);
            assert_eq!(job, None, "{input:?} was sent");
            let name = input.split(|&b| b == b' ' || b == b'\r').next().unwrap();
            let expected = [
                b"-ERR ",
                name.to_ascii_uppercase().as_slice(),
                b" is not proxied: ",
                why.reason().as_bytes(),
                b"\r\n",
            ]
            .concat();
            assert_eq!(
                String::from_utf8_lossy(&outcome.out),
                String::from_utf8_lossy(&expected)
            );
        }
    }

    #[test]
    fn the_connection_commands_are_answered_here() {
        assert_dialogue(
            proxy,
            b"SELECT 2\r\nCLIENT SETNAME app\r\nCLIENT GETNAME\r\nCLIENT ID\r\n\
              CLIENT SETINFO LIB-NAME redis-py\r\nRESET\r\nCLIENT GETNAME\r\nHELLO 3\r\n",
            b"+OK\r\n+OK\r\n$3\r\napp\r\n:7\r\n+OK\r\n+RESET\r\n$-1\r\n\
              -NOPROTO unsupported protocol version: kv in front of Redis speaks RESP2 only (redis-py: protocol=2)\r\n",
        );
        let (outcome, job) = run_until_job(proxy(), &[b"HELLO 2\r\n"]);
        assert_eq!(job, None);
        assert!(
            outcome.out.starts_with(b"*14\r\n$6\r\nserver\r\n"),
            "{outcome:?}"
        );
        // QUIT answers and closes; what follows is not run.
        let (outcome, job) = run_until_job(proxy(), &[b"QUIT\r\nGET k\r\n"]);
        assert_eq!(
            (outcome.out.as_slice(), outcome.closed, job),
            (&b"+OK\r\n"[..], true, None)
        );
    }

    #[test]
    fn a_store_out_of_reach_is_an_error_reply_and_the_client_goes_on() {
        // Run by the test driver with no store configured in this process:
        // every forwarded command is answered Unavailable.
        assert_dialogue(
            proxy,
            b"GET k\r\nMULTI\r\nPING\r\n",
            b"-ERR store unavailable\r\n-ERR MULTI is not proxied: a transaction needs a \
              connection of its own to Redis (EVAL is forwarded, and atomic)\r\n\
              -ERR store unavailable\r\n",
        );
    }

    #[test]
    fn redis_replies_are_written_verbatim() {
        let mut service = proxy();
        let mut out = Vec::new();
        let mut cx = crate::service::testing::cx(&mut out);
        let (used, next) = service.input(b"LRANGE l 0 -1\r\n", &mut cx);
        assert!(matches!(next, Next::Offload(Job::Remote(_))), "{next:?}");
        assert_eq!(used, 15);
        let reply = b"*2\r\n$1\r\na\r\n$-1\r\n".to_vec();
        let next = service.resume(JobOutput::Remote(Answer::Replies(reply.clone())), &mut cx);
        assert_eq!((next, out), (Next::Answered, reply));
    }
}
