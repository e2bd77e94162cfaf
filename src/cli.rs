//! The command line, as clap derive structs: raw flags only. Validation and
//! every user-facing error text live in [`crate::config`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::server::{self, Mode};
use crate::service;
use crate::store::Fsync;

/// readyloop: a single-threaded event-loop TCP/UDP server, with threaded and
/// blocking modes to compare it against.
#[derive(Debug, Parser)]
#[command(name = "readyloop", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve services (all of them on their default ports when none is named).
    Serve(ServeArgs),
    /// Talk to a line service by hand: type a line, see the reply before the next prompt; `quit` leaves.
    Client(ClientArgs),
    /// Load-test a server (or `--spawn` readyloop in several modes) and compare.
    Bench(crate::bench::BenchArgs),
}

/// `readyloop serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listeners as SERVICE[@ADDR]: `echo`, `echo@9000`, `http@0.0.0.0:8080`,
    /// `upper@[::1]:0` (port 0: any free port; the log says which). Services:
    /// echo hello once upper menu http todo kv upload slow udp.
    #[arg(value_name = "SERVICE@ADDR")]
    pub listeners: Vec<String>,
    /// How connections are served.
    #[arg(long, value_enum, default_value_t = ModeArg::Evloop)]
    pub mode: ModeArg,
    /// Threaded mode: serve with a pool of N threads instead of a thread per connection.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Event loop: worker threads for slow jobs (disk writes, `slow`).
    /// 0 runs them on the loop thread, stalling every other client.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_OFFLOAD_WORKERS)]
    pub offload: usize,
    /// Event loop: connections each loop keeps to the store on Redis,
    /// onto which its clients' requests are pipelined (one Redis server;
    /// a cluster goes through the offload pool's workers).
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_STORE_CONNS)]
    pub store_conns: usize,
    /// Event loop: run N independent loops, one per core, each with its own
    /// listening socket (SO_REUSEPORT); they share only the store.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub loops: usize,
    /// Read `stats`, `conns`, `quit` from stdin (event loop). `auto`: on
    /// when stdin is a terminal and the server stays in the foreground.
    #[arg(long, value_enum, default_value_t = Console::Auto)]
    pub console: Console,
    /// Most connections served at once (clamped to the open-file limit);
    /// more are told "server busy" and closed.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_CONNS)]
    pub max_conns: usize,
    /// Longest line a line service accepts (bytes; k/M suffixes allowed).
    #[arg(long, value_name = "BYTES", default_value_t = service::DEFAULT_MAX_LINE.to_string())]
    pub max_line: String,
    /// Unsent output per connection above which the server stops reading
    /// that client until it catches up (bytes; k/M suffixes allowed).
    #[arg(long, value_name = "BYTES", default_value_t = server::DEFAULT_MAX_OUTPUT.to_string())]
    pub max_output: String,
    /// Where `upload` stores files; created at start if an `upload`
    /// listener is configured.
    #[arg(long, value_name = "DIR", default_value = service::DEFAULT_UPLOAD_DIR)]
    pub upload_dir: std::path::PathBuf,
    /// Largest file `upload` accepts (bytes; k/M/G suffixes allowed); a
    /// bigger size is refused before any byte is written.
    #[arg(long, value_name = "BYTES", default_value_t = service::DEFAULT_MAX_UPLOAD.to_string())]
    pub max_upload: String,
    /// Largest HTTP request body read (bytes; k/M/G suffixes allowed);
    /// over it the answer is `413` and the connection closes.
    #[arg(long, value_name = "BYTES", default_value_t = service::http::DEFAULT_MAX_BODY.to_string())]
    pub max_body: String,
    /// Longest bulk string (one key or value) `kv` accepts (bytes; k/M/G
    /// suffixes allowed), as Redis' `proto-max-bulk-len`; at most 512M.
    #[arg(long, value_name = "BYTES", default_value = "512M")]
    pub kv_max_bulk: String,
    /// Where todo and kv keep their data: `file:DIR` (the embedded store,
    /// the default: a map and an append-only log in DIR, one server per
    /// directory) or `redis://HOST:PORT[/DB]` (a Redis server every mode
    /// and every readyloop process shares; kv becomes a proxy to it, and
    /// durability is Redis' own `appendonly`/`appendfsync`) or
    /// `redis-cluster://HOST:PORT[,HOST:PORT...]` (a Redis Cluster, named
    /// by one or more of its nodes: each request goes to the master of its
    /// key's slot).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// With `--store redis://`: if Redis cannot be reached at start, retry
    /// (about once a second, logging each try) instead of failing.
    #[arg(long)]
    pub store_wait: bool,
    /// The file store's directory (default ./readyloop-data), the same as
    /// `--store file:DIR`; refused together with `--store`.
    #[arg(long, value_name = "PATH")]
    pub data_dir: Option<std::path::PathBuf>,
    /// When the file store's log is fsynced (default everysec): `always`
    /// answers a change only once it is on disk, `everysec` fsyncs once a
    /// second, `no` leaves it to the OS. Refused with `--store redis://`
    /// (there Redis' `appendfsync` decides).
    #[arg(long, value_enum, value_name = "WHEN")]
    pub fsync: Option<FsyncArg>,
    /// More log lines: -v per connection, -vv every poll wake-up and event.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Log every poll wake-up and every event (same as -vv): watch the loop work.
    #[arg(long)]
    pub trace: bool,
    /// Log warnings and errors only.
    #[arg(short, long, conflicts_with_all = ["verbose", "trace"])]
    pub quiet: bool,
    /// On SIGTERM/SIGINT, how long connections may take to finish what they
    /// sent before the process exits anyway (`500ms`, `10s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub shutdown_timeout: String,
    /// Close connections that sent nothing for this long (`30s`, `5m`).
    /// Default: HTTP keep-alive 75s, other services never.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// A request must arrive whole within this long of its first byte (in
    /// a body: between two reads), or the connection is closed: slow
    /// clients (slowloris) cannot hold slots. `off` for no limit.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub request_timeout: String,
    /// How line services cut input into messages: `newline` (a message
    /// ends at `\n`), or `read` (what arrived together is one message, for
    /// clients that send a message without a newline and wait for the
    /// answer; two quick messages may then merge into one).
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Framing::Newline)]
    pub framing: Framing,
    /// Log one line of counters this often (`10s`); off by default.
    #[arg(long, value_name = "DURATION")]
    pub stats_interval: Option<String>,
    /// Append log lines to this file instead of stderr; SIGHUP reopens it
    /// (for logrotate).
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Detach from the terminal and run in the background, once every
    /// listener is bound. Pair it with --pidfile and --log-file.
    #[arg(long)]
    pub daemon: bool,
    /// Write the server's pid here once it listens, and hold a lock on it
    /// so a second server with the same file refuses to start.
    #[arg(long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,
}

