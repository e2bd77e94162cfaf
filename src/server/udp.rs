//! Receiving a datagram and sending the reply, for every mode that serves
//! UDP: the event loop uses a non-blocking `mio` socket, the threaded and
//! blocking modes a blocking `std` one on a thread of its own (forking serves
//! TCP only). What to answer, and what to drop, is decided by
//! [`udp::answer`]; this file does the I/O, the clock and the logging.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use crate::service::udp::{self, DropWarnings, Verdict};
use crate::stats::{self, Stats};

/// The largest possible UDP payload fits, so no datagram is ever cut short
/// by the buffer and [`udp::MAX_DATAGRAM`] can be checked against its real size.
const RECV_BUFFER: usize = 64 * 1024;

/// How many bytes of a datagram the debug line shows.
const LOG_PREVIEW: usize = 80;

/// The two socket types with the same three calls.
pub(crate) trait DatagramSocket: AsRawFd {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize>;
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl DatagramSocket for mio::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        mio::net::UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        mio::net::UdpSocket::send_to(self, buf, addr)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        mio::net::UdpSocket::local_addr(self)
    }
}

impl DatagramSocket for std::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::net::UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        std::net::UdpSocket::send_to(self, buf, addr)
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        std::net::UdpSocket::local_addr(self)
    }
}

/// Buffers for receiving and answering datagrams, reused for every one, and
/// the rate limit of the warning about dropped ones.
#[derive(Debug)]
pub(crate) struct Datagrams {
    recv: Box<[u8]>,
    reply: Vec<u8>,
    /// The socket served last (by descriptor) and its bound address: asked
    /// once, not per datagram. One event loop may serve several UDP
    /// sockets, all open until it stops, so a descriptor names one socket.
    local: Option<(RawFd, SocketAddr)>,
    warnings: DropWarnings,
}

impl Datagrams {
    pub(crate) fn new() -> Datagrams {
        Datagrams {
            recv: vec![0; RECV_BUFFER].into_boxed_slice(),
            reply: Vec::new(),
            local: None,
            warnings: DropWarnings::default(),
        }
    }

    /// Receives one datagram and sends its reply, or drops it (see
    /// [`udp::screen`]). A reply the socket cannot take right now is dropped
    /// too (UDP promises no delivery; we do not queue).
    pub(crate) fn serve_one(
        &mut self,
        socket: &impl DatagramSocket,
        stats: &Stats,
    ) -> io::Result<()> {
        let (n, peer) = socket.recv_from(&mut self.recv)?;
        stats::add(&stats.datagrams, 1);
        stats::add(&stats.bytes_in, n as u64);
        let local = self.local_addr(socket)?;
        let datagram = &self.recv[..n];
        self.reply.clear();
        match udp::answer(datagram, peer, local, &mut self.reply) {
            Verdict::Reply => {
                if log::log_enabled!(log::Level::Debug) {
                    let preview = &datagram[..n.min(LOG_PREVIEW)];
                    log::debug!("udp peer={peer} {n} bytes: \"{}\"", preview.escape_ascii());
                }
                match socket.send_to(&self.reply, peer) {
                    Ok(sent) => stats::add(&stats.bytes_out, sent as u64),
                    Err(e) => log::debug!("udp peer={peer}: reply dropped: {e}"),
                }
            }
            Verdict::Drop(refusal) => {
                stats::add(&stats.datagrams_dropped, 1);
                log::debug!("udp peer={peer} {n} bytes dropped: {refusal}");
                if let Some(warning) = self.warnings.record(Instant::now(), peer, refusal) {
                    log::warn!("{warning}");
                }
            }
        }
        Ok(())
    }

    /// Serves up to `max` datagrams from a non-blocking socket. Returns true
    /// when it stopped at `max` with more perhaps waiting.
    pub(crate) fn serve_many(
        &mut self,
        socket: &impl DatagramSocket,
        max: usize,
        stats: &Stats,
    ) -> bool {
        for _ in 0..max {
            match self.serve_one(socket, stats) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // E.g. ECONNREFUSED: an earlier reply's ICMP "port unreachable".
                Err(e) => log::debug!("udp: {e}"),
            }
        }
        true
    }

    fn local_addr(&mut self, socket: &impl DatagramSocket) -> io::Result<SocketAddr> {
        let fd = socket.as_raw_fd();
        match self.local {
            Some((cached, addr)) if cached == fd => Ok(addr),
            _ => {
                let addr = socket.local_addr()?;
                self.local = Some((fd, addr));
                Ok(addr)
            }
        }
    }
}
