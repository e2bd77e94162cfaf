//! [`Upstreams`] against a fake store the test plays itself over a real
//! loopback socket: it reads what the loop pipelined and answers when the
//! test says, so the caps, the waiting line and a lost connection can be
//! watched request by request.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::*;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

fn ticket(key: usize) -> Ticket {
    Ticket { key, generation: 1 }
}

/// A loop of one: a poll, the upstreams of a store at `listener`, and the
/// answers they gave so far.
struct Harness {
    poll: Poll,
    events: Events,
    upstreams: Upstreams,
    answers: Vec<(Ticket, Answer)>,
}

impl Harness {
    fn new(listener: &TcpListener) -> Harness {
        let url: StoreUrl = format!("redis://{}/0", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let poll = Poll::new().unwrap();
        let stats = Arc::default();
        let upstreams = Upstreams::start(&url, 1, poll.registry(), stats, Instant::now()).unwrap();
        Harness {
            poll,
            events: Events::with_capacity(16),
            upstreams,
            answers: Vec::new(),
        }
    }

    /// One turn of the loop: wait a little for events, handle them, tend.
    fn turn(&mut self) {
        let wait = Some(Duration::from_millis(50));
        self.poll.poll(&mut self.events, wait).unwrap();
        let now = Instant::now();
        for event in &self.events {
            let Token(t) = event.token();
            (self.upstreams).on_event(t - UPSTREAM_BASE, event, self.poll.registry(), now);
        }
        let answers = self.upstreams.tend(self.poll.registry(), now);
        self.answers.extend(answers);
    }

    /// Turns until `n` answers have come (at most 100 turns).
    fn until_answers(&mut self, n: usize) {
        for _ in 0..100 {
            if self.answers.len() >= n {
                return;
            }
            self.turn();
        }
        panic!("{} answers of {n}", self.answers.len());
    }
}

/// The fake store reads exactly `n` bytes the loop wrote, turning the
/// loop meanwhile so that it writes.
fn read_from_loop(store: &mut TcpStream, harness: &mut Harness, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    store
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    for _ in 0..200 {
        if got.len() >= n {
            break;
        }
        harness.turn();
        match store.read(&mut chunk) {
            Ok(0) => panic!("the loop closed its upstream"),
            Ok(k) => got.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got.len(), n, "bytes the loop wrote");
    got
}

fn accept(listener: &TcpListener, harness: &mut Harness) -> TcpStream {
    harness.turn(); // the connect completes; the SELECT is written
    listener.accept().unwrap().0
}

#[test]
fn over_the_cap_requests_wait_in_order_and_go_out_as_replies_free_room_unless_forgotten() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut harness = Harness::new(&listener);
    let now = Instant::now();
    let total = MAX_IN_FLIGHT + 5;
    for key in 0..total {
        let ping = Request::command(&[b"PING"]);
        assert!(harness.upstreams.submit(ticket(key), ping, now));
    }
    // The SELECT takes one place: the rest of the cap is clients', and six wait.
    let fit = MAX_IN_FLIGHT - 1;
    assert_eq!(harness.upstreams.waiting.len(), total - fit);
    // The last one's connection closes while it waits: it is never sent.
    harness.upstreams.forget(ticket(total - 1));
    let total = total - 1;
    assert_eq!(harness.upstreams.waiting.len(), total - fit);

    let mut store = accept(&listener, &mut harness);
    let select = &harness.upstreams.select.clone();
    let first = read_from_loop(&mut store, &mut harness, select.len() + fit * PING.len());
    assert!(first.starts_with(select));
    assert!(first[select.len()..].chunks(PING.len()).all(|c| c == PING));
    // Nothing more goes out until replies free room.
    assert_eq!(harness.upstreams.waiting.len(), total - fit);

    store.write_all(b"+OK\r\n").unwrap();
    store.write_all(&b"+PONG\r\n".repeat(fit)).unwrap();
    harness.until_answers(fit);
    let rest = read_from_loop(&mut store, &mut harness, (total - fit) * PING.len());
    assert!(rest.chunks(PING.len()).all(|c| c == PING));
    store.write_all(&b"+PONG\r\n".repeat(total - fit)).unwrap();
    harness.until_answers(total);

    let expected: Vec<(Ticket, Answer)> = (0..total)
        .map(|key| (ticket(key), Answer::Replies(b"+PONG\r\n".to_vec())))
        .collect();
    assert!(
        harness.answers == expected,
        "answers out of order or mismatched"
    );
    assert!(harness.upstreams.waiting.is_empty());
    // Counted: every request once, in a handful of writes.
    let stats = &harness.upstreams.stats;
    let requests = stats
        .store_commands
        .load(std::sync::atomic::Ordering::Relaxed);
    let writes = stats
        .store_writes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(requests, total as u64);
    assert!(
        writes < requests / 10,
        "{writes} writes for {requests} requests"
    );
}

#[test]
fn a_lost_store_answers_every_request_unavailable_and_refuses_new_ones_until_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut harness = Harness::new(&listener);
    let now = Instant::now();
    for key in 0..3 {
        assert!(
            harness
                .upstreams
                .submit(ticket(key), Request::command(&[b"PING"]), now)
        );
    }
    let mut store = accept(&listener, &mut harness);
    let select_len = harness.upstreams.select.len();
    read_from_loop(&mut store, &mut harness, select_len + 3 * PING.len());
    // One reply, then the store goes away.
    store.write_all(b"+OK\r\n+PONG\r\n").unwrap();
    drop(store);
    harness.until_answers(3);
    assert_eq!(
        harness.answers,
        [
            (ticket(0), Answer::Replies(b"+PONG\r\n".to_vec())),
            (ticket(1), Answer::Unavailable),
            (ticket(2), Answer::Unavailable),
        ]
    );
    // Down: refused at once, not queued.
    assert!(
        !harness
            .upstreams
            .submit(ticket(3), Request::command(&[b"PING"]), now)
    );
    // After the backoff it connects again (the kernel completes the
    // handshake from the backlog) and serves.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !matches!(harness.upstreams.conns[0].link, Link::Up(_)) {
        assert!(Instant::now() < deadline, "no reconnect");
        // Reconnecting is not connected: still refused, never queued.
        assert!(
            !harness
                .upstreams
                .submit(ticket(3), Request::command(&[b"PING"]), now)
        );
        harness.turn();
    }
    assert!(
        harness
            .upstreams
            .submit(ticket(4), Request::command(&[b"PING"]), now)
    );
    let mut store = accept(&listener, &mut harness);
    read_from_loop(&mut store, &mut harness, select_len + PING.len());
    store.write_all(b"+OK\r\n+PONG\r\n").unwrap();
    harness.until_answers(4);
    assert_eq!(
        harness.answers[3],
        (ticket(4), Answer::Replies(b"+PONG\r\n".to_vec()))
    );
}

