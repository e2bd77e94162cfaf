//! The binary where a user meets it: `readyloop client` on a real terminal
//! (tmux drives it against the real binary serving hello), and output into
//! a pipe whose reader has gone (`readyloop ... | head -1`).

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{BinServer, TestServer};

const BIN: &str = env!("CARGO_BIN_EXE_readyloop");

/// A tmux server of its own (`tmux -L`), so the test never touches a
/// user's sessions; killed on drop, also when the test fails.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` in a detached 100x30 session; when it exits, the shell
    /// prints its exit code and keeps the pane on screen.
    fn start(command: &str) -> Tmux {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "this test needs tmux: apt-get install tmux"
        );
        let tmux = Tmux {
            socket: format!("readyloop-test-{}", std::process::id()),
        };
        let script = format!("{command}; echo \"[exit $?]\"; sleep 60");
        let status = tmux
            .command(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "100",
                "-y",
                "30",
                "sh",
                "-c",
            ])
            .arg(script)
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]).args(args);
        command
    }

    /// Types `keys` and Enter.
    fn type_line(&self, keys: &str) {
        let status = self
            .command(&["send-keys", "-t", "t", "-l", keys])
            .status()
            .unwrap();
        assert!(status.success());
        let status = self
            .command(&["send-keys", "-t", "t", "Enter"])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The screen's lines, trailing blank lines dropped (tmux trims each
    /// line's trailing spaces, so the prompt ` -> ` reads ` ->`).
    fn screen(&self) -> Vec<String> {
        let output = self
            .command(&["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        lines
    }

    /// Waits (10 s at most) until the screen's last lines are `tail`.
    #[track_caller]
    fn wait_for(&self, tail: &[&str]) -> Vec<String> {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.ends_with(&tail.iter().map(|s| s.to_string()).collect::<Vec<_>>()) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the screen never ended with {tail:?}:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command(&["kill-server"]).status();
    }
}

/// On a terminal: the banner, then prompt and typed line, the reply, the
/// next prompt, in that order; `quit` gets hello's `Goodbye`, the server
/// closes, the client says so and exits 0.
#[test]
fn client_on_a_terminal_prints_each_reply_before_the_next_prompt() {
    let server = BinServer::start(&["hello@127.0.0.1:0"], &["hello"]);
    let tmux = Tmux::start(&format!("{BIN} client {}", server.addr("hello")));
    tmux.wait_for(&["Please enter 'quit' to exit", " ->"]);
    tmux.type_line("zack");
    tmux.wait_for(&[" -> zack", "Hello ZACK", " ->"]);
    tmux.type_line("world!");
    let screen = tmux.wait_for(&[
        " -> zack",
        "Hello ZACK",
        " -> world!",
        "Hello WORLD!",
        " ->",
    ]);
    assert_eq!(screen[0], "Please enter 'quit' to exit", "{screen:?}");
    tmux.type_line("quit");
    tmux.wait_for(&[
        " -> quit",
        "Goodbye",
        "the server closed the connection",
        "[exit 0]",
    ]);
}

/// Runs the binary with stdout a pipe nobody reads any more: every write
/// to it fails with EPIPE, as under `| head -1` once head has exited.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors; we close one and own the other.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { libc::close(fds[0]) };
    let write_end = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// `readyloop --help | head -1` and a client whose stdout reader left end
/// quietly with 0: no error line, no panic (as ripgrep does).
#[test]
fn a_closed_stdout_pipe_is_a_quiet_exit() {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("{BIN} --help | head -1"))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");

    let server = TestServer::start(readyloop::server::Mode::Evloop, &["hello"]);
    let addr = server.addr("hello").to_string();
    for args in [&["--help"][..], &["serve", "--help"], &["client", &addr]] {
        let output = run_into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}
