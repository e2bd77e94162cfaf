//! `kv`: a Redis-compatible server over the same shared [`Store`] as
//! `todo`. redis-cli, redis-benchmark and client libraries (redis-py, with
//! its RESP3 handshake) work against it unmodified. With `--store
//! redis://` it is a proxy to that Redis instead (`proxy`).
//!
//! # Files
//!
//! | file | what |
//! |---|---|
//! | [`resp`], `inline` | the incremental request parser, Redis' limits; inline splitting |
//! | [`reply`] | replies in RESP2 or RESP3 (`HELLO 3`) |
//! | [`table`] | every command, its arity, what runs it |
//! | `strings`, `keys`, `lists`, `hashes`, `sets`, `zsets` | the data commands |
//! | [`conn`] | HELLO, CLIENT, SELECT, INFO, CONFIG, COMMAND, TIME |
//! | `multi` | EXEC and WATCH |
//! | `proxy` | kv in front of Redis (`--store redis://`): what is forwarded, answered, refused |
//! | this file | the connection: one request per call, queueing for MULTI, durability |
//! | `testing` | the parser fed reads as this file feeds it, for `fuzz/` (hidden, not an API) |
//!
//! # A request's path
//!
//! Parse one frame ([`resp::Parser`]: zero copies when the frame is whole
//! in the input), look its name up (one hash lookup), check the arity, then
//! run it: a data command runs on the keyspace under the store's lock
//! ([`Store::tx`]) and writes its reply straight into `cx.out`. A change is
//! a typed record in the store's append-only log (`crate::store::db`), so
//! every type and deadline survives a restart.
//!
//! Under `--fsync always` a reply that follows a change is held back: the
//! service returns the store's [`Job::Store`] and sends the reply in
//! `resume`, once the record is on disk (group commit).
//!
//! # Transactions
//!
//! `MULTI` queues commands (checked for existence and arity as they come:
//! an error marks the transaction, and `EXEC` then answers `EXECABORT` and
//! runs nothing). `EXEC` runs the queue in one [`Store::tx`], so no other
//! connection's command comes in between. `WATCH`ed keys carry a version
//! the keyspace bumps on every change; if any moved, `EXEC` answers null.
//!
//! # Time
//!
//! Deadlines are absolute (ms since the Unix epoch) from `cx.wall`, so they
//! survive a restart. Keys expire lazily when looked at; the event loop's
//! timer calls [`Store::expire_cycle`] for the rest.
//!
//! Errors use Redis' texts (`ERR wrong number of arguments for 'get'
//! command`, `WRONGTYPE ...`); a malformed frame gets `-ERR Protocol error:
//! ...` and a close. Pub/sub (`pubsub`) goes through the server's
//! [`crate::broker::Broker`]: a message for this connection arrives in its
//! mailbox and is written by [`Service::deliver`]. No I/O here, like every
//! service.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod args;
mod conn;
mod hashes;
mod inline;
mod keys;
mod lists;
mod multi;
mod proxy;
mod pubsub;
mod reply;
mod resp;
mod sets;
mod strings;
mod table;
#[doc(hidden)] // for fuzz/, not an API
pub mod testing;
mod zsets;

pub use self::resp::DEFAULT_MAX_BULK;

use self::conn::Session;
use self::reply::Reply;
use self::resp::{Parser, Request};
use self::table::{Conn, Kind};
use super::{Backend, Cx, Factory, Job, JobOutput, Next, Service, Shared};
use crate::store::{Done, Store, Tx};

/// One `kv` connection.
#[derive(Debug)]
pub struct Kv {
    store: Store,
    /// The request being received, and its words once whole.
    parser: Parser,
    /// `HELLO 3` was accepted.
    resp3: bool,
    session: Session,
    /// Inside `MULTI`: the queued commands, and whether one was refused.
    multi: Option<Multi>,
    /// `WATCH`ed keys and their versions then.
    watching: Vec<(Vec<u8>, u64)>,
    /// A reply held until its change is durable (`--fsync always`).
    held: Vec<u8>,
    /// Waiting for that job; and whether the connection closes after it.
    waiting: Option<After>,
    /// The longest bulk accepted (`--kv-max-bulk`), for CONFIG GET.
    max_bulk: usize,
}

