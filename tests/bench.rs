//! The load generator against readyloop's own echo service in this process,
//! against a stand-in HTTP server that closes often, and (`--spawn`) against
//! readyloop servers it starts itself. Every run here is bounded by its
//! --duration.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use readyloop::bench::{self, BenchArgs};
use readyloop::server::Mode;
use serde_json::Value;

// Shared with the integration tests; this binary uses only the servers and
// the temp dir.
#[allow(dead_code, unused_macros, unused_imports)]
#[path = "integration/util.rs"]
mod util;

use util::{TempDir, TestServer};

/// readyloop serving echo in this process.
fn echo_server() -> TestServer {
    TestServer::start(Mode::Evloop, &["echo"])
}

/// A thread-per-connection HTTP/1.1 keep-alive server that answers
/// `Connection: close` (and closes) on every [`CLOSE_EVERY`]th response, as
/// servers with a per-connection request limit do. readyloop's own limit
/// is 1000 responses, too many for a short run to reach reliably.
struct ClosingHttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ClosingHttpServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                std::thread::spawn(move || serve_http(stream));
            }
        });
        ClosingHttpServer {
            addr,
            stop,
            accept: Some(accept),
        }
    }
}

impl Drop for ClosingHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the loop sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

const CLOSE_EVERY: usize = 5;

fn serve_http(mut stream: TcpStream) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHello, World";
    const LAST: &[u8] =
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 12\r\n\r\nHello, World";
    let (mut buf, mut answered) = (Vec::new(), 0);
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            answered += 1;
            let last = answered % CLOSE_EVERY == 0;
            if stream.write_all(if last { LAST } else { OK }).is_err() || last {
                return;
            }
        }
    }
}

/// Runs the load generator against `addr` with `extra` flags, its JSON
/// going to a file in `dir`, and returns the JSON.
fn run_against(addr: SocketAddr, extra: &[&str], dir: &TempDir) -> Value {
    let addr = addr.to_string();
    let json = dir.path().join("results.json");
    let mut flags = vec!["--addr", &addr, "--json", json.to_str().unwrap()];
    flags.extend_from_slice(extra);
    let args = BenchArgs::parse_from(flags).expect("valid bench flags");
    bench::run(&args).expect("bench runs");
    let text = std::fs::read_to_string(&json).expect("bench wrote its JSON");
    serde_json::from_str(&text).expect("the JSON parses")
}

#[track_caller]
fn assert_sane(point: &Value) {
    let get = |key: &str| {
        point[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {point}"))
    };
    assert!(get("requests") > 0.0, "{point}");
    assert_eq!(get("errors"), 0.0, "{point}");
    assert!(get("p50_us") <= get("p99_us"), "{point}");
    assert!(get("p99_us") <= get("max_us"), "{point}");
    assert!(get("throughput") > 0.0, "{point}");
}

#[test]
fn echo_series_against_a_local_server() {
    let server = echo_server();
    let dir = TempDir::new("bench-echo");
    let results = run_against(
        server.addr("echo"),
        &["--conns", "1,4", "--duration", "300ms", "--warmup", "100ms"],
        &dir,
    );
    let points = results["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0]["conns"], 1);
    assert_eq!(points[1]["conns"], 4);
    points.iter().for_each(assert_sane);
    assert!(results["machine"]["nproc"].as_u64().unwrap() >= 1);
}

#[test]
fn pipelined_threaded_clients_with_source_ips() {
    let server = echo_server();
    let dir = TempDir::new("bench-pipeline");
    let results = run_against(
        server.addr("echo"),
        &[
            "--conns",
            "6",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--pipeline",
            "4",
            "--threads",
            "2",
            "--size",
            "100",
            "--source-ips",
            "3",
            "--repeat",
            "3",
        ],
        &dir,
    );
    let points = results["points"].as_array().unwrap();
    assert_eq!(points.len(), 1);
    assert_sane(&points[0]);
    assert_eq!(points[0]["connected"], 6);
}

#[test]
fn idle_connections_are_held() {
    let server = echo_server();
    let dir = TempDir::new("bench-idle");
    let results = run_against(
        server.addr("echo"),
        &["--workload", "idle", "--conns", "50", "--duration", "300ms"],
        &dir,
    );
    let point = &results["points"][0];
    assert_eq!(point["held"], 50, "{point}");
    assert_eq!(point["errors"], 0, "{point}");
    assert_eq!(
        point["requests"], 50,
        "each connection proved by one round trip"
    );
}

#[test]
fn http_keep_alive_with_announced_closes() {
    let server = ClosingHttpServer::start();
    let dir = TempDir::new("bench-http");
    let results = run_against(
        server.addr,
        &[
            "--workload",
            "http",
            "--conns",
            "3",
            "--duration",
            "300ms",
            "--warmup",
            "50ms",
            "--pipeline",
            "2",
        ],
        &dir,
    );
    let point = &results["points"][0];
    assert_sane(point);
    assert!(
        point["reconnects"].as_u64().unwrap() > 0,
        "a `Connection: close` reply reopens the connection: {point}"
    );
}

/// A port where nothing listens: every connection is refused, counted (not
/// a panic), the JSON is still written, and the binary exits 2 with a line
/// naming the point, so a script can tell (it used to print 0 req/s and
/// exit 0).
#[test]
fn a_point_with_no_successful_request_exits_2() {
    // Bind then drop, so the port is (almost certainly) closed.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let dir = TempDir::new("bench-refused");
    let json = dir.path().join("refused.json");
    let output = Command::new(env!("CARGO_BIN_EXE_readyloop"))
        .args([
            "bench",
            "--addr",
            &addr,
            "--conns",
            "3",
            "--duration",
            "100ms",
        ])
        .args(["--warmup", "0ms", "--json"])
        .arg(&json)
        .output()
        .expect("run readyloop bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("readyloop: error: no request succeeded at target × 3 conns"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("| target | 3 |"));
    let results: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(results["points"][0]["errors"], 3);
    assert_eq!(results["points"][0]["requests"], 0);
}

#[test]
fn spawned_modes_are_compared() {
    // The modes `--spawn` starts, one after the other (uring where allowed).
    let spawned = match readyloop::server::uring_available() {
        Ok(()) => vec!["evloop", "uring", "threaded"],
        Err(reason) => {
            eprintln!("SKIPPED: uring in bench --spawn: {reason}");
            vec!["evloop", "threaded"]
        }
    };
    let dir = TempDir::new("bench-spawn");
    let out = dir.path().join("out");
    // In the temp dir: the spawned servers keep their `./readyloop-data` there.
    let status = Command::new(env!("CARGO_BIN_EXE_readyloop"))
        .current_dir(dir.path())
        .args([
            "bench",
            "--spawn",
            &spawned.join(","),
            "--workload",
            "echo",
            "--conns",
            "1,8",
            "--duration",
            "500ms",
            "--warmup",
            "100ms",
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("run readyloop bench");
    assert!(status.success());
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let points = results["points"].as_array().unwrap();
    for &mode in &spawned {
        let of_mode: Vec<&Value> = points.iter().filter(|p| p["mode"] == mode).collect();
        assert_eq!(of_mode.len(), 2, "{mode} has a point per conns");
        of_mode.into_iter().for_each(assert_sane);
    }
    let svg = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // One thick series line per mode in each of the two panels.
    let series = svg
        .split("<polyline")
        .filter(|el| el.contains("stroke-width=\"2\""))
        .count();
    assert_eq!(series, 2 * spawned.len());
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("| evloop | 8 |")
    );
}
