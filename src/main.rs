//! The `readyloop` binary: parse flags, set up logging, run a subcommand.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use log::LevelFilter;
use readyloop::cli::{Cli, Command, ServeArgs};
use readyloop::config::{Config, ServiceKind};
use readyloop::error::StartupError;
use readyloop::server::{self, Listener, Shutdown};
use readyloop::service::Shared;
use readyloop::{client, stats::Stats, store::Store};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<(), Box<dyn std::error::Error>> = match &cli.command {
        Command::Serve(args) => serve(args).map_err(Into::into),
        Command::Client(args) => client::run(&args.addr).map_err(Into::into),
        Command::Bench(args) => {
            init_logging(LevelFilter::Warn);
            readyloop::bench::run(args).map_err(Into::into)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("readyloop: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &ServeArgs) -> Result<(), StartupError> {
    let config = Config::from_args(args)?;
    let level = match (args.quiet, args.trace, args.verbose) {
        (true, _, _) => LevelFilter::Warn,
        (_, true, _) | (_, _, 2..) => LevelFilter::Trace,
        (_, _, 1) => LevelFilter::Debug,
        _ => LevelFilter::Info,
    };
    init_logging(level);

    let uploads = config
        .listeners
        .iter()
        .any(|spec| spec.service.name() == "upload");
    if uploads {
        let dir = &config.limits.upload_dir;
        std::fs::create_dir_all(dir).map_err(|source| StartupError::UploadDir {
            dir: dir.clone(),
            source,
        })?;
    }
    let mut options = config.options.clone();
    // Each connection is a descriptor: take all the system allows, and never
    // promise more connections than descriptors (Redis clamps maxclients so).
    match readyloop::fdlimit::raise_nofile_limit() {
        Ok(limit) => {
            let room = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(server::FD_RESERVE);
            if options.max_conns > room {
                log::warn!(
                    "--max-conns {} lowered to {room}: the open-file limit is {limit}",
                    options.max_conns
                );
                options.max_conns = room.max(1);
            }
            log::info!(
                "open-file limit {limit}, at most {} connections",
                options.max_conns
            );
        }
        Err(e) => log::warn!("cannot read or raise the open-file limit: {e}"),
    }
    // Before binding: a damaged log or a locked directory stops the start,
    // and the services find the replayed data there when they are built.
    let store = Store::open(&config.data_dir, config.fsync)?;
    let stats = Arc::new(Stats::default());
    let shared = Shared {
        store: store.clone(),
        stats: Arc::clone(&stats),
        limits: config.limits.clone(),
    };
    // Bind everything before serving anything: a port in use stops the start.
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for spec in &config.listeners {
        let bind_error = |e| StartupError::bind(spec.service.name(), spec.addr, e);
        listeners.push(match spec.service {
            ServiceKind::Tcp(entry) => Listener::Tcp {
                socket: server::bind_tcp(spec.addr).map_err(bind_error)?,
                factory: (entry.factory)(&shared),
            },
            ServiceKind::Udp => Listener::Udp {
                socket: std::net::UdpSocket::bind(spec.addr).map_err(bind_error)?,
            },
        });
    }
    let served = server::run(listeners, config.mode, &options, stats, Shutdown::new());
    // Every connection is closed: write and fsync what is pending, even if
    // the server stopped on an error.
    let closed = store.close().map_err(|source| StartupError::Store {
        path: config.data_dir.clone(),
        action: "write the last changes to the log",
        source,
    });
    served?;
    closed
}

fn init_logging(level: LevelFilter) {
    simple_logger::SimpleLogger::new()
        .with_level(level)
        .with_utc_timestamps()
        .init()
        .expect("the logger is set once");
}
