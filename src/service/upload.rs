//! `upload` (seed 002, the `SocketServer` file upload; docs/PROTOCOLS.md
//! "upload"): a header line, an ack, then exactly that many bytes into a
//! file, durably; then the next header on the same connection.
//!
//! ```text
//! client: put|<name>|<size>\n           server: ready\n
//! client: <size> bytes                   server: ok <size>\n  or  error <reason>\n
//! ```
//!
//! The service never touches the disk: each step is a [`Job::Upload`]
//! ([`Work`]) run by the driver ([`job`]), and its [`Done`] comes back
//! through `resume`. Body bytes are gathered into chunks of at most
//! [`CHUNK`] bytes and written in order, one job at a time; while a job runs
//! the driver reads nothing from this client, which is the back-pressure that
//! keeps a fast client from filling the server's memory.
//!
//! # States
//!
//! ```text
//!            header ok: Create             Created: "ready"
//!   Header ───────────────────► Creating ───────────────────► Receiving ◄──────┐
//!   ▲  │ refused: "error", Close   │ Failed: "error", Close     │ chunk full   │ Written,
//!   │  ▼                           ▼                            │ or body in:  │ more to come
//!   │ Closed ◄─────────────────────┘                            ▼ Write        │
//!   │   ▲  eof mid-body: "error", the temp file removed      Writing ──────────┘
//!   │   └─────────────────────────── Receiving                 │ Written, body complete: Commit
//!   │                                                          ▼   (size 0: straight from Creating)
//!   ├─────────────────── "ok <size>" / "error" ───────────── Committing
//!   │
//!   └─ "error" ── Draining ◄── Failed while Writing: the rest of the body is read and dropped
//! ```
//!
//! A refused header closes the connection after the `error` line: a client
//! may send the body right behind its header without waiting for `ready`,
//! and then its bytes cannot be told from the next header. The same holds
//! when the temporary file cannot be created. Once `ready` is sent the body
//! length is known, so a failed write or commit is answered after the whole
//! body has arrived, and the connection goes on.
//!
//! Under `--framing read` ([`Framing::Read`]) a header may also end where a
//! read ended: the seed's client sends `put|<name>|<size>` with no newline
//! and waits for the ack, so the header is what arrived when the socket was
//! drained ([`Service::drained`]). A `\n` still ends a header, so a client
//! that sends its body right behind a terminated header works as before.
//!
//! Files are stored as `<upload dir>/<name>`, replacing a file of that name
//! atomically (rename): a reader sees the old file or the new one, never a
//! partial one. Temporary files are `.upload-<pid>-<n>.part` in the same
//! directory, removed whenever an upload does not finish.

use std::mem;
use std::path::PathBuf;
use std::sync::Arc;

use super::framing::Framing;
use super::{Cx, Eof, Factory, FnFactory, Job, JobOutput, Next, Service, Shared};

mod header;
pub mod job;
#[cfg(test)]
mod tests;

pub use header::{Header, MAX_HEADER, MAX_NAME};
pub use job::{Done, TempUpload, Work, run};

/// The most body bytes gathered before they go to the disk as one
/// [`Work::Write`]: 256 KiB. While that job runs, the client is not read.
pub const CHUNK: usize = 256 * 1024;

/// Where one connection's upload is (see the diagram in the module docs).
#[derive(Debug)]
enum State {
    /// Waiting for `put|<name>|<size>\n`.
    Header,
    /// [`Work::Create`] in flight.
    Creating { name: String, size: u64 },
    /// Taking body bytes into the chunk; `received` counts all so far.
    Receiving {
        file: TempUpload,
        name: String,
        size: u64,
        received: u64,
    },
    /// [`Work::Write`] in flight, with the file and the chunk.
    Writing {
        name: String,
        size: u64,
        received: u64,
    },
    /// [`Work::Commit`] in flight.
    Committing { size: u64 },
    /// A write failed: `left` body bytes are still to come and are dropped;
    /// then `error <reason>`.
    Draining { left: u64, reason: String },
    /// The connection is ending; input is ignored.
    Closed,
}

/// One connection of the `upload` service.
#[derive(Debug)]
pub struct Upload {
    /// Where files go.
    dir: PathBuf,
    /// The largest size a header may announce.
    max_size: u64,
    /// Body bytes not yet written, at most `chunk_size`. The buffer moves
    /// into each Write job and comes back empty, so it is allocated once.
    chunk: Vec<u8>,
    /// [`CHUNK`], smaller in tests.
    chunk_size: usize,
    /// Whether a header may end where a read ended (`--framing read`).
    framing: Framing,
    state: State,
}

