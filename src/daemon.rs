//! Running in the background: the pid file and its lock, and detaching from
//! the terminal the classic way.
//!
//! The order `main` keeps, and why:
//! 1. [`PidFile::lock`] before binding any port, so a second server with the
//!    same pid file is told about the pid file and the running pid, not
//!    about a port in use.
//! 2. Bind every listener while still attached: a bind error is printed on
//!    the terminal with exit code 2. Listening sockets survive `fork`.
//! 3. [`detach`]; in the daemon, [`PidFile::write_pid`], then
//!    [`Readiness::ready`]. The process the user started exits 0 only when
//!    the daemon says it is ready (through a pipe), or prints the daemon's
//!    error and exits 2.
//!
//! The lock is `flock`, not `fcntl`: an `flock` lock belongs to the open
//! file, so it is inherited across `fork` and held by the daemon for its
//! whole life; `fcntl` locks belong to a process and would be lost by the
//! fork. This module must not start threads (nothing but the calling thread
//! survives `fork`), and must not touch sockets.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process;

use crate::error::StartupError;
use crate::logger::LogFile;

/// The daemon's file mode creation mask: no write for the group, nothing
/// for others (log and pid files come out `rw-r-----`).
pub const DAEMON_UMASK: libc::mode_t = 0o027;

/// A locked pid file. The lock lasts as long as this value (and across
/// `fork`); dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    /// Creates (or opens) `path` and takes its lock, without waiting. If
    /// another server holds it, the error names that server's pid. Nothing
    /// is written yet: see [`PidFile::write_pid`].
    pub fn lock(path: &Path) -> Result<PidFile, StartupError> {
        let error = |source| StartupError::PidFile {
            path: path.to_owned(),
            source,
        };
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map_err(error)?;
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(error(e));
                }
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StartupError::PidFileLocked {
                    path: path.to_owned(),
                    pid: text.trim().parse().ok(),
                });
            }
            // A server that was exiting may have removed the file between our
            // open and our lock: then we hold the lock of a file nobody can
            // see. Only the file at `path` counts; try again.
            let ours = file.metadata().map_err(error)?;
            match fs::metadata(path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {
                    return Ok(PidFile {
                        path: path.to_owned(),
                        file,
                    });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(error(e)),
            }
        }
    }

    /// Writes this process's pid (call it in the process that serves, after
    /// [`detach`], once listening).
    pub fn write_pid(&mut self) -> Result<(), StartupError> {
        let pid = format!("{}\n", process::id());
        let write = |file: &mut File| -> io::Result<()> {
            file.set_len(0)?;
            std::os::unix::fs::FileExt::write_all_at(file, pid.as_bytes(), 0)?;
            file.sync_data()
        };
        write(&mut self.file).map_err(|source| StartupError::PidFile {
            path: self.path.clone(),
            source,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so no other server can be using it.
        let _ = fs::remove_file(&self.path);
    }
}

/// The daemon's end of the pipe to the process the user started, which waits
/// to hear whether the daemon came up.
#[derive(Debug)]
pub struct Readiness {
    pipe: File,
}

/// What the daemon writes into the pipe when it is ready.
const READY: &str = "ready";

impl Readiness {
    /// Tells the waiting process that the server is up: it exits 0.
    pub fn ready(mut self) {
        let _ = self.pipe.write_all(READY.as_bytes());
    }

    /// Tells the waiting process why the daemon could not start: it prints
    /// `error` and exits 2.
    pub fn failed(mut self, error: &StartupError) {
        let _ = self.pipe.write_all(error.to_string().as_bytes());
    }
}

/// Step 3 of the order above, once every listener is bound: detaches if
/// `daemon`, points stderr at the log file if there is one (in the
/// foreground too: from here on every line goes there), writes the pid
/// file, and tells the waiting process how that went.
pub fn go_live(
    daemon: bool,
    pidfile: Option<&mut PidFile>,
    log_file: Option<&LogFile>,
) -> Result<(), StartupError> {
    let readiness = if daemon { Some(detach()?) } else { None };
    let live = log_file
        .map_or(Ok(()), LogFile::point_stderr_here)
        .and_then(|()| pidfile.map_or(Ok(()), PidFile::write_pid));
    match (readiness, &live) {
        (Some(readiness), Ok(())) => readiness.ready(),
        (Some(readiness), Err(e)) => readiness.failed(e),
        (None, _) => {}
    }
    live
}

/// Detaches from the terminal. Returns only in the daemon (or in the child,
/// with the error it also reported, if a step of detaching failed); the
/// calling process waits for the daemon's [`Readiness`] report and then exits
/// (0 if ready, 2 if not) without returning, so it runs no destructors and
/// its copy of the [`PidFile`] is not removed.
///
/// The steps: `fork` (the parent waits on the pipe); `setsid` (a new
/// session: no controlling terminal, no SIGHUP when the terminal closes);
/// `fork` again, so the daemon is not a session leader and can never
/// acquire a controlling terminal by opening one (say, a log file that is a
/// tty); `chdir /` (do not keep a mount point busy); `umask 027`; stdin,
/// stdout and stderr to `/dev/null` ([`go_live`] then points stderr at the
/// log file, if there is one). Paths must already be absolute.
///
/// Call it while the process has only one thread.
pub fn detach() -> Result<Readiness, StartupError> {
    let step = |step| move |source| StartupError::Daemon { step, source };
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).map_err(step("pipe"))?;
    // SAFETY: each descriptor is owned by exactly one File.
    let (mut reader, writer) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };

    match fork().map_err(step("fork"))? {
        0 => {}
        child => {
            drop(writer);
            let mut report = String::new();
            let _ = reader.read_to_string(&mut report);
            // SAFETY: reaps the first child, which exits right after its fork.
            unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            if report == READY {
                process::exit(0);
            }
            if report.is_empty() {
                report = "it exited before it was ready; see the log file (--log-file)".into();
            }
            eprintln!("readyloop: error: {}", StartupError::DaemonChild(report));
            process::exit(2);
        }
    }
    drop(reader);
    let readiness = Readiness { pipe: writer };
    match become_daemon() {
        Ok(()) => Ok(readiness),
        Err(e) => {
            // `main` then prints it too (to the terminal, if stderr still is
            // one) and exits 2, dropping the pid file.
            readiness.failed(&e);
            Err(e)
        }
    }
}

