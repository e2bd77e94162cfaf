//! A huge kv request does not stall the event loop (issue 10, item 5): the
//! RESP parser keeps its state across reads, so 1,000,000 arguments in
//! 7 MB cost one pass over the bytes, spread over the reads that bring
//! them, while a bystander's PINGs are answered in between.
//!
//! Event loop only: it is the one mode where a request can hold up others.
//! This runs in the debug build among the other tests, so its bound is
//! loose (it catches the quadratic parser, which held the loop for seconds);
//! `hostile.rs` holds the bystander to 50 ms in a release build, alone.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use readyloop::server::Mode;

use crate::util::{TestServer, expect};

/// Arguments in the big request.
const ARGS: usize = 1_000_000;
/// The bystander's worst PING round trip allowed meanwhile, in a debug
/// build on a shared machine. Restarting the parse at byte 0 on every read
/// held the loop 3.5 s in a release build.
const BYSTANDER_LIMIT: Duration = Duration::from_millis(500);

#[test]
fn a_million_argument_request_is_answered_while_a_bystander_pings() {
    let server = TestServer::start(Mode::Evloop, &["kv"]);
    // PING with a million arguments: the reply (an arity error) costs
    // nothing, so what is measured is receiving and parsing the request.
    let mut request = format!("*{}\r\n$4\r\nPING\r\n", ARGS + 1).into_bytes();
    for _ in 0..ARGS {
        request.extend_from_slice(b"$1\r\nx\r\n");
    }
    let mut big = server.connect("kv");
    let mut writer = big.try_clone().unwrap();
    let mut bystander = server.connect("kv");
    bystander.set_nodelay(true).unwrap();

    let started = Instant::now();
    let sending = thread::spawn(move || {
        // In pieces, as a client on a real network would send it.
        for piece in request.chunks(64 * 1024) {
            writer.write_all(piece).unwrap();
        }
    });
    let mut worst = Duration::ZERO;
    let mut pings = 0;
    while !sending.is_finished() {
        let sent = Instant::now();
        bystander.write_all(b"PING\r\n").unwrap();
        expect(&mut bystander, b"+PONG\r\n");
        worst = worst.max(sent.elapsed());
        pings += 1;
        thread::sleep(Duration::from_millis(1));
    }
    sending.join().unwrap();
    expect(
        &mut big,
        b"-ERR wrong number of arguments for 'ping' command\r\n",
    );
    let took = started.elapsed();
    eprintln!("1M arguments answered in {took:?}; bystander: {pings} PINGs, worst {worst:?}");
    assert!(
        worst < BYSTANDER_LIMIT,
        "a bystander's PING took {worst:?} while a {ARGS}-argument request arrived"
    );
    // The connection is still usable.
    big.write_all(b"PING\r\n").unwrap();
    expect(&mut big, b"+PONG\r\n");
}

#[test]
fn a_bulk_over_kv_max_bulk_is_refused_and_the_connection_closed() {
    let dir = crate::util::TempDir::new("kv-max-bulk");
    let server = crate::util::BinServer::start(
        &[
            "--kv-max-bulk",
            "1k",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "kv@127.0.0.1:0",
        ],
        &["kv"],
    );
    let mut client = crate::util::connect(server.addr("kv"));
    // At the limit: fine.
    let value = "v".repeat(1024);
    let set = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1024\r\n{value}\r\n");
    client.write_all(set.as_bytes()).unwrap();
    expect(&mut client, b"+OK\r\n");
    // One byte over: refused from the header alone, nothing buffered.
    client
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n")
        .unwrap();
    let rest = crate::util::read_to_end(&mut client);
    assert_eq!(rest, b"-ERR Protocol error: invalid bulk length\r\n");
}