impl Upload {
    /// A connection storing files in `dir`, each at most `max_size` bytes.
    pub fn new(dir: PathBuf, max_size: u64) -> Upload {
        Upload {
            dir,
            max_size,
            chunk: Vec::new(),
            chunk_size: CHUNK,
            framing: Framing::Newline,
            state: State::Header,
        }
    }

    /// The same, with headers cut as `framing` says (see the module docs).
    pub fn framed(dir: PathBuf, max_size: u64, framing: Framing) -> Upload {
        Upload {
            framing,
            ..Upload::new(dir, max_size)
        }
    }

    /// Takes a header line from `input`, if a whole one is there.
    fn header(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        let window = &input[..input.len().min(MAX_HEADER + 1)];
        let Some(newline) = window.iter().position(|&b| b == b'\n') else {
            if input.len() > MAX_HEADER {
                let reason = format!(
                    "header too long: the limit is {MAX_HEADER} bytes; {}",
                    header::SHAPE
                );
                return (input.len(), self.refuse(&reason, cx));
            }
            return (0, Next::Wait);
        };
        self.start(&input[..newline], newline + 1, input.len(), cx)
    }

    /// Checks the header `line`, which came in the first `used` of
    /// `buffered` bytes: asks for the file, or refuses.
    fn start(
        &mut self,
        line: &[u8],
        used: usize,
        buffered: usize,
        cx: &mut Cx<'_>,
    ) -> (usize, Next) {
        match header::parse(line, self.max_size) {
            Ok(Header { name, size }) => {
                let work = Work::Create {
                    dir: self.dir.clone(),
                    name: name.clone(),
                };
                self.state = State::Creating { name, size };
                (used, Next::Offload(Job::Upload(work)))
            }
            Err(reason) => (buffered, self.refuse(&reason, cx)),
        }
    }

    /// Takes body bytes into the chunk; hands the chunk to a Write job when
    /// it is full or the body is complete.
    fn body(&mut self, input: &[u8]) -> (usize, Next) {
        let State::Receiving { size, received, .. } = &mut self.state else {
            unreachable!("body() is called in Receiving only");
        };
        let room = (self.chunk_size - self.chunk.len()) as u64;
        let take = (*size - *received).min(room).min(input.len() as u64) as usize;
        self.chunk.extend_from_slice(&input[..take]);
        *received += take as u64;
        if self.chunk.len() < self.chunk_size && *received < *size {
            return (take, Next::Wait);
        }
        let State::Receiving {
            file,
            name,
            size,
            received,
        } = mem::replace(&mut self.state, State::Closed)
        else {
            unreachable!("matched above");
        };
        self.state = State::Writing {
            name,
            size,
            received,
        };
        let bytes = mem::take(&mut self.chunk);
        (
            take,
            Next::Offload(Job::Upload(Work::Write { file, bytes })),
        )
    }

    /// Drops body bytes after a failed write; answers once all have come.
    fn drain(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        let State::Draining { left, .. } = &mut self.state else {
            unreachable!("drain() is called in Draining only");
        };
        let take = (*left).min(input.len() as u64);
        *left -= take;
        if *left == 0
            && let State::Draining { reason, .. } = mem::replace(&mut self.state, State::Header)
        {
            reply_error(&reason, cx);
            return (take as usize, Next::Answered);
        }
        (take as usize, Next::Wait)
    }

    /// Refuses a header: `error <reason>`, then close (see the module docs
    /// for why the connection cannot go on).
    fn refuse(&mut self, reason: &str, cx: &mut Cx<'_>) -> Next {
        reply_error(reason, cx);
        self.state = State::Closed;
        Next::Close
    }
}

/// Writes `error <reason>\n`.
fn reply_error(reason: &str, cx: &mut Cx<'_>) {
    cx.out.extend_from_slice(b"error ");
    cx.out.extend_from_slice(reason.as_bytes());
    cx.out.push(b'\n');
}

impl Service for Upload {
    fn input(&mut self, input: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        match self.state {
            State::Header => self.header(input, cx),
            State::Receiving { .. } => self.body(input),
            State::Draining { .. } => self.drain(input, cx),
            State::Closed => (input.len(), Next::Close),
            State::Creating { .. } | State::Writing { .. } | State::Committing { .. } => {
                log::error!(
                    "peer={} upload: input while a job is in flight (a driver bug): closing",
                    cx.peer
                );
                self.state = State::Closed;
                (0, Next::Close)
            }
        }
    }

    /// Under `read` framing, a header that arrived without its `\n` ends
    /// here. (`input` took any header that had one, and refused any too long.)
    fn drained(&mut self, rest: &[u8], cx: &mut Cx<'_>) -> (usize, Next) {
        if self.framing != Framing::Read || !matches!(self.state, State::Header) {
            return (0, Next::Wait);
        }
        self.start(rest, rest.len(), rest.len(), cx)
    }

