//! `kv`: the subset of Redis' RESP2 protocol that `redis-cli` and
//! `redis-benchmark` need, over the same shared [`Store`] as `todo`.
//!
//! Requests are multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`, what clients
//! send) or inline (`GET k\r\n`, typed in `nc`; split on spaces and tabs,
//! no quoting). Commands, case-insensitive:
//!
//! | command | reply |
//! |---|---|
//! | `PING [msg]`, `ECHO msg` | `+PONG` or the message |
//! | `GET key` | the value, or nil |
//! | `SET key value` | `+OK`; any option (`EX`, `NX`, ...) is `-ERR syntax error` |
//! | `DEL key...`, `EXISTS key...` | how many (`EXISTS` counts repeats, as Redis) |
//! | `INCR key` | the new value; `-ERR value is not an integer or out of range` |
//! | `DBSIZE` | the number of keys |
//! | `QUIT` | `+OK`, then the connection is closed |
//! | `COMMAND [COUNT\|DOCS\|INFO\|LIST]` | empty arrays (redis-cli 7 then uses its own help) |
//! | `CONFIG GET name...` | `save`, `appendonly`, `appendfsync`; others are left out |
//!
//! Errors: `-ERR unknown command 'X'`, `-ERR wrong number of arguments for
//! 'get' command`, and for malformed frames `-ERR Protocol error: ...`
//! followed by a close (we cannot find the next request in a broken stream).
//!
//! Keys and values are binary-safe (the store holds bytes). Requests are
//! parsed into ranges of the input and `GET` copies the value straight into
//! the output under the store's lock: no allocation per `GET` or per `SET`
//! of an existing key. One request is answered per call (the driver contract).
//!
//! Under `--fsync always`, `SET`, `DEL` and `INCR` return the store's
//! [`Job::Store`] and reply in `resume`, once their record is on disk.
//!
//! No I/O here, like every service.

use std::fmt;
use std::sync::Arc;

mod resp;

use self::resp::{Parsed, Parser, Request};

use super::{Cx, Factory, Job, JobOutput, Next, Service, Shared};
use crate::store::{self, Done, IncrError, Seq, Store};

pub use self::resp::DEFAULT_MAX_BULK;

/// The commands, with Redis' arity: `n` exactly n words, `-n` at least n.
const COMMANDS: &[(&str, Cmd, i32)] = &[
    ("get", Cmd::Get, 2),
    ("set", Cmd::Set, -3),
    ("ping", Cmd::Ping, -1),
    ("echo", Cmd::Echo, 2),
    ("del", Cmd::Del, -2),
    ("exists", Cmd::Exists, -2),
    ("incr", Cmd::Incr, 2),
    ("dbsize", Cmd::DbSize, 1),
    ("quit", Cmd::Quit, -1),
    ("command", Cmd::Command, -1),
    ("config", Cmd::Config, -2),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Get,
    Set,
    Ping,
    Echo,
    Del,
    Exists,
    Incr,
    DbSize,
    Quit,
    Command,
    Config,
}

/// A write's reply, held while its record is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    Ok,
    Int(i64),
}

/// One `kv` connection.
#[derive(Debug)]
pub struct Kv {
    store: Store,
    /// The request being received, and its words once whole.
    parser: Parser,
    /// The reply a write gives once its record is durable (`resume`).
    waiting: Option<Ack>,
}

impl Kv {
    /// A connection over `store`, refusing bulks over `max_bulk` bytes.
    pub fn new(store: Store, max_bulk: usize) -> Kv {
        Kv {
            store,
            parser: Parser::new(max_bulk),
            waiting: None,
        }
    }
}

