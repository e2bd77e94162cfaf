//! The blocking Redis client of the modes that have a thread to block
//! (threaded, pool, blocking, forking, and the offload pool's workers): one
//! connection per thread, made on first use and kept, so a forking child
//! or a worker thread owns its own and no lock is shared.
//!
//! A request is written whole and its replies read whole; any error (refused,
//! reset, timed out, malformed) drops the connection and answers
//! [`Answer::Unavailable`]. The next request connects again, no sooner than
//! the backoff allows, so a store that is down costs each request one failed
//! connect at most every [`RETRY_MAX`], not a connect storm. A connection
//! idle for [`IDLE_CHECK`] is checked before use, so one Redis closed in
//! the meantime (a restart, its `timeout`) costs no failed request.
//!
//! With a Redis Cluster (`redis-cluster://`), each thread keeps a
//! connection per node instead, and routes each request by its slot
//! ([`cluster`]).
//!
//! This file must not be used from the event loop's thread: it blocks.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Answer, Redis, Request, StoreUrl, reply};

pub mod cluster;

/// How long one connect, write or read may take before the store counts as
/// unavailable.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The first wait before connecting again after a failure; doubled per
/// failure up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two connection attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(2);

static STORE: OnceLock<Redis> = OnceLock::new();

/// Names the store for every thread of this process; once, at start-up.
pub fn configure(redis: Redis) {
    let _ = STORE.set(redis);
}

thread_local! {
    static UPSTREAM: RefCell<Upstream> = const { RefCell::new(Upstream::new()) };
    static CLUSTER: RefCell<Option<cluster::Client>> = const { RefCell::new(None) };
}

/// One connection to one Redis (a server, or a node of a cluster), with
/// its backoff.
#[derive(Debug)]
struct Upstream {
    stream: Option<TcpStream>,
    /// When the connection last answered, to check one idle for
    /// [`IDLE_CHECK`] before using it.
    last_used: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
}

/// A connection idle this long is checked before a request is written on
/// it: one Redis closed meanwhile (restarted, or its `timeout`) is made
/// again first, instead of failing the request. Safe because nothing of
/// the request was sent yet; cheap because a busy connection is never
/// idle that long.
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Sends `request` on this thread's connection and waits for its replies.
pub fn run(request: Request) -> Answer {
    match STORE.get() {
        None => Answer::Unavailable,
        Some(Redis::Server(url)) => {
            UPSTREAM.with_borrow_mut(|upstream| upstream.request(url, &request))
        }
        Some(Redis::Cluster(url)) => CLUSTER.with_borrow_mut(|client| {
            client
                .get_or_insert_with(|| cluster::Client::new(url.clone()))
                .run(&request)
        }),
    }
}

impl Upstream {
    const fn new() -> Upstream {
        Upstream {
            stream: None,
            last_used: None,
            retry_at: None,
            backoff: RETRY_FIRST,
        }
    }

    /// True while a connection is open.
    fn connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Sends `request`, unless the connection is down and its backoff
    /// not over.
    fn request(&mut self, url: &StoreUrl, request: &Request) -> Answer {
        if self.stream.is_none() && self.retry_at.is_some_and(|at| Instant::now() < at) {
            // Still waiting out the backoff: answered at once, and the wait
            // is not made longer (a steady stream of requests would else
            // push the next try away for ever), nor logged again.
            return Answer::Unavailable;
        }
        self.send(url, request)
    }

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
        let idle = self.last_used.is_none_or(|at| at.elapsed() >= IDLE_CHECK);
        if idle
            && self
                .stream
                .as_ref()
                .is_some_and(|stream| !still_open(stream))
        {
            log::info!("store {url}: the connection was closed while idle: connecting again");
            self.stream = None;
        }
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => self.stream.insert(connect(url)?),
        };
        let replies = exchange(stream, request)?;
        self.last_used = Some(Instant::now());
        Ok(replies)
    }
}

/// True unless the peer closed `stream` (or sent what nobody asked for):
/// a peek that does not wait.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let peeked = stream.peek(&mut [0; 1]);
    let restored = stream.set_nonblocking(false).is_ok();
    restored && matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn requests_during_the_backoff_do_not_push_the_next_try_away() {
        // A port nobody listens on, then a one-shot "Redis" on it.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url: StoreUrl = format!("redis://127.0.0.1:{port}/0").parse().unwrap();
        let mut upstream = Upstream::new();
        let get = Request::command(&[b"GET", b"k"]);
        assert_eq!(upstream.request(&url, &get), Answer::Unavailable);
        let first_try_at = upstream.retry_at.expect("a wait after a failure");
        assert_eq!(upstream.backoff, RETRY_FIRST * 2);
        for _ in 0..5 {
            assert_eq!(upstream.request(&url, &get), Answer::Unavailable);
        }
        assert_eq!(upstream.retry_at, Some(first_try_at), "the wait grew");
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let redis = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0; 256];
            for reply in [&b"+OK\r\n"[..], b"$1\r\nv\r\n"] {
                let _ = stream.read(&mut buf).unwrap();
                stream.write_all(reply).unwrap();
            }
        });
        std::thread::sleep(first_try_at.saturating_duration_since(Instant::now()));
        assert_eq!(
            upstream.request(&url, &get),
            Answer::Replies(b"$1\r\nv\r\n".to_vec())
        );
        assert_eq!(upstream.backoff, RETRY_FIRST, "reset once it answered");
        redis.join().unwrap();
    }

    #[test]
    fn a_connection_closed_while_idle_is_made_again_before_a_request() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url: StoreUrl = format!("redis://{}/0", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        // A "Redis" that answers one command per connection, then closes it
        // (as a restart or its idle `timeout` would).
        let redis = std::thread::spawn(move || {
            for value in [&b"$1\r\na\r\n"[..], b"$1\r\nb\r\n"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut buf = [0; 256];
                for reply in [&b"+OK\r\n"[..], value] {
                    let _ = stream.read(&mut buf).unwrap();
                    stream.write_all(reply).unwrap();
                }
            }
        });
        let mut upstream = Upstream::new();
        let get = Request::command(&[b"GET", b"k"]);
        assert_eq!(
            upstream.request(&url, &get),
            Answer::Replies(b"$1\r\na\r\n".to_vec())
        );
        std::thread::sleep(IDLE_CHECK + Duration::from_millis(100));
        assert_eq!(
            upstream.request(&url, &get),
            Answer::Replies(b"$1\r\nb\r\n".to_vec())
        );
        redis.join().unwrap();
    }
}
