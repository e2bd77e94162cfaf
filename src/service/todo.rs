//! `todo` (seed 004, the ToDo server): line commands over the shared
//! store: the embedded [`Store`], or Redis (`--store redis://`).
//!
//! Every reply is one line ending in `\r\n`, as in the seed. Commands are
//! matched at the start of the line and are case-sensitive:
//!
//! | line | reply |
//! |---|---|
//! | `GET/<key>/<anything>` | the value, or `no key match` |
//! | `POST/<key>=<value>/<anything>` | `submit success` (the value is stored) |
//! | a first `/`-part other than `GET` or `POST` | `data no found` |
//! | a malformed `GET`/`POST` | `error: <what was wrong>`; the connection stays open |
//!
//! # Where `/` and `=` may appear
//!
//! - A key is never empty and never contains `/`; it cannot contain `=`
//!   either, since `POST` ends the key at the first `=`.
//! - `GET` has exactly three `/`-separated parts: `GET`, the key, and a last
//!   part that may be empty (`GET/task_01/` is fine, `GET/task_01` is not).
//! - `POST`: the key runs from after `POST/` to the first `=`. The value runs
//!   from there to the **last** `/` of the line, so it may contain `/` and
//!   `=` (`POST/url=a=b/c/x` stores `a=b/c`), and may be empty. The last
//!   `/<anything>` part is required and cannot itself contain `/`.
//!
//! The seed's bugs are gone: `'GET' in data` matched anywhere, a wrong number
//! of parts raised an exception that silently dropped the client, and the
//! dict was shared between threads with no lock. [`Store`] is shared by all
//! connections in every mode and locks internally. Reads are copied
//! straight into the output buffer
//! ([`Store::get_into`](crate::store::Store::get_into)): nothing is
//! allocated per `GET`. No I/O here: persistence is the store's business. Under
//! `--fsync always` a `POST` is answered `submit success` only once its
//! record is on disk: the line handler returns the store's
//! [`Job::Store`](crate::service::Job::Store) and writes the reply in
//! `resume`, so the event loop never waits for the disk itself.
//!
//! # Over Redis
//!
//! With `--store redis://`, `GET/<key>/..` is Redis' `GET <key>` and
//! `POST/<key>=<value>/..` is `SET <key> <value>` (any deadline dropped, as
//! the file store's `POST` does), sent as a [`Job::Remote`] and answered in
//! `resume`. Keys are not prefixed: todo and kv share one keyspace, as they
//! do over the file store, so `kv GET task_01` reads a todo task. A key
//! holding another type is `no key match` over both stores. A store that
//! could not be reached is `error: store unavailable`, and a `POST` is
//! acknowledged only once Redis answered `+OK`.
//!
//! [`Store`]: crate::store::Store

use std::sync::Arc;

use super::framing::{LineHandler, Lines};
use super::{Backend, Cx, Factory, FnFactory, Job, JobOutput, Next, Shared};
use crate::remote::Request;
use crate::store::Done;

mod redis;
pub use redis::seed_requests;

/// The tasks the seed preloads; stored at start unless the key exists already.
pub const SEED_TASKS: &[(&str, &str)] = &[
    ("task_01", "see someone"),
    ("task_02", "read book"),
    ("task_03", "play basketball"),
];

/// The todo line handler: where the data is, and what a Redis request
/// in flight asked.
#[derive(Debug, Clone)]
pub struct Todo {
    backend: Backend,
    /// The command whose Redis reply `resume` awaits.
    asked: Option<Asked>,
}

/// What a request to Redis was for, to read its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    Get,
    Post,
}

impl Todo {
    /// A handler reading and writing `backend`.
    pub fn new(backend: Backend) -> Self {
        Todo {
            backend,
            asked: None,
        }
    }

    /// Runs one command, writing its reply without the line end, or
    /// returns the job to run first: a `POST` to make durable, or any
    /// command for Redis.
    fn command(&mut self, line: &str, out: &mut Vec<u8>) -> Option<Job> {
        let (method, rest) = line.split_once('/').unwrap_or((line, ""));
        let reply: &str = match method {
            "GET" => match get_key(rest) {
                Ok(key) => return self.get(key, out),
                Err(error) => error,
            },
            "POST" => match post_pair(rest) {
                Ok((key, value)) => return self.post(key, value, out),
                Err(error) => error,
            },
            _ => "data no found",
        };
        out.extend_from_slice(reply.as_bytes());
        None
    }

    fn get(&mut self, key: &str, out: &mut Vec<u8>) -> Option<Job> {
        match &self.backend {
            Backend::File(store) => {
                if !store.get_into(key, out) {
                    out.extend_from_slice(NO_MATCH.as_bytes());
                }
                None
            }
            Backend::Redis(_) => {
                self.asked = Some(Asked::Get);
                let get = Request::command(&[b"GET", key.as_bytes()]);
                Some(Job::Remote(get.routed_by(key.as_bytes())))
            }
        }
    }

