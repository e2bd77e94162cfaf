//! `udp` (seed 002's `SOCK_DGRAM` receiver): each datagram is echoed back to
//! its sender, unless the sender is one that would answer the echo. UDP has
//! no connection and no stream, so this is a function, not a
//! [`Service`](super::Service): a datagram in, a verdict and a reply out.
//!
//! # Why some datagrams are dropped
//! A UDP source address is whatever the sender wrote, so one forged datagram
//! "from" a server that answers datagrams by itself makes two servers answer
//! each other forever (CVE-1999-0103: echo and chargen pointed at each
//! other; with our own port as the source, the server echoes to itself at
//! 100% CPU). [`screen`] refuses the sources that can close such a loop:
//! - source port 0: no socket can send from it; only a forged datagram has it;
//! - our own port, from any address: our own socket (its local address, or any
//!   local address when bound to `0.0.0.0`/`::`, without listing interfaces),
//!   or a twin server on the same port elsewhere, which would echo back;
//! - a privileged port (below 1024): a client sends from an ephemeral port
//!   (Linux: 32768-60999), a server from its well-known one, and the ones
//!   there answer datagrams by themselves: echo 7, discard 9, daytime 13,
//!   qotd 17, chargen 19, time 37, DNS 53, NTP 123, NetBIOS 137, SNMP 161,
//!   CLDAP 389 (inetd's builtins and the usual reflection-attack list);
//! - [`REFLECTOR_PORTS`]: well-known reflectors above 1023.
//!
//! And no reply is longer than its request ([`answer`] enforces it), so a
//! forged source cannot turn us into an amplifier either.
//!
//! A loop through a peer that is not on these lists (another echo server on
//! an arbitrary port) is still possible; the rate-limited warning
//! ([`DropWarnings`]) and the `udp_dropped` counter make the refused ones
//! visible without letting a flood fill the log.
//!
//! Pure: no socket, no clock (time comes in as an argument); the drivers own
//! the socket and the log (see `server/udp.rs`).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The largest datagram echoed back. Drivers receive into a 64 KiB buffer,
/// so every datagram arrives whole and its real size is known; one over this
/// limit is answered with an error line instead of being echoed.
pub const MAX_DATAGRAM: usize = 8 * 1024;

/// Ports below this one are privileged: servers' ports, never a client's.
pub const FIRST_UNPRIVILEGED_PORT: u16 = 1024;

/// Unprivileged source ports of services that answer any datagram by
/// themselves, so an echo to them comes back: SSDP 1900, WS-Discovery 3702,
/// mDNS 5353, CoAP 5683, readyloop's own default UDP port 9997, memcached 11211.
pub const REFLECTOR_PORTS: &[u16] = &[1900, 3702, 5353, 5683, 9997, 11211];

/// Why a datagram gets no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Source port 0: forged, since no socket sends from it.
    PortZero,
    /// From our own port: ourselves, or a twin server that would echo back.
    OwnPort,
    /// From a privileged port: a server's, whose answer would come back.
    Privileged(u16),
    /// From one of [`REFLECTOR_PORTS`].
    Reflector(u16),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::PortZero => write!(f, "source port 0 (forged)"),
            Refusal::OwnPort => write!(f, "source is our own port (would echo to itself)"),
            Refusal::Privileged(port) => write!(
                f,
                "privileged source port {port} (a server that would answer back)"
            ),
            Refusal::Reflector(port) => write!(
                f,
                "source port {port} is a known reflector (would answer back)"
            ),
        }
    }
}

/// Whether a datagram from `peer`, received on the socket bound to `local`,
/// may be answered.
pub fn screen(peer: SocketAddr, local: SocketAddr) -> Result<(), Refusal> {
    match peer.port() {
        0 => Err(Refusal::PortZero),
        port if port == local.port() => Err(Refusal::OwnPort),
        port if port < FIRST_UNPRIVILEGED_PORT => Err(Refusal::Privileged(port)),
        port if REFLECTOR_PORTS.contains(&port) => Err(Refusal::Reflector(port)),
        _ => Ok(()),
    }
}

/// What to do with one datagram.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send what [`answer`] appended to `out` back to the peer.
    Reply,
    /// Send nothing (`out` is untouched).
    Drop(Refusal),
}

