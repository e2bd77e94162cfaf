//! kv's pub/sub over real sockets: one connection's PUBLISH reaches the
//! subscribers on others, in RESP2 (arrays) and RESP3 (push frames), by
//! channel and by pattern; with redis-py as its users write it; across the
//! loops of `--loops 2`; and a subscriber that never reads is cut off
//! instead of growing the server.
//!
//! Modes: pub/sub needs two connections served at once in one process, so
//! it runs where that holds: the event loop and both threaded modes. The
//! blocking mode serves one client at a time (a subscriber holds the only
//! turn) and the forking mode's children share nothing (docs in
//! `src/broker.rs`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::kv_redis_py::python;
use crate::util::{BinServer, ModeCase, connect, expect, parse_metrics, per_mode};

/// A RESP array of bulk strings.
fn command(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend_from_slice(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
    }
    out
}

fn send(stream: &mut TcpStream, words: &[&str]) {
    stream.write_all(&command(words)).unwrap();
}

per_mode!(
    publish_reaches_subscribers_in_resp2_and_resp3,
    [evloop, threaded, threaded_pool, uring],
    |mode: &ModeCase| {
        let server = mode.serve(&["kv"]);
        let mut resp2 = server.connect("kv");
        let mut resp3 = server.connect("kv");
        let mut publisher = server.connect("kv");
        send(&mut resp2, &["SUBSCRIBE", "news", "sport"]);
        expect(&mut resp2, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n");
        send(&mut resp3, &["HELLO", "3"]);
        let mut hello = [0u8; 1];
        resp3.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"%", "HELLO 3 answers a map");
        drain_map_reply(&mut resp3);
        send(&mut resp3, &["PSUBSCRIBE", "ne*"]);
        expect(
            &mut resp3,
            b">3\r\n$10\r\npsubscribe\r\n$3\r\nne*\r\n:1\r\n",
        );

        send(&mut publisher, &["PUBLISH", "news", "hello"]);
        expect(&mut publisher, b":2\r\n");
        expect(
            &mut resp2,
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
        );
        expect(
            &mut resp3,
            b">4\r\n$8\r\npmessage\r\n$3\r\nne*\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
        );
        send(&mut publisher, &["PUBSUB", "NUMSUB", "news", "none"]);
        expect(
            &mut publisher,
            b"*4\r\n$4\r\nnews\r\n:1\r\n$4\r\nnone\r\n:0\r\n",
        );
        send(&mut publisher, &["PUBSUB", "NUMPAT"]);
        expect(&mut publisher, b":1\r\n");

        // Subscribed in RESP2: only the pub/sub commands, PING in their shape.
        send(&mut resp2, &["GET", "k"]);
        expect(&mut resp2, b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
        send(&mut resp2, &["PING"]);
        expect(&mut resp2, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        // RESP3 may go on with other commands while subscribed.
        send(&mut resp3, &["PING"]);
        expect(&mut resp3, b"+PONG\r\n");
        send(&mut resp2, &["UNSUBSCRIBE"]);
        expect(&mut resp2, b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:0\r\n");
        send(&mut publisher, &["PUBLISH", "news", "again"]);
        expect(&mut publisher, b":1\r\n");
        drop(resp3); // a closed subscriber no longer counts
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            send(&mut publisher, &["PUBLISH", "news", "gone?"]);
            let mut reply = [0u8; 4];
            publisher.read_exact(&mut reply).unwrap();
            if &reply == b":0\r\n" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the closed subscriber is still counted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
);

/// Reads the rest of HELLO 3's map reply: enough to go on in step.
fn drain_map_reply(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
    stream.set_read_timeout(Some(crate::util::TIMEOUT)).unwrap();
}

per_mode!(
    redis_py_subscribers_hear_a_publisher,
    [evloop, threaded, threaded_pool, uring],
    |mode: &ModeCase| {
        let python = python();
        let mut args = vec!["kv@127.0.0.1:0"];
        args.extend_from_slice(mode.flags);
        let server = BinServer::start(&args, &["kv"]);
        let port = server.addr("kv").port().to_string();
        let script = r#"
import sys, redis
port = int(sys.argv[1])
for protocol in (3, 2):
    sub = redis.Redis(port=port, protocol=protocol).pubsub()
    sub.subscribe("chat")
    sub.psubscribe("ch*")
    for _ in range(2):
        assert sub.get_message(timeout=5)["type"] in ("subscribe", "psubscribe")
    pub = redis.Redis(port=port, protocol=protocol)
    assert pub.publish("chat", "hi") == 2, protocol
    got = sorted((m["type"], m["data"]) for m in (sub.get_message(timeout=5), sub.get_message(timeout=5)))
    assert got == [("message", b"hi"), ("pmessage", b"hi")], got
    assert pub.pubsub_numsub("chat") == [(b"chat", 1)]
    sub.close()
print("ok")
"#;
        let output = Command::new(&python)
            .args(["-c", script, &port])
            .output()
            .unwrap();
        assert!(
            output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "ok",
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
);

#[test]
fn delivery_crosses_the_loops_of_loops_2() {
    let server = BinServer::start(
        &["kv@127.0.0.1:0", "http@127.0.0.1:0", "--loops", "2"],
        &["kv", "http"],
    );
    let mut subscribers = Vec::new();
    // SO_REUSEPORT spreads connections by their address hash: open them
    // until both loops hold some.
    for _ in 0..64 {
        let mut sub = connect(server.addr("kv"));
        send(&mut sub, &["SUBSCRIBE", "all"]);
        expect(&mut sub, b"*3\r\n$9\r\nsubscribe\r\n$3\r\nall\r\n:1\r\n");
        subscribers.push(sub);
        let metrics = http_get(&server, "/metrics");
        let samples = parse_metrics(&metrics);
        let per_loop = |i: usize| {
            crate::util::sample(
                &samples,
                &format!("readyloop_loop_accepted_total{{loop=\"{i}\"}}"),
            )
        };
        if subscribers.len() >= 4 && per_loop(0) >= 2.0 && per_loop(1) >= 2.0 {
            break;
        }
    }
    let mut publisher = connect(server.addr("kv"));
    send(&mut publisher, &["PUBLISH", "all", "everyone"]);
    expect(
        &mut publisher,
        format!(":{}\r\n", subscribers.len()).as_bytes(),
    );
    for sub in &mut subscribers {
        expect(
            sub,
            b"*3\r\n$7\r\nmessage\r\n$3\r\nall\r\n$8\r\neveryone\r\n",
        );
    }
}

fn http_get(server: &BinServer, path: &str) -> String {
    let mut client = connect(server.addr("http"));
    client
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut text = String::new();
    client.read_to_string(&mut text).unwrap();
    match text.split_once("\r\n\r\n") {
        Some((_head, body)) => body.to_owned(),
        None => panic!("no HTTP body in {text:?}"),
    }
}

#[test]
fn a_subscriber_that_never_reads_is_cut_off() {
    let server = BinServer::start(&["kv@127.0.0.1:0"], &["kv"]);
    let mut subscriber = connect(server.addr("kv"));
    send(&mut subscriber, &["SUBSCRIBE", "firehose"]);
    expect(
        &mut subscriber,
        b"*3\r\n$9\r\nsubscribe\r\n$8\r\nfirehose\r\n:1\r\n",
    );
    let mut publisher = connect(server.addr("kv"));
    let payload = "x".repeat(1 << 20);
    let mut published = 0;
    // The mailbox holds 32 MiB; with the socket buffers and the output
    // limit, the subscriber is cut off well before 200 MiB went its way.
    while published < 200 {
        send(&mut publisher, &["PUBLISH", "firehose", &payload]);
        let mut reply = [0u8; 4];
        publisher.read_exact(&mut reply).unwrap();
        if &reply == b":0\r\n" {
            break;
        }
        assert_eq!(&reply, b":1\r\n");
        published += 1;
    }
    assert!(published < 200, "never cut off after {published} MiB");
    // Its connection is closed: reading drains what was sent, then ends.
    subscriber
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match subscriber.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the cut-off subscriber was not closed: {e}"),
        }
    }
}
