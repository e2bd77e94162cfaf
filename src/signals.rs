//! Signals: SIGTERM and SIGINT stop the server gracefully, a second one
//! stops it at once; SIGHUP reopens the log file (for logrotate).
//!
//! How: one thread waits in `signal_hook::iterator::Signals` and turns each
//! signal into a plain call: [`Shutdown::trigger`], which wakes every loop
//! through its `mio::Waker`, so in the event loop the signal arrives as an
//! event like any other (DESIGN rule 10), on the waker's token. This is the
//! simplest thing that is correct in all three modes: the threaded and
//! blocking modes have no single loop where a `signal-hook-mio` source could
//! be registered, and `trigger()` already reaches every loop there is. The
//! signal handler itself only writes to signal-hook's self-pipe; everything
//! else (logging, locks, reopening files) happens on this ordinary thread,
//! where it is safe.
//!
//! Also here: the shutdown watchdog. When the grace period is over the
//! process exits with [`EXIT_CUT_OFF`] and an error line, even if a driver
//! thread is still stuck writing to a client that does not read.
//!
//! This module must not be set up before the process detaches (threads do
//! not survive `fork`), and must not do protocol or socket work.

use std::io;
use std::path::PathBuf;
use std::process;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::logger::LogFile;
use crate::server::Shutdown;

/// Extra time the watchdog gives the drivers past the grace period: the
/// event loop closes its connections at the deadline itself, and then needs
/// a moment to return.
pub const WATCHDOG_SLACK: Duration = Duration::from_millis(500);

/// The exit code of a shutdown whose grace period ran out with clients
/// still connected: what they had sent may not have been answered, and a
/// service manager or script should hear so (0 is a clean stop, 1 a second
/// signal, 2 a failed start).
pub const EXIT_CUT_OFF: u8 = 3;

/// What the signals act on.
#[derive(Debug)]
pub struct Actions {
    /// Triggered by the first SIGTERM or SIGINT.
    pub shutdown: Shutdown,
    /// How long a graceful shutdown may take before the process exits anyway.
    pub grace: Duration,
    /// Reopened on SIGHUP (and stderr pointed at it again), if there is one.
    pub log_file: Option<LogFile>,
    /// Removed when the process exits without returning from `main` (a
    /// second signal, or the watchdog).
    pub pidfile: Option<PathBuf>,
}

/// Starts the signal thread. It runs until the process exits.
pub fn spawn(actions: Actions) -> io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let Actions {
        shutdown,
        grace,
        log_file,
        pidfile,
    } = actions;
    let before_exit = Arc::new(move || {
        if let Some(path) = &pidfile {
            let _ = std::fs::remove_file(path);
        }
    });
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                let name = match signal {
                    SIGHUP => {
                        match log_file.as_ref().map(LogFile::point_stderr_here) {
                            Some(Ok(())) => log::info!("SIGHUP: log file reopened"),
                            Some(Err(e)) => log::error!("SIGHUP: {e}"),
                            None => log::info!("SIGHUP: no --log-file to reopen"),
                        }
                        continue;
                    }
                    SIGTERM => "SIGTERM",
                    _ => "SIGINT",
                };
                if stopping {
                    log::warn!("second {name}: exiting now, without waiting for connections");
                    before_exit();
                    process::exit(1);
                }
                stopping = true;
                log::info!(
                    "{name}: shutting down gracefully (up to {grace:?}); send it again to exit at once"
                );
                shutdown.trigger();
                start_watchdog(grace, Arc::clone(&before_exit));
            }
        })?;
    Ok(())
}

fn start_watchdog(grace: Duration, before_exit: Arc<impl Fn() + Send + Sync + 'static>) {
    let spawned = thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            thread::sleep(grace + WATCHDOG_SLACK);
            log::error!(
                "still running after the grace period ({grace:?}): exiting anyway, \
                 cutting off the connections left (exit code {EXIT_CUT_OFF})"
            );
            before_exit();
            process::exit(EXIT_CUT_OFF.into());
        });
    if let Err(e) = spawned {
        log::error!("cannot start the shutdown watchdog: {e}");
    }
}
