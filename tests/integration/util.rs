//! Test helpers: the server modes and [`per_mode!`], which stamps a test per
//! mode; an in-process server on port 0 ([`TestServer`]) and the real binary
//! ([`BinServer`]); a line client with time limits. Everything binds
//! 127.0.0.1 and stops by itself. `tests/bench.rs` shares this file.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use readyloop::server::{self, Listener, Mode, Options, Shutdown};
use readyloop::service::{self, Backend, Limits, Shared, Transport};
use readyloop::stats::Stats;
use readyloop::store::Store;

/// How long any read in a test may wait.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Logs warnings (or RUST_LOG) once per test binary.
pub fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = simple_logger::SimpleLogger::new()
            .with_level(log::LevelFilter::Warn)
            .env()
            .init();
    });
}

/// One server mode a test runs in. [`per_mode!`] stamps a `#[test]` per
/// mode, named after [`ModeCase::name`], and hands the test its case.
#[derive(Clone, Copy, Debug)]
pub struct ModeCase {
    /// The `#[test]`'s name.
    pub name: &'static str,
    pub mode: Mode,
    /// Threaded mode's pool size; `None` starts a thread per connection.
    pub threads: Option<usize>,
    /// The same mode and pool as `readyloop serve` flags, for tests of the
    /// real binary.
    pub flags: &'static [&'static str],
}

impl ModeCase {
    pub fn evloop() -> ModeCase {
        ModeCase {
            name: "evloop",
            mode: Mode::Evloop,
            threads: None,
            flags: &["--mode", "evloop"],
        }
    }

    pub fn threaded() -> ModeCase {
        ModeCase {
            name: "threaded",
            mode: Mode::Threaded,
            threads: None,
            flags: &["--mode", "threaded"],
        }
    }

    pub fn threaded_pool() -> ModeCase {
        ModeCase {
            name: "threaded_pool",
            mode: Mode::Threaded,
            threads: Some(4),
            flags: &["--mode", "threaded", "--threads", "4"],
        }
    }

    pub fn blocking() -> ModeCase {
        ModeCase {
            name: "blocking",
            mode: Mode::Blocking,
            threads: None,
            flags: &["--mode", "blocking"],
        }
    }

    pub fn forking() -> ModeCase {
        ModeCase {
            name: "forking",
            mode: Mode::Forking,
            threads: None,
            flags: &["--mode", "forking"],
        }
    }

    pub fn uring() -> ModeCase {
        ModeCase {
            name: "uring",
            mode: Mode::Uring,
            threads: None,
            flags: &["--mode", "uring"],
        }
    }

    /// True if this mode can run here; says so on stderr when it cannot (the
    /// kernel may refuse io_uring: too old, seccomp, `io_uring_disabled`).
    pub fn runs(&self) -> bool {
        if self.mode != Mode::Uring {
            return true;
        }
        match server::uring_available() {
            Ok(()) => true,
            Err(reason) => {
                eprintln!("SKIPPED: {} in uring mode: {reason}", self.name);
                false
            }
        }
    }

    /// The default options, in this mode.
    pub fn options(&self) -> Options {
        Options {
            threads: self.threads,
            ..Options::default()
        }
    }

    /// Serves `services` in this mode with the default options and limits.
    pub fn serve(&self, services: &[&str]) -> TestServer {
        TestServer::start_with(self.mode, services, self.options(), Limits::default())
    }

    /// Serves `services` in this mode, uploads going to `dir`.
    pub fn serve_in(&self, services: &[&str], dir: &Path) -> TestServer {
        TestServer::start_in(self.mode, self.threads, services, dir)
    }
}

/// Stamps one `#[test]` per mode in a module named after the case, so a
/// failure names its mode and `cargo test forking` runs every forking case:
///
/// ```ignore
/// per_mode!(echo_answers, |mode| { let server = mode.serve(&["echo"]); ... });
/// // echo_answers::evloop, echo_answers::threaded, ... echo_answers::uring
/// per_mode!(udp_echoes, [evloop, threaded], |mode| { ... });
/// // only the modes named (the caller says why next to it)
/// ```
///
/// This is the one list of every mode the tests know; each name is a
/// [`ModeCase`] constructor. The body is a closure that captures nothing
/// (it becomes each test's function) and gets `mode: &ModeCase`.
macro_rules! per_mode {
    ($case:ident, $body:expr $(,)?) => {
        $crate::util::per_mode!(
            $case,
            [evloop, threaded, threaded_pool, blocking, forking, uring],
            $body
        );
    };
    ($case:ident, [$($mode:ident),+ $(,)?], $body:expr $(,)?) => {
        mod $case {
            use super::*;
            $(
                #[test]
                fn $mode() {
                    let case: fn(&$crate::util::ModeCase) = $body;
                    let mode = $crate::util::ModeCase::$mode();
                    if mode.runs() {
                        case(&mode);
                    }
                }
            )+
        }
    };
}
pub(crate) use per_mode;

