//! The `readyloop` binary: parse flags, set up logging, run a subcommand.
//! The order of `serve`'s steps matters; `daemon.rs` says why.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use log::LevelFilter;
use readyloop::cli::{Cli, Command, ServeArgs};
use readyloop::config::{Config, ServiceKind};
use readyloop::daemon::{self, PidFile};
use readyloop::error::StartupError;
use readyloop::server::{self, Listener, Shutdown};
use readyloop::service::Shared;
use readyloop::{client, logger, signals, stats::Stats, store::Store};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => serve(args),
        Command::Client(args) => client::run(&args.addr).map_err(StartupError::from),
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
    let logger = logger::init(level, config.log_file.as_deref())?;
    // The lock before the ports: a second server hears about the pid file.
    let mut pidfile = config.pidfile.as_deref().map(PidFile::lock).transpose()?;

    let stats = Arc::new(Stats::default());
    let shared = Shared {
        store: Store::in_memory(),
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

    daemon::go_live(config.daemon, pidfile.as_mut(), logger)?;

    let shutdown = Shutdown::new();
    signals::spawn(signals::Actions {
        shutdown: shutdown.clone(),
        grace: config.options.shutdown_grace,
        logger,
        pidfile: pidfile.as_ref().map(|p| p.path().to_owned()),
    })?;
    server::run(listeners, config.mode, &config.options, stats, shutdown)?;
    drop(pidfile); // removes it: a clean exit
    log::info!("stopped");
    Ok(())
}
