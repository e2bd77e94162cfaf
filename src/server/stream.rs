//! Serving one connection with blocking I/O: the driver of the threaded and
//! blocking modes (and the one seed 001's `socketserver` handlers assume).
//!
//! Read, feed the service, write everything, repeat. A blocking `write_all`
//! is back-pressure by itself: a client that does not read stops its own
//! thread, never the others. Jobs run inline on this thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{Options, Shutdown};
use crate::service::{self, Cx, Factory, Next};
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
    let mut service = factory.make();
    let mut input = Vec::new();
    let mut out = Vec::new();
    let mut buf = vec![0; super::connection::READ_CHUNK];
    let mut cx = Cx::new(&mut out, Instant::now(), peer);
    let mut next = service.open(&mut cx);
    let mut requests = cx.requests;
    // Input the service has not been offered yet: just read, or left
    // waiting behind an offloaded request.
    let mut unfed = false;
    let mut input_ended = false;
    let idle_timeout = options.idle_timeout.or_else(|| factory.idle_timeout());
    let max_input = options.max_input.max(factory.max_input().unwrap_or(0));
    let mut last_input = Instant::now();
    loop {
        while let Next::Offload(job) = next {
            let mut cx = Cx::new(&mut out, Instant::now(), peer);
            next = service.resume(job.run(), &mut cx);
            requests += cx.requests;
            unfed = true;
        }
        if input_ended && next == Next::Continue {
            next = Next::Close; // the client has finished: so have we
        }
        let answered = u64::from(std::mem::take(&mut requests));
        stats::add(&stats.requests, answered);
        stats::add(&counters.requests, answered);
        if !out.is_empty() {
            stream.write_all(&out)?;
            stats::add(&stats.bytes_out, out.len() as u64);
            out.clear();
        }
        if next == Next::Close {
            return Ok(());
        }
        if std::mem::take(&mut unfed) && !input.is_empty() {
            let mut cx = Cx::new(&mut out, last_input, peer);
            let (consumed, after) = service::feed(service.as_mut(), &input, &mut cx);
            requests = cx.requests;
            input.drain(..consumed);
            next = after;
            if input.len() >= max_input {
                log::warn!(
                    "peer={peer} sent {} bytes its service did not consume: closing",
                    input.len()
                );
                return Ok(());
            }
            continue;
        }
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if shutdown.is_requested() {
                    return Ok(()); // everything the client sent has been answered
                }
                if idle_timeout.is_some_and(|timeout| last_input.elapsed() >= timeout) {
                    log::debug!("peer={peer} idle for {idle_timeout:?}: closing");
                    return Ok(());
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        last_input = Instant::now();
        if n == 0 {
            let mut cx = Cx::new(&mut out, last_input, peer);
            // The last request may still need a job; Continue means done.
            next = match service.eof(&input, &mut cx) {
                Next::Offload(job) => Next::Offload(job),
                _ => Next::Close,
            };
            input_ended = true;
            requests = cx.requests;
            continue;
        }
        stats::add(&stats.bytes_in, n as u64);
        input.extend_from_slice(&buf[..n]);
        unfed = true;
    }
}
