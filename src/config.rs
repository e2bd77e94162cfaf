//! Validated settings: flags in ([`crate::cli`]), a [`Config`] out, or a
//! [`StartupError`] that tells the user what to change.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{Console, Framing, ServeArgs};
use crate::error::StartupError;
use crate::remote::Redis;

mod store;
use crate::server::{Mode, Options};
use crate::service::{self, Limits};
pub use store::StoreConfig;

/// One `SERVICE@ADDR` from the command line, checked.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// What to serve.
    pub service: &'static service::Entry,
    /// Where.
    pub addr: SocketAddr,
}

impl PartialEq for ListenerSpec {
    fn eq(&self, other: &Self) -> bool {
        (self.service.name, self.addr) == (other.service.name, other.addr)
    }
}
impl Eq for ListenerSpec {}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The listeners, in the order given.
    pub listeners: Vec<ListenerSpec>,
    /// The server mode.
    pub mode: Mode,
    /// The drivers' limits.
    pub options: Options,
    /// The services' limits.
    pub limits: Limits,
    /// Where todo and kv keep their data (`--store`, `--data-dir`).
    pub store: StoreConfig,
    /// Where log lines go (absolute); `None` is stderr.
    pub log_file: Option<PathBuf>,
    /// The pid file (absolute), if any.
    pub pidfile: Option<PathBuf>,
    /// Detach into the background once listening.
    pub daemon: bool,
    /// Event loops to run (`--loops`).
    pub loops: usize,
    /// Log the counters this often (`--stats-interval`).
    pub stats_interval: Option<Duration>,
}

/// The longest `--max-line`: 512 MiB, Redis' bulk limit. A todo line is
/// stored as one log record, and records stay under 1 GiB.
pub const MAX_MAX_LINE: usize = 512 * 1024 * 1024;

impl Config {
    /// Checks the flags of `readyloop serve`.
    pub fn from_args(args: &ServeArgs) -> Result<Config, StartupError> {
        let mode = Mode::from(args.mode);
        let listeners = if args.listeners.is_empty() {
            default_listeners()
        } else {
            args.listeners
                .iter()
                .map(|spec| parse_listener(spec))
                .collect::<Result<_, _>>()?
        };
        let max_line = parse_size("--max-line", &args.max_line)?;
        let max_output = parse_size("--max-output", &args.max_output)?;
        let max_upload = parse_size("--max-upload", &args.max_upload)? as u64;
        let max_body = parse_size("--max-body", &args.max_body)? as u64;
        let kv_max_bulk = parse_size("--kv-max-bulk", &args.kv_max_bulk)?;
        if kv_max_bulk > crate::service::kv::DEFAULT_MAX_BULK {
            return Err(bad("--kv-max-bulk", "must be at most 512M"));
        }
        if max_line > MAX_MAX_LINE {
            return Err(bad("--max-line", "must be at most 512M"));
        }
        let store = StoreConfig::from_args(args)?;
        if args.max_conns == 0 {
            return Err(bad("--max-conns", "must be at least 1"));
        }
        if args.threads == Some(0) {
            return Err(bad(
                "--threads",
                "must be at least 1 (leave it out for a thread per connection)",
            ));
        }
        if args.store_conns == 0 {
            return Err(bad("--store-conns", "must be at least 1"));
        }
        if args.loops == 0 {
            return Err(bad("--loops", "must be at least 1"));
        }
        if args.loops > 1 && mode != Mode::Evloop {
            return Err(bad(
                "--loops",
                "only the event loop has loops: drop --mode or use --mode evloop",
            ));
        }
        if args.threads.is_some() && mode != Mode::Threaded {
            return Err(bad(
                "--threads",
                "only the threaded mode has threads: add --mode threaded",
            ));
        }
        let options = Options {
            max_conns: args.max_conns,
            max_output,
            threads: args.threads,
            offload_workers: args.offload,
            // The event loop's own upstream connections serve one Redis
            // server; with a cluster it hands requests to its offload
            // pool, whose workers use `remote::blocking`'s cluster client.
            store: match &store {
                StoreConfig::Redis {
                    url: Redis::Server(url),
                    ..
                } => Some(url.clone()),
                StoreConfig::Redis { .. } | StoreConfig::File { .. } => None,
            },
            store_conns: args.store_conns,
            console: mode == Mode::Evloop
                && match args.console {
                    Console::On => true,
                    Console::Off => false,
                    Console::Auto => {
                        !args.daemon && std::io::IsTerminal::is_terminal(&std::io::stdin())
                    }
                },
            shutdown_grace: parse_duration("--shutdown-timeout", &args.shutdown_timeout)?,
            idle_timeout: args
                .idle_timeout
                .as_deref()
                .map(|text| parse_duration("--idle-timeout", text))
                .transpose()?,
            request_timeout: match args.request_timeout.as_str() {
                "off" => None,
                text => Some(parse_duration("--request-timeout", text)?),
            },
            ..Options::default()
        };
        // Resolve relative paths against the directory the user typed them
        // in, now: a daemon changes directory to `/`.
        let log_file = args
            .log_file
            .as_deref()
            .map(|p| absolute("--log-file", p))
            .transpose()?;
        let pidfile = args
            .pidfile
            .as_deref()
            .map(|p| absolute("--pidfile", p))
            .transpose()?;
        Ok(Config {
            listeners,
            mode,
            options,
            limits: Limits {
                max_line,
                framing: match args.framing {
                    Framing::Newline => service::framing::Framing::Newline,
                    Framing::Read => service::framing::Framing::Read,
                },
                upload_dir: absolute("--upload-dir", &args.upload_dir)?,
                max_upload,
                max_body,
                kv_max_bulk,
            },
            store,
            log_file,
            pidfile,
            daemon: args.daemon,
            loops: args.loops,
            stats_interval: args
                .stats_interval
                .as_deref()
                .map(|text| parse_duration("--stats-interval", text))
                .transpose()?,
        })
    }
}

