//! Signals: SIGTERM and SIGINT stop the server gracefully, a second one
//! stops it at once; SIGHUP reopens the log file (for logrotate).
//!
//! How: signal-hook's handler only writes a byte to a self-pipe and notes
//! which signal came; everything else (logging, locks, reopening files)
//! happens in ordinary code, [`Reactions::on`], where it is safe. Who reads
//! the pipe depends on the mode:
//!
//! - The single event loop (`--mode evloop`, one loop): the pipe's read end
//!   is one more source in its poll ([`SignalSource`]), so the signal
//!   arrives as an event on its own token (DESIGN rule 10) and the process
//!   needs no thread for it. A second thread would cost every socket call:
//!   the kernel's `fdget`/`fput` skip their atomic reference count only
//!   while the file table has one user.
//! - Every other mode, and `--loops N`: one thread waits in
//!   `signal_hook::iterator::Signals` ([`spawn`]). [`Shutdown::trigger`]
//!   wakes every loop through its `mio::Waker`; the threaded and blocking
//!   modes have no poll a source could be registered in.
//!
//! Also here: the shutdown watchdog, a thread started by the first SIGTERM
//! or SIGINT. When the grace period is over the process exits with
//! [`EXIT_CUT_OFF`] and an error line, even if a driver thread is still
//! stuck writing to a client that does not read.
//!
//! This module must not be set up before the process detaches (threads do
//! not survive `fork`), and must not do protocol or socket work.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process;
use std::thread;
use std::time::Duration;

use libc::c_int;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

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

/// The signals the server handles.
const HANDLED: [c_int; 3] = [SIGTERM, SIGINT, SIGHUP];

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
    let mut signals = Signals::new(HANDLED)?;
    let mut reactions = Reactions::new(actions);
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                reactions.on(signal);
            }
        })?;
    Ok(())
}

/// The signals as a source in an event loop's poll: the read end of the
/// self-pipe, readable when a signal came. Handlers are installed when it
/// is made; until it is registered, what comes waits in the pipe.
#[derive(Debug)]
pub struct SignalSource {
    delivery: SignalDelivery<mio::net::UnixStream, SignalOnly>,
    reactions: Reactions,
}

impl SignalSource {
    /// Installs the handlers; the signals wait for [`SignalSource::register`].
    pub fn new(actions: Actions) -> io::Result<SignalSource> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        let read = mio::net::UnixStream::from_std(read);
        Ok(SignalSource {
            delivery: SignalDelivery::with_pipe(read, write, SignalOnly, HANDLED)?,
            reactions: Reactions::new(actions),
        })
    }

    /// Puts the pipe in `registry` under `token` (a signal that came before
    /// is reported at once: the pipe is already readable).
    pub fn register(&mut self, registry: &mio::Registry, token: mio::Token) -> io::Result<()> {
        registry.register(self.delivery.get_read_mut(), token, mio::Interest::READABLE)
    }

    /// The pipe is readable: empties it, then acts on every signal noted
    /// (in that order, so that one coming meanwhile makes a new event).
    pub fn act(&mut self) {
        for signal in self.delivery.pending() {
            self.reactions.on(signal);
        }
    }

    /// After the loop returned: the signals still to come (a second SIGTERM
    /// while the store is flushed) are a thread's to act on, as in the
    /// other modes. The pipe becomes blocking for it.
    pub fn watch_on_a_thread(mut self) -> io::Result<()> {
        socket2::SockRef::from(self.delivery.get_read()).set_nonblocking(false)?;
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                loop {
                    match self.delivery.get_read().read(&mut [0]) {
                        Ok(0) => return,
                        Ok(_) => self.act(),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            log::error!("signals: cannot read the self-pipe: {e}");
                            return;
                        }
                    }
                }
            })?;
        Ok(())
    }
}

/// What each signal does, wherever it was read.
#[derive(Debug)]
struct Reactions {
    actions: Actions,
    /// A SIGTERM or SIGINT came: the next one exits at once.
    stopping: bool,
}

impl Reactions {
    fn new(actions: Actions) -> Reactions {
        Reactions {
            actions,
            stopping: false,
        }
    }

    fn on(&mut self, signal: c_int) {
        let name = match signal {
            SIGHUP => {
                match self
                    .actions
                    .log_file
                    .as_ref()
                    .map(LogFile::point_stderr_here)
                {
                    Some(Ok(())) => log::info!("SIGHUP: log file reopened"),
                    Some(Err(e)) => log::error!("SIGHUP: {e}"),
                    None => log::info!("SIGHUP: no --log-file to reopen"),
                }
                return;
            }
            SIGTERM => "SIGTERM",
            _ => "SIGINT",
        };
        let Actions {
            shutdown,
            grace,
            pidfile,
            ..
        } = &self.actions;
        if self.stopping {
            log::warn!("second {name}: exiting now, without waiting for connections");
            remove(pidfile.as_ref());
            process::exit(1);
        }
        self.stopping = true;
        log::info!(
            "{name}: shutting down gracefully (up to {grace:?}); send it again to exit at once"
        );
        shutdown.trigger();
        start_watchdog(*grace, pidfile.clone());
    }
}

/// The pid file, removed by a process that exits without returning from
/// `main`.
fn remove(pidfile: Option<&PathBuf>) {
    if let Some(path) = pidfile {
        let _ = std::fs::remove_file(path);
    }
}

fn start_watchdog(grace: Duration, pidfile: Option<PathBuf>) {
    let spawned = thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            thread::sleep(grace + WATCHDOG_SLACK);
            log::error!(
                "still running after the grace period ({grace:?}): exiting anyway, \
                 cutting off the connections left (exit code {EXIT_CUT_OFF})"
            );
            remove(pidfile.as_ref());
            process::exit(EXIT_CUT_OFF.into());
        });
    if let Err(e) = spawned {
        log::error!("cannot start the shutdown watchdog: {e}");
    }
}
