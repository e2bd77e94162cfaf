//! `readyloop bench`: a bounded load generator for comparing server modes.
//!
//! It opens many nonblocking connections from its own `mio` loop(s)
//! (`client.rs`), keeps `--pipeline` requests in flight on each, and measures
//! every request from write to complete reply. For each connection count of
//! `--conns` it reports throughput, latency percentiles, errors and (when
//! the server is a local process) server CPU per request; the `idle`
//! workload instead holds connections open and reports memory per
//! connection. With `--spawn` it starts one server per mode itself
//! ([`spawn`]) and writes a table and JSON ([`report`]) and an SVG chart
//! ([`chart`]).
//!
//! Every run is bounded: connecting has a deadline, and the warm-up and the
//! measured window end by the clock. Traffic goes only to the given address
//! (with `--spawn`, to 127.0.0.1). Failed connections are counted, never
//! fatal; only bad flags, an unreachable spawn, an unwritable output file,
//! or a point with no successful request at all (reported after the
//! results are written) end `run` with a [`BenchError`].

pub mod chart;
mod client;
mod measure;
pub mod report;
pub mod spawn;
pub mod system;
pub mod workload;

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use report::{Results, Settings};
use system::Machine;
pub use workload::Kind;

/// The flags of `readyloop bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The server to load, as HOST:PORT (or use --spawn).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "spawn")]
    pub addr: Option<String>,
    /// Start a server per mode, one after the other, and compare them
    /// (comma list: evloop,uring,threaded,blocking,forking).
    #[arg(long, value_name = "MODES", value_delimiter = ',')]
    pub spawn: Vec<String>,
    /// What to send.
    #[arg(long, value_enum, default_value = "echo")]
    pub workload: Kind,
    /// Connection counts to measure, one point each (comma list).
    #[arg(
        long,
        value_name = "N,N,..",
        value_delimiter = ',',
        default_value = "1,50,1000"
    )]
    pub conns: Vec<usize>,
    /// The measured window per point (`500ms`, `5s`, `1m`).
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Load before measuring, not counted (`500ms`, `1s`).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Bytes per echo or upper message, the final `\n` included.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Runs per point; the run with the median throughput is reported.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write results.json, report.md and chart.svg into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Client threads, each running its own event loop over a share of the
    /// connections.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Spread connections over source addresses 127.0.0.1..=127.0.0.N, for
    /// more than one address's ~28k ephemeral ports.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub source_ips: u8,
    /// The server binary for --spawn (default: this program).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// An extra argument for spawned servers (repeatable).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub server_arg: Vec<String>,
    /// The pid of the server at --addr, when it runs on this machine, for
    /// CPU per request and memory per idle connection.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

impl BenchArgs {
    /// Parses `bench` flags (without a program name), as the CLI would.
    ///
    /// # Errors
    ///
    /// clap's error for unknown or malformed flags.
    pub fn parse_from<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{Args as _, FromArgMatches as _};
        let command = BenchArgs::augment_args(clap::Command::new("bench").no_binary_name(true));
        let matches = command.try_get_matches_from(flags)?;
        BenchArgs::from_arg_matches(&matches)
    }
}

/// Why `bench` could not run. Each message names the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// Neither --addr nor --spawn.
    #[error(
        "nothing to measure: pass --addr HOST:PORT for a running server, or --spawn evloop,uring,threaded to start one per mode"
    )]
    NoTarget,
    /// A flag's value cannot work.
    #[error("{0}")]
    Invalid(String),
    /// --addr does not resolve.
    #[error("cannot resolve --addr {addr}: {detail}; give HOST:PORT, like 127.0.0.1:9000")]
    Addr {
        /// The flag's value.
        addr: String,
        /// What went wrong.
        detail: String,
    },
    /// More connections than file descriptors.
    #[error(
        "{conns} connections need more file descriptors than the limit of {limit}: raise it (`ulimit -n`) or pass fewer --conns"
    )]
    FdLimit {
        /// The largest --conns.
        conns: usize,
        /// RLIMIT_NOFILE, after raising the soft limit to the hard one.
        limit: u64,
    },
    /// More connections than ephemeral ports.
    #[error(
        "{conns} connections need more than the {ports} ephemeral ports per source address: pass --source-ips {needed}"
    )]
    Ports {
        /// The largest --conns.
        conns: usize,
        /// Ports per address (`net.ipv4.ip_local_port_range`).
        ports: usize,
        /// The --source-ips that would do.
        needed: usize,
    },
    /// The server binary could not be started.
    #[error(
        "cannot start the server {bin}: {source}; pass --server-bin PATH to a readyloop binary"
    )]
    Spawn {
        /// The program.
        bin: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The spawned server exited before it listened.
    #[error(
        "the {mode} server exited ({status}) before listening; its stderr:\n{stderr}\ncheck the mode name and --server-arg values"
    )]
    ServerExited {
        /// The mode.
        mode: String,
        /// Its exit status.
        status: String,
        /// Its last stderr lines.
        stderr: String,
    },
    /// The spawned server never logged its address.
    #[error(
        "the {mode} server logged no 'listening on ADDR' line within {secs} s; its stderr:\n{stderr}\ncheck that --server-bin is a readyloop binary with `serve`"
    )]
    ServerSilent {
        /// The mode.
        mode: String,
        /// How long it was given.
        secs: u64,
        /// Its last stderr lines.
        stderr: String,
    },
    /// An output file or directory could not be written.
    #[error("cannot write {path}: {source}; check that the directory exists and is writable")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The table could not be written to stdout (`main` ends quietly when
    /// that is a closed pipe).
    #[error("cannot write the table to stdout: {0}")]
    Stdout(#[source] std::io::Error),
    /// Plotters could not draw the chart.
    #[error("cannot draw the chart: {0}")]
    Chart(String),
    /// A point got no reply at all: nothing listens there, or it does not
    /// speak the workload's protocol. The table and files are written
    /// first, so the run can still be read.
    #[error(
        "no request succeeded at {0}: check that a server listens at the address and speaks the workload's protocol (--workload)"
    )]
    NoReplies(String),
    /// A client thread panicked (a bug in bench).
    #[error("a bench client thread panicked; please report this with the flags used")]
    ClientPanicked,
}

