//! The errors `main` prints: everything that stops the server from starting.
//! Each message names the thing and the fix.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why readyloop could not start (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A listener names a service that does not exist.
    #[error("unknown service '{name}' in '{spec}': the services are {known}")]
    UnknownService {
        /// The listener as written.
        spec: String,
        /// The unknown name.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// A listener's address cannot be understood.
    #[error("bad address in '{spec}': {reason}")]
    BadAddress {
        /// The listener as written.
        spec: String,
        /// What is wrong, with an example.
        reason: String,
    },
    /// A flag's value is out of range or malformed.
    #[error("{flag}: {reason}")]
    BadFlag {
        /// The flag, as `--max-line`.
        flag: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// The port is taken.
    #[error("{service}@{addr}: port {} is in use: pass {service}@{}:0 for any free port, or pick another", addr.port(), addr.ip())]
    AddrInUse {
        /// The service that wanted it.
        service: String,
        /// The address.
        addr: SocketAddr,
    },
    /// Binding failed for another reason.
    #[error("{service}@{addr}: cannot listen: {source}{hint}")]
    Bind {
        /// The service that wanted it.
        service: String,
        /// The address.
        addr: SocketAddr,
        /// The system's error.
        source: io::Error,
        /// A suggestion, if we have one.
        hint: &'static str,
    },
    /// What a service needs before it is served could not be made ready
    /// (the upload directory cannot be created).
    #[error("{service}: {reason}")]
    Prepare {
        /// The service.
        service: &'static str,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// The store cannot open its data directory (or write its last changes).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The Redis store (`--store redis://`) cannot be reached at start, or
    /// refused the start-up data.
    #[error("store {url} unavailable: {reason}")]
    StoreUnavailable {
        /// The store, as `redis://HOST:PORT/DB`.
        url: String,
        /// What failed, and what to do.
        reason: String,
    },
    /// The log file cannot be opened for appending.
    #[error("cannot open log file {}: {source}: check that its directory exists and is writable, or leave out --log-file", path.display())]
    LogFile {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// Another server holds the pid file's lock.
    #[error("pid file {} is held by a running readyloop{}, or pass another --pidfile",
        path.display(),
        match pid {
            Some(pid) => format!(" (pid {pid}): stop it first with `kill -TERM {pid}`"),
            None => " that is still starting: wait for it or stop it first".to_owned(),
        })]
    PidFileLocked {
        /// The file.
        path: PathBuf,
        /// The pid written in it, if it is there yet.
        pid: Option<u32>,
    },
    /// The pid file cannot be created, locked or written.
    #[error("cannot use pid file {}: {source}: check that its directory exists and is writable, or pass another --pidfile", path.display())]
    PidFile {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// A step of detaching into the background failed.
    #[error("cannot run as a daemon: {step} failed: {source}; run without --daemon to see more")]
    Daemon {
        /// The step: `fork`, `setsid`, `pipe`...
        step: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// The detached server reported a failure before it was ready.
    #[error("the daemon did not start: {0}")]
    DaemonChild(String),
    /// `--mode uring` on a kernel that refuses io_uring.
    #[error("--mode uring: {0}")]
    NoUring(String),
    /// The server failed while running (the poll itself failed).
    #[error("the server stopped on an error: {0}")]
    Serve(#[from] io::Error),
}

impl StartupError {
    /// The error for a failed bind of `service` to `addr`.
    pub fn bind(service: &str, addr: SocketAddr, source: io::Error) -> StartupError {
        let service = service.to_owned();
        match source.kind() {
            io::ErrorKind::AddrInUse => StartupError::AddrInUse { service, addr },
            io::ErrorKind::PermissionDenied => StartupError::Bind {
                service,
                addr,
                source,
                hint: " (ports below 1024 need root or CAP_NET_BIND_SERVICE: pick a port above 1023)",
            },
            io::ErrorKind::AddrNotAvailable => StartupError::Bind {
                service,
                addr,
                source,
                hint: " (that IP is not on this machine: try 127.0.0.1 or 0.0.0.0)",
            },
            _ => StartupError::Bind {
                service,
                addr,
                source,
                hint: "",
            },
        }
    }
}
