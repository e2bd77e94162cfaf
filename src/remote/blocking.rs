//! The blocking Redis client of the modes that have a thread to block
//! (threaded, pool, blocking, forking, and the offload pool's workers): one
//! connection per thread, made on first use and kept, so a forking child
//! or a worker thread owns its own and no lock is shared.
//!
//! A request is written whole and its replies read whole; any error (refused,
//! reset, timed out, malformed) drops the connection and answers
//! [`Answer::Unavailable`]. The next request connects again, no sooner than
//! the backoff allows, so a store that is down costs each request one failed
//! connect at most every [`RETRY_MAX`], not a connect storm.
//!
//! This file must not be used from the event loop's thread: it blocks.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Answer, Request, StoreUrl, reply};

/// How long one connect, write or read may take before the store counts as
/// unavailable.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before connecting again after a failure; doubled per
/// failure up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(2);

static STORE: OnceLock<StoreUrl> = OnceLock::new();

/// Names the store for every thread of this process; once, at start-up.
pub fn configure(url: StoreUrl) {
    let _ = STORE.set(url);
}

thread_local! {
    static UPSTREAM: RefCell<Upstream> = const { RefCell::new(Upstream { stream: None, retry_at: None, backoff: RETRY_FIRST }) };
}

struct Upstream {
    stream: Option<TcpStream>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// Sends `request` on this thread's connection and waits for its replies.
pub fn run(request: Request) -> Answer {
    let Some(url) = STORE.get() else {
        return Answer::Unavailable;
    };
    UPSTREAM.with_borrow_mut(|upstream| {
        if upstream.stream.is_none() && upstream.retry_at.is_some_and(|at| Instant::now() < at) {
            // Still waiting out the backoff: answered at once, and the wait
            // is not made longer (a steady stream of requests would else
            // push the next try away for ever), nor logged again.
            return Answer::Unavailable;
        }
        upstream.send(url, &request)
    })
}

impl Upstream {
    /// Sends on the connection (made first if there is none); a failure
    /// drops it and starts the next wait.
    fn send(&mut self, url: &StoreUrl, request: &Request) -> Answer {
        match self.exchange(url, request) {
            Ok(replies) => {
                self.backoff = RETRY_FIRST;
                Answer::Replies(replies)
            }
            Err(error) => {
                log::warn!("store {url} unavailable: {error}");
                self.stream = None;
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(RETRY_MAX);
                Answer::Unavailable
            }
        }
    }

    fn exchange(&mut self, url: &StoreUrl, request: &Request) -> io::Result<Vec<u8>> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(connect(url)?),
        };
        exchange(stream, request)
    }
}

/// Writes `request` on `stream` and reads its replies, whole.
pub fn exchange(stream: &mut TcpStream, request: &Request) -> io::Result<Vec<u8>> {
    stream.write_all(&request.commands)?;
    read_replies(stream, request.replies)
}

/// The longest wait between two tries of [`connect_at_start`].
pub const START_RETRY_MAX: Duration = Duration::from_secs(1);

/// The start-up connection: [`connect`], or with `wait` (`--store-wait`)
/// [`connect`] again with backoff (up to [`START_RETRY_MAX`]), logging
/// each failed try, until the store answers.
pub fn connect_at_start(url: &StoreUrl, wait: bool) -> io::Result<TcpStream> {
    let mut backoff = RETRY_FIRST;
    loop {
        match connect(url) {
            Err(error) if wait => {
                log::warn!(
                    "store {url} unavailable: {error}: trying again in {backoff:?} (--store-wait)"
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(START_RETRY_MAX);
            }
            done => return done,
        }
    }
}

/// Connects to the store and selects its database: used here and by the
/// start-up check, which reports the error instead of answering with it.
pub fn connect(url: &StoreUrl) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::other(format!("{} resolves to no address", url.authority()));
    for addr in url.authority().to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(mut stream) => {
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                let select = Request::command(&[b"SELECT", url.db.to_string().as_bytes()]);
                stream.write_all(&select.commands)?;
                let reply = read_replies(&mut stream, 1)?;
                if !reply.starts_with(b"+") {
                    return Err(io::Error::other(format!(
                        "SELECT {} answered {}",
                        url.db,
                        reply.trim_ascii_end().escape_ascii()
                    )));
                }
                return Ok(stream);
            }
            Err(error) => last = error,
        }
    }
    Err(last)
}

fn read_replies(stream: &mut TcpStream, count: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match reply::len(&buf, count) {
            Ok(Some(end)) if end == buf.len() => return Ok(buf),
            Ok(Some(_)) => return Err(io::Error::other("the store sent more replies than asked")),
            Ok(None) => {}
            Err(malformed) => return Err(io::Error::other(malformed.to_string())),
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