/// What comes after a held reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Answered,
    Last,
}

/// A transaction being queued.
#[derive(Debug, Default)]
struct Multi {
    /// Each command's bytes and the ranges of its words.
    queued: Vec<(Vec<u8>, Vec<Range<usize>>)>,
    /// An error while queueing: EXEC will answer EXECABORT.
    failed: bool,
}

/// Numbers connections for `CLIENT ID`.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Kv {
    /// A connection over `store`, refusing bulks over `max_bulk` bytes.
    pub fn new(store: Store, max_bulk: usize) -> Kv {
        Kv {
            store,
            parser: Parser::new(max_bulk),
            resp3: false,
            session: Session {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                ..Session::default()
            },
            multi: None,
            watching: Vec::new(),
            held: Vec::new(),
            waiting: None,
            max_bulk,
        }
    }

    /// Runs one whole request and says what follows.
    fn run(&mut self, request: &Request<'_>, cx: &mut Cx<'_>) -> Next {
        let mark = cx.out.len();
        let mut out = Reply {
            out: cx.out,
            resp3: self.resp3,
        };
        let name = request.arg(0);
        let doorbells = cx.doorbells;
        let Some(command) = table::lookup(name).filter(|c| c.arity_ok(request.len())) else {
            refuse(name, request, &mut out);
            if let Some(multi) = &mut self.multi {
                multi.failed = true;
            }
            return Next::Answered;
        };
        if let Some(multi) = &mut self.multi
            && !matches!(
                command.kind,
                Kind::Conn(
                    Conn::Exec
                        | Conn::Discard
                        | Conn::Multi
                        | Conn::Watch
                        | Conn::Quit
                        | Conn::Reset
                )
            )
        {
            let (data, words) = request.parts();
            multi.queued.push((data.to_vec(), words.to_vec()));
            out.simple("QUEUED");
            return Next::Answered;
        }
        if !out.resp3
            && self.session.pubsub.active()
            && !pubsub::allowed_while_subscribed(command.name)
        {
            out.error(&format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                command.name
            ));
            return Next::Answered;
        }
        let mut after = After::Answered;
        let (_, changed) = match command.kind {
            Kind::Conn(which @ (Conn::Subscribe | Conn::PSubscribe)) => {
                let kind = which.subscription_kind();
                self.session
                    .pubsub
                    .subscribe(kind, request, doorbells, &mut out);
                ((), None)
            }
            Kind::Conn(which @ (Conn::Unsubscribe | Conn::PUnsubscribe)) => {
                let kind = which.subscription_kind();
                self.session.pubsub.unsubscribe(kind, request, &mut out);
                ((), None)
            }
            Kind::Data(handler) => self.store.tx(cx.wall, |tx| handler(tx, request, &mut out)),
            Kind::Conn(which) => {
                let (next, changed) = self.conn(which, request, cx.wall, &mut out);
                if next == After::Last {
                    after = After::Last;
                }
                ((), changed)
            }
        };
        self.resp3 = out.resp3;
        // Under `always`, the reply waits for its change to be on disk.
        if let Some(work) = changed.and_then(|seq| self.store.sync_work(seq)) {
            self.held.clear();
            self.held.extend_from_slice(&cx.out[mark..]);
            cx.out.truncate(mark);
            self.waiting = Some(after);
            return Next::Offload(Job::Store(work));
        }
        match after {
            After::Answered => Next::Answered,
            After::Last => Next::Last,
        }
    }

    /// The connection and server commands; returns what follows and the
    /// last change made, if any (EXEC, FLUSHALL through EXEC...).
    fn conn(
        &mut self,
        which: Conn,
        req: &Request<'_>,
        wall: std::time::SystemTime,
        out: &mut Reply<'_>,
    ) -> (After, Option<crate::store::Seq>) {
        match which {
            Conn::Quit => {
                out.ok();
                return (After::Last, None);
            }
            Conn::Multi if self.multi.is_some() => out.error("ERR MULTI calls can not be nested"),
            Conn::Multi => {
                self.multi = Some(Multi::default());
                out.ok();
            }
            Conn::Discard => match self.multi.take() {
                Some(_) => {
                    self.unwatch();
                    out.ok();
                }
                None => out.error("ERR DISCARD without MULTI"),
            },
            Conn::Exec => return (After::Answered, self.exec(wall, out)),
            Conn::Watch if self.multi.is_some() => {
                out.error("ERR WATCH inside MULTI is not allowed")
            }
            Conn::Watch => {
                let watching = &mut self.watching;
                self.store.tx(wall, |tx| {
                    for key in req.args_from(1) {
                        let version = tx.db_watch().watch(key);
                        watching.push((key.to_vec(), version));
                    }
                });
                out.ok();
            }
            Conn::Unwatch => {
                self.unwatch();
                out.ok();
            }
            Conn::Reset => {
                self.multi = None;
                self.unwatch();
                self.session.pubsub.reset();
                self.session.name = None;
                out.resp3 = false;
                out.simple("RESET");
            }
            Conn::Hello => {
                conn::hello(&mut self.session, out.resp3, req, out);
            }
            Conn::Time => conn::time(wall, out),
            other => {
                let (policy, max_bulk) = (self.store.policy(), self.max_bulk);
                let session = &mut self.session;
                if !session_command(other, session, policy, max_bulk, req, out) {
                    self.store
                        .tx(wall, |tx| keyspace_command(other, tx, policy, req, out));
                }
            }
        }
        (After::Answered, None)
    }
}

