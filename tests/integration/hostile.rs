//! Hostile clients against the real binary (issue 10): each attack is
//! replayed and the bound on what it may cost the server is asserted, not
//! only its replies: resident memory (`/proc/PID/status` `VmRSS`), the
//! latency a bystander client sees meanwhile, and CPU once the attack ends.
//!
//! The tests take one lock, so their measurements do not disturb each
//! other; together they take about 40 s. Their bounds on time are for a
//! release build with nothing else running, so `cargo test` skips them and
//! `.ci/run` runs them alone afterwards:
//! `cargo test --release --test integration hostile -- --ignored`. Loopback only; every
//! server is killed and every thread ends by itself, also when a test fails.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{BinServer, TIMEOUT, connect, cpu_time, expect, read_to_end};

mod measure;

use measure::{Bystander, ReadReply, RssWatch, read_http_response, rss, rss_settles_under};

const MIB: u64 = 1024 * 1024;

/// One hostile test at a time: each measures the server it attacks.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn http_hello(stream: &mut TcpStream) {
    let (status, _) = read_http_response(stream);
    assert_eq!(status, 200);
}

/// Sends `count` copies of `request` in one write, reads nothing for 2 s,
/// then everything, 64 KiB per read with `pause` after each: the server's
/// RSS must stay under its baseline + 64 MiB throughout, every reply must
/// arrive whole, and once the client has gone the RSS must fall back under
/// baseline + 16 MiB.
fn pipelined_big_replies_stay_bounded(
    server: &BinServer,
    addr: SocketAddr,
    (request, count): (&[u8], usize),
    reply: &[u8],
    pause: Duration,
) {
    let pid = server.child.id();
    let baseline = rss(pid);
    let watch = RssWatch::start(pid);
    let mut client = connect(addr);
    client.write_all(&request.repeat(count)).unwrap();
    thread::sleep(Duration::from_secs(2));
    let peak_unread = watch.peak();

    let mut chunk = vec![0; 64 * 1024];
    let mut received = 0;
    let expected = reply.len() * count;
    while received < expected {
        let want = chunk.len().min(expected - received);
        let n = client.read(&mut chunk[..want]).unwrap();
        assert!(
            n > 0,
            "the server closed after {received} of {expected} bytes"
        );
        let mut rest = &chunk[..n];
        while !rest.is_empty() {
            let at = received % reply.len();
            let take = rest.len().min(reply.len() - at);
            assert!(
                rest[..take] == reply[at..at + take],
                "reply {} differs",
                received / reply.len()
            );
            received += take;
            rest = &rest[take..];
        }
        thread::sleep(pause);
    }
    // Nothing more: the replies were exactly these.
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    match client.read(&mut chunk) {
        Ok(0) => panic!("the server closed the connection"),
        Ok(n) => panic!("{n} bytes more than {count} replies"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    let peak = watch.peak();
    drop(client);
    let after = rss_settles_under(pid, baseline + 16 * MIB, Duration::from_secs(5));
    drop(watch);
    eprintln!(
        "{count} pipelined requests, {} MiB of replies: RSS baseline {} MiB, \
         peak while unread {} MiB, peak {} MiB, after {} MiB",
        expected as u64 / MIB,
        baseline / MIB,
        peak_unread / MIB,
        peak / MIB,
        after / MIB
    );
    assert!(
        peak < baseline + 64 * MIB,
        "RSS peaked at {} MiB over a baseline of {} MiB",
        peak / MIB,
        baseline / MIB
    );
    assert!(
        after < baseline + 16 * MIB,
        "RSS still {} MiB 5 s after the client left (baseline {} MiB)",
        after / MIB,
        baseline / MIB
    );
}

/// A kv server holding a 4 MiB value under `big`, and the reply to `GET big`.
fn kv_with_a_4_mib_value() -> (BinServer, Vec<u8>) {
    let server = BinServer::start(&["kv@127.0.0.1:0"], &["kv"]);
    let reply = set_a_4_mib_value(&server);
    (server, reply)
}

/// Sets `big` to 4 MiB through `server`'s kv; returns the reply to `GET big`.
fn set_a_4_mib_value(server: &BinServer) -> Vec<u8> {
    let value: Vec<u8> = (0..4 * MIB as usize)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let mut setter = connect(server.addr("kv"));
    let mut set = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    setter.write_all(&set).unwrap();
    expect(&mut setter, b"+OK\r\n");
    let mut reply = format!("${}\r\n", value.len()).into_bytes();
    reply.extend_from_slice(&value);
    reply.extend_from_slice(b"\r\n");
    reply
}

/// Through the proxy (`--store redis://`): a pipeline goes up in batches,
/// and a batch holds one reply that may be large at most, so 250 GETs of
/// 4 MiB cost a reply at a time here too, not a batch of them.
#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn kv_proxy_250_pipelined_gets_of_a_4_mib_value_keep_memory_bounded() {
    let _one = one_at_a_time();
    let redis = crate::kv_util::RedisServer::start();
    let store = format!("redis://{}", redis.addr);
    let server = BinServer::start(&["--store", &store, "kv@127.0.0.1:0"], &["kv"]);
    let reply = set_a_4_mib_value(&server);
    let gets = (&b"GET big\r\n"[..], 250);
    pipelined_big_replies_stay_bounded(&server, server.addr("kv"), gets, &reply, Duration::ZERO);
}

#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn kv_250_pipelined_gets_of_a_4_mib_value_keep_memory_bounded() {
    let _one = one_at_a_time();
    let (server, reply) = kv_with_a_4_mib_value();
    let gets = (&b"GET big\r\n"[..], 250);
    pipelined_big_replies_stay_bounded(&server, server.addr("kv"), gets, &reply, Duration::ZERO);
}

