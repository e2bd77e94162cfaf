//! The binary as a service manager runs it: signals (graceful SIGTERM, a
//! second signal exits at once, SIGHUP reopens the log file), the pid file
//! and its lock, and `--daemon`. Each test starts the real binary in a temp
//! dir of its own, on loopback port 0 (its address read from its log file),
//! or on a free port chosen by the test where two starts share it; every
//! process is killed on drop and every wait is bounded.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use readyloop::server::Mode;

use crate::util::{ModeCase, TempDir, connect, expect, per_mode, read_to_end};

const BIN: &str = env!("CARGO_BIN_EXE_readyloop");
/// The longest any step here may take.
const LIMIT: Duration = Duration::from_secs(10);

/// A process by pid (our child or a daemon), sent SIGKILL on drop if alive.
struct Process {
    pid: i32,
    child: Option<Child>,
    /// Where it runs, so its default `./readyloop-data` is its own.
    _cwd: Option<TempDir>,
}

impl Process {
    fn start(args: &[&str]) -> Process {
        let cwd = TempDir::new("daemon-cwd");
        let child = Command::new(BIN)
            .current_dir(cwd.path())
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Process {
            pid: child.id() as i32,
            child: Some(child),
            _cwd: Some(cwd),
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with a pid we started.
        assert_eq!(unsafe { libc::kill(self.pid, signal) }, 0, "kill {signal}");
    }

    /// Running, and not a zombie (a daemon's reaper may be slow or absent).
    fn alive(&self) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            // The state follows the parenthesised command name.
            Ok(stat) => !stat
                .rsplit_once(") ")
                .is_some_and(|(_, s)| s.starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Our child's exit status, within `limit`.
    #[track_caller]
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let child = self
            .child
            .as_mut()
            .expect("only children can be waited for");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < limit, "still running after {limit:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        } else if self.alive() {
            // SAFETY: as in `signal`.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

/// The address in the first "listening on" line of the log at `path`, once
/// it is written (the server listens on port 0).
#[track_caller]
fn listening_addr(path: &Path) -> SocketAddr {
    let addr = |log: String| {
        let line = log.lines().find(|line| line.contains(" listening on "))?;
        line.split(" listening on ").nth(1)?.trim().parse().ok()
    };
    wait_until("the server logs its listener", || {
        addr(read(path)).is_some()
    });
    addr(read(path)).unwrap()
}

/// A port nobody listens on right now, for a test that starts two servers
/// on the same one.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Waits until `done()`, failing the test after [`LIMIT`].
#[track_caller]
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < LIMIT, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// The pid in the pid file, once it is written (the server listens then).
#[track_caller]
fn pid_in(path: &Path) -> i32 {
    wait_until("the pid file is written", || {
        read(path).trim_end().parse::<i32>().is_ok()
    });
    read(path).trim().parse().unwrap()
}

// 50 clients (one in blocking mode) each get an answer, then each sends two
// more lines and waits; SIGTERM; every line sent is answered, every client
// sees the connection close, the process exits 0 and the pid file is gone.
//
// Not threaded_pool: its 4 threads cannot hold 50 waiting clients. Not
// forking: a child has its own copy of the shutdown flag and serves its
// client until the client leaves, so SIGTERM does not close the connections.
per_mode!(
    sigterm_answers_every_request_already_sent_then_exits_0,
    [evloop, threaded, blocking, uring],
    |mode| {
        let dir = TempDir::new("sigterm");
        let (pidfile, log) = (dir.path().join("p.pid"), dir.path().join("l.log"));
        let mut server = Process::start(
            &[
                mode.flags,
                &[
                    "upper@127.0.0.1:0",
                    "--shutdown-timeout",
                    "5s",
                    "--pidfile",
                    pidfile.to_str().unwrap(),
                    "--log-file",
                    log.to_str().unwrap(),
                ],
            ]
            .concat(),
        );
        assert_eq!(pid_in(&pidfile), server.pid);
        let addr = listening_addr(&log);
        let clients = if mode.mode == Mode::Blocking { 1 } else { 50 };
        let mut streams: Vec<TcpStream> = (0..clients)
            .map(|i| {
                let mut stream = connect(addr);
                stream.write_all(format!("hello {i}\n").as_bytes()).unwrap();
                expect(&mut stream, format!("HELLO {i}\n").as_bytes());
                stream
            })
            .collect();
        for (i, stream) in streams.iter_mut().enumerate() {
            stream
                .write_all(format!("one {i}\ntwo {i}\n").as_bytes())
                .unwrap();
        }
        server.signal(libc::SIGTERM);
        for (i, stream) in streams.iter_mut().enumerate() {
            let rest = read_to_end(stream);
            assert_eq!(
                String::from_utf8_lossy(&rest),
                format!("ONE {i}\nTWO {i}\n"),
                "client {i}"
            );
        }
        let status = server.wait(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "{}", read(&log));
        assert!(!pidfile.exists(), "the pid file is left behind");
        assert!(read(&log).contains("SIGTERM: shutting down"));
    }
);

/// `--daemon` returns 0 once the daemon serves; the pid file names it; a
/// second start with that pid file is refused (about the pid file, even on
/// the same port); SIGTERM removes the pid file and ends the daemon.
/// Relative paths are resolved before the daemon changes to `/`.
#[test]
fn daemon_detaches_locks_its_pid_file_and_stops_on_sigterm() {
    let dir = TempDir::new("daemon");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let listener = format!("upper@{addr}");
    let args = [
        "serve",
        &listener,
        "--daemon",
        "--pidfile",
        "p.pid",
        "--log-file",
        "l.log",
    ];
    let start = || {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut started = Process {
            pid: child.id() as i32,
            child: None,
            _cwd: None,
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        started.child = Some(child);
        (started.wait(LIMIT), stderr)
    };

    let (status, stderr) = start();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let daemon = Process {
        pid: pid_in(&dir.path().join("p.pid")),
        child: None,
        _cwd: None,
    };
    assert!(daemon.alive());
    let mut client = connect(addr);
    client.write_all(b"daemon\n").unwrap();
    expect(&mut client, b"DAEMON\n");
    drop(client);

    let (status, stderr) = start();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("(pid {})", daemon.pid)) && stderr.contains("p.pid"),
        "{stderr}"
    );
    assert!(!stderr.contains("in use"), "{stderr}");
    assert!(daemon.alive(), "the second start hurt the first");

    daemon.signal(libc::SIGTERM);
    wait_until("the daemon ends", || !daemon.alive());
    assert!(!dir.path().join("p.pid").exists());
    let log = read(&dir.path().join("l.log"));
    assert!(
        log.contains("listening on") && log.contains("stopped"),
        "{log}"
    );
}

/// A bind error under `--daemon` is printed on the terminal with exit code
/// 2, and no pid file appears.
#[test]
fn daemon_bind_errors_reach_the_terminal_and_leave_no_pid_file() {
    let dir = TempDir::new("bind");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let listener = format!("echo@{}", taken.local_addr().unwrap());
    let pidfile = dir.path().join("p.pid");
    // In the temp dir: a store it opened would be `./readyloop-data`.
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .args(["serve", &listener, "--daemon", "--pidfile"])
        .arg(&pidfile)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is in use"), "{stderr}");
    assert!(!pidfile.exists());
}

/// After logrotate renamed the log file, SIGHUP makes new lines go to a new
/// file at the old path.
#[test]
fn sighup_reopens_a_moved_log_file() {
    let dir = TempDir::new("sighup");
    let (log, rotated) = (dir.path().join("l.log"), dir.path().join("l.log.1"));
    let server = Process::start(&[
        "echo@127.0.0.1:0",
        "-v",
        "--log-file",
        log.to_str().unwrap(),
    ]);
    let addr = listening_addr(&log);
    fs::rename(&log, &rotated).unwrap();
    server.signal(libc::SIGHUP);
    wait_until("a new log file appears", || {
        read(&log).contains("log file reopened")
    });
    let mut client = connect(addr);
    client.write_all(b"x\n").unwrap();
    expect(&mut client, b"x\n");
    wait_until("the connection is logged in the new file", || {
        read(&log).contains("accepted")
    });
    let old = read(&rotated);
    assert!(
        old.contains("listening on") && !old.contains("accepted"),
        "{old}"
    );
}

/// Fills the server's output towards a client that does not read, so the
/// connection cannot finish: a graceful shutdown has to wait for it.
fn stuck_client(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr);
    stream.set_nonblocking(true).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut blocked = 0;
    while blocked < 5 {
        match stream.write(&chunk) {
            Ok(_) => blocked = 0,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                blocked += 1;
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
    stream
}

/// An echo server in `mode` logging to a file, with `--shutdown-timeout`
/// `grace`, and a client that keeps its connection from finishing.
fn serve_with_a_stuck_client(
    mode: &ModeCase,
    grace: &str,
) -> (TempDir, PathBuf, Process, TcpStream) {
    let dir = TempDir::new("stuck");
    let log = dir.path().join("l.log");
    let server = Process::start(
        &[
            mode.flags,
            &[
                "echo@127.0.0.1:0",
                "--shutdown-timeout",
                grace,
                "--log-file",
                log.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let client = stuck_client(listening_addr(&log));
    (dir, log, server, client)
}

// While a client keeps a connection from finishing, a second SIGINT ends
// the process at once, with exit code 1 and a log line.
per_mode!(a_second_sigint_exits_at_once, |mode| {
    let (_dir, log, mut server, _client) = serve_with_a_stuck_client(mode, "1m");
    server.signal(libc::SIGINT);
    wait_until("the first SIGINT is logged", || {
        read(&log).contains("SIGINT: shutting down")
    });
    thread::sleep(Duration::from_millis(300));
    assert!(server.alive(), "a graceful stop waits for the client");
    let asked = Instant::now();
    server.signal(libc::SIGINT);
    let status = server.wait(Duration::from_secs(2));
    assert_eq!(status.code(), Some(1));
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert!(read(&log).contains("second SIGINT: exiting now"));
});

// When the grace period ends with a client still there, the process exits
// anyway, with code 3 (not 0: what the client sent was not all answered)
// and an error line saying so. Forking too: there the parent cuts off its
// children.
per_mode!(
    after_the_grace_period_the_process_exits_3_and_says_so,
    |mode| {
        let (_dir, log, mut server, _client) = serve_with_a_stuck_client(mode, "300ms");
        server.signal(libc::SIGTERM);
        let status = server.wait(Duration::from_secs(3));
        let log = read(&log);
        assert_eq!(status.code(), Some(3), "{log}");
        let line = log.lines().find(|l| l.contains(" ERROR ")).unwrap_or("");
        assert!(
            line.contains("exit code 3") && line.contains("grace period"),
            "{log}"
        );
    }
);