/// Decides on `datagram` from `peer` (received on `local`) and appends its
/// reply to `out`: the datagram itself, or an error line when it is over
/// [`MAX_DATAGRAM`]. The reply is never longer than the datagram.
pub fn answer(datagram: &[u8], peer: SocketAddr, local: SocketAddr, out: &mut Vec<u8>) -> Verdict {
    if let Err(refusal) = screen(peer, local) {
        return Verdict::Drop(refusal);
    }
    let start = out.len();
    if datagram.len() > MAX_DATAGRAM {
        out.extend_from_slice(
            format!(
                "error: datagram of {} bytes is over the {MAX_DATAGRAM}-byte limit\n",
                datagram.len()
            )
            .as_bytes(),
        );
    } else {
        out.extend_from_slice(datagram);
    }
    // No amplification, whatever the reply above: a forged source gets back
    // at most what the forger sent.
    out.truncate(start + datagram.len());
    Verdict::Reply
}

/// How often, at most, the warning about dropped datagrams is logged.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Rate-limits the warning about dropped datagrams: the first drop is
/// reported at once, later ones at most one line per interval, each line
/// counting the drops since the previous one. A flood of forged datagrams so
/// costs one log line per interval. Drops after the last line are reported
/// with the next line (the `udp_dropped` counter has the exact total).
#[derive(Debug)]
pub struct DropWarnings {
    /// The shortest time between two lines.
    interval: Duration,
    /// When the last line was due; `None` before the first drop.
    last_line: Option<Instant>,
    /// Drops counted since the last line, not reported yet.
    unreported: u64,
}

/// One warning line: `dropped` datagrams since the previous line, the latest
/// from `peer` for `refusal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropWarning {
    /// Datagrams dropped since the previous line, this one included.
    pub dropped: u64,
    /// The sender of the latest one.
    pub peer: SocketAddr,
    /// Why the latest one was dropped.
    pub refusal: Refusal,
}

impl fmt::Display for DropWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "udp: dropped {} datagram(s) since the last warning (at most one per {}s); \
             latest from peer={}: {}",
            self.dropped,
            DROP_WARNING_INTERVAL.as_secs(),
            self.peer,
            self.refusal
        )
    }
}

impl DropWarnings {
    /// At most one line per `interval`.
    pub fn new(interval: Duration) -> DropWarnings {
        DropWarnings {
            interval,
            last_line: None,
            unreported: 0,
        }
    }

    /// Counts a datagram from `peer` dropped at `now` for `refusal`, and
    /// returns the line to log when one is due.
    pub fn record(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        refusal: Refusal,
    ) -> Option<DropWarning> {
        self.unreported += 1;
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        self.last_line = Some(now);
        Some(DropWarning {
            dropped: std::mem::take(&mut self.unreported),
            peer,
            refusal,
        })
    }
}

