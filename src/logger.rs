//! The binary's logger: one `log::Log` that writes
//! `<UTC timestamp> <LEVEL> [<target>] <message>` lines to stderr or, with
//! `--log-file`, appends them to a file that [`Logger::reopen`] opens anew
//! (SIGHUP, for logrotate).
//!
//! One code path for both destinations, rather than `simple_logger` for
//! stderr and this for files: the line format is the same wherever it goes,
//! and there is one thing to read. It is ripgrep's small logger plus a file.
//!
//! It must not buffer (a line is written whole, at once, so a crash loses
//! nothing and concurrent threads never interleave inside a line) and must
//! not fail the server: a write error is dropped.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

use crate::error::StartupError;

/// Where lines go. Installed once with [`init`]; lives as long as the process.
#[derive(Debug)]
pub struct Logger {
    level: LevelFilter,
    /// The log file's path, as given (absolute); `None` means stderr.
    path: Option<PathBuf>,
    sink: Mutex<Sink>,
}

#[derive(Debug)]
struct Sink {
    /// The open log file; `None` means stderr.
    file: Option<File>,
    /// Point fd 2 at each newly opened file too, so that panics of a daemon
    /// (whose stderr is otherwise /dev/null) land in the log.
    mirror_stderr: bool,
}

/// Installs the logger for `level`, writing to `path` (appending) or stderr.
/// Returns it, for [`Logger::reopen`].
///
/// # Panics
///
/// If a logger was already installed.
pub fn init(level: LevelFilter, path: Option<&Path>) -> Result<&'static Logger, StartupError> {
    let file = path.map(open).transpose()?;
    let logger: &'static Logger = Box::leak(Box::new(Logger {
        level,
        path: path.map(Path::to_owned),
        sink: Mutex::new(Sink {
            file,
            mirror_stderr: false,
        }),
    }));
    log::set_logger(logger).expect("the logger is set once");
    log::set_max_level(level);
    Ok(logger)
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

impl Logger {
    /// Opens the log file's path anew (after logrotate moved the old file,
    /// new lines go to a new file at the same path). Without a log file,
    /// does nothing. On failure, keeps writing to the old file.
    pub fn reopen(&self) -> Result<(), StartupError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = open(path)?;
        let mut sink = self.sink();
        if sink.mirror_stderr {
            redirect_stderr(&file);
        }
        sink.file = Some(file);
        Ok(())
    }

    /// Points stderr (fd 2) at the log file from now on, and again after
    /// each reopen. For a daemon, whose stderr would be /dev/null.
    pub fn mirror_stderr(&self) {
        let mut sink = self.sink();
        if let Some(file) = &sink.file {
            redirect_stderr(file);
            sink.mirror_stderr = true;
        }
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn redirect_stderr(file: &File) {
    // SAFETY: dup2 on two descriptors we own; fd 2 stays open either way.
    unsafe { libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) };
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Format first, write once: one `write` per line.
        let line = format!(
            "{} {:<5} [{}] {}\n",
            utc_timestamp(SystemTime::now()),
            record.level(),
            record.target(),
            record.args()
        );
        let sink = self.sink();
        let _ = match &sink.file {
            Some(file) => (&*file).write_all(line.as_bytes()),
            None => io::stderr().lock().write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {}
}

/// `2026-11-23T14:28:40.123Z`: RFC 3339 in UTC, milliseconds.
fn utc_timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's
/// `civil_from_days` (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let at = |secs: u64, millis: u64| {
            utc_timestamp(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_795_444_120, 123), "2026-11-23T14:28:40.123Z");
    }
}
