//! The store's replay after damage, with the real binary (issue 10, item
//! 4): a log ending in megabytes of random bytes restarts at once, and a
//! damaged first byte gets advice that keeps every record.

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, Instant};

use crate::util::{BinServer, TempDir, connect};

/// Megabytes of noise after the last good record.
const TORN_TAIL: usize = 6_000_000;
/// How long the restart may take: the old quadratic search took 23 s.
const RESTART_LIMIT: Duration = Duration::from_secs(1);

/// xorshift64* bytes, so a failing run can be replayed.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn serve(dir: &TempDir) -> BinServer {
    BinServer::start(
        &[
            "--fsync",
            "always",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "kv@127.0.0.1:0",
        ],
        &["kv"],
    )
}

/// Sends one inline command, returns the first reply line.
fn ask(server: &BinServer, request: &str) -> String {
    let mut reader = BufReader::new(connect(server.addr("kv")));
    reader.get_mut().write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    if reply.starts_with('$') && reply != "$-1\r\n" {
        reply.clear();
        reader.read_line(&mut reply).unwrap();
    }
    reply
}

#[test]
fn a_six_megabyte_random_torn_tail_replays_in_under_a_second() {
    let dir = TempDir::new("torn-tail");
    {
        let server = serve(&dir);
        assert_eq!(ask(&server, "SET kept value\r\n"), "+OK\r\n");
    } // dropped: killed; under `always` the SET was on disk before its +OK
    let log = dir.path().join("store.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let good = bytes.len() as u64;
    assert!(good > 8, "the SET reached the log");
    // Issue 10's reproducer: a header claiming 8 MiB, then random bytes.
    bytes.extend_from_slice(&(8u32 << 20).to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    bytes.extend(noise(TORN_TAIL, 10));
    std::fs::write(&log, &bytes).unwrap();

    let started = Instant::now();
    let server = serve(&dir);
    let took = started.elapsed();
    assert!(
        took < RESTART_LIMIT,
        "restart with a {TORN_TAIL}-byte torn tail took {took:?}"
    );
    assert_eq!(ask(&server, "GET kept\r\n"), "value\r\n");
    assert_eq!(std::fs::metadata(&log).unwrap().len(), good, "truncated");
    let logged = server.log.lock().unwrap().clone();
    assert!(logged.contains("torn"), "{logged}");
}

#[test]
fn a_damaged_first_byte_gets_advice_that_keeps_the_records() {
    let dir = TempDir::new("first-byte");
    {
        let server = serve(&dir);
        assert_eq!(ask(&server, "SET a 1\r\n"), "+OK\r\n");
        assert_eq!(ask(&server, "SET b 2\r\n"), "+OK\r\n");
    }
    let log = dir.path().join("store.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[0] = b'X';
    std::fs::write(&log, &bytes).unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_readyloop"))
        .args(["serve", "--data-dir", dir.path().to_str().unwrap()])
        .arg("kv@127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains("truncate"),
        "advice that deletes data: {stderr}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "the log was left alone"
    );
    let advice = stderr
        .split_once(" with `")
        .unwrap()
        .1
        .split_once('`')
        .unwrap()
        .0;
    let status = std::process::Command::new("sh")
        .args(["-c", advice])
        .status()
        .unwrap();
    assert!(status.success(), "{advice}");
    let server = serve(&dir);
    assert_eq!(ask(&server, "GET a\r\n"), "1\r\n");
    assert_eq!(ask(&server, "GET b\r\n"), "2\r\n");
}