/// Every service on its default port on 127.0.0.1.
pub fn default_listeners() -> Vec<ListenerSpec> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let spec = |entry| ListenerSpec {
        service: entry,
        addr: SocketAddr::new(localhost, entry.default_port),
    };
    service::REGISTRY.iter().map(spec).collect()
}

/// Parses `SERVICE`, `SERVICE@PORT`, `SERVICE@IP` or `SERVICE@IP:PORT`
/// (IPv6 in brackets: `echo@[::1]:9000`). A missing IP is 127.0.0.1, a
/// missing port the service's default.
pub fn parse_listener(spec: &str) -> Result<ListenerSpec, StartupError> {
    let (name, addr) = match spec.split_once('@') {
        Some((name, addr)) => (name, Some(addr)),
        None => (spec, None),
    };
    let Some(service) = service::by_name(name) else {
        let known: Vec<&str> = service::REGISTRY.iter().map(|e| e.name).collect();
        return Err(StartupError::UnknownService {
            spec: spec.to_owned(),
            name: name.to_owned(),
            known: known.join(", "),
        });
    };
    let default_port = service.default_port;
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let addr = match addr {
        None => SocketAddr::new(localhost, default_port),
        Some(text) => parse_addr(text, localhost, default_port).ok_or_else(|| StartupError::BadAddress {
            spec: spec.to_owned(),
            reason: format!(
                "'{text}' is not a port, an IP or IP:PORT; for example {name}@127.0.0.1:{default_port}, \
                 {name}@{default_port}, {name}@0.0.0.0 or {name}@[::1]:0"
            ),
        })?,
    };
    Ok(ListenerSpec { service, addr })
}

fn parse_addr(text: &str, default_ip: IpAddr, default_port: u16) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    if let Ok(port) = text.parse::<u16>() {
        return Some(SocketAddr::new(default_ip, port));
    }
    let ip = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    ip.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// Parses a byte count: `65536`, `64k`, `64KiB`, `1M`, `1MiB`, `1G`.
pub fn parse_size(flag: &'static str, text: &str) -> Result<usize, StartupError> {
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let scale: usize = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(bad(
                flag,
                &format!("'{text}' is not a size: use bytes or k/M/G, e.g. 64k"),
            ));
        }
    };
    let value: usize = digits.parse().map_err(|_| {
        bad(
            flag,
            &format!("'{text}' is not a size: use bytes or k/M/G, e.g. 64k"),
        )
    })?;
    match value.checked_mul(scale) {
        Some(0) => Err(bad(flag, "must be at least 1 byte")),
        Some(bytes) => Ok(bytes),
        None => Err(bad(flag, &format!("'{text}' is too large"))),
    }
}

