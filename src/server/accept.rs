//! The accept loop shared by the threaded and blocking modes.
//!
//! Like `socketserver`'s `serve_forever`, it waits on the listening sockets
//! with a selector (here a `mio::Poll`, which also lets [`Shutdown`] wake it)
//! and hands each accepted, *blocking* connection to the mode's callback.
//! UDP listeners get a thread each.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::sources::ACCEPT_PAUSE;
use super::udp::Datagrams;
use super::{Listener, Shutdown};
use crate::service::Factory;
use crate::stats::Stats;

const WAKER: Token = Token(usize::MAX);
/// How often a UDP thread blocked in `recv_from` looks at the shutdown flag.
const UDP_SHUTDOWN_CHECK: Duration = Duration::from_millis(200);

/// How often the accept loop wakes for housekeeping when nothing happens.
const TICK: Duration = Duration::from_millis(200);

/// Accepts until shutdown, calling `on_accept` for each connection and
/// `housekeeping` at least every [`TICK`] (to reap children, say).
pub(crate) fn run(
    listeners: Vec<Listener>,
    stats: &Arc<Stats>,
    shutdown: &Shutdown,
    mut housekeeping: impl FnMut(),
    mut on_accept: impl FnMut(TcpStream, SocketAddr, &Arc<dyn Factory>),
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    shutdown.register(Arc::new(Waker::new(poll.registry(), WAKER)?))?;
    let mut tcp: Vec<(TcpListener, Arc<dyn Factory>)> = Vec::new();
    let mut udp_threads = Vec::new();
    for listener in listeners {
        match listener {
            Listener::Tcp { socket, factory } => {
                socket.set_nonblocking(true)?;
                let fd = socket.as_raw_fd();
                poll.registry().register(
                    &mut SourceFd(&fd),
                    Token(tcp.len()),
                    Interest::READABLE,
                )?;
                tcp.push((socket, factory));
            }
            Listener::Udp { socket } => udp_threads.push(serve_udp(socket, stats, shutdown)?),
        }
    }
    let mut events = Events::with_capacity(64);
    while !shutdown.is_requested() {
        housekeeping();
        if let Err(e) = poll.poll(&mut events, Some(TICK)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            let Some((socket, factory)) = tcp.get(event.token().0) else {
                continue;
            };
            // The listener is edge-triggered in the poll: accept all that waits.
            loop {
                match socket.accept() {
                    Ok((stream, peer)) => {
                        // Accepted sockets do not inherit O_NONBLOCK on Linux;
                        // say so explicitly for other systems.
                        if let Err(e) = stream.set_nonblocking(false) {
                            log::warn!("peer={peer}: {e}");
                            continue;
                        }
                        on_accept(stream, peer, factory);
                        if shutdown.is_requested() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) =>
                    {
                        log::error!(
                            "{}: out of file descriptors ({e}): pausing accepts",
                            factory.name()
                        );
                        thread::sleep(ACCEPT_PAUSE);
                        break;
                    }
                    Err(e) => log::debug!("{}: accept failed: {e}", factory.name()),
                }
            }
        }
    }
    for handle in udp_threads {
        let _ = handle.join();
    }
    Ok(())
}

/// Answers datagrams on `socket` from a thread of its own until shutdown
/// (the threaded modes, and the io_uring loop, serve UDP this way).
pub(crate) fn serve_udp(
    socket: std::net::UdpSocket,
    stats: &Arc<Stats>,
    shutdown: &Shutdown,
) -> io::Result<thread::JoinHandle<()>> {
    let (stats, shutdown) = (Arc::clone(stats), shutdown.clone());
    socket.set_read_timeout(Some(UDP_SHUTDOWN_CHECK))?;
    thread::Builder::new().name("udp".into()).spawn(move || {
        let mut datagrams = Datagrams::new();
        while !shutdown.is_requested() {
            match datagrams.serve_one(&socket, &stats) {
                Err(e)
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    log::debug!("udp: {e}")
                }
                _ => {}
            }
        }
    })
}