/// Runs one request.
fn execute(
    store: &Store,
    waiting: &mut Option<Ack>,
    request: Request<'_>,
    out: &mut Vec<u8>,
) -> Next {
    {
        let arg = |i: usize| request.arg(i);
        let name = request.arg(0);
        let Some(&(lower, command, arity)) = COMMANDS
            .iter()
            .find(|(lower, ..)| name.eq_ignore_ascii_case(lower.as_bytes()))
        else {
            out.extend_from_slice(b"-ERR unknown command '");
            printable(name, out);
            out.extend_from_slice(b"'\r\n");
            return Next::Answered;
        };
        let n = request.len();
        if (arity >= 0 && n != arity as usize) || n < arity.unsigned_abs() as usize {
            arity_error(lower, out);
            return Next::Answered;
        }
        match command {
            Cmd::Get => store.get_with(arg(1), |value| match value {
                Some(value) => bulk(value, out),
                None => out.extend_from_slice(b"$-1\r\n"),
            }),
            Cmd::Set if n > 3 => out.extend_from_slice(b"-ERR syntax error\r\n"),
            Cmd::Set => {
                let seq = store.set(arg(1), arg(2));
                return ack(store, waiting, Ack::Ok, seq, out);
            }
            Cmd::Ping if n > 2 => arity_error("ping", out),
            Cmd::Ping if n == 2 => bulk(arg(1), out),
            Cmd::Ping => out.extend_from_slice(b"+PONG\r\n"),
            Cmd::Echo => bulk(arg(1), out),
            Cmd::Del => {
                let (removed, seq) = store.del(request.args_from(1));
                if removed > 0 {
                    return ack(store, waiting, Ack::Int(removed as i64), seq, out);
                }
                integer(0, out);
            }
            Cmd::Exists => {
                let found = (1..n).filter(|&i| store.contains(arg(i))).count();
                integer(found as i64, out);
            }
            Cmd::Incr => match store.incr(arg(1)) {
                Ok((value, seq)) => return ack(store, waiting, Ack::Int(value), seq, out),
                Err(IncrError::NotAnInteger) => {
                    out.extend_from_slice(b"-ERR value is not an integer or out of range\r\n")
                }
                Err(IncrError::Overflow) => {
                    out.extend_from_slice(b"-ERR increment or decrement would overflow\r\n")
                }
            },
            Cmd::DbSize => integer(store.len() as i64, out),
            Cmd::Quit => {
                out.extend_from_slice(b"+OK\r\n");
                return Next::Last;
            }
            Cmd::Command => command_command(if n > 1 { Some(arg(1)) } else { None }, out),
            Cmd::Config => config(arg(1), request.args_from(2), store.policy(), out),
        }
        Next::Answered
    }
}

/// Acknowledges a change now, or returns the job after which `resume` will.
fn ack(store: &Store, waiting: &mut Option<Ack>, reply: Ack, seq: Seq, out: &mut Vec<u8>) -> Next {
    if let Some(work) = store.sync_work(seq) {
        *waiting = Some(reply);
        return Next::Offload(Job::Store(work));
    }
    write_ack(reply, out);
    Next::Answered
}

fn write_ack(reply: Ack, out: &mut Vec<u8>) {
    match reply {
        Ack::Ok => out.extend_from_slice(b"+OK\r\n"),
        Ack::Int(n) => integer(n, out),
    }
}

fn arity_error(name: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"-ERR wrong number of arguments for '");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"' command\r\n");
}

/// `COMMAND`: enough for redis-cli 7 to start (it asks `COMMAND DOCS` for
/// its hints, and falls back to its built-in help on an empty answer).
fn command_command(sub: Option<&[u8]>, out: &mut Vec<u8>) {
    match sub {
        Some(sub) if sub.eq_ignore_ascii_case(b"count") => integer(COMMANDS.len() as i64, out),
        None => out.extend_from_slice(b"*0\r\n"),
        Some(sub)
            if [&b"docs"[..], b"info", b"list"]
                .iter()
                .any(|s| sub.eq_ignore_ascii_case(s)) =>
        {
            out.extend_from_slice(b"*0\r\n")
        }
        Some(sub) => unknown_subcommand(sub, "COMMAND", out),
    }
}

