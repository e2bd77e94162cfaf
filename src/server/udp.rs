//! Receiving a datagram and sending the reply, for every mode: the event
//! loop uses a non-blocking `mio` socket, the other modes a blocking
//! `std` one on a thread of its own.

use std::io;
use std::net::SocketAddr;

use crate::service::udp;
use crate::stats::{self, Stats};

/// The largest possible UDP payload fits, so no datagram is ever cut short
/// by the buffer and [`udp::MAX_DATAGRAM`] can be checked against its real size.
const RECV_BUFFER: usize = 64 * 1024;

/// The two socket types with the same two calls.
pub(crate) trait DatagramSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize>;
}

impl DatagramSocket for mio::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        mio::net::UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        mio::net::UdpSocket::send_to(self, buf, addr)
    }
}

impl DatagramSocket for std::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::net::UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        std::net::UdpSocket::send_to(self, buf, addr)
    }
}

/// Buffers for receiving and answering datagrams, reused for every one.
#[derive(Debug)]
pub(crate) struct Datagrams {
    recv: Box<[u8]>,
    reply: Vec<u8>,
}

impl Datagrams {
    pub(crate) fn new() -> Datagrams {
        Datagrams {
            recv: vec![0; RECV_BUFFER].into_boxed_slice(),
            reply: Vec::new(),
        }
    }

    /// Receives one datagram and sends its reply. A reply the socket cannot
    /// take right now is dropped (UDP promises no delivery; we do not queue).
    pub(crate) fn serve_one(
        &mut self,
        socket: &impl DatagramSocket,
        stats: &Stats,
    ) -> io::Result<()> {
        let (n, peer) = socket.recv_from(&mut self.recv)?;
        stats::add(&stats.datagrams, 1);
        stats::add(&stats.bytes_in, n as u64);
        self.reply.clear();
        udp::answer(&self.recv[..n], peer, &mut self.reply);
        match socket.send_to(&self.reply, peer) {
            Ok(sent) => stats::add(&stats.bytes_out, sent as u64),
            Err(e) => log::debug!("udp peer={peer}: reply dropped: {e}"),
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
}