/// The connection commands that need no more than the session: false
/// when `which` is not one of them.
fn session_command(
    which: Conn,
    session: &mut Session,
    policy: Option<crate::store::Fsync>,
    max_bulk: usize,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) -> bool {
    match which {
        Conn::Ping if req.len() > 2 => {
            out.error("ERR wrong number of arguments for 'ping' command")
        }
        // Subscribed in RESP2, a PING is answered in pub/sub's shape.
        Conn::Ping if session.pubsub.active() && !out.resp3 => {
            out.array(2);
            out.bulk(b"pong");
            out.bulk(if req.len() == 2 { req.arg(1) } else { b"" });
        }
        Conn::Ping if req.len() == 2 => out.bulk(req.arg(1)),
        Conn::Ping => out.simple("PONG"),
        Conn::Publish => session.pubsub.publish(req, out),
        Conn::PubSub => session.pubsub.pubsub(req, out),
        Conn::Echo => out.bulk(req.arg(1)),
        Conn::Client => conn::client(session, req, out),
        Conn::Select => conn::select(req, out),
        Conn::Config => conn::config(policy, max_bulk, req, out),
        Conn::Command => conn::command(req, out),
        _ => return false,
    }
    true
}

/// The server commands that read the keyspace (or its clock).
fn keyspace_command(
    which: Conn,
    tx: &mut Tx<'_>,
    policy: Option<crate::store::Fsync>,
    req: &Request<'_>,
    out: &mut Reply<'_>,
) {
    match which {
        Conn::Time => conn::time(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(tx.now()),
            out,
        ),
        Conn::Info => conn::info(tx, policy, req, out),
        Conn::RandomKey => keys::randomkey(tx, args::random(), out),
        // MULTI, EXEC, WATCH... are never queued; QUIT and RESET are not
        // run inside EXEC either.
        _ => out.error("ERR command not allowed inside a transaction"),
    }
}

