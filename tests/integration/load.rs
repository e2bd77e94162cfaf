//! Sizes and numbers: a 10 MiB message, 500 clients at once, and a client
//! that sends without reading (back-pressure keeps the server's buffers bounded).

use std::io::Write;
use std::net::Shutdown;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use readyloop::server::{Mode, Options};
use readyloop::service::Limits;

use crate::util::{TestServer, expect, per_mode, read_exact};

/// A 10 MiB binary message, made once for every mode's test.
fn ten_mib() -> &'static [u8] {
    static MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();
    MESSAGE.get_or_init(|| {
        (0..10 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect()
    })
}

per_mode!(echo_returns_a_10_mib_binary_message_intact, |mode| {
    let message = ten_mib();
    let server = mode.serve(&["echo"]);
    let mut client = server.connect("echo");
    let mut writer = client.try_clone().unwrap();
    // Write and read at once: the server echoes while we still send.
    let writing = thread::spawn(move || {
        writer.write_all(message).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let got = read_exact(&mut client, message.len());
    writing.join().unwrap();
    assert!(got == message, "the echo differs from what was sent");
});

// Only the modes that hold 500 clients at once: blocking serves one at a
// time, a pool of 4 threads serves four, and forking would start 500
// processes.
per_mode!(
    five_hundred_clients_at_once_each_get_their_own_replies,
    [evloop, threaded, uring],
    |mode| {
        let server = TestServer::start(mode.mode, &["upper"]);
        let mut clients: Vec<_> = (0..500).map(|_| server.connect("upper")).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            client
                .write_all(format!("client {i}\n").as_bytes())
                .unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate().rev() {
            expect(client, format!("CLIENT {i}\n").as_bytes());
        }
        assert_eq!(server.stats.accepted.load(Relaxed), 500);
    }
);

// Blocking serves one client at a time; a forked child's counters are its own.
per_mode!(
    a_client_that_never_reads_cannot_grow_server_memory,
    [evloop, threaded, threaded_pool, uring],
    |mode| {
        const MAX_OUTPUT: usize = 256 * 1024;
        // Bytes read but not yet echoed is what the server holds for the client.
        // It may pass the soft limit by one read (16 KiB) and the driver's buffers.
        const HELD_BOUND: u64 = (MAX_OUTPUT + 64 * 1024) as u64;
        let options = Options {
            max_output: MAX_OUTPUT,
            ..mode.options()
        };
        let server =
            TestServer::start_with(mode.mode, &["echo", "upper"], options, Limits::default());
        let mut hog = server.connect("echo");
        hog.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let writing = thread::spawn(move || {
            let chunk = vec![b'h'; 64 * 1024];
            let mut sent = 0usize;
            // Bounded: stops when the server stops taking bytes, or at 256 MiB.
            while sent < 256 << 20 {
                match hog.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(e) => {
                        assert!(
                            matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ),
                            "{e}"
                        );
                        break;
                    }
                }
            }
            (sent, hog)
        });
        let mut held_max = 0;
        let started = Instant::now();
        while !writing.is_finished() && started.elapsed() < Duration::from_secs(20) {
            let held = server
                .stats
                .bytes_in
                .load(Relaxed)
                .saturating_sub(server.stats.bytes_out.load(Relaxed));
            held_max = held_max.max(held);
            // Meanwhile everyone else is served.
            let mut other = server.connect("upper");
            other.write_all(b"ping\n").unwrap();
            expect(&mut other, b"PING\n");
        }
        let (sent, _hog) = writing.join().unwrap();
        let held = server
            .stats
            .bytes_in
            .load(Relaxed)
            .saturating_sub(server.stats.bytes_out.load(Relaxed));
        // io_uring delivers a turn's receives before a receive can be
        // cancelled: one turn's worth more, at most the buffer ring.
        let bound = match mode.mode {
            Mode::Uring => HELD_BOUND + readyloop::server::uring::RECV_POOL_BYTES as u64,
            _ => HELD_BOUND,
        };
        assert!(
            held.max(held_max) <= bound,
            "the server held {held_max} bytes for one client"
        );
        assert!(
            sent < 128 << 20,
            "the server took {sent} bytes from a client that never reads"
        );
    }
);