/// The daemon's side of [`detach`], after the first fork.
fn become_daemon() -> Result<(), StartupError> {
    let step = |step| move |source| StartupError::Daemon { step, source };
    // SAFETY: plain system calls with no pointers, in a single-threaded child.
    check(unsafe { libc::setsid() }).map_err(step("setsid"))?;
    if fork().map_err(step("second fork"))? != 0 {
        // The session leader goes; its child, the daemon, goes on.
        // SAFETY: leave without running anything of the parent's.
        unsafe { libc::_exit(0) };
    }
    std::env::set_current_dir("/").map_err(step("chdir /"))?;
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(DAEMON_UMASK) };
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(step("open /dev/null"))?;
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 between descriptors we own.
        check(unsafe { libc::dup2(null.as_raw_fd(), fd) }).map_err(step("dup2 /dev/null"))?;
    }
    Ok(())
}

fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the caller has one thread; the child only does async-signal-safe
    // work until it has set itself up.
    let pid = unsafe { libc::fork() };
    check(pid)
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_pid_and_drop_removes_the_file() {
        let path = std::env::temp_dir().join(format!("readyloop-unit-{}.pid", process::id()));
        let mut first = PidFile::lock(&path).unwrap();
        match PidFile::lock(&path) {
            Err(StartupError::PidFileLocked { pid: None, .. }) => {}
            other => panic!("{other:?}"),
        }
        first.write_pid().unwrap();
        let err = PidFile::lock(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", process::id())), "{err}");
        drop(first);
        assert!(!path.exists());
    }
}
