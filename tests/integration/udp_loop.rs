//! Issue 10 item 2: forged UDP datagrams against the real binary, in every
//! mode that serves UDP. A datagram whose source is the server's own port
//! used to be echoed to itself forever (a core at 100%, ~94k log lines/s).
//!
//! The datagrams are forged with a raw socket (the kernel writes the IP
//! header, the test the UDP header with the forged source port), and a second
//! raw socket counts, independently of the server, every datagram that
//! reaches the server's port. Raw sockets need root: CI runs as root, and
//! these tests fail, loudly, anywhere they cannot open one.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::util::{BinServer, connect, cpu_time, parse_metrics, per_mode, sample};

/// Forged datagrams from the server's own port, in one burst.
const SELF_ADDRESSED: u64 = 20;
/// chargen's port: a source that would answer back.
const CHARGEN: u16 = 19;
/// How long the server gets to loop, if it loops, before it is measured.
const SETTLE: Duration = Duration::from_millis(500);
/// The CPU time the server may use over [`CPU_WINDOW`] after the burst:
/// well under 10% of a core (an echo loop uses all of one).
const CPU_WINDOW: Duration = Duration::from_secs(1);
const CPU_LIMIT: Duration = Duration::from_millis(100);

/// A raw IPv4 socket for UDP on loopback: sends datagrams with any source
/// port, and receives a copy of every UDP datagram the host receives.
#[track_caller]
fn raw_udp_socket() -> Socket {
    if unsafe { libc::geteuid() } != 0 {
        panic!(
            "\n*** these tests forge UDP datagrams with a raw socket and must run as root \
             (CI does); they fail rather than skip, so the echo-loop check is never lost ***\n"
        );
    }
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
        .unwrap_or_else(|e| panic!("cannot open a raw UDP socket as root: {e}"));
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    socket
}

/// The internet checksum of a UDP datagram from 127.0.0.1 to 127.0.0.1.
fn udp_checksum(segment: &[u8]) -> u16 {
    let loopback = Ipv4Addr::LOCALHOST.octets();
    let mut pseudo = Vec::with_capacity(12 + segment.len() + 1);
    pseudo.extend_from_slice(&loopback);
    pseudo.extend_from_slice(&loopback);
    pseudo.extend_from_slice(&[0, libc::IPPROTO_UDP as u8]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(segment);
    if pseudo.len() % 2 == 1 {
        pseudo.push(0);
    }
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xffff,
        checksum => checksum,
    }
}

/// Sends `payload` to 127.0.0.1:`to` with the forged source 127.0.0.1:`from`.
fn forge(raw: &Socket, from: u16, to: u16, payload: &[u8]) {
    let mut segment = Vec::with_capacity(8 + payload.len());
    segment.extend_from_slice(&from.to_be_bytes());
    segment.extend_from_slice(&to.to_be_bytes());
    segment.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    segment.extend_from_slice(&[0, 0]);
    segment.extend_from_slice(payload);
    let checksum = udp_checksum(&segment);
    segment[6..8].copy_from_slice(&checksum.to_be_bytes());
    // The port of a raw socket's destination is unused: the header says it.
    let dest = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let sent = raw.send_to(&segment, &dest.into()).unwrap();
    assert_eq!(sent, segment.len());
}

/// Counts the UDP datagrams to any of `ports` that the sniffer sees until `until`.
fn count_arrivals(sniffer: &Socket, ports: &[u16], until: Instant) -> u64 {
    let mut packet = [0; 2048];
    let mut count = 0;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return count;
        }
        sniffer.set_read_timeout(Some(left)).unwrap();
        // A raw socket reads whole packets, IP header first.
        let n = match { sniffer }.read(&mut packet) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => panic!("sniffer: {e}"),
        };
        let packet = &packet[..n];
        let header = usize::from(packet[0] & 0x0f) * 4;
        if packet.len() >= header + 4
            && ports.contains(&u16::from_be_bytes([
                packet[header + 2],
                packet[header + 3],
            ]))
        {
            count += 1;
        }
    }
}

/// The server's counters, from `GET /metrics`.
fn metrics(server: &BinServer) -> Vec<(String, f64)> {
    let mut client = connect(server.addr("http"));
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    parse_metrics(body)
}

fn counter(samples: &[(String, f64)], name: &str) -> u64 {
    sample(samples, &format!("readyloop_{name}_total")) as u64
}

/// An ordinary client (ephemeral port) gets its echo.
#[track_caller]
fn assert_echoes(server: &BinServer, mode: &str) {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.connect(server.addr("udp")).unwrap();
    client.send(b"still answered").unwrap();
    let mut buf = [0; 64];
    let n = client
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("{mode}: no echo for a normal client: {e}"));
    assert_eq!(&buf[..n], b"still answered", "{mode}");
}

fn drop_forged_datagrams(mode_args: &[&str]) {
    let mode = mode_args.join(" ");
    let sender = raw_udp_socket();
    let mut args = vec!["udp@127.0.0.1:0", "http@127.0.0.1:0"];
    args.extend_from_slice(mode_args);
    let server = BinServer::start(&args, &["udp", "http"]);
    let port = server.addr("udp").port();
    assert_echoes(&server, &mode);

    // Opened after that echo, so it counts only what follows.
    let sniffer = raw_udp_socket();
    let before = metrics(&server);
    for i in 0..SELF_ADDRESSED {
        forge(&sender, port, port, format!("loop {i}").as_bytes());
    }
    // Two more sources that would answer back: port 0 and chargen.
    forge(&sender, 0, port, b"from port 0");
    forge(&sender, CHARGEN, port, b"from chargen");
    let forged = SELF_ADDRESSED + 2;
    let to_forged_sources = [port, 0, CHARGEN];
    let arrived = count_arrivals(&sniffer, &to_forged_sources, Instant::now() + SETTLE);

    let cpu_before = cpu_time(server.child.id());
    std::thread::sleep(CPU_WINDOW);
    let cpu_used = cpu_time(server.child.id()) - cpu_before;
    let after = metrics(&server);

    // Each forged datagram reached the server's port once and none was
    // answered: a reply to its forged source would have arrived there.
    assert_eq!(
        arrived, forged,
        "{mode}: datagrams to the server's port, port 0 and chargen"
    );
    let received = counter(&after, "udp_datagrams") - counter(&before, "udp_datagrams");
    let dropped = counter(&after, "udp_dropped") - counter(&before, "udp_dropped");
    assert_eq!(
        (received, dropped),
        (forged, forged),
        "{mode}: received, dropped"
    );
    assert!(
        cpu_used < CPU_LIMIT,
        "{mode}: the server used {cpu_used:?} of CPU in {CPU_WINDOW:?} after the forged datagrams"
    );
    // One warning line for the whole burst, no line per datagram.
    let log = server.log.lock().unwrap().clone();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("udp: dropped")).collect();
    assert_eq!(warnings.len(), 1, "{mode}: warning lines:\n{log}");
    assert!(
        warnings[0].contains("dropped 1 datagram(s)"),
        "{}",
        warnings[0]
    );
    assert!(
        !log.contains("loop 1"),
        "{mode}: a datagram's bytes were logged:\n{log}"
    );

    assert_echoes(&server, &mode);
    let last = metrics(&server);
    assert_eq!(
        counter(&last, "udp_datagrams") - counter(&after, "udp_datagrams"),
        1,
        "{mode}"
    );
}

// The forking mode serves TCP only.
per_mode!(
    self_addressed_datagrams_are_dropped,
    [evloop, threaded, threaded_pool, blocking, uring],
    |mode| drop_forged_datagrams(mode.flags)
);
