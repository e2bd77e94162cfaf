//! Limits and counters: idle timeouts close idle clients only,
//! `--max-conns` refuses the one too many, `/metrics` counts exactly the
//! traffic sent (in every mode that shares one process), and a service may
//! bound its input above the drivers' backstop; out of descriptors, a loop
//! rests its listener and serves the clients it has.

use std::io::{Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::{Duration, Instant};

use readyloop::server::Options;
use readyloop::service::Limits;

use std::net::TcpStream;

use crate::util::{
    BinServer, TIMEOUT, TempDir, TestServer, connect, cpu_time, expect, parse_metrics, per_mode,
    read_to_end, sample,
};

// Not blocking: it serves one client at a time, so the second one here
// would wait instead of being served.
per_mode!(
    idle_timeout_closes_an_idle_client_and_not_a_busy_one,
    [evloop, threaded, threaded_pool, forking, uring],
    |mode| {
        let options = Options {
            idle_timeout: Some(Duration::from_millis(600)),
            ..mode.options()
        };
        let server = TestServer::start_with(mode.mode, &["upper"], options, Limits::default());
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
        assert_eq!(read_to_end(&mut idle), b"");
        busy.write_all(b"still\n").unwrap();
        expect(&mut busy, b"STILL\n");
    }
);

// Not blocking, as above.
per_mode!(
    max_conns_refuses_the_eleventh_and_serves_the_first_ten,
    [evloop, threaded, threaded_pool, forking, uring],
    |mode| {
        let options = Options {
            max_conns: 10,
            threads: mode.threads.map(|_| 10),
            ..Options::default()
        };
        let server = TestServer::start_with(mode.mode, &["upper"], options, Limits::default());
        let mut first: Vec<_> = (0..10).map(|_| server.connect("upper")).collect();
        for (i, client) in first.iter_mut().enumerate() {
            client.write_all(format!("hi {i}\n").as_bytes()).unwrap();
            expect(client, format!("HI {i}\n").as_bytes());
        }
        let mut eleventh = server.connect("upper");
        assert_eq!(
            read_to_end(&mut eleventh),
            b"error: server busy, try again later\n"
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
            1
        );
    }
);

// A client that starts a request and never finishes it (slowloris) is
// closed after the request timeout; one that finished its request stays.
// Not forking: its children count `timed_out` in their own copies.
per_mode!(
    request_timeout_closes_a_client_that_never_finishes_its_request,
    [evloop, threaded, threaded_pool, blocking, uring],
    |mode| {
        let options = Options {
            request_timeout: Some(Duration::from_millis(300)),
            ..mode.options()
        };
        let server = TestServer::start_with(mode.mode, &["upper"], options, Limits::default());
        let mut slow = server.connect("upper");
        slow.write_all(b"never finished").unwrap();
        // (Blocking mode answers this one once the slow one is gone.)
        let mut done = server.connect("upper");
        done.write_all(b"done\n").unwrap();
        expect(&mut done, b"DONE\n");
        assert_eq!(read_to_end(&mut slow), b"", "closed, unanswered");
        assert_eq!(server.stats.timed_out.load(Relaxed), 1);
        thread::sleep(Duration::from_millis(400)); // past the timeout, between requests
        done.write_all(b"again\n").unwrap();
        expect(&mut done, b"AGAIN\n");
    }
);

// Not forking: a forked child counts its client's traffic in its own copy
// of the counters, which `/metrics` (served by another child) never sees.
per_mode!(
    metrics_parse_as_prometheus_text_and_count_the_traffic_sent,
    [evloop, threaded, threaded_pool, blocking, uring],
    |mode| {
        let server = mode.serve(&["upper", "http"]);
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
            "{head}"
        );
        let samples = parse_metrics(body);
        assert_eq!(
            sample(
                &samples,
                "readyloop_service_requests_total{service=\"upper\"}"
            ),
            12.0
        );
        assert_eq!(
            sample(
                &samples,
                "readyloop_service_accepted_total{service=\"upper\"}"
            ),
            3.0
        );
        assert_eq!(
            sample(
                &samples,
                "readyloop_service_accepted_total{service=\"http\"}"
            ),
            1.0
        );
        // The three upper clients, and this one; each upper line is 4 bytes in, 4 out.
        assert_eq!(sample(&samples, "readyloop_accepted_total"), 4.0);
        assert!(sample(&samples, "readyloop_bytes_in_total") >= 48.0);
    }
);