/// The mode name recorded for a server given by --addr.
pub const TARGET_MODE: &str = "target";
/// File descriptors kept free for everything that is not a connection.
pub const FD_RESERVE: u64 = 64;
/// The longest --duration or --warmup accepted, to keep every run bounded.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most requests in flight per connection.
pub const MAX_PIPELINE: usize = 1024;

/// Parses a duration as every flag does ([`crate::config::duration`]:
/// `500ms`, `5s`, `1m`, a bare number is seconds), at most [`MAX_DURATION`].
///
/// # Errors
///
/// A message saying which forms are accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = crate::config::duration(text)?;
    if duration > MAX_DURATION {
        return Err(format!(
            "`{text}` is too long: at most {} s",
            MAX_DURATION.as_secs()
        ));
    }
    Ok(duration)
}

/// Runs the benchmark `args` describes: one line per point on stderr as it
/// finishes, the markdown table on stdout at the end, then the files asked
/// for (`--json`, `--out`).
///
/// # Errors
///
/// [`BenchError`] for bad flags, a server that cannot be spawned, or an
/// output file that cannot be written; and [`BenchError::NoReplies`], after
/// the table and files, when a point had no successful request (so a
/// script sees a failure, not 0 req/s). Other failed connections are not
/// errors: they are counted in the results.
pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    validate(args)?;
    let workload = workload::Workload::new(args.workload, args.size);
    let mut points = Vec::new();
    if args.spawn.is_empty() {
        let addr = resolve(args.addr.as_deref().ok_or(BenchError::NoTarget)?)?;
        measure::measure_series(
            args,
            &workload,
            TARGET_MODE,
            addr,
            args.server_pid,
            &mut points,
        );
    } else {
        let bin = match &args.server_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe().map_err(|source| BenchError::Spawn {
                bin: "the current executable".into(),
                source,
            })?,
        };
        for mode in &args.spawn {
            let server =
                spawn::Server::start(&bin, mode, args.workload.service(), &args.server_arg)?;
            eprintln!(
                "bench: {mode} server pid {} on {}",
                server.pid(),
                server.addr
            );
            measure::measure_series(
                args,
                &workload,
                mode,
                server.addr,
                Some(server.pid()),
                &mut points,
            );
        }
    }
    let results = Results {
        machine: Machine::current(),
        settings: Settings {
            workload: args.workload.name().into(),
            duration_ms: args.duration.as_millis() as u64,
            // Idle has no warm-up: connections are proven, then held.
            warmup_ms: if args.workload == Kind::Idle {
                0
            } else {
                args.warmup.as_millis() as u64
            },
            size: args.size,
            pipeline: args.pipeline,
            threads: args.threads,
            repeat: args.repeat,
            source_ips: args.source_ips,
        },
        points,
    };
    let table = report::markdown(&results);
    writeln!(std::io::stdout(), "{table}").map_err(BenchError::Stdout)?;
    if let Some(path) = &args.json {
        write(path, &report::json(&results))?;
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|source| write_error(dir, source))?;
        write(&dir.join("results.json"), &report::json(&results))?;
        write(&dir.join("report.md"), &table)?;
        write(
            &dir.join("chart.svg"),
            &chart::svg(&results).map_err(BenchError::Chart)?,
        )?;
    }
    let failed: Vec<String> = results
        .points
        .iter()
        .filter(|p| p.requests == 0)
        .map(|p| match &p.first_error {
            Some(e) => format!("{} × {} conns ({e})", p.mode, p.conns),
            None => format!("{} × {} conns", p.mode, p.conns),
        })
        .collect();
    if !failed.is_empty() {
        return Err(BenchError::NoReplies(failed.join("; ")));
    }
    Ok(())
}

