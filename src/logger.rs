//! The binary's logging: `simple_logger` writes every line to stderr
//! (`<UTC timestamp> <LEVEL> [<target>] <message>`); with `--log-file`,
//! stderr itself becomes the log file.
//!
//! That is the classic daemon way (nginx's `ngx_log_redirect_stderr`): once
//! every listener is bound, [`LogFile::point_stderr_here`] opens the file
//! for appending and `dup2`s it over fd 2; on SIGHUP (logrotate moved the
//! file) it does the same again, so new lines go to a new file at the old
//! path. One descriptor carries everything the process writes there: log
//! lines, `main`'s last error, and a panic's message, which would otherwise
//! go to a daemon's `/dev/null`. Until then stderr is still the terminal, so
//! start-up errors and warnings are seen where the command was typed.
//!
//! This module must not buffer lines (`simple_logger` writes each one to
//! the unbuffered stderr at once, so a crash loses nothing) and must not
//! fail the server once it runs. One limit of `simple_logger`: its
//! `eprintln!` writes a line and its `\n` in two `write(2)`s. Both happen
//! under the stderr lock, so threads never interleave, but two forked
//! children (`--mode forking`) logging at the same instant can. `simple_logger` writes with `eprintln!`, which
//! panics when stderr is gone (the reader of a pipe left, the log's disk is
//! full): `ServerLogger` contains that panic and points stderr at
//! `/dev/null`, so the server goes on; SIGHUP points it at the log file
//! again.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use log::{LevelFilter, Log, Metadata, Record};
use simple_logger::SimpleLogger;

use crate::error::StartupError;

/// Installs `simple_logger` for `level`, writing to stderr, with UTC
/// timestamps, inside a `ServerLogger`.
///
/// # Panics
///
/// If a logger was already installed.
pub fn init(level: LevelFilter) {
    let logger = SimpleLogger::new().with_level(level).with_utc_timestamps();
    log::set_max_level(logger.max_level());
    log::set_boxed_logger(Box::new(ServerLogger(logger))).expect("the logger is set once");
}

/// `simple_logger`, except that a line that cannot be written does not
/// panic the thread that logged it.
struct ServerLogger(SimpleLogger);

impl Log for ServerLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        // `eprintln!` panics on a write error; the panic hook's own message
        // fails to print for the same reason, so nothing shows.
        if panic::catch_unwind(AssertUnwindSafe(|| self.0.log(record))).is_err() {
            silence_stderr();
        }
    }

    fn flush(&self) {}
}

/// Points stderr at `/dev/null`, so the lines that follow are dropped
/// instead of failing one by one.
fn silence_stderr() {
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 between two descriptors we own.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDERR_FILENO) };
    }
}

/// The `--log-file` path, checked at start and pointed at by stderr once
/// the server is live.
#[derive(Debug, Clone)]
pub struct LogFile {
    /// Absolute (resolved before a daemon changes to `/`).
    path: PathBuf,
}

impl LogFile {
    /// Checks that `path` can be opened for appending (creating it), so a
    /// bad path is reported on the terminal before anything starts.
    pub fn check(path: &Path) -> Result<LogFile, StartupError> {
        open(path)?;
        Ok(LogFile {
            path: path.to_owned(),
        })
    }

    /// Opens the file anew and points stderr (fd 2) at it: at start, and on
    /// each SIGHUP. On failure stderr keeps its old file.
    pub fn point_stderr_here(&self) -> Result<(), StartupError> {
        let file = open(&self.path)?;
        // SAFETY: dup2 between two descriptors we own; fd 2 stays open
        // either way, and the old file is closed by it atomically.
        if unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) } < 0 {
            return Err(StartupError::LogFile {
                path: self.path.clone(),
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(()) // `file` closes; fd 2 keeps the open file description
    }
}

fn open(path: &Path) -> Result<File, StartupError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| StartupError::LogFile {
            path: path.to_owned(),
            source,
        })
}
