//! `udp` (seed 002's `SOCK_DGRAM` receiver): each datagram is logged and
//! echoed back to its sender. UDP has no connection and no stream, so this
//! is a function, not a [`Service`](super::Service): a datagram in, a reply out.
//!
//! Pure: the drivers own the socket (see `server/udp.rs`).

use std::net::SocketAddr;

/// The largest datagram echoed back. Drivers receive into a 64 KiB buffer,
/// so every datagram arrives whole and its real size is known; one over this
/// limit is answered with an error line instead of being echoed.
pub const MAX_DATAGRAM: usize = 8 * 1024;

/// How many bytes of a datagram the log line shows.
const LOG_PREVIEW: usize = 80;

/// Writes the reply to `datagram` (from `peer`) into `out`.
pub fn answer(datagram: &[u8], peer: SocketAddr, out: &mut Vec<u8>) {
    if datagram.len() > MAX_DATAGRAM {
        log::warn!(
            "udp peer={peer} sent a {}-byte datagram, over the {MAX_DATAGRAM}-byte limit",
            datagram.len()
        );
        out.extend_from_slice(
            format!(
                "error: datagram of {} bytes is over the {MAX_DATAGRAM}-byte limit\n",
                datagram.len()
            )
            .as_bytes(),
        );
        return;
    }
    // Per datagram: debug, not info (a busy UDP port would flood the log).
    // Escaped with `{:?}`: the bytes are the client's.
    if log::log_enabled!(log::Level::Debug) {
        let preview = &datagram[..datagram.len().min(LOG_PREVIEW)];
        log::debug!(
            "udp peer={peer} {} bytes: {:?}",
            datagram.len(),
            String::from_utf8_lossy(preview).trim_end()
        );
    }
    out.extend_from_slice(datagram);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 5000))
    }

    #[test]
    fn echoes_a_datagram() {
        let mut out = Vec::new();
        answer(b"hello\x00\xff", peer(), &mut out);
        assert_eq!(out, b"hello\x00\xff");
    }

    #[test]
    fn refuses_an_oversized_datagram_with_its_size() {
        let mut out = Vec::new();
        answer(&vec![b'x'; MAX_DATAGRAM + 1], peer(), &mut out);
        assert_eq!(
            out,
            format!(
                "error: datagram of {} bytes is over the 8192-byte limit\n",
                MAX_DATAGRAM + 1
            )
            .as_bytes()
        );
    }
}