/// `readyloop client`.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server, as HOST:PORT.
    #[arg(value_name = "ADDR", default_value = "127.0.0.1:8000")]
    pub addr: String,
}

/// `--mode`: the server modes, as the command line names them (the server
/// layer's [`Mode`] knows nothing of the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// One thread, one `mio::Poll`: every connection in one event loop.
    Evloop,
    /// A thread per connection (`--threads N`: a pool of N).
    Threaded,
    /// One connection at a time; the next waits in the listen backlog.
    Blocking,
    /// A process per connection; each child has its own copy of the store.
    Forking,
    /// One thread, one io_uring: the kernel is told what to read and send
    /// and says when it is done (Linux 6.0 or later).
    Uring,
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Mode {
        match mode {
            ModeArg::Evloop => Mode::Evloop,
            ModeArg::Threaded => Mode::Threaded,
            ModeArg::Blocking => Mode::Blocking,
            ModeArg::Forking => Mode::Forking,
            ModeArg::Uring => Mode::Uring,
        }
    }
}

/// `--framing`: how line services cut their input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// A message ends at `\n`.
    Newline,
    /// A message is what arrived together.
    Read,
}

/// When the stdin console is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Console {
    /// When stdin is a terminal and there is no `--daemon`.
    Auto,
    /// Always (a pipe works too).
    On,
    /// Never.
    Off,
}

/// `--fsync`: the command line's names for [`Fsync`] (the store knows no clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncArg {
    /// Answer a change only once it is fsynced (group commit): nothing
    /// acknowledged is lost, even by power loss.
    Always,
    /// Write at once, fsync once a second: a `kill -9` loses nothing
    /// written; power loss up to a second.
    Everysec,
    /// Write at once; the OS decides when the data reaches the disk.
    No,
}

impl From<FsyncArg> for Fsync {
    fn from(arg: FsyncArg) -> Fsync {
        match arg {
            FsyncArg::Always => Fsync::Always,
            FsyncArg::Everysec => Fsync::Everysec,
            FsyncArg::No => Fsync::No,
        }
    }
}