per_mode!(
    a_service_with_its_own_larger_bound_takes_requests_over_the_1_mib_backstop,
    |mode| {
        let value = vec![b'v'; 3 << 20];
        let mut set = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        let server = mode.serve(&["kv"]);
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
        assert!(got[..value.len()] == value[..] && got.ends_with(b"\r\n"));
    }
);

/// Descriptors the server child is started holding (`/dev/null`, inherited)
/// under an open-file limit of [`NOFILE`]: its connections run out of
/// descriptors well before `--max-conns` (clamped to `NOFILE` - 32) is reached.
const HELD: usize = 40;
const NOFILE: libc::rlim_t = 64;

// Rule 3: out of descriptors, the loop rests its listener (instead of an
// accept failing again at once, at 100% CPU), keeps serving the clients it
// has, and accepts the waiting ones once descriptors are free again. The
// single-threaded loops only: the other modes sleep in their accept thread.
per_mode!(
    out_of_descriptors_rests_the_listener_and_serves_the_connected,
    [evloop, uring],
    |mode| {
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_readyloop"));
        // SAFETY: between fork and exec only open(2) and setrlimit(2), both
        // async-signal-safe; the descriptors are left open for the child.
        unsafe {
            command.pre_exec(|| {
                for _ in 0..HELD {
                    if libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                let limit = libc::rlimit {
                    rlim_cur: NOFILE,
                    rlim_max: NOFILE,
                };
                match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
        let data = TempDir::new("emfile-data");
        let mut args = vec!["echo@127.0.0.1:0", "--console", "off", "--data-dir"];
        args.push(data.path().to_str().unwrap());
        args.extend_from_slice(mode.flags);
        let server = BinServer::start_from(command, &args, &["echo"]);
        let addr = server.addr("echo");
        let answered_soon = |client: &mut TcpStream, line: &[u8]| {
            client.write_all(line).unwrap();
            client
                .set_read_timeout(Some(Duration::from_millis(700)))
                .unwrap();
            let mut got = vec![0; line.len()];
            let answered = client.read_exact(&mut got).is_ok();
            client.set_read_timeout(Some(TIMEOUT)).unwrap();
            answered.then(|| assert_eq!(got, line))
        };
        let mut served = Vec::new();
        let mut waiting = Vec::new();
        while waiting.is_empty() {
            assert!(served.len() < 32, "{NOFILE} descriptors never ran out");
            let mut client = connect(addr);
            match answered_soon(&mut client, b"hello\n") {
                Some(()) => served.push(client),
                None => waiting.push(client),
            }
        }
        for _ in 0..3 {
            let mut client = connect(addr);
            client.write_all(b"later\n").unwrap();
            waiting.push(client);
        }
        assert!(served.len() >= 3, "only {} served", served.len());
        let log = || server.log.lock().unwrap().clone();
        assert!(log().contains("out of file descriptors"), "{}", log());
        // Resting: the served ones are answered, and the loop does not spin.
        let before = cpu_time(server.child.id());
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1200) {
            for client in &mut served {
                client.write_all(b"still\n").unwrap();
                expect(client, b"still\n");
            }
            thread::sleep(Duration::from_millis(100));
        }
        let spent = cpu_time(server.child.id()) - before;
        assert!(
            spent < Duration::from_millis(400),
            "{spent:?} of CPU in 1.2 s while out of descriptors"
        );
        // Descriptors come back: the waiting clients are accepted and answered.
        drop(served);
        expect(&mut waiting[0], b"hello\n");
        for client in &mut waiting[1..] {
            expect(client, b"later\n");
        }
    }
);
