//! The http service with real clients: curl (keep-alive over several URLs,
//! HEAD, `Expect: 100-continue`, a chunked POST, 404s, 413, 431, the busy 503) and
//! headless Chromium (it renders `/` and `/metrics`), plus request
//! smuggling attempts over a raw socket, in every mode.
//!
//! A missing curl or chromium fails the test, naming the Debian package.
//! Every child process is killed after [`CHILD_LIMIT`]; temp dirs go with
//! their test.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use readyloop::server::{Mode, Options};
use readyloop::service::Limits;

use crate::util::{TempDir, TestServer, per_mode, read_to_end};

/// How long a curl or chromium may run before it is killed and the test fails.
const CHILD_LIMIT: Duration = Duration::from_secs(30);

/// A server of `http` alone in `mode`.
fn server(mode: Mode, threads: Option<usize>, max_conns: Option<usize>) -> TestServer {
    let mut options = Options {
        threads,
        ..Options::default()
    };
    if let Some(max_conns) = max_conns {
        options.max_conns = max_conns;
    }
    TestServer::start_with(mode, &["http"], options, Limits::default())
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// Runs `program` with `args` to its end, killing it (and what it started:
/// Chromium's zygote and renderers) after [`CHILD_LIMIT`]. Fails naming
/// `package` when the program is not installed.
#[track_caller]
fn run(program: &str, package: &str, args: &[&str]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with `apt-get install {package}`")
        });
    // Read both pipes meanwhile, so a chatty child cannot block on a full one.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // The child is not reaped yet, so its pid is still its group's id.
            let group = i32::try_from(child.id()).unwrap();
            // SAFETY: kill(2) with a negative pid signals that process group.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let _ = child.wait();
            panic!("{program} {args:?} ran over {CHILD_LIMIT:?}: killed");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs curl with `args` and returns (stdout, stderr); it must succeed.
#[track_caller]
fn curl(args: &[&str]) -> (String, String) {
    let output = run("curl", "curl", args);
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(
        output.status.success(),
        "curl {args:?}: {}\n{out}\n{err}",
        output.status
    );
    (out, err)
}

/// curl fetches three URLs over one connection, each with its own answer.
fn curl_keeps_alive_over_several_urls(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, None);
    let addr = server.addr("http");
    let (out, err) = curl(&[
        "-sv",
        &url(addr, "/"),
        &url(addr, "/metrics?x=1"),
        &url(addr, "/nope"),
    ]);
    assert!(out.starts_with("Hello, World"), "{out}");
    assert!(out.contains("readyloop_accepted_total 1\n"), "{out}");
    assert!(out.ends_with("404 Not Found\n"), "{out}");
    assert_eq!(err.matches("Connected to").count(), 1, "{err}");
    assert_eq!(
        err.matches("Re-using existing connection").count(),
        2,
        "{err}"
    );
    assert_eq!(err.matches("< Server: readyloop\r\n").count(), 3, "{err}");
    assert_eq!(err.matches("< Date: ").count(), 3, "{err}");
}

/// `curl --head`: the head of the hello, no body.
fn curl_head(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, None);
    let (out, _) = curl(&["-s", "--head", &url(server.addr("http"), "/")]);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out:?}");
    assert!(out.contains("\r\nContent-Length: 12\r\n"), "{out:?}");
    assert!(out.ends_with("\r\n\r\n"), "{out:?}");
}

/// A POST of 2 KiB with `Expect: 100-continue`: curl would wait a second
/// (`--expect100-timeout 1`) for the 100 before sending the body anyway.
/// The best of three tries must take under 100 ms (one try may lose the CPU
/// on a loaded machine; a server that sends no 100 costs a second each time).
fn curl_expect_100_continue_is_answered_at_once(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, None);
    let body = "x".repeat(2048);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let (out, err) = curl(&[
            "-sv",
            "--expect100-timeout",
            "1",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            &body,
            "-w",
            "%{time_total}",
            &url(server.addr("http"), "/"),
        ]);
        assert!(err.contains("> Expect: 100-continue"), "{err}");
        assert!(err.contains("< HTTP/1.1 100 Continue"), "{err}");
        assert!(err.contains("< HTTP/1.1 405 Method Not Allowed"), "{err}");
        assert!(err.contains("< Allow: GET, HEAD"), "{err}");
        let seconds = out
            .strip_prefix("405 Method Not Allowed: use GET or HEAD\n")
            .unwrap_or_else(|| panic!("{out:?}"));
        best = best.min(seconds.parse().unwrap());
    }
    assert!(best < 0.1, "the POST took at best {best} s");
}