/// An unknown command or a wrong number of arguments, in Redis' words.
fn refuse(name: &[u8], request: &Request<'_>, out: &mut Reply<'_>) {
    if let Some(command) = table::lookup(name) {
        return out.error(&format!(
            "ERR wrong number of arguments for '{}' command",
            command.name
        ));
    }
    let mut args = Vec::new();
    for arg in request.args_from(1) {
        if args.len() >= 128 {
            break;
        }
        args.push(b'\'');
        let room = 128 - args.len().min(128);
        args.extend_from_slice(&arg[..arg.len().min(room)]);
        args.extend_from_slice(b"' ");
    }
    out.error_parts(&[
        b"ERR unknown command '",
        &name[..name.len().min(128)],
        b"', with args beginning with: ",
        &args,
    ]);
}

impl Drop for Kv {
    /// A connection that goes away stops watching.
    fn drop(&mut self) {
        self.unwatch();
    }
}

impl Service for Kv {
    /// Answers the first whole request in `input`. A frame that does not
    /// end in `input` is consumed into the parser's state ([`resp`] docs).
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        // A detached parser: `run` needs `&mut self`, the request borrows
        // the parser.
        let mut parser = std::mem::replace(&mut self.parser, Parser::new(0));
        let done = resp::one_request(&mut parser, input, cx, |request, cx| self.run(request, cx));
        self.parser = parser;
        done
    }

    /// A write's record is on disk (or could not be written).
    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        let Some(after) = self.waiting.take() else {
            log::error!("peer={} kv: a job nobody waited for: {done:?}", cx.peer);
            return Next::Close;
        };
        match done {
            JobOutput::Store(Done::Synced(_)) => cx.out.extend_from_slice(&self.held),
            JobOutput::Store(Done::Failed(reason)) => {
                cx.out
                    .extend_from_slice(b"-ERR stored in memory but not on disk: ");
                reply::printable(reason.as_bytes(), cx.out);
                cx.out.extend_from_slice(b"\r\n");
            }
            other => {
                log::error!("peer={} kv: unexpected job output {other:?}", cx.peer);
                return Next::Close;
            }
        }
        self.held.clear();
        match after {
            After::Answered => Next::Answered,
            After::Last => Next::Last,
        }
    }

    /// Pub/sub mail arrived: written as `message`/`pmessage` pushes. A
    /// subscriber that fell past the mailbox's limit is cut off, as Redis
    /// cuts off one over `client-output-buffer-limit pubsub`.
    fn deliver(&mut self, cx: &mut Cx<'_>) -> Next {
        let full = cx.out.len() >= cx.full_at;
        let mut out = Reply {
            out: cx.out,
            resp3: self.resp3,
        };
        if self.session.pubsub.deliver(full, &mut out) {
            Next::Wait
        } else {
            log::warn!("peer={} kv: a subscriber too far behind: closing", cx.peer);
            Next::Close
        }
    }

    /// True while a request's frame is partly received.
    fn in_body(&self) -> bool {
        self.parser.in_frame()
    }
}

/// Makes `kv` connections (over the file store, or proxies to Redis);
/// tells a client turned away in RESP.
struct KvFactory {
    backend: Backend,
    broker: Arc<crate::broker::Broker>,
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
        match &self.backend {
            Backend::File(store) => {
                let mut kv = Kv::new(store.clone(), self.max_bulk);
                kv.session.pubsub = pubsub::Subscriber::new(Arc::clone(&self.broker));
                Box::new(kv)
            }
            Backend::Redis(store) => {
                let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                Box::new(proxy::Proxy::new(store, self.max_bulk, id))
            }
        }
    }
    fn busy_reply(&self) -> &'static [u8] {
        b"-ERR max number of clients reached\r\n"
    }
}

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    Arc::new(KvFactory {
        backend: shared.backend.clone(),
        broker: Arc::clone(&shared.broker),
        max_bulk: shared.limits.kv_max_bulk,
    })
}

#[cfg(test)]
mod tests;
