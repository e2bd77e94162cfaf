//! The offload pool of the single-threaded loops (evloop, uring) over real
//! sockets: a slow job does not hold up other clients (and does without the
//! pool), a job's output never reaches a connection that took over its slab
//! slot (docs/DESIGN.md rule 7), and many jobs at once all come back, each
//! connection's in order.
//!
//! No test here compares a duration with a threshold. Each one asserts an
//! order of events (which reply arrived first, what a socket holds at the
//! moment another reply is read) or counters; sleeps only make one job last
//! long enough for the order to be unambiguous.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use readyloop::server::{Mode, Options};
use readyloop::service::Limits;
use readyloop::service::slow::hash_rounds;

use crate::util::{ModeCase, TIMEOUT, TestServer, connect, expect, read_to_end};

/// The single-threaded loops, which have an offload pool: the readiness
/// loop and the io_uring loop (where the kernel allows it).
fn loops() -> impl Iterator<Item = Mode> {
    [ModeCase::evloop(), ModeCase::uring()]
        .into_iter()
        .filter(ModeCase::runs)
        .map(|case| case.mode)
}

/// `slow` under `mode` with `workers` offload threads (0: inline).
fn slow_server(mode: Mode, workers: usize) -> TestServer {
    let options = Options {
        offload_workers: workers,
        ..Options::default()
    };
    TestServer::start_with(mode, &["slow"], options, Limits::default())
}