/// A reader taking 64 KiB a millisecond: the server's output then never
/// drains all at once, and each reply is made while the last is being sent.
#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn kv_pipelined_gets_of_a_4_mib_value_read_slowly_keep_memory_bounded() {
    let _one = one_at_a_time();
    let (server, reply) = kv_with_a_4_mib_value();
    let gets = (&b"GET big\r\n"[..], 40);
    let pause = Duration::from_millis(1);
    pipelined_big_replies_stay_bounded(&server, server.addr("kv"), gets, &reply, pause);
}

#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn todo_1800_pipelined_gets_of_a_60_kb_value_keep_memory_bounded() {
    let _one = one_at_a_time();
    let server = BinServer::start(&["todo@127.0.0.1:0"], &["todo"]);
    let value: Vec<u8> = (0..60_000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut poster = connect(server.addr("todo"));
    let mut post = b"POST/big=".to_vec();
    post.extend_from_slice(&value);
    post.extend_from_slice(b"/x\n");
    poster.write_all(&post).unwrap();
    expect(&mut poster, b"submit success\r\n");
    drop(poster);
    let mut reply = value;
    reply.extend_from_slice(b"\r\n");
    let gets = (&b"GET/big/x\n"[..], 1800);
    pipelined_big_replies_stay_bounded(&server, server.addr("todo"), gets, &reply, Duration::ZERO);
}