#[test]
fn a_connection_the_store_closes_while_idle_is_made_again_at_once_and_costs_no_request() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut harness = Harness::new(&listener);
    let mut store = accept(&listener, &mut harness);
    let select_len = harness.upstreams.select.len();
    read_from_loop(&mut store, &mut harness, select_len);
    store.write_all(b"+OK\r\n").unwrap();
    for _ in 0..100 {
        if harness.upstreams.conns[0].pipeline.selected() {
            break;
        }
        harness.turn();
    }
    // As if it had served for a while, then Redis' idle `timeout` closed it.
    let long_ago = Instant::now() - RETRY_MAX;
    harness.upstreams.conns[0].up_since = Some(long_ago);
    drop(store);
    for _ in 0..100 {
        if harness.upstreams.conns[0].up_since != Some(long_ago) {
            break;
        }
        harness.turn();
    }
    // Not lost: no backoff, and a request now is taken, not refused.
    let upstream = &harness.upstreams.conns[0];
    assert!(!upstream.lost && !matches!(upstream.link, Link::Down { .. }));
    let ping = Request::command(&[b"PING"]);
    assert!(harness.upstreams.submit(ticket(1), ping, Instant::now()));
    let mut store = accept(&listener, &mut harness);
    read_from_loop(&mut store, &mut harness, select_len + PING.len());
    store.write_all(b"+OK\r\n+PONG\r\n").unwrap();
    harness.until_answers(1);
    assert_eq!(
        harness.answers,
        [(ticket(1), Answer::Replies(b"+PONG\r\n".to_vec()))]
    );
}