/// A server running in this process until dropped.
pub struct TestServer {
    addrs: Vec<(String, SocketAddr)>,
    pub stats: Arc<Stats>,
    shutdown: Shutdown,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// Serves `services` (names, `udp` included) on free ports in `mode`.
    pub fn start(mode: Mode, services: &[&str]) -> TestServer {
        Self::start_with(mode, services, Options::default(), Limits::default())
    }

    /// Serves `services` in `mode` with `threads`, uploads going to `dir`.
    pub fn start_in(
        mode: Mode,
        threads: Option<usize>,
        services: &[&str],
        dir: &Path,
    ) -> TestServer {
        let options = Options {
            threads,
            ..Options::default()
        };
        let limits = Limits {
            upload_dir: dir.to_owned(),
            ..Limits::default()
        };
        Self::start_with(mode, services, options, limits)
    }

    pub fn start_with(
        mode: Mode,
        services: &[&str],
        options: Options,
        limits: Limits,
    ) -> TestServer {
        Self::start_tuned(mode, services, options, limits, |_| {})
    }

    /// Like [`TestServer::start_with`], and `tune` may set socket options on
    /// each TCP listening socket before the server runs. Accepted sockets
    /// inherit them (e.g. a small `SO_SNDBUF`, to fill a connection quickly).
    pub fn start_tuned(
        mode: Mode,
        services: &[&str],
        options: Options,
        limits: Limits,
        tune: impl Fn(&std::net::TcpListener),
    ) -> TestServer {
        let stats = Arc::new(Stats::default());
        let shared = Shared {
            backend: Backend::File(Store::in_memory()),
            broker: Default::default(),
            stats: Arc::clone(&stats),
            limits,
        };
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut listeners = Vec::new();
        for &name in services {
            let entry = service::by_name(name).unwrap_or_else(|| panic!("no service {name}"));
            let listener = match entry.transport {
                Transport::Datagram => Listener::Udp {
                    socket: UdpSocket::bind(any_port).unwrap(),
                },
                Transport::Stream(make_factory) => {
                    let socket = server::bind_tcp(any_port).unwrap();
                    tune(&socket);
                    Listener::Tcp {
                        socket,
                        factory: make_factory(&shared),
                    }
                }
            };
            listeners.push((name.to_owned(), listener));
        }
        Self::serve_listeners(mode, listeners, options, stats)
    }

    /// Serves listeners the test made itself (its own services), each
    /// under the name given, in `mode`.
    pub fn serve_listeners(
        mode: Mode,
        named: Vec<(String, Listener)>,
        options: Options,
        stats: Arc<Stats>,
    ) -> TestServer {
        init_logging();
        let mut addrs = Vec::new();
        let mut listeners = Vec::new();
        for (name, listener) in named {
            addrs.push((name, listener.local_addr().unwrap()));
            listeners.push(listener);
        }
        let shutdown = Shutdown::new();
        let (handle, run_stats) = (shutdown.clone(), Arc::clone(&stats));
        let thread =
            thread::spawn(move || server::run(listeners, mode, &options, run_stats, handle));
        TestServer {
            addrs,
            stats,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Asks the server to stop, as a signal would; dropping it waits.
    pub fn trigger_shutdown(&self) {
        self.shutdown.trigger();
    }

    /// The address `service` listens on.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(name, _)| name == service)
            .unwrap_or_else(|| panic!("not serving {service}"))
            .1
    }

    /// A connected client for `service`.
    pub fn connect(&self, service: &str) -> TcpStream {
        connect(self.addr(service))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(thread) = self.thread.take() {
            let result = thread.join().expect("the server thread panicked");
            if !thread::panicking() {
                result.expect("the server failed");
            }
        }
    }
}

/// A fresh empty directory under the system's temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "readyloop-test-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The names of the entries in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connects with read and write time limits.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Reads until the server closes (or the time limit fails the test).
#[track_caller]
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => out,
        // A server that closes with unread input resets the connection; what
        // arrived before the reset is what it sent.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => out,
        Err(e) => panic!(
            "reading until close: {e} after {} bytes: {:?}",
            out.len(),
            String::from_utf8_lossy(&out)
        ),
    }
}