/// Opens `conns` connections to `addr`, each sending `head` and then
/// `filler` bytes, one byte every 200 ms, for at most 5 s. Returns how long
/// after its first byte each was closed by the server (`None`: still open
/// when the attack stopped; it is closed then, by us).
fn slowloris(addr: SocketAddr, conns: usize, head: &[u8], filler: u8) -> Vec<Option<Duration>> {
    let mut attackers: Vec<(TcpStream, Option<Duration>)> = (0..conns)
        .map(|_| {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream.set_nodelay(true).unwrap();
            (stream, None)
        })
        .collect();
    let start = Instant::now();
    let mut chunk = [0; 1024];
    for tick in 0.. {
        let elapsed = start.elapsed();
        for (stream, closed) in attackers.iter_mut().filter(|(_, closed)| closed.is_none()) {
            let gone = match stream.read(&mut chunk) {
                Ok(0) => true,
                Ok(_) => false, // an error reply, say; the close comes next
                Err(e) => e.kind() != io::ErrorKind::WouldBlock,
            };
            let byte = head.get(tick).unwrap_or(&filler);
            if gone || stream.write(std::slice::from_ref(byte)).is_err() {
                *closed = Some(elapsed);
            }
        }
        if attackers.iter().all(|(_, closed)| closed.is_some()) || elapsed > Duration::from_secs(5)
        {
            break;
        }
        let next_tick = start + Duration::from_millis(200) * (tick as u32 + 1);
        thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
    attackers.into_iter().map(|(_, closed)| closed).collect()
}

/// Every slow connection was closed by the server's 2 s request timeout:
/// not before 1.9 s, and within 5 s.
#[track_caller]
fn all_timed_out(service: &str, closed: &[Option<Duration>]) {
    let times: Vec<Duration> = closed.iter().filter_map(|closed| *closed).collect();
    let conns = closed.len();
    assert_eq!(
        times.len(),
        conns,
        "{service}: {} of {conns} slow connections still open after 5 s",
        conns - times.len()
    );
    let (first, last) = (times.iter().min().unwrap(), times.iter().max().unwrap());
    eprintln!("{service}: {conns} slowloris connections closed after {first:?} to {last:?}");
    assert!(
        *first >= Duration::from_millis(1900),
        "{service}: a slow connection was closed after {first:?}, before its request timed out"
    );
}

/// 200 slowloris connections against `service` under `--request-timeout 2s`
/// are all closed within 5 s while a bystander asks `request` every 10 ms
/// with a p99 under 5 ms. The machine is shared (the test's own 200
/// attackers run on the same 2 cores), so the latency bound must hold in
/// one of [`ATTEMPTS`] attacks: a server that stalls for its attackers
/// misses it every time.
fn slowloris_is_closed_while_a_bystander_is_served(
    service: &str,
    head: &[u8],
    filler: u8,
    request: &'static [u8],
    read: ReadReply,
) {
    let _one = one_at_a_time();
    let listener = format!("{service}@127.0.0.1:0");
    let mut tries = Vec::new();
    for _ in 0..ATTEMPTS {
        let server = BinServer::start(&[&listener, "--request-timeout", "2s"], &[service]);
        let addr = server.addr(service);
        let bystander = Bystander::start(addr, request, read, Duration::from_millis(10));
        let closed = slowloris(addr, 200, head, filler);
        let latencies = bystander.finish();
        eprintln!("{service} bystander during slowloris: {latencies}");
        all_timed_out(service, &closed);
        if latencies.quantile(0.99) < Duration::from_millis(5) {
            return;
        }
        tries.push(latencies.to_string());
    }
    panic!("{service} bystander, every attempt over 5 ms at p99: {tries:#?}");
}

/// How many times a latency bound is tried on this shared machine.
const ATTEMPTS: usize = 3;

const SLOW_HTTP_HEAD: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";

#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn http_slowloris_is_closed_by_the_request_timeout_and_a_bystander_is_served_fast() {
    slowloris_is_closed_while_a_bystander_is_served(
        "http",
        SLOW_HTTP_HEAD,
        b'a',
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        http_hello,
    );
}

#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn upper_slowloris_is_closed_by_the_request_timeout_and_a_bystander_is_served_fast() {
    slowloris_is_closed_while_a_bystander_is_served("upper", b"", b'a', b"ping\n", |stream| {
        expect(stream, b"PING\n")
    });
}

