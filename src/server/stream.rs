//! Serving one connection with blocking I/O: the driver of the threaded and
//! blocking modes (and the one seed 001's `socketserver` handlers assume).
//!
//! Read, hand the bytes to the connection's [`Dialogue`], write everything,
//! repeat. A blocking `write_all` is back-pressure by itself: a client that
//! does not read stops its own thread, never the others. Jobs run inline on
//! this thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime};

use super::{Options, Shutdown};
use crate::service::{Action, Cx, Dialogue, Factory};
use crate::stats::{self, ServiceStats, Stats};

/// How often a thread blocked in `read` looks at the shutdown flag.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(200);

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
    let mut buf = vec![0; super::connection::READ_CHUNK];
    let mut last_input = Instant::now();
    let mut action = talk(&mut dialogue, &mut out, peer, Dialogue::open);
    loop {
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
            Action::Close => return Ok(()),
            Action::Run(job) => {
                let done = job.run(); // on this connection's own thread
                // What the job's request left came from a blocking read: drained.
                talk(&mut dialogue, &mut out, peer, |d, cx| {
                    d.job_done(done, true, cx)
                })
            }
            Action::Flush => talk(&mut dialogue, &mut out, peer, Dialogue::proceed),
            Action::Read => match stream.read(&mut buf) {
                Ok(0) => talk(&mut dialogue, &mut out, peer, Dialogue::ended),
                Ok(n) => {
                    last_input = Instant::now();
                    stats::add(&stats.bytes_in, n as u64);
                    match talk(&mut dialogue, &mut out, peer, |d, cx| {
                        d.received(&buf[..n], cx)
                    }) {
                        // A blocking read returns what has arrived: drained.
                        Action::Read => talk(&mut dialogue, &mut out, peer, Dialogue::drained),
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

/// Calls the dialogue with a context writing into `out`, at this instant.
/// `out` is sent whole before the next call, so no output limit applies.
fn talk(
    dialogue: &mut Dialogue,
    out: &mut Vec<u8>,
    peer: SocketAddr,
    call: impl FnOnce(&mut Dialogue, &mut Cx<'_>) -> Action,
) -> Action {
    let mut cx = Cx::new(out, Instant::now(), SystemTime::now(), peer);
    call(dialogue, &mut cx)
}