/// Checks the flags against each other and against the machine's limits.
fn validate(args: &BenchArgs) -> Result<(), BenchError> {
    let invalid = |msg: &str| Err(BenchError::Invalid(msg.into()));
    if args.addr.is_none() && args.spawn.is_empty() {
        return Err(BenchError::NoTarget);
    }
    if args.conns.is_empty() || args.conns.contains(&0) {
        return invalid("--conns needs connection counts of at least 1, like --conns 1,50,1000");
    }
    if args.duration.is_zero() {
        return invalid("--duration must be more than zero, like --duration 5s");
    }
    if args.size < workload::MIN_SIZE {
        return invalid("--size must be at least 2 (one byte and the final newline)");
    }
    if !(1..=MAX_PIPELINE).contains(&args.pipeline) {
        return invalid("--pipeline must be between 1 and 1024");
    }
    if args.repeat == 0 {
        return invalid("--repeat must be at least 1");
    }
    if args.threads == 0 {
        return invalid("--threads must be at least 1");
    }
    if args.source_ips == 0 {
        return invalid("--source-ips must be between 1 and 255");
    }
    if args.spawn.iter().any(|m| m.is_empty()) {
        return invalid("--spawn needs mode names, like --spawn evloop,threaded");
    }
    let conns = args.conns.iter().copied().max().unwrap_or(1);
    match crate::fdlimit::raise_nofile_limit() {
        Ok(limit) if conns as u64 + FD_RESERVE > limit => {
            return Err(BenchError::FdLimit { conns, limit });
        }
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    let ports = ephemeral_ports();
    let per_address = conns.div_ceil(args.source_ips as usize);
    if per_address > ports {
        return Err(BenchError::Ports {
            conns,
            ports,
            needed: conns.div_ceil(ports),
        });
    }
    Ok(())
}

/// How many ephemeral ports one source address has
/// (`/proc/sys/net/ipv4/ip_local_port_range`; Linux's default 28,232).
fn ephemeral_ports() -> usize {
    const DEFAULT: usize = 60999 - 32768 + 1;
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut it = text.split_whitespace().map(|n| n.parse::<usize>().ok());
            Some(it.next()??..=it.next()??)
        })
        .map_or(DEFAULT, |range| range.count())
}

fn resolve(addr: &str) -> Result<SocketAddr, BenchError> {
    let error = |detail: String| BenchError::Addr {
        addr: addr.into(),
        detail,
    };
    addr.to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("no address found".into()))
}

fn write_error(path: &Path, source: std::io::Error) -> BenchError {
    BenchError::Write {
        path: path.display().to_string(),
        source,
    }
}

fn write(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(|source| write_error(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5h").unwrap_err().contains("500ms"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("2m").is_ok() && parse_duration("61m").is_err());
    }

    #[test]
    fn flags_parse_with_defaults() {
        let args = BenchArgs::parse_from(["--addr", "127.0.0.1:9000"]).unwrap();
        assert_eq!(args.conns, vec![1, 50, 1000]);
        assert_eq!(args.workload, Kind::Echo);
        assert_eq!(args.duration, Duration::from_secs(5));
        let args = BenchArgs::parse_from([
            "--spawn",
            "evloop,threaded",
            "--conns",
            "1,4",
            "--workload",
            "kv",
            "--server-arg",
            "--offload",
            "--server-arg",
            "2",
        ])
        .unwrap();
        assert_eq!(args.spawn, ["evloop", "threaded"]);
        assert_eq!(args.server_arg, ["--offload", "2"]);
        assert!(BenchArgs::parse_from(["--addr", "x:1", "--spawn", "evloop"]).is_err());
    }

    #[test]
    fn bad_flags_name_the_fix() {
        let args = BenchArgs::parse_from(["--conns", "1"]).unwrap();
        assert!(
            run(&args)
                .unwrap_err()
                .to_string()
                .contains("--addr HOST:PORT")
        );
        let args = BenchArgs::parse_from(["--addr", "127.0.0.1:1", "--pipeline", "0"]).unwrap();
        assert!(run(&args).unwrap_err().to_string().contains("--pipeline"));
        let args = BenchArgs::parse_from(["--addr", "127.0.0.1:1", "--conns", "100000"]).unwrap();
        let err = run(&args).unwrap_err().to_string();
        assert!(
            err.contains("--source-ips") || err.contains("ulimit"),
            "{err}"
        );
    }
}
