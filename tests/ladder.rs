//! The teaching ladder (examples/01..07 and client) over real loopback sockets.
//!
//! Each test starts an example binary on port 0, reads the one
//! `listening on 127.0.0.1:<port>` line from its stdout, and talks to it.
//! Every socket has a 5 s read timeout and every child is killed on drop, so a
//! broken rung fails a test instead of hanging it.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Where cargo puts example binaries for this profile: `target/<profile>/examples`.
/// Built once per test run with `cargo build --examples`, because
/// `cargo test --test ladder` alone does not build (or rebuild) examples.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>/deps/<test>");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--examples",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
        profile_dir.join("examples")
    })
}

/// A running example server; killed and reaped on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Everything the server wrote to stderr so far (its log lines).
    log: Arc<Mutex<String>>,
}

impl Server {
    #[track_caller]
    fn start(name: &str, extra: &[&str]) -> Server {
        let path = examples_dir().join(name);
        let mut child = Command::new(&path)
            .arg("0")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", path.display()));
        // Drain stderr on a thread so the pipe never fills and blocks the server.
        let log = Arc::new(Mutex::new(String::new()));
        let (stderr, sink) = (child.stderr.take().unwrap(), Arc::clone(&log));
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // If the server dies before printing, read_line returns 0 and we fail.
        let read = stdout.read_line(&mut first);
        // The guard exists before any assertion, so a failure still kills the child.
        let mut server = Server {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            log,
        };
        let line = match read {
            Ok(n) if n > 0 => first.trim_end().to_string(),
            _ => panic!("{name} printed no 'listening on' line"),
        };
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        server.addr = addr.parse().expect("a socket address");
        server
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to example");
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
        s
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `msg` and reads back exactly as many bytes (echo may arrive in pieces).
#[track_caller]
fn echo(s: &mut TcpStream, msg: &str) {
    s.write_all(msg.as_bytes()).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)
        .expect("echo within the read timeout");
    assert_eq!(String::from_utf8_lossy(&got), msg);
}

/// Two clients connected at once, interleaved, each gets its own bytes back.
fn two_clients_at_once(name: &str, extra: &[&str]) {
    let server = Server::start(name, extra);
    let (mut a, mut b) = (server.connect(), server.connect());
    echo(&mut a, "hello from a\n");
    echo(&mut b, "hello from b\n");
    echo(&mut a, "again a\n");
    echo(&mut b, "again b\n");
    // A bigger message than one read buffer / one socket write.
    let big: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    echo(&mut b, &big);
    drop(a);
    echo(&mut b, "b still served after a left\n");
}

#[test]
fn blocking_serves_one_client_at_a_time() {
    let server = Server::start("01_blocking", &[]);
    let mut first = server.connect();
    echo(&mut first, "first\n");
    // The second connect succeeds (kernel backlog) but nobody reads it yet.
    let mut second = server.connect();
    second.write_all(b"second\n").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 7];
    let err = second
        .read(&mut buf)
        .expect_err("second client must wait while the first is connected");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    echo(&mut first, "first still served\n");
    drop(first);
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    second
        .read_exact(&mut buf)
        .expect("echo once the first client left");
    assert_eq!(&buf, b"second\n");
}

#[test]
fn thread_per_client_serves_two_at_once() {
    two_clients_at_once("02_thread_per_client", &[]);
}

#[test]
fn select_serves_two_at_once() {
    two_clients_at_once("03_select", &[]);
}

#[test]
fn select_refuses_fds_over_fd_setsize_and_keeps_serving() {
    // Accepted sockets are renumbered to the lowest free fd >= 1022, so the
    // first two clients get 1022 and 1023 and the third would be 1024.
    let server = Server::start("03_select", &["--fd-floor", "1022"]);
    let (mut a, mut b) = (server.connect(), server.connect());
    echo(&mut a, "a\n");
    echo(&mut b, "b\n");
    let mut c = server.connect();
    let _ = c.write_all(b"c\n"); // may already fail if the close raced ahead
    let mut buf = [0u8; 8];
    match c.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("third client should be closed, got {other:?}"),
    }
    echo(&mut a, "a still served\n");
    echo(&mut b, "b still served\n");
    // A freed slot below FD_SETSIZE is usable again.
    drop(a);
    let deadline = Instant::now() + TIMEOUT;
    let mut d = loop {
        let mut d = server.connect();
        d.write_all(b"d\n").unwrap();
        let mut got = [0u8; 2];
        // `a`'s close may not be processed yet, so d may get fd 1024 and be
        // refused; retry within the deadline.
        if d.read_exact(&mut got).is_ok() {
            assert_eq!(&got, b"d\n");
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "no fd below FD_SETSIZE came free"
        );
        thread::sleep(Duration::from_millis(50));
    };
    echo(&mut d, "d served\n");
    let log = server.log();
    assert!(
        log.contains("refused: fd 1024 >= FD_SETSIZE"),
        "log was:\n{log}"
    );
}

#[test]
fn poll_serves_two_at_once() {
    two_clients_at_once("04_poll", &[]);
}

#[test]
fn epoll_level_triggered_serves_two_at_once() {
    two_clients_at_once("05_epoll", &[]);
}

#[test]
fn epoll_edge_triggered_serves_two_at_once() {
    two_clients_at_once("05_epoll", &["--edge"]);
}

#[test]
fn mio_serves_two_at_once() {
    two_clients_at_once("06_mio", &[]);
}

#[test]
fn io_uring_serves_two_at_once() {
    if let Err(reason) = readyloop::server::uring_available() {
        eprintln!("SKIPPED: 07_io_uring: {reason}");
        return;
    }
    two_clients_at_once("07_io_uring", &[]);
}

#[test]
fn client_example_echoes_piped_lines() {
    let server = Server::start("02_thread_per_client", &[]);
    let mut client = Command::new(examples_dir().join("client"))
        .arg(server.addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start client example");
    client
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello\nsecond line\nquit\n")
        .unwrap();
    // Bounded wait: the client must leave by itself after `quit`.
    let deadline = Instant::now() + TIMEOUT;
    while client.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = client.kill();
            panic!("client did not exit after quit");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    client
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(client.wait().unwrap().success());
    // `quit` sends `--quit--`, which an echo server sends back.
    assert_eq!(
        out,
        "Please enter 'quit' to exit\n -> hello\n -> second line\n -> --quit--\n"
    );
}