#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn cpu_is_idle_once_slowloris_attackers_are_gone() {
    let _one = one_at_a_time();
    let server = BinServer::start(
        &[
            "http@127.0.0.1:0",
            "upper@127.0.0.1:0",
            "--request-timeout",
            "2s",
        ],
        &["http", "upper"],
    );
    let (http, upper) = (server.addr("http"), server.addr("upper"));
    let pid = server.child.id();
    let (start, attacked) = (Instant::now(), cpu_time(pid));
    let on_upper = thread::spawn(move || slowloris(upper, 200, b"", b'a'));
    slowloris(http, 200, SLOW_HTTP_HEAD, b'a');
    on_upper.join().expect("the upper attack failed");
    let (attack, attacked) = (start.elapsed(), cpu_time(pid) - attacked);
    // The attackers are gone now: closed by the server or, after 5 s, by us.
    let before = cpu_time(pid);
    thread::sleep(Duration::from_secs(1));
    let used = cpu_time(pid) - before;
    eprintln!(
        "CPU: {attacked:?} over the {attack:?} of 400 slowloris connections, \
         {used:?} over the second after"
    );
    assert!(
        used < Duration::from_millis(100),
        "the server used {used:?} of CPU in the second after the attack"
    );
}

#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn http_busy_is_a_parseable_503() {
    let _one = one_at_a_time();
    let server = BinServer::start(&["http@127.0.0.1:0", "--max-conns", "1"], &["http"]);
    let addr = server.addr("http");
    let mut held = connect(addr);
    held.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    http_hello(&mut held); // it is served: the one slot is taken

    let mut refused = connect(addr);
    let (status, bytes) = read_http_response(&mut refused);
    assert_eq!(status, 503, "{:?}", bytes.escape_ascii().to_string());
    assert_eq!(read_to_end(&mut refused), b"", "bytes after the 503");

    let curl = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{addr}/"))
        .output()
        .unwrap_or_else(|e| panic!("curl ({e}): install it with `apt-get install curl`"));
    let code = String::from_utf8_lossy(&curl.stdout);
    assert_eq!(
        code,
        "503",
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    drop(held);
}

#[test]
#[ignore = "the attack suite: bounds on time and memory, run alone in release (.ci/run, README)"]
fn a_million_argument_kv_request_does_not_stall_a_bystander() {
    let _one = one_at_a_time();
    let mut request = b"*1000001\r\n$6\r\nEXISTS\r\n".to_vec();
    request.extend_from_slice(&b"$1\r\nk\r\n".repeat(1_000_000));
    let mut tries = Vec::new();
    // The bound must hold in one of ATTEMPTS tries (see the slowloris case).
    for _ in 0..ATTEMPTS {
        let server = BinServer::start(&["kv@127.0.0.1:0"], &["kv"]);
        let addr = server.addr("kv");
        let mut client = connect(addr);
        client.write_all(b"SET k v\r\n").unwrap();
        expect(&mut client, b"+OK\r\n");
        let bystander = Bystander::start(
            addr,
            b"PING\r\n",
            |stream| expect(stream, b"+PONG\r\n"),
            Duration::from_millis(5),
        );
        thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        let mut writer = client.try_clone().unwrap();
        let request = request.clone();
        let writing = thread::spawn(move || writer.write_all(&request));
        let mut reply = [0; 10];
        let answered = client.read_exact(&mut reply).map(|()| start.elapsed());
        thread::sleep(Duration::from_millis(100));
        let latencies = bystander.finish();
        eprintln!("a 7 MB EXISTS of 1,000,000 keys: {answered:?}; PING bystander: {latencies}");
        let answered = answered.unwrap_or_else(|e| {
            panic!("no answer within {TIMEOUT:?} ({e}); PING bystander: {latencies}")
        });
        writing.join().unwrap().unwrap();
        assert_eq!(&reply, b":1000000\r\n", "after {answered:?}");
        if latencies.max() < Duration::from_millis(50) {
            return;
        }
        tries.push(latencies.to_string());
    }
    panic!("PING bystander over 50 ms in every attempt: {tries:#?}");
}