/// Reads exactly `n` bytes.
#[track_caller]
pub fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    stream
        .read_exact(&mut out)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    out
}

/// Reads until `expected.len()` bytes arrived, and compares.
#[track_caller]
pub fn expect(stream: &mut TcpStream, expected: &[u8]) {
    let got = read_exact(stream, expected.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

/// Sends `bytes` one byte per write, so the server sees every split. Stops
/// early if the server closed (a service may end the dialogue first).
pub fn write_bytewise(stream: &mut TcpStream, bytes: &[u8]) {
    stream.set_nodelay(true).unwrap();
    for (i, byte) in bytes.iter().enumerate() {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            return;
        }
        if i % 8 == 0 {
            thread::sleep(Duration::from_micros(200));
        }
    }
}

/// The real `readyloop` binary, serving in a child process; killed on drop.
/// Its stderr is drained by a thread into `log`, so it never blocks.
pub struct BinServer {
    pub child: std::process::Child,
    addrs: Vec<(String, SocketAddr)>,
    pub log: Arc<std::sync::Mutex<String>>,
    /// Its working directory, so a default `./readyloop-data` is its own.
    cwd: TempDir,
}

impl BinServer {
    /// Starts `readyloop serve ARGS`; `services` are the listeners' names,
    /// in order, whose "<service> listening on <addr>" lines to wait for.
    pub fn start(args: &[&str], services: &[&str]) -> BinServer {
        BinServer::start_from(
            std::process::Command::new(env!("CARGO_BIN_EXE_readyloop")),
            args,
            services,
        )
    }

    /// [`start`](Self::start) from `command` (the binary, set up as a test
    /// needs: limits, environment); `serve ARGS` is added here.
    pub fn start_from(
        mut command: std::process::Command,
        args: &[&str],
        services: &[&str],
    ) -> BinServer {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let cwd = TempDir::new("bin-cwd");
        let mut child = command
            .current_dir(cwd.path())
            .arg("serve")
            .args(args)
            // Never the terminal `cargo test` runs in: no console.
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(std::sync::Mutex::new(String::new()));
        let mut server = BinServer {
            child,
            addrs: Vec::new(),
            log: Arc::clone(&log),
            cwd,
        };
        // Bounded: the child either logs its listeners or exits (EOF).
        while server.addrs.len() < services.len() {
            let Some(Ok(line)) = lines.next() else { break };
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Some((head, addr)) = line.split_once(" listening on ") {
                let name = head.rsplit(' ').next().unwrap().to_owned();
                server.addrs.push((name, addr.trim().parse().unwrap()));
            }
        }
        assert_eq!(
            server.addrs.len(),
            services.len(),
            "the server did not log its listeners:\n{}",
            log.lock().unwrap()
        );
        thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        server
    }

    /// Its working directory.
    pub fn cwd(&self) -> &Path {
        self.cwd.path()
    }

    /// Every listener's address, in the order the server logged them.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.addrs.iter().map(|(_, addr)| *addr).collect()
    }

    pub fn addr(&self, service: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(name, _)| name == service)
            .unwrap_or_else(|| panic!("not serving {service}"))
            .1
    }

    /// `kill -9`: no flush, no goodbye.
    pub fn sigkill(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        self.child.wait().unwrap();
    }
}

impl Drop for BinServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses Prometheus text: `name{labels} value` lines, `#` comments.
pub fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let bare = name.split('{').next().unwrap();
        assert!(
            bare.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = name.strip_prefix(bare) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line:?}"
            );
        }
        samples.push((
            name.to_owned(),
            value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        ));
    }
    samples
}

pub fn sample(samples: &[(String, f64)], name: &str) -> f64 {
    samples
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
}

/// An HTTP exchange as text, with every `Date` value written `<date>`, so
/// it can be compared with a fixed expectation.
pub fn undated(bytes: &[u8]) -> String {
    const LEN: usize = "Sun, 06 Nov 1994 08:49:37 GMT".len();
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    let mut from = 0;
    while let Some(at) = text[from..].find("\r\nDate: ") {
        let value = from + at + "\r\nDate: ".len();
        let end = (value + LEN).min(text.len());
        assert!(text[value..end].ends_with(" GMT"), "a bad Date in {text:?}");
        text.replace_range(value..end, "<date>");
        from = value;
    }
    text
}

/// A process's user + system CPU time so far (utime and stime, fields 14
/// and 15 of /proc/PID/stat, counted after the command's closing
/// parenthesis, which may itself hold spaces).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}