    fn post(&mut self, key: &str, value: &str, out: &mut Vec<u8>) -> Option<Job> {
        match &self.backend {
            Backend::File(store) => {
                let seq = store.set(key, value);
                if let Some(work) = store.sync_work(seq) {
                    return Some(Job::Store(work));
                }
                out.extend_from_slice(SUBMITTED.as_bytes());
                None
            }
            Backend::Redis(_) => {
                self.asked = Some(Asked::Post);
                let set = [b"SET", key.as_bytes(), value.as_bytes()];
                Some(Job::Remote(
                    Request::command(&set).routed_by(key.as_bytes()),
                ))
            }
        }
    }
}

/// The reply to a `GET` of a key that holds no string.
pub(crate) const NO_MATCH: &str = "no key match";

/// The reply to a stored `POST`.
pub(crate) const SUBMITTED: &str = "submit success";

/// The key of `GET/<key>/<anything>`; `rest` is what follows `GET/`.
fn get_key(rest: &str) -> Result<&str, &'static str> {
    let Some((key, anything)) = rest.split_once('/') else {
        return Err("error: expected GET/<key>/<anything>");
    };
    if anything.contains('/') {
        return Err("error: too many '/': expected GET/<key>/<anything>");
    }
    if key.is_empty() {
        return Err("error: empty key");
    }
    Ok(key)
}

/// The key and value of `POST/<key>=<value>/<anything>`; `rest` follows `POST/`.
fn post_pair(rest: &str) -> Result<(&str, &str), &'static str> {
    if rest.is_empty() {
        return Err("error: expected POST/<key>=<value>/<anything>");
    }
    let Some((key, after)) = rest.split_once('=') else {
        return Err("error: '=' missing: expected POST/<key>=<value>/<anything>");
    };
    if key.is_empty() {
        return Err("error: empty key");
    }
    if key.contains('/') {
        return Err("error: key may not contain '/'");
    }
    match after.rsplit_once('/') {
        Some((value, _anything)) => Ok((key, value)),
        None => Err("error: expected POST/<key>=<value>/<anything>"),
    }
}

impl LineHandler for Todo {
    fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next {
        if let Some(job) = self.command(line, cx.out) {
            return Next::Offload(job); // `resume` replies
        }
        cx.out.extend_from_slice(b"\r\n");
        Next::Answered
    }

    /// A `POST`'s record is on disk (or could not be written).
    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        match done {
            JobOutput::Store(Done::Synced(_)) => cx.out.extend_from_slice(SUBMITTED.as_bytes()),
            JobOutput::Store(Done::Failed(reason)) => {
                cx.out
                    .extend_from_slice(b"error: stored in memory but not on disk: ");
                cx.out.extend_from_slice(reason.as_bytes());
            }
            JobOutput::Remote(answer) if self.asked.is_some() => {
                let asked = self.asked.take().unwrap_or(Asked::Get);
                redis::reply(asked, &answer, cx.out);
            }
            other => {
                log::error!("peer={} unexpected job output {other:?}", cx.peer);
                return Next::Close;
            }
        }
        cx.out.extend_from_slice(b"\r\n");
        Next::Answered
    }

    /// Framing errors end in `\r\n` like every other reply.
    fn error(&mut self, reason: &str, cx: &mut Cx<'_>) {
        cx.out.extend_from_slice(b"error: ");
        cx.out.extend_from_slice(reason.as_bytes());
        cx.out.extend_from_slice(b"\r\n");
    }
}