/// A chunked POST gets its 405 after the body, and curl goes on with a GET
/// on the same connection.
fn curl_chunked_post_gets_405_and_the_connection_goes_on(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, None);
    let dir = TempDir::new("chunked-post");
    let file = dir.path().join("body");
    std::fs::write(&file, "y".repeat(100_000)).unwrap();
    let data = format!("@{}", file.display());
    let addr = server.addr("http");
    let (out, err) = curl(&[
        "-sv",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        &data,
        &url(addr, "/upload"),
        "--next",
        &url(addr, "/"),
    ]);
    assert!(err.contains("> Transfer-Encoding: chunked"), "{err}");
    assert!(err.contains("< HTTP/1.1 405 Method Not Allowed"), "{err}");
    assert_eq!(
        out, "405 Method Not Allowed: use GET or HEAD\nHello, World",
        "{err}"
    );
    assert!(err.contains("Re-using existing connection"), "{err}");
}

/// A 2 MiB POST, over the 1 MiB body limit, sent whole (no `Expect`): the
/// 413 must reach curl, not be lost to a reset of the unread body.
fn curl_sees_413_for_a_body_over_the_limit(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, None);
    let dir = TempDir::new("big-post");
    let file = dir.path().join("body");
    std::fs::write(&file, vec![b'z'; 2 << 20]).unwrap();
    let data = format!("@{}", file.display());
    let (out, err) = curl(&[
        "-sv",
        "-H",
        "Expect:",
        "--data-binary",
        &data,
        "-w",
        "%{http_code}",
        &url(server.addr("http"), "/"),
    ]);
    assert_eq!(out, "413 Content Too Large\n413", "{err}");
    assert!(err.contains("< Connection: close"), "{err}");
}

/// A header over 8 KiB: curl reads the 431 (the server closes with the
/// rest of the request unread, so only a lingering close gets it there).
fn curl_sees_431_for_headers_over_8_kib(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, None);
    let header = format!("X-Big: {}", "b".repeat(9000));
    let (out, err) = curl(&[
        "-sv",
        "-H",
        &header,
        "-w",
        "%{http_code}",
        &url(server.addr("http"), "/"),
    ]);
    assert_eq!(out, "431 Request Header Fields Too Large\n431", "{err}");
    assert!(err.contains("< Connection: close"), "{err}");
}

/// Paths that are not ours get a 404 with a short body.
fn curl_sees_404_for_other_paths(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, None);
    let addr = server.addr("http");
    let (out, _) = curl(&[
        "-s",
        "-w",
        "%{http_code}\n",
        &url(addr, "/favicon.ico"),
        &url(addr, "/metrics/"),
        &url(addr, "/?q=1"),
    ]);
    assert_eq!(
        out,
        "404 Not Found\n404\n404 Not Found\n404\nHello, World200\n"
    );
}

/// A server with room for one: the second client gets a 503 curl can read.
fn curl_reads_the_busy_503(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, Some(1));
    let addr = server.addr("http");
    let mut first = server.connect("http");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = [0; 64];
    assert!(first.read(&mut reply).unwrap() > 0);
    let output = run(
        "curl",
        "curl",
        &["-sv", "-w", "%{http_code}", &url(addr, "/")],
    );
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(err.contains("< HTTP/1.1 503 Service Unavailable"), "{err}");
    assert!(err.contains("< Connection: close"), "{err}");
    assert_eq!(
        out, "503 Service Unavailable: server busy, try again later\n503",
        "{err}"
    );
}

