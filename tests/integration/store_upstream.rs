//! The event loop as the Redis client (issue 13, item 2): requests from
//! many connections pipelined onto the loop's own upstream connections to a
//! real `redis-server`, replies routed back to the client that asked, and
//! what clients get when the store dies, comes back, or never answers.
//!
//! The service here is the test's own: a line of words becomes one Redis
//! command, and Redis's reply goes back raw (an unavailable store:
//! `-ERR store unavailable`). So the test sees exactly what the loop's
//! upstream did, without a service's own protocol in between. Evloop only:
//! the other modes send on `remote::blocking`, one connection per worker.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use readyloop::remote::{Answer, Request, StoreUrl};
use readyloop::server::{self, Listener, Mode, Options};
use readyloop::service::{self, Cx, FnFactory, Job, JobOutput, Next, Service, Shared};
use readyloop::stats::Stats;
use readyloop::store::Store;

use crate::kv_util::RedisServer;
use crate::util::{TestServer, connect};

/// What the relay answers when the store could not be reached.
const UNAVAILABLE: &[u8] = b"-ERR store unavailable\r\n";

/// One line of space-separated words = one command to the store; its reply
/// goes back to the client byte for byte.
struct Relay;

impl Service for Relay {
    fn input(&mut self, input: &[u8], _cx: &mut Cx<'_>) -> (usize, Next) {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            return (0, Next::Wait);
        };
        let words: Vec<&[u8]> = input[..end]
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .collect();
        (
            end + 1,
            Next::Offload(Job::Remote(Request::command(&words))),
        )
    }

    fn resume(&mut self, done: JobOutput, cx: &mut Cx<'_>) -> Next {
        match done {
            JobOutput::Remote(Answer::Replies(replies)) => cx.out.extend_from_slice(&replies),
            _ => cx.out.extend_from_slice(UNAVAILABLE),
        }
        Next::Answered
    }
}

/// One event loop serving `relay` (onto the store at `store`) and `echo`
/// (which needs no store), with `conns` upstream connections.
fn serve(store: SocketAddr, conns: usize) -> TestServer {
    let url: StoreUrl = format!("redis://{store}/0").parse().unwrap();
    let stats = Arc::new(Stats::default());
    let shared = Shared {
        store: Store::in_memory(),
        broker: Default::default(),
        stats: Arc::clone(&stats),
        limits: Default::default(),
    };
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = |factory| Listener::Tcp {
        socket: server::bind_tcp(any_port).unwrap(),
        factory,
    };
    let listeners = vec![
        (
            "relay".to_owned(),
            listener(FnFactory::new("relay", || Box::new(Relay))),
        ),
        ("echo".to_owned(), listener(service::echo::factory(&shared))),
    ];
    let options = Options {
        store: Some(url),
        store_conns: conns,
        ..Options::default()
    };
    TestServer::serve_listeners(Mode::Evloop, listeners, options, stats)
}

/// Reads exactly `expected.len()` bytes and compares them.
#[track_caller]
fn expect(client: &mut TcpStream, expected: &[u8], what: &str) {
    let mut got = vec![0; expected.len()];
    client
        .read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        got.escape_ascii().to_string(),
        expected.escape_ascii().to_string(),
        "{what}"
    );
}

/// Sends one line and reads one reply line (a simple reply, an error or
/// an integer: one line each).
fn ask(client: &mut TcpStream, line: &str) -> Vec<u8> {
    client.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8];
    while !reply.ends_with(b"\r\n") {
        client.read_exact(&mut byte).unwrap();
        reply.push(byte[0]);
    }
    reply
}

#[test]
fn evloop_500_pipelining_clients_get_their_own_replies_in_order() {
    let redis = RedisServer::start();
    let server = serve(redis.addr, 2);
    let addr = server.addr("relay");
    let mut clients: Vec<TcpStream> = (0..500).map(|_| connect(addr)).collect();
    // Each client pipelines five commands on its own keys in one write.
    for (i, client) in clients.iter_mut().enumerate() {
        let requests = format!(
            "SET key:{i} value-{i}\nINCR n:{i}\nGET key:{i}\nINCRBY n:{i} {i}\nAPPEND key:{i} !\n"
        );
        client.write_all(requests.as_bytes()).unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let value = format!("value-{i}");
        let expected = format!(
            "+OK\r\n:1\r\n${}\r\n{value}\r\n:{}\r\n:{}\r\n",
            value.len(),
            1 + i,
            value.len() + 1
        );
        expect(client, expected.as_bytes(), &format!("client {i}"));
    }
    // And the store holds what each asked for.
    let mut check = connect(addr);
    assert_eq!(ask(&mut check, "GET key:499"), b"$10\r\n");
    expect(&mut check, b"value-499!\r\n", "GET key:499");
}

#[test]
fn evloop_store_killed_gives_error_replies_and_restarted_serves_again() {
    let mut redis = RedisServer::start();
    let server = serve(redis.addr, 2);
    let mut client = connect(server.addr("relay"));
    assert_eq!(ask(&mut client, "SET a 1"), b"+OK\r\n");

    redis.kill();
    // The loop sees its upstreams close; until the store is back, every
    // request is answered with the error at once, never queued.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let started = Instant::now();
        let reply = ask(&mut client, "SET a 2");
        if reply == UNAVAILABLE {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "an error, but late"
            );
            break;
        }
        assert_eq!(reply, b"+OK\r\n", "before the loop saw the store go");
        assert!(
            Instant::now() < deadline,
            "the store's death went unnoticed"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ask(&mut client, "GET a"), UNAVAILABLE);
    // The loop keeps serving what needs no store.
    let mut echo = connect(server.addr("echo"));
    echo.write_all(b"still here\n").unwrap();
    expect(&mut echo, b"still here\n", "echo while the store is down");

    redis.restart();
    // Reconnects back off to at most 2 s: served again within a few seconds,
    // without restarting readyloop, on the same client connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ask(&mut client, "SET b 2") == UNAVAILABLE {
        assert!(
            Instant::now() < deadline,
            "not served again after the store came back"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ask(&mut client, "INCR b"), b":3\r\n");
    drop(server);
}

#[test]
fn evloop_an_upstream_that_never_answers_times_out_and_shutdown_waits_for_it() {
    // Accepts (the kernel does, from the backlog) and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = serve(silent.local_addr().unwrap(), 1);
    let mut client = connect(server.addr("relay"));
    let started = Instant::now();
    client.write_all(b"GET never\n").unwrap();
    // Shut down while the request is in flight: it finishes first.
    thread::sleep(Duration::from_millis(100));
    server.trigger_shutdown();
    expect(
        &mut client,
        UNAVAILABLE,
        "a request the store never answers",
    );
    let waited = started.elapsed();
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(9)).contains(&waited),
        "answered after {waited:?}, expected the upstream timeout of 5 s"
    );
    drop(server); // joins the loop: it ended cleanly once the client was answered
}