    /// The client stopped sending. Mid-body, the temporary file is removed
    /// (by dropping it) and the client is told nothing was stored.
    fn eof(&mut self, _rest: &[u8], cx: &mut Cx<'_>) -> Eof {
        match mem::replace(&mut self.state, State::Closed) {
            State::Receiving { size, received, .. } => reply_error(
                &format!(
                    "incomplete: the connection ended after {received} of {size} bytes; nothing was stored"
                ),
                cx,
            ),
            State::Draining { reason, .. } => reply_error(&reason, cx),
            _ => return Eof::Close,
        }
        Eof::Answered
    }

    /// The body streams in for as long as it takes; the request timer runs
    /// between its reads, not from its header.
    fn in_body(&self) -> bool {
        matches!(
            self.state,
            State::Receiving { .. } | State::Writing { .. } | State::Draining { .. }
        )
    }

    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        let done = match done {
            JobOutput::Upload(done) => done,
            // Unwinding dropped the job's file, so the temp file is gone.
            JobOutput::Panicked(why) => {
                log::error!("peer={} upload job panicked: {why}", cx.peer);
                Done::Failed("internal error in the server; nothing was stored".to_owned())
            }
            other => {
                log::error!("peer={} unexpected job output {other:?}", cx.peer);
                self.state = State::Closed;
                return Next::Close;
            }
        };
        let (state, next) = match (mem::replace(&mut self.state, State::Closed), done) {
            (State::Creating { name, size }, Done::Created(file)) => {
                cx.out.extend_from_slice(b"ready\n");
                if size == 0 {
                    let commit = Work::Commit { file, name };
                    (
                        State::Committing { size },
                        Next::Offload(Job::Upload(commit)),
                    )
                } else {
                    self.chunk
                        .reserve_exact(size.min(self.chunk_size as u64) as usize);
                    let received = 0;
                    let state = State::Receiving {
                        file,
                        name,
                        size,
                        received,
                    };
                    (state, Next::Wait)
                }
            }
            (State::Creating { .. }, Done::Failed(reason)) => {
                reply_error(&reason, cx);
                (State::Closed, Next::Close)
            }
            (
                State::Writing {
                    name,
                    size,
                    received,
                },
                Done::Written { file, bytes },
            ) => {
                self.chunk = bytes;
                if received == size {
                    let commit = Work::Commit { file, name };
                    (
                        State::Committing { size },
                        Next::Offload(Job::Upload(commit)),
                    )
                } else {
                    let state = State::Receiving {
                        file,
                        name,
                        size,
                        received,
                    };
                    (state, Next::Wait)
                }
            }
            (State::Writing { size, received, .. }, Done::Failed(reason)) => {
                if received == size {
                    reply_error(&reason, cx);
                    (State::Header, Next::Answered)
                } else {
                    let left = size - received;
                    (State::Draining { left, reason }, Next::Wait)
                }
            }
            (State::Committing { size }, Done::Committed) => {
                cx.out.extend_from_slice(format!("ok {size}\n").as_bytes());
                (State::Header, Next::Answered)
            }
            (State::Committing { .. }, Done::Failed(reason)) => {
                reply_error(&reason, cx);
                (State::Header, Next::Answered)
            }
            (state, done) => {
                log::error!(
                    "peer={} upload: {done:?} does not fit state {state:?}: closing",
                    cx.peer
                );
                (State::Closed, Next::Close)
            }
        };
        self.state = state;
        next
    }
}

/// The factory the registry uses: files go to `--upload-dir`, at most
/// `--max-upload` bytes each, headers cut as `--framing` says.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    let dir = shared.limits.upload_dir.clone();
    let (max_size, framing) = (shared.limits.max_upload, shared.limits.framing);
    FnFactory::new("upload", move || {
        Box::new(Upload::framed(dir.clone(), max_size, framing))
    })
}

/// Before the first upload is served: `--upload-dir` exists, and the
/// temporary files a killed server left in it are gone.
pub fn prepare(limits: &super::Limits) -> Result<(), String> {
    let dir = &limits.upload_dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        format!(
            "cannot create the upload directory {}: {e}: pass --upload-dir with a directory you may write to",
            dir.display()
        )
    })?;
    match job::remove_stale_temp_files(dir) {
        Ok(0) => {}
        Ok(n) => log::info!(
            "removed {n} temporary upload files that a killed server left in {}",
            dir.display()
        ),
        Err(e) => log::warn!("cannot clean up temporary files in {}: {e}", dir.display()),
    }
    Ok(())
}