/// Sends `request`, then a second request smuggled behind it: the server
/// must answer 400 once and close, never the smuggled one.
#[track_caller]
fn refuses_smuggling(mode: Mode, threads: Option<usize>, request: &str) {
    let server = server(mode, threads, None);
    let mut client = server.connect("http");
    let smuggled = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    client
        .write_all(format!("{request}{smuggled}").as_bytes())
        .unwrap();
    let got = String::from_utf8(read_to_end(&mut client)).unwrap();
    assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got:?}");
    assert!(got.contains("\r\nConnection: close\r\n"), "{got:?}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got:?}");
    // The server goes on serving others.
    let (out, _) = curl(&["-s", &url(server.addr("http"), "/")]);
    assert_eq!(out, "Hello, World");
}

/// Content-Length and Transfer-Encoding at once (RFC 9112 6.1).
fn smuggling_with_length_and_chunked_gets_400(mode: Mode, threads: Option<usize>) {
    refuses_smuggling(
        mode,
        threads,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
}

/// Two Content-Lengths that disagree (RFC 9112 6.3).
fn smuggling_with_two_lengths_gets_400(mode: Mode, threads: Option<usize>) {
    refuses_smuggling(
        mode,
        threads,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 36\r\n\r\n",
    );
}

/// Headless Chromium loads `path` and returns the DOM it rendered.
fn chromium_dom(addr: SocketAddr, path: &str) -> String {
    let profile = TempDir::new("chromium-profile");
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let page = url(addr, path);
    let output = run(
        "/usr/bin/chromium",
        "chromium",
        &[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            &profile_arg,
            "--dump-dom",
            &page,
        ],
    );
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "chromium {page}: {}\n{dom}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    dom
}

/// What a browser shows of `/` and `/metrics`: the text, in a `<pre>`.
fn chromium_renders_hello_and_metrics(mode: Mode, threads: Option<usize>) {
    let server = server(mode, threads, None);
    let addr = server.addr("http");
    let hello = chromium_dom(addr, "/");
    assert!(hello.contains("<pre"), "{hello}");
    assert!(hello.contains(">Hello, World</pre>"), "{hello}");
    let metrics = chromium_dom(addr, "/metrics");
    assert!(metrics.contains("<pre"), "{metrics}");
    assert!(
        metrics.contains("# TYPE readyloop_accepted_total counter"),
        "{metrics}"
    );
}

per_mode!(curl_keeps_alive_over_several_urls, |m| {
    curl_keeps_alive_over_several_urls(m.mode, m.threads)
});
per_mode!(curl_head, |m| curl_head(m.mode, m.threads));
per_mode!(curl_expect_100_continue_is_answered_at_once, |m| {
    curl_expect_100_continue_is_answered_at_once(m.mode, m.threads)
});
per_mode!(curl_chunked_post_gets_405_and_the_connection_goes_on, |m| {
    curl_chunked_post_gets_405_and_the_connection_goes_on(m.mode, m.threads)
});
per_mode!(curl_sees_404_for_other_paths, |m| {
    curl_sees_404_for_other_paths(m.mode, m.threads)
});
per_mode!(curl_sees_413_for_a_body_over_the_limit, |m| {
    curl_sees_413_for_a_body_over_the_limit(m.mode, m.threads)
});
per_mode!(curl_sees_431_for_headers_over_8_kib, |m| {
    curl_sees_431_for_headers_over_8_kib(m.mode, m.threads)
});
per_mode!(smuggling_with_length_and_chunked_gets_400, |m| {
    smuggling_with_length_and_chunked_gets_400(m.mode, m.threads)
});
per_mode!(smuggling_with_two_lengths_gets_400, |m| {
    smuggling_with_two_lengths_gets_400(m.mode, m.threads)
});
per_mode!(chromium_renders_hello_and_metrics, |m| {
    chromium_renders_hello_and_metrics(m.mode, m.threads)
});
// The blocking mode serves one client at a time and queues the others in
// the listen backlog: it has no "full", so no busy reply to test.
per_mode!(
    busy,
    [evloop, threaded, threaded_pool, forking, uring],
    |m| { curl_reads_the_busy_503(m.mode, m.threads) }
);