/// The factory the registry uses. Over the file store, preloads
/// [`SEED_TASKS`] (keys already there, e.g. replayed from the log, are
/// kept); over Redis, `serve` sends [`seed_requests`] at start.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    let (max_line, framing) = (shared.limits.max_line, shared.limits.framing);
    if let Backend::File(store) = &shared.backend {
        store.insert_missing(SEED_TASKS);
    }
    let todo = Todo::new(shared.backend.clone());
    FnFactory::new("todo", move || {
        Box::new(Lines::framed(todo.clone(), max_line, framing))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;
    use crate::service::testing::{assert_dialogue, run};
    use crate::store::Store;

    /// A service over a fresh store holding the seed's tasks, so every
    /// split of a dialogue starts from the same data.
    fn todo() -> Box<dyn Service> {
        let store = Store::in_memory();
        store.insert_missing(SEED_TASKS);
        Box::new(Lines::new(Todo::new(Backend::File(store)), 64))
    }

    #[test]
    fn get_reads_the_seed_tasks() {
        assert_dialogue(
            todo,
            b"GET/task_01/status\nGET/task_03/\r\nGET/task_99/x\n",
            b"see someone\r\nplay basketball\r\nno key match\r\n",
        );
    }

    #[test]
    fn post_stores_and_get_reads_back() {
        assert_dialogue(
            todo,
            b"POST/task_01=sleep/x\nGET/task_01/x\nPOST/new=/x\nGET/new/x\n",
            b"submit success\r\nsleep\r\nsubmit success\r\n\r\n",
        );
    }

    #[test]
    fn a_value_may_hold_slash_and_equals_up_to_the_last_slash() {
        assert_dialogue(
            todo,
            b"POST/url=a=b/c//x\nGET/url/status\nPOST/k==/\nGET/k/\n",
            b"submit success\r\na=b/c/\r\nsubmit success\r\n=\r\n",
        );
    }

    #[test]
    fn other_lines_are_data_no_found_even_when_they_contain_get() {
        assert_dialogue(
            todo,
            b"get/task_01/x\nxGET/task_01/x\nGETX/a/b\n\nPUT/a=b/c\nbogus\n",
            b"data no found\r\ndata no found\r\ndata no found\r\ndata no found\r\ndata no found\r\ndata no found\r\n",
        );
    }

    #[test]
    fn malformed_commands_get_an_error_and_the_connection_stays_open() {
        let input = b"GET\nGET/task_01\nGET//x\nGET/a/b/c\nPOST\nPOST/k/x\nPOST/=v/x\n\
                      POST/a/b=c/x\nPOST/k=v\nGET/task_02/x\n";
        let expected = "error: expected GET/<key>/<anything>\r\n\
                        error: expected GET/<key>/<anything>\r\n\
                        error: empty key\r\n\
                        error: too many '/': expected GET/<key>/<anything>\r\n\
                        error: expected POST/<key>=<value>/<anything>\r\n\
                        error: '=' missing: expected POST/<key>=<value>/<anything>\r\n\
                        error: empty key\r\n\
                        error: key may not contain '/'\r\n\
                        error: expected POST/<key>=<value>/<anything>\r\n\
                        read book\r\n";
        assert_dialogue(todo, input, expected.as_bytes());
    }

    #[test]
    fn framing_errors_end_in_crlf() {
        assert_dialogue(
            todo,
            b"\xff\nGET/task_02/x\n",
            b"error: input is not valid UTF-8\r\nread book\r\n",
        );
        let outcome = run(todo(), &[&[b'G'; 80]]);
        assert_eq!(
            outcome.out,
            b"error: line too long (the limit is 64 bytes)\r\n"
        );
        assert!(outcome.closed);
    }

    #[test]
    fn counts_one_request_per_reply() {
        let mut out = Vec::new();
        let mut cx = crate::service::testing::cx(&mut out);
        let mut service = todo();
        let input = b"GET/task_01/x\nnope\nGET\n";
        assert_eq!(
            service.input(input, &mut cx),
            (14, Next::Answered),
            "one per call"
        );
        let outcome = run(todo(), &[input]);
        assert_eq!(outcome.answered, 3);
    }

    #[test]
    fn under_fsync_always_post_is_answered_after_its_record_is_on_disk() {
        use crate::service::{Job, JobOutput};
        use crate::store::{self, Fsync};
        let dir =
            std::env::temp_dir().join(format!("readyloop-todo-always-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, Fsync::Always).unwrap();
        let mut service = Lines::new(Todo::new(Backend::File(store.clone())), 64);
        let mut out = Vec::new();
        let mut cx = crate::service::testing::cx(&mut out);
        let (used, next) = service.input(b"POST/k=v/x\nGET/k/x\n", &mut cx);
        assert_eq!(used, 11);
        let Next::Offload(Job::Store(work)) = next else {
            panic!("{next:?}");
        };
        assert!(out.is_empty(), "no reply before the record is durable");
        let mut cx = crate::service::testing::cx(&mut out);
        let next = service.resume(JobOutput::Store(store::run(work)), &mut cx);
        assert_eq!(next, Next::Answered);
        assert_eq!(out, b"submit success\r\n");
        // Every split, jobs run inline by the test driver.
        let make = || -> Box<dyn Service> {
            Box::new(Lines::new(Todo::new(Backend::File(store.clone())), 64))
        };
        assert_dialogue(make, b"POST/a=1/x\nGET/a/x\n", b"submit success\r\n1\r\n");
        drop((service, store));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_factory_preloads_without_overwriting() {
        let store = Store::in_memory();
        let shared = Shared {
            backend: Backend::File(store.clone()),
            broker: Default::default(),
            stats: Default::default(),
            limits: Default::default(),
        };
        store.set("task_01", "kept");
        let _factory = factory(&shared);
        let mut value = Vec::new();
        assert!(store.get_into("task_01", &mut value));
        assert_eq!(value, b"kept");
        assert_eq!(store.len(), 3);
    }
}
