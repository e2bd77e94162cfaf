//! Serving one connection with blocking I/O: the driver of the threaded and
//! blocking modes (and the one seed 001's `socketserver` handlers assume).
//!
//! Read, hand the bytes to the connection's [`Dialogue`], write everything,
//! repeat. A blocking `write_all` is back-pressure by itself: a client that
//! does not read stops its own thread, never the others. Jobs run inline on
//! this thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::connection::LINGER;
use super::{Options, Shutdown};
use crate::broker::Doorbell;
use crate::service::{Action, Cx, Dialogue, Doorbells, Factory};
use crate::stats::{self, ServiceStats, Stats};

/// How often a thread blocked in `read` looks at the shutdown flag.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(200);
/// How often it looks at its mailbox once its service subscribed to pub/sub
/// channels: a blocked `read` cannot be woken, so mail waits at most this.
const MAIL_CHECK: Duration = Duration::from_millis(20);

/// Serves `stream` until the client or the service ends it, or shutdown.
pub(crate) fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    factory: &dyn Factory,
    options: &Options,
    stats: &Stats,
    shutdown: &Shutdown,
) {
    let counters = stats.service(factory.name());
    stats::add(&stats.accepted, 1);
    stats::add(&counters.accepted, 1);
    log::debug!("peer={peer} accepted by {}", factory.name());
    match converse(
        &mut stream,
        peer,
        factory,
        options,
        stats,
        &counters,
        shutdown,
    ) {
        Ok(()) => log::debug!("peer={peer} closed"),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ) =>
        {
            log::debug!("peer={peer} went away: {e}")
        }
        Err(e) => log::warn!("peer={peer} closed on error: {e}"),
    }
    stats::add(&stats.closed, 1);
}

fn converse(
    stream: &mut TcpStream,
    peer: SocketAddr,
    factory: &dyn Factory,
    options: &Options,
    stats: &Stats,
    counters: &ServiceStats,
    shutdown: &Shutdown,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(SHUTDOWN_CHECK))?;
    let max_input = options.max_input.max(factory.max_input().unwrap_or(0));
    let mut dialogue = Dialogue::new(factory.make(), max_input);
    let idle_timeout = options.idle_timeout.or_else(|| factory.idle_timeout());
    let mut out = Vec::new();
    let mut buf = vec![0; super::turn::READ_CHUNK];
    let mut last_input = Instant::now();
    let bell = Bell::default();
    let mut action = dialogue.open(&mut context(&mut out, peer, &bell));
    let mut subscribed = false;
    let mut ended = false; // the client closed its side
    loop {
        if !subscribed && bell.0.made.load(Ordering::Relaxed) {
            subscribed = true;
            stream.set_read_timeout(Some(MAIL_CHECK))?;
        }
        if action == Action::Read && bell.0.rung.swap(false, Ordering::AcqRel) {
            action = dialogue.deliver(&mut context(&mut out, peer, &bell));
        }
        // A blocking `write_all` is the back-pressure: everything written so
        // far is sent before anything more is read or fed.
        let answered = u64::from(dialogue.take_answered());
        stats::add(&stats.requests, answered);
        stats::add(&counters.requests, answered);
        if !out.is_empty() {
            stream.write_all(&out)?;
            stats::add(&stats.bytes_out, out.len() as u64);
            out.clear();
        }
        action = match action {
            Action::Close if ended => return Ok(()),
            Action::Close => {
                linger(stream);
                return Ok(());
            }
            Action::Run(job) => {
                let done = job.run(); // on this connection's own thread
                // What the job's request left came from a blocking read: drained.
                dialogue.job_done(done, true, &mut context(&mut out, peer, &bell))
            }
            Action::Flush => dialogue.proceed(&mut context(&mut out, peer, &bell)),
            Action::Read => match stream.read(&mut buf) {
                Ok(0) => {
                    ended = true;
                    dialogue.ended(&mut context(&mut out, peer, &bell))
                }
                Ok(n) => {
                    last_input = Instant::now();
                    stats::add(&stats.bytes_in, n as u64);
                    match dialogue.received(&buf[..n], &mut context(&mut out, peer, &bell)) {
                        // A blocking read returns what has arrived: drained.
                        Action::Read => dialogue.drained(&mut context(&mut out, peer, &bell)),
                        other => other,
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if shutdown.is_requested() {
                        return Ok(()); // everything the client sent has been answered
                    }
                    let now = Instant::now();
                    let idle = idle_timeout.is_some_and(|timeout| now >= last_input + timeout);
                    let slow = options
                        .request_timeout
                        .zip(dialogue.request_since())
                        .is_some_and(|(timeout, since)| now >= since + timeout);
                    if idle || slow {
                        log::debug!("peer={peer} timed out: closing");
                        stats::add(&stats.timed_out, 1);
                        return Ok(());
                    }
                    Action::Read
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => Action::Read,
                Err(e) => return Err(e),
            },
        };
    }
}

/// We close first while the client may still be sending: shut our side and
/// drop what it sends for up to [`LINGER`], so that the kernel does not
/// answer those bytes with a reset that destroys our last reply (a 413, a
/// 431). nginx calls this a lingering close.
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(std::net::Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0; 4096];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => return, // the client closed too
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

/// The blocking drivers' doorbell (pub/sub): a flag the connection's thread
/// looks at between reads.
#[derive(Debug, Default)]
struct Bell(Arc<Rung>);

#[derive(Debug, Default)]
struct Rung {
    /// The service asked for a doorbell: it subscribed.
    made: AtomicBool,
    /// Mail arrived since the thread last looked.
    rung: AtomicBool,
}

impl Doorbells for Bell {
    fn doorbell(&self) -> Box<dyn Doorbell> {
        self.0.made.store(true, Ordering::Relaxed);
        Box::new(Ring(Arc::clone(&self.0)))
    }
}

struct Ring(Arc<Rung>);

impl Doorbell for Ring {
    fn ring(&self) {
        self.0.rung.store(true, Ordering::Release);
    }
}

/// A context writing into `out`, at this instant, ringing `bell` for mail.
/// `out` is sent whole before the next call, so no output limit applies.
fn context<'a>(out: &'a mut Vec<u8>, peer: SocketAddr, bell: &'a Bell) -> Cx<'a> {
    let mut cx = Cx::new(out, Instant::now(), SystemTime::now(), peer);
    cx.doorbells = Some(bell);
    cx
}