impl Default for DropWarnings {
    fn default() -> DropWarnings {
        DropWarnings::new(DROP_WARNING_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL_PORT: u16 = 9000;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn local() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], LOCAL_PORT))
    }

    fn client() -> SocketAddr {
        addr("127.0.0.1:45000")
    }

    fn reply_to(datagram: &[u8], peer: SocketAddr, local: SocketAddr) -> (Verdict, Vec<u8>) {
        let mut out = Vec::new();
        let verdict = answer(datagram, peer, local, &mut out);
        (verdict, out)
    }

    #[test]
    fn echoes_a_datagram_from_a_client_port() {
        assert_eq!(
            reply_to(b"hello\x00\xff", client(), local()),
            (Verdict::Reply, b"hello\x00\xff".to_vec())
        );
    }

    #[test]
    fn echoes_an_empty_datagram_as_an_empty_one() {
        assert_eq!(
            reply_to(b"", client(), local()),
            (Verdict::Reply, Vec::new())
        );
    }

    #[test]
    fn refuses_an_oversized_datagram_with_its_size() {
        let (verdict, out) = reply_to(&vec![b'x'; MAX_DATAGRAM + 1], client(), local());
        assert_eq!(verdict, Verdict::Reply);
        assert_eq!(
            out,
            format!(
                "error: datagram of {} bytes is over the 8192-byte limit\n",
                MAX_DATAGRAM + 1
            )
            .as_bytes()
        );
    }

    #[test]
    fn drops_a_datagram_from_its_own_address() {
        assert_eq!(
            reply_to(b"loop", local(), local()),
            (Verdict::Drop(Refusal::OwnPort), Vec::new())
        );
    }

    #[test]
    fn drops_its_own_port_on_any_address_when_bound_to_any() {
        for (peer, bound) in [
            ("127.0.0.1:9000", "0.0.0.0:9000"),
            ("192.168.1.7:9000", "0.0.0.0:9000"),
            ("[::1]:9000", "[::]:9000"),
            ("[::ffff:127.0.0.1]:9000", "[::]:9000"),
            ("10.1.2.3:9000", "127.0.0.1:9000"),
        ] {
            assert_eq!(
                screen(addr(peer), addr(bound)),
                Err(Refusal::OwnPort),
                "{peer} to {bound}"
            );
        }
    }

    #[test]
    fn drops_port_zero() {
        assert_eq!(screen(addr("127.0.0.1:0"), local()), Err(Refusal::PortZero));
    }

    #[test]
    fn drops_every_privileged_port_and_the_listed_reflectors() {
        for port in [1, 7, 9, 13, 17, 19, 37, 53, 123, 137, 161, 389, 1023] {
            assert_eq!(
                screen(SocketAddr::from(([127, 0, 0, 1], port)), local()),
                Err(Refusal::Privileged(port))
            );
        }
        for &port in REFLECTOR_PORTS {
            assert_eq!(
                screen(SocketAddr::from(([127, 0, 0, 1], port)), local()),
                Err(Refusal::Reflector(port))
            );
        }
    }

    #[test]
    fn answers_ephemeral_and_other_unprivileged_ports() {
        for port in [1024, 1025, 8080, 9001, 32768, 45000, 60999, 65535] {
            assert_eq!(
                screen(SocketAddr::from(([127, 0, 0, 1], port)), local()),
                Ok(())
            );
        }
    }

    #[test]
    fn a_dropped_datagram_leaves_out_as_it_was() {
        let mut out = b"earlier".to_vec();
        let verdict = answer(b"xyz", addr("127.0.0.1:19"), local(), &mut out);
        assert_eq!(verdict, Verdict::Drop(Refusal::Privileged(19)));
        assert_eq!(out, b"earlier");
    }

    #[test]
    fn no_reply_is_longer_than_its_request() {
        for len in [
            0,
            1,
            10,
            60,
            MAX_DATAGRAM,
            MAX_DATAGRAM + 1,
            MAX_DATAGRAM + 10,
            65_507,
        ] {
            let (verdict, out) = reply_to(&vec![b'a'; len], client(), local());
            assert_eq!(verdict, Verdict::Reply);
            assert!(
                out.len() <= len,
                "{len}-byte request, {}-byte reply",
                out.len()
            );
        }
    }

    #[test]
    fn warns_at_once_then_once_per_interval_with_the_count() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut warnings = DropWarnings::new(Duration::from_secs(10));
        let peer = local();
        let first = warnings.record(at(0), peer, Refusal::OwnPort);
        assert_eq!(first.map(|w| w.dropped), Some(1));
        // A flood inside the interval: silent, counted.
        for ms in 1..1000 {
            assert_eq!(warnings.record(at(ms), peer, Refusal::OwnPort), None);
        }
        assert_eq!(warnings.record(at(9_999), peer, Refusal::OwnPort), None);
        let second = warnings.record(at(10_000), addr("127.0.0.1:0"), Refusal::PortZero);
        assert_eq!(
            second,
            Some(DropWarning {
                dropped: 1001,
                peer: addr("127.0.0.1:0"),
                refusal: Refusal::PortZero
            })
        );
        // The interval counts from the last line, not from the first drop.
        assert_eq!(warnings.record(at(19_999), peer, Refusal::OwnPort), None);
        assert_eq!(
            warnings
                .record(at(20_000), peer, Refusal::OwnPort)
                .map(|w| w.dropped),
            Some(2)
        );
    }

    #[test]
    fn a_quiet_spell_reports_the_next_drop_at_once() {
        let start = Instant::now();
        let mut warnings = DropWarnings::new(Duration::from_secs(10));
        assert!(warnings.record(start, local(), Refusal::OwnPort).is_some());
        let later = start + Duration::from_secs(3600);
        assert_eq!(
            warnings
                .record(later, local(), Refusal::OwnPort)
                .map(|w| w.dropped),
            Some(1)
        );
    }

    #[test]
    fn the_warning_line_names_count_peer_and_reason() {
        let line = DropWarning {
            dropped: 3,
            peer: local(),
            refusal: Refusal::OwnPort,
        }
        .to_string();
        assert_eq!(
            line,
            "udp: dropped 3 datagram(s) since the last warning (at most one per 10s); \
             latest from peer=127.0.0.1:9000: source is our own port (would echo to itself)"
        );
    }
}