/// Parses a duration: `500ms`, `10s`, `1.5s`, `1m` (or `1min`); a bare
/// number is seconds. The one grammar every duration flag uses (`serve`'s
/// and `bench`'s); the error says what is accepted.
pub fn duration(text: &str) -> Result<Duration, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let bad =
        || format!("'{text}' is not a duration: use a number with ms, s or m, like 500ms, 10s, 1m");
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is too long"))
}

/// [`duration`] for the flag `flag`, as a [`StartupError`].
pub fn parse_duration(flag: &'static str, text: &str) -> Result<Duration, StartupError> {
    duration(text).map_err(|reason| bad(flag, &reason))
}

/// `path` made absolute against the current directory.
fn absolute(flag: &'static str, path: &Path) -> Result<PathBuf, StartupError> {
    if path.as_os_str().is_empty() {
        return Err(bad(flag, "needs a file path; leave the flag out instead"));
    }
    std::path::absolute(path).map_err(|e| {
        bad(
            flag,
            &format!(
                "cannot resolve '{}': {e}; pass an absolute path",
                path.display()
            ),
        )
    })
}

fn bad(flag: &'static str, reason: &str) -> StartupError {
    StartupError::BadFlag {
        flag,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_forms() {
        let echo = parse_listener("echo").unwrap();
        assert_eq!(echo.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(parse_listener("echo@0").unwrap().addr.port(), 0);
        assert_eq!(
            parse_listener("http@0.0.0.0").unwrap().addr,
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listener("upper@[::1]:7").unwrap().addr,
            "[::1]:7".parse().unwrap()
        );
        let udp = parse_listener("udp@127.0.0.1:5").unwrap().service;
        assert!(matches!(udp.transport, service::Transport::Datagram));
    }

    #[test]
    fn listener_errors_name_the_fix() {
        let err = parse_listener("ech@1").unwrap_err().to_string();
        assert!(
            err.contains("unknown service 'ech'") && err.contains("echo"),
            "{err}"
        );
        let err = parse_listener("echo@localhost:x").unwrap_err().to_string();
        assert!(err.contains("echo@127.0.0.1:9000"), "{err}");
        assert!(parse_listener("echo@70000").is_err());
    }

    fn config_of(flags: &[&str]) -> Result<Config, String> {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["readyloop", "serve"].iter().chain(flags))
            .map_err(|e| e.to_string())?;
        let crate::cli::Command::Serve(args) = cli.command else {
            unreachable!("serve was parsed")
        };
        Config::from_args(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn the_event_loop_gets_the_redis_store_and_its_connection_count() {
        let redis = ["--store", "redis://127.0.0.1:6390/2", "--store-conns", "3"];
        let options = config_of(&redis).unwrap().options;
        assert_eq!(
            options.store,
            Some("redis://127.0.0.1:6390/2".parse().unwrap())
        );
        assert_eq!(options.store_conns, 3);
        let file = config_of(&["--store", "file:d"]).unwrap().options;
        assert_eq!((file.store, file.store_conns), (None, 2));
        // A cluster is no one server to pipeline to: the event loop hands
        // its requests to the offload pool (the blocking cluster client).
        let cluster = config_of(&["--store", "redis-cluster://127.0.0.1:7000"]).unwrap();
        assert_eq!(cluster.options.store, None);
        assert!(matches!(
            cluster.store,
            StoreConfig::Redis {
                url: Redis::Cluster(_),
                ..
            }
        ));
        let zero = config_of(&["--store-conns", "0"]).unwrap_err();
        assert!(
            zero.contains("--store-conns") && zero.contains("at least 1"),
            "{zero}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("--x", "64k").unwrap(), 65536);
        assert_eq!(parse_size("--x", "1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("--x", "100").unwrap(), 100);
        assert!(parse_size("--x", "0").is_err());
        assert!(parse_size("--x", "12q").is_err());
        assert!(parse_size("--x", "99999999999G").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("--x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("--x", "10s").unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(
            parse_duration("--x", "10").unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(
            parse_duration("--x", "1m").unwrap(),
            Duration::from_secs(60)
        );
        let err = parse_duration("--x", "5h").unwrap_err().to_string();
        assert!(err.contains("500ms"), "{err}");
        assert!(parse_duration("--x", "s").is_err());
    }
}