/// Waits until `counter` reaches `n`, failing the test after [`TIMEOUT`].
/// A bound on a wait, not a measurement.
#[track_caller]
pub fn wait_for(counter: &AtomicU64, n: u64, what: &str) {
    let start = Instant::now();
    while counter.load(Relaxed) < n {
        assert!(
            start.elapsed() < TIMEOUT,
            "timed out waiting until {what} (at {} of {n})",
            counter.load(Relaxed)
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// What a non-blocking peek finds on `stream` right now: the bytes already
/// received, or `None` when nothing has arrived (`WouldBlock`).
fn peek_now(stream: &TcpStream) -> Option<Vec<u8>> {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0; 64];
    let got = match stream.peek(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => panic!("peek: {e}"),
    };
    stream.set_nonblocking(false).unwrap();
    got
}

fn digest_line(rounds: u32) -> String {
    format!("{:016x}\n", hash_rounds(rounds))
}

#[test]
fn a_job_on_the_pool_does_not_hold_up_other_clients() {
    for mode in loops() {
        let server = slow_server(mode, 2);
        let mut a = server.connect("slow");
        a.write_all(b"sleep 2000\n").unwrap();
        // A's sleep is on a worker before B says anything.
        wait_for(&server.stats.offloaded, 1, "A's sleep is offloaded");

        let mut b = server.connect("slow");
        b.write_all(b"hash 1\n").unwrap();
        expect(&mut b, digest_line(1).as_bytes());
        // B has its whole reply, and A's has not arrived: B did not wait for A.
        assert_eq!(peek_now(&a), None, "A's reply arrived before B's");
        expect(&mut a, b"slept 2000\n");
    }
}

#[test]
fn without_the_pool_a_job_holds_up_every_client() {
    for mode in loops() {
        let server = slow_server(mode, 0);
        let mut a = server.connect("slow");
        a.write_all(b"sleep 1000\n").unwrap();
        // The loop has read A's request, so it is now sleeping on its own
        // thread. B's connect still succeeds: the kernel completes the handshake
        // and queues B in the listen backlog, which nobody accepts until A's
        // sleep is over.
        wait_for(&server.stats.bytes_in, 11, "the loop reads A's sleep");

        let mut b = server.connect("slow");
        b.write_all(b"hash 1\n").unwrap();
        expect(&mut b, digest_line(1).as_bytes());
        // By the time B's reply arrives, A's is already there in full: the loop
        // wrote it before it even accepted B. (Reader threads racing to report
        // which reply came first would measure the scheduler, not the server.)
        assert_eq!(
            peek_now(&a).as_deref(),
            Some(&b"slept 1000\n"[..]),
            "B's reply arrived before A's"
        );
        expect(&mut a, b"slept 1000\n");
    }
}

/// Rule 7 end to end. A connection is closed, with its job still on the
/// pool, and a new connection takes its slab slot; when the old job's
/// output comes back, its generation no longer matches and it is dropped.
///
/// A connection with a job in flight reads nothing (so it notices no EOF)
/// and is closed only when a write fails. So A first fills its socket by
/// sending many `hash 1` and reading none of the replies; the server keeps
/// the rest in A's output buffer. Then A asks for a long sleep and resets
/// the connection: the server flushes, gets an error, and closes A while
/// the sleep is still running.
#[test]
fn a_stale_completion_never_reaches_the_connection_in_its_slot() {
    for mode in loops() {
        // Both ends' buffers are shrunk to a few KB (the server's through its
        // listener: accepted sockets inherit SO_SNDBUF, and setting it turns off
        // send-buffer autotuning, which on loopback would grow it to megabytes).
        // 5,000 replies of 17 bytes (85 KB) are then far more than the sockets
        // hold, and under the 1 MiB at which the server would stop reading A
        // and never get to the sleep.
        const HASHES: u64 = 5_000;
        let server = TestServer::start_tuned(
            mode,
            &["slow"],
            Options {
                offload_workers: 1,
                ..Options::default()
            },
            Limits::default(),
            |listener| {
                socket2::SockRef::from(listener)
                    .set_send_buffer_size(4096)
                    .unwrap()
            },
        );

        let a = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        a.set_recv_buffer_size(4096).unwrap();
        a.connect(&server.addr("slow").into()).unwrap();
        let mut a: TcpStream = a.into();
        a.set_write_timeout(Some(TIMEOUT)).unwrap();
        let mut requests = "hash 1\n".repeat(HASHES as usize);
        requests.push_str("sleep 1000\n");
        a.write_all(requests.as_bytes()).unwrap();
        wait_for(
            &server.stats.offloaded,
            HASHES + 1,
            "A's sleep is offloaded",
        );

        // Reset (linger 0), rather than a FIN, which the server would not read
        // while A's job is in flight.
        socket2::SockRef::from(&a)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(a);
        wait_for(&server.stats.closed, 1, "the server closes A");
        assert_eq!(
            server.stats.requests.load(Relaxed),
            HASHES,
            "A's sleep was answered before A was closed: the slot was not freed \
             with the job in flight, so this test did not exercise rule 7"
        );

        // A was the only connection, so its slot is the only free one; besides,
        // a slab hands out the most recently freed key first (its free list is
        // a stack). B gets A's slab key, the same mio token, a new generation.
        let mut b = server.connect("slow");
        b.write_all(b"sleep 10\n").unwrap();
        b.shutdown(Shutdown::Write).unwrap();
        // One worker: A's sleep finishes first, and its output comes back while
        // B owns the slot. B must get its own reply and nothing else (the server
        // closes B after answering, because B sent EOF).
        let got = read_to_end(&mut b);
        assert_eq!(String::from_utf8_lossy(&got), "slept 10\n");
        // Both sleeps went through the pool; only B's was answered.
        assert_eq!(server.stats.offloaded.load(Relaxed), HASHES + 2);
        assert_eq!(server.stats.requests.load(Relaxed), HASHES + 1);
    }
}

#[test]
fn fifty_clients_at_once_each_get_their_replies_in_order() {
    for mode in loops() {
        const CLIENTS: u32 = 50;
        let server = slow_server(mode, 2);
        // Everyone asks first, so 100 jobs compete for 2 workers.
        let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.connect("slow")).collect();
        for (rounds, client) in (1..CLIENTS + 1).zip(&mut clients) {
            client
                .write_all(format!("sleep 50\nhash {rounds}\n").as_bytes())
                .unwrap();
        }
        // A distinct digest per client: any reply delivered to the wrong
        // connection, or out of order, shows.
        for (rounds, client) in (1..CLIENTS + 1).zip(&mut clients).rev() {
            let expected = format!("slept 50\n{}", digest_line(rounds));
            expect(client, expected.as_bytes());
        }
        assert_eq!(server.stats.offloaded.load(Relaxed), 2 * u64::from(CLIENTS));

        // Pipelined on one connection: the second job is asked for only once
        // the first is answered, so the replies keep the requests' order even
        // though two workers are free.
        let mut pipelined = connect(server.addr("slow"));
        pipelined.write_all(b"sleep 20\nsleep 10\n").unwrap();
        pipelined.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&read_to_end(&mut pipelined)),
            "slept 20\nslept 10\n"
        );
    }
}

#[test]
fn a_client_that_resets_during_its_job_frees_its_slot_at_once() {
    for mode in loops() {
        let server = slow_server(mode, 1);
        let mut a = server.connect("slow");
        a.write_all(b"sleep 1500\n").unwrap();
        wait_for(&server.stats.offloaded, 1, "A's sleep is offloaded");
        // SO_LINGER 0: closing sends RST instead of FIN.
        socket2::SockRef::from(&a)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(a);
        wait_for(
            &server.stats.closed,
            1,
            "A's slot is freed while its job runs",
        );
        assert_eq!(
            server.stats.requests.load(Relaxed),
            0,
            "A's sleep is still running"
        );
        // B takes the freed slot and stays connected past the end of A's job.
        let mut b = server.connect("slow");
        b.write_all(b"sleep 10\n").unwrap();
        expect(&mut b, b"slept 10\n");
        b.set_read_timeout(Some(Duration::from_millis(2500)))
            .unwrap();
        let mut rest = [0u8; 64];
        match io::Read::read(&mut b, &mut rest) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            other => panic!(
                "B got more than its own reply: {other:?} {:?}",
                String::from_utf8_lossy(&rest)
            ),
        }
        assert_eq!(server.stats.offloaded.load(Relaxed), 2);
    }
}
