//! The event loop as the Redis client (issue 13, item 2): kv over
//! `--store redis://`, a proxy whose requests from many connections are
//! pipelined onto the loop's own upstream connections to a real
//! `redis-server`, and whose replies are routed back to the client that
//! asked (never to a newer connection in a closed one's slot); and what
//! clients get when the store dies, comes back, or never answers. Evloop only: the other modes send on `remote::blocking`, one
//! connection per worker, and kv's tests over Redis cover them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use readyloop::remote::{StoreUrl, encode};
use readyloop::server::{self, Listener, Mode, Options};
use readyloop::service::{self, Backend, Shared};
use readyloop::stats::Stats;

use crate::kv_util::RedisServer;
use crate::offload::wait_for;
use crate::util::{TestServer, connect};

/// What kv answers when the store could not be reached.
const UNAVAILABLE: &[u8] = b"-ERR store unavailable\r\n";

/// One event loop serving `kv` (a proxy to the store at `store`) and `echo`
/// (which needs no store), with `conns` upstream connections.
fn serve(store: SocketAddr, conns: usize) -> TestServer {
    let url: StoreUrl = format!("redis://{store}/0").parse().unwrap();
    let stats = Arc::new(Stats::default());
    let shared = Shared {
        backend: Backend::Redis(readyloop::remote::Redis::Server(url.clone())),
        broker: Default::default(),
        stats: Arc::clone(&stats),
        limits: Default::default(),
    };
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listeners = [
        ("kv", service::kv::factory(&shared)),
        ("echo", service::echo::factory(&shared)),
    ]
    .map(|(name, factory)| {
        let socket = server::bind_tcp(any_port).unwrap();
        (name.to_owned(), Listener::Tcp { socket, factory })
    });
    let options = Options {
        store: Some(url),
        store_conns: conns,
        ..Options::default()
    };
    TestServer::serve_listeners(Mode::Evloop, listeners.into(), options, stats)
}

/// One command as RESP, from space-separated words.
fn command(line: &str) -> Vec<u8> {
    let words: Vec<&[u8]> = line.split(' ').map(str::as_bytes).collect();
    let mut out = Vec::new();
    encode(&words, &mut out);
    out
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

/// Sends one command and reads one reply line (a simple reply, an error,
/// an integer or a bulk's length: one line each).
fn ask(client: &mut TcpStream, line: &str) -> Vec<u8> {
    client.write_all(&command(line)).unwrap();
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
    let addr = server.addr("kv");
    let mut clients: Vec<TcpStream> = (0..500).map(|_| connect(addr)).collect();
    // Each client pipelines five commands on its own keys in one write.
    for (i, client) in clients.iter_mut().enumerate() {
        let requests = [
            format!("SET key:{i} value-{i}"),
            format!("INCR n:{i}"),
            format!("GET key:{i}"),
            format!("INCRBY n:{i} {i}"),
            format!("APPEND key:{i} !"),
        ];
        client
            .write_all(&requests.map(|r| command(&r)).concat())
            .unwrap();
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
    // Every command went through the loop's upstreams, and writes carried
    // several clients' requests at a time (500 clients asking at once: a
    // write per client would mean no batching across clients).
    let commands = server.stats.store_commands.load(Relaxed);
    let writes = server.stats.store_writes.load(Relaxed);
    assert_eq!(commands, 500 * 5 + 1);
    assert!(
        writes < 500,
        "{writes} writes to Redis for 500 clients' {commands} commands"
    );
}

#[test]
fn evloop_store_killed_gives_error_replies_and_restarted_serves_again() {
    let redis = RedisServer::start();
    let server = serve(redis.addr, 2);
    let mut client = connect(server.addr("kv"));
    assert_eq!(ask(&mut client, "SET a 1"), b"+OK\r\n");

    let port = redis.addr.port();
    drop(redis); // SIGKILL: no goodbye to its clients
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

    let _redis = RedisServer::start_on(port);
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
    let mut client = connect(server.addr("kv"));
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

/// Rule 7 on the upstream: A asks, resets and is closed with its request
/// in flight; B takes A's slab slot and asks too. The store (played by the
/// test) then answers both, in order: A's reply must be dropped, and B get
/// only its own.
#[test]
fn evloop_a_reply_for_a_closed_connection_never_reaches_the_next_in_its_slot() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = serve(fake.local_addr().unwrap(), 1);
    let (mut store, _) = fake.accept().unwrap();
    store
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut read_store = |expected: &[u8], what: &str| {
        let mut got = vec![0; expected.len()];
        store.read_exact(&mut got).unwrap();
        assert_eq!(got, expected, "{what}");
    };
    read_store(&command("SELECT 0"), "the SELECT first");

    let mut a = connect(server.addr("kv"));
    a.write_all(&command("GET a")).unwrap();
    read_store(&command("GET a"), "A's request");
    // A reset (not a FIN, which a connection waiting for its job does not read).
    socket2::SockRef::from(&a)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(a);
    wait_for(&server.stats.closed, 1, "the server closes A");

    // A was the only connection: B gets its slab key, with a new generation.
    let mut b = connect(server.addr("kv"));
    b.write_all(&command("GET b")).unwrap();
    read_store(
        &command("GET b"),
        "B's request, behind A's on the same upstream",
    );
    store
        .write_all(b"+OK\r\n$6\r\nfor-A!\r\n$6\r\nfor-B!\r\n")
        .unwrap();
    expect(&mut b, b"$6\r\nfor-B!\r\n", "B's own reply");
    b.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut more = [0u8; 64];
    match b.read(&mut more) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!(
            "B got more than its own reply: {other:?} {:?}",
            more.escape_ascii().to_string()
        ),
    }
}