/// `CONFIG GET`: the settings redis-benchmark asks for (`save`,
/// `appendonly`), answered truthfully for this server; unknown names are
/// left out of the reply, as Redis does.
fn config<'a>(
    sub: &[u8],
    params: impl Iterator<Item = &'a [u8]> + Clone,
    policy: Option<store::Fsync>,
    out: &mut Vec<u8>,
) {
    if !sub.eq_ignore_ascii_case(b"get") {
        return unknown_subcommand(sub, "CONFIG", out);
    }
    let appendonly: &[u8] = if policy.is_some() { b"yes" } else { b"no" };
    let appendfsync: &[u8] = match policy {
        Some(store::Fsync::Always) => b"always",
        Some(store::Fsync::Everysec) | None => b"everysec",
        Some(store::Fsync::No) => b"no",
    };
    let value = |name: &[u8]| -> Option<(&'static str, &[u8])> {
        if name.eq_ignore_ascii_case(b"save") {
            Some(("save", b""))
        } else if name.eq_ignore_ascii_case(b"appendonly") {
            Some(("appendonly", appendonly))
        } else if name.eq_ignore_ascii_case(b"appendfsync") {
            Some(("appendfsync", appendfsync))
        } else {
            None
        }
    };
    let found = params.clone().filter_map(value).count();
    array(2 * found, out);
    for (name, value) in params.filter_map(value) {
        bulk(name.as_bytes(), out);
        bulk(value, out);
    }
}

fn unknown_subcommand(sub: &[u8], command: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"-ERR unknown subcommand '");
    printable(sub, out);
    out.extend_from_slice(b"'. Try ");
    out.extend_from_slice(command.as_bytes());
    out.extend_from_slice(b" HELP.\r\n");
}

/// Copies a client's word into an error line: at most 128 bytes, CR and LF
/// made spaces (they would end the error line early), as Redis does.
fn printable(word: &[u8], out: &mut Vec<u8>) {
    out.extend(word.iter().take(128).map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
}

fn integer(n: i64, out: &mut Vec<u8>) {
    line(b':', n, out);
}

fn array(len: usize, out: &mut Vec<u8>) {
    line(b'*', len as i64, out);
}

fn bulk(value: &[u8], out: &mut Vec<u8>) {
    line(b'$', value.len() as i64, out);
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `<kind><n>\r\n`, formatted without allocating.
fn line(kind: u8, n: i64, out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl Service for Kv {
    /// Answers the first whole request in `input`. A frame that does not
    /// end in `input` is consumed into the parser's state ([`resp`] docs).
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            if rest.is_empty() {
                return (consumed, Next::Wait);
            }
            match self.parser.parse(rest) {
                Parsed::Partial => return (input.len(), Next::Wait),
                Parsed::Empty { consumed: len } => consumed += len,
                Parsed::Malformed(reason) => {
                    log::debug!("peer={} kv protocol error: {reason}", cx.peer);
                    cx.out.extend_from_slice(b"-ERR Protocol error: ");
                    cx.out.extend_from_slice(reason.as_bytes());
                    cx.out.extend_from_slice(b"\r\n");
                    return (input.len(), Next::Last);
                }
                Parsed::Request { consumed: len } => {
                    let request = self.parser.request(rest);
                    let next = execute(&self.store, &mut self.waiting, request, cx.out);
                    self.parser.done();
                    return (consumed + len, next);
                }
            }
        }
    }

    /// A write's record is on disk (or could not be written).
    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        let Some(reply) = self.waiting.take() else {
            log::error!("peer={} kv: a job nobody waited for: {done:?}", cx.peer);
            return Next::Close;
        };
        match done {
            JobOutput::Store(Done::Synced(_)) => write_ack(reply, cx.out),
            JobOutput::Store(Done::Failed(reason)) => {
                cx.out
                    .extend_from_slice(b"-ERR stored in memory but not on disk: ");
                printable(reason.as_bytes(), cx.out);
                cx.out.extend_from_slice(b"\r\n");
            }
            other => {
                log::error!("peer={} kv: unexpected job output {other:?}", cx.peer);
                return Next::Close;
            }
        }
        Next::Answered
    }
}

/// Makes `kv` connections; tells a client turned away in RESP.
struct KvFactory {
    store: Store,
    max_bulk: usize,
}

impl fmt::Debug for KvFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvFactory").finish_non_exhaustive()
    }
}

impl Factory for KvFactory {
    fn name(&self) -> &'static str {
        "kv"
    }
    fn make(&self) -> Box<dyn Service> {
        Box::new(Kv::new(self.store.clone(), self.max_bulk))
    }
    fn busy_reply(&self) -> &'static [u8] {
        b"-ERR max number of clients reached\r\n"
    }
}

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    Arc::new(KvFactory {
        store: shared.store.clone(),
        max_bulk: shared.limits.kv_max_bulk,
    })
}

#[cfg(test)]
mod tests;
