//! Starting and stopping one server process per mode for `bench --spawn`.
//!
//! The contract with the server binary:
//! - it is run as `BIN serve --mode MODE SERVICE@127.0.0.1:0 [EXTRA...]`,
//!   with stdin and stdout closed and stderr piped;
//! - once listening, it logs a line on stderr containing
//!   `SERVICE listening on 127.0.0.1:PORT` (any prefix, such as a timestamp
//!   and level, may come first);
//! - on SIGTERM it exits; after [`STOP_GRACE`] it is sent SIGKILL.
//!
//! A thread keeps reading stderr for the server's whole life so the pipe
//! never fills and blocks the server (lines after the address go to
//! `log::debug!`). [`Server`] stops the process on drop,
//! so no run, error or panic leaves one behind.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::BenchError;

/// How long a spawned server has to log its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of the server's stderr quoted in an error.
const TAIL_LINES: usize = 10;
/// What precedes the address in the server's log line.
const LISTENING: &str = "listening on ";

/// A running server process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The stderr reader; detached on stop.
    drain: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `bin serve --mode MODE SERVICE@127.0.0.1:0 EXTRA...` and waits
    /// up to [`START_TIMEOUT`] for its `listening on` line.
    pub fn start(
        bin: &Path,
        mode: &str,
        service: &str,
        extra: &[String],
    ) -> Result<Self, BenchError> {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--mode")
            .arg(mode)
            .arg(format!("{service}@127.0.0.1:0"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                bin: bin.display().to_string(),
                source,
            })?;
        let stderr = child.stderr.take().expect("stderr was piped");
        let (lines, received) = mpsc::channel::<String>();
        let drain = std::thread::spawn(move || {
            // Forward lines until the address is found (or the reader is
            // gone), then keep draining so the server never blocks on stderr.
            let mut forwarding = true;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if forwarding {
                    forwarding = lines.send(line).is_ok();
                } else {
                    log::debug!("server: {line}");
                }
            }
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            drain: Some(drain),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut tail: Vec<String> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line, service) {
                        server.addr = addr;
                        // Dropping the receiver switches the thread to draining.
                        return Ok(server);
                    }
                    if tail.len() == TAIL_LINES {
                        tail.remove(0);
                    }
                    tail.push(line);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server
                        .child
                        .wait()
                        .map_or("unknown".into(), |s| s.to_string());
                    return Err(BenchError::ServerExited {
                        mode: mode.into(),
                        status,
                        stderr: tail.join("\n"),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(BenchError::ServerSilent {
                        mode: mode.into(),
                        secs: START_TIMEOUT.as_secs(),
                        stderr: tail.join("\n"),
                    });
                }
            }
        }
    }

    /// The server's process id, for CPU and memory readings.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL; reaps the process.
    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill with a pid we spawned and have not reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_GRACE;
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = self.child.try_wait() {
                log::warn!("server pid {} ignored SIGTERM; killing it", self.child.id());
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
        // The drain thread ends when the last holder of the pipe's write end
        // exits. It is not joined: a forking server's child that outlives
        // its parent still holds it, and bench must not hang on that.
        drop(self.drain.take());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The address in a log line containing `SERVICE listening on ADDR`.
fn listening_addr(line: &str, service: &str) -> Option<SocketAddr> {
    let at = line.find(LISTENING)?;
    if !line[..at].contains(service) {
        return None;
    }
    let rest = &line[at + LISTENING.len()..];
    let token = rest.split_whitespace().next()?;
    let token = token.trim_end_matches(|c: char| !c.is_ascii_digit());
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_after_any_prefix() {
        let addr = Some("127.0.0.1:4242".parse().unwrap());
        assert_eq!(
            listening_addr("echo listening on 127.0.0.1:4242", "echo"),
            addr
        );
        assert_eq!(
            listening_addr(
                "2026-01-01T00:00:00Z INFO [readyloop] echo listening on 127.0.0.1:4242 (evloop)",
                "echo"
            ),
            addr
        );
        assert_eq!(
            listening_addr("echo listening on 127.0.0.1:4242.", "echo"),
            addr
        );
        assert_eq!(
            listening_addr("http listening on 127.0.0.1:4242", "echo"),
            None
        );
        assert_eq!(listening_addr("starting echo", "echo"), None);
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let err =
            Server::start(Path::new("/nonexistent/readyloop"), "evloop", "echo", &[]).unwrap_err();
        assert!(err.to_string().contains("--server-bin"), "{err}");
    }

    #[test]
    fn a_server_that_exits_is_reported_with_its_stderr() {
        // `sh serve --mode ...` looks for a script called `serve`, complains
        // on stderr and exits: a server that fails at start.
        let err = Server::start(Path::new("/bin/sh"), "evloop", "echo", &[]).unwrap_err();
        assert!(matches!(err, BenchError::ServerExited { .. }), "{err}");
    }
}
