//! Limits and counters in every mode that shares one process: idle
//! timeouts close idle clients only, a request that never finishes is
//! timed out, `--max-conns` refuses the one too many, and `/metrics` counts
//! exactly the traffic sent.

use std::io::{Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use readyloop::server::{Mode, Options};
use readyloop::service::Limits;

use crate::util::{TestServer, expect, modes, parse_metrics, read_to_end, sample};

/// The modes whose counters and limits live in the server's own process.
fn shared_process_modes() -> impl Iterator<Item = &'static (&'static str, Mode, Option<usize>)> {
    modes().filter(|(_, mode, _)| *mode != Mode::Forking)
}

#[test]
fn idle_timeout_closes_an_idle_client_and_not_a_busy_one() {
    for &(name, mode, threads) in
        shared_process_modes().filter(|(_, mode, _)| *mode != Mode::Blocking)
    {
        let options = Options {
            idle_timeout: Some(Duration::from_millis(600)),
            threads,
            ..Options::default()
        };
        let server = TestServer::start_with(mode, &["upper"], options, Limits::default());
        let mut idle = server.connect("upper");
        let mut busy = server.connect("upper");
        let start = Instant::now();
        // The busy client talks every 150 ms for twice the timeout.
        while start.elapsed() < Duration::from_millis(1500) {
            busy.write_all(b"tick\n").unwrap();
            expect(&mut busy, b"TICK\n");
            std::thread::sleep(Duration::from_millis(150));
        }
        // By now the idle one was closed: EOF, with nothing sent.
        assert_eq!(read_to_end(&mut idle), b"", "{name}");
        busy.write_all(b"still\n").unwrap();
        expect(&mut busy, b"STILL\n");
    }
}

/// A client that starts a request and never finishes it (slowloris) is
/// closed after the request timeout; one that finished its request stays.
#[test]
fn request_timeout_closes_a_client_that_never_finishes_its_request() {
    for &(name, mode, threads) in shared_process_modes() {
        let options = Options {
            request_timeout: Some(Duration::from_millis(300)),
            threads,
            ..Options::default()
        };
        let server = TestServer::start_with(mode, &["upper"], options, Limits::default());
        let mut slow = server.connect("upper");
        slow.write_all(b"never finished").unwrap();
        // (Blocking mode answers this one once the slow one is gone.)
        let mut done = server.connect("upper");
        done.write_all(b"done\n").unwrap();
        expect(&mut done, b"DONE\n");
        assert_eq!(read_to_end(&mut slow), b"", "{name}: closed, unanswered");
        assert_eq!(server.stats.timed_out.load(Relaxed), 1, "{name}");
        thread::sleep(Duration::from_millis(400)); // past the timeout, between requests
        done.write_all(b"again\n").unwrap();
        expect(&mut done, b"AGAIN\n");
    }
}

#[test]
fn max_conns_refuses_the_eleventh_and_serves_the_first_ten() {
    for &(name, mode, threads) in
        shared_process_modes().filter(|(_, mode, _)| *mode != Mode::Blocking)
    {
        let options = Options {
            max_conns: 10,
            threads: threads.map(|_| 10),
            ..Options::default()
        };
        let server = TestServer::start_with(mode, &["upper"], options, Limits::default());
        let mut first: Vec<_> = (0..10).map(|_| server.connect("upper")).collect();
        for (i, client) in first.iter_mut().enumerate() {
            client.write_all(format!("hi {i}\n").as_bytes()).unwrap();
            expect(client, format!("HI {i}\n").as_bytes());
        }
        let mut eleventh = server.connect("upper");
        assert_eq!(
            read_to_end(&mut eleventh),
            b"error: server busy, try again later\n",
            "{name}"
        );
        for client in &mut first {
            client.write_all(b"again\n").unwrap();
            expect(client, b"AGAIN\n");
        }
        assert_eq!(
            server
                .stats
                .refused
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{name}"
        );
    }
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_the_traffic_sent() {
    for &(name, mode, threads) in shared_process_modes() {
        let server = TestServer::start_with(
            mode,
            &["upper", "http"],
            Options {
                threads,
                ..Options::default()
            },
            Limits::default(),
        );
        for i in 0..3 {
            let mut client = server.connect("upper");
            for j in 0..4 {
                client.write_all(format!("{i} {j}\n").as_bytes()).unwrap();
                expect(&mut client, format!("{i} {j}\n").as_bytes());
            }
        }
        let mut http = server.connect("http");
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        http.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200 OK") && head.contains("text/plain; version=0.0.4"),
            "{name}: {head}"
        );
        let samples = parse_metrics(body);
        assert_eq!(
            sample(
                &samples,
                "readyloop_service_requests_total{service=\"upper\"}"
            ),
            12.0,
            "{name}"
        );
        assert_eq!(
            sample(
                &samples,
                "readyloop_service_accepted_total{service=\"upper\"}"
            ),
            3.0,
            "{name}"
        );
        assert_eq!(
            sample(
                &samples,
                "readyloop_service_accepted_total{service=\"http\"}"
            ),
            1.0,
            "{name}"
        );
        // The three upper clients, and this one; each upper line is 4 bytes in, 4 out.
        assert_eq!(sample(&samples, "readyloop_accepted_total"), 4.0, "{name}");
        assert!(
            sample(&samples, "readyloop_bytes_in_total") >= 48.0,
            "{name}"
        );
    }
}

#[test]
fn a_service_with_its_own_larger_bound_takes_requests_over_the_1_mib_backstop() {
    let value = vec![b'v'; 3 << 20];
    let mut set = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    for &(name, mode, threads) in shared_process_modes() {
        let server = TestServer::start_with(
            mode,
            &["kv"],
            Options {
                threads,
                ..Options::default()
            },
            Limits::default(),
        );
        let mut client = server.connect("kv");
        let mut writer = client.try_clone().unwrap();
        let request = set.clone();
        let sending = std::thread::spawn(move || writer.write_all(&request).unwrap());
        expect(&mut client, b"+OK\r\n");
        sending.join().unwrap();
        client
            .write_all(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
            .unwrap();
        let head = format!("${}\r\n", value.len());
        expect(&mut client, head.as_bytes());
        let got = crate::util::read_exact(&mut client, value.len() + 2);
        assert!(
            got[..value.len()] == value[..] && got.ends_with(b"\r\n"),
            "{name}"
        );
    }
}
