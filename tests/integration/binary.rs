//! The real `readyloop` binary as a user runs it: the port a `:0` listener
//! got is in the log, and startup errors are one line and exit code 2.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};

use crate::util::{TempDir, connect, expect};

const BIN: &str = env!("CARGO_BIN_EXE_readyloop");

/// A server child process, killed when dropped, with the directory it ran
/// in (its default `./readyloop-data` goes there, not into the repository).
struct Running {
    child: Child,
    _cwd: TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `readyloop serve ARGS` and returns the addresses it logged, in order.
fn serve(args: &[&str], listeners: usize) -> (Running, Vec<SocketAddr>) {
    let cwd = TempDir::new("binary");
    let mut child = Command::new(BIN)
        .current_dir(cwd.path())
        .arg("serve")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let running = Running { child, _cwd: cwd };
    let mut addrs = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        if let Some((_, addr)) = line.split_once(" listening on ") {
            addrs.push(addr.trim().parse().unwrap());
            if addrs.len() == listeners {
                break;
            }
        }
    }
    assert_eq!(
        addrs.len(),
        listeners,
        "the server did not log its listeners"
    );
    (running, addrs)
}

fn run(args: &[&str]) -> Output {
    let cwd = TempDir::new("binary");
    Command::new(BIN)
        .current_dir(cwd.path())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn port_zero_logs_the_port_bound_and_listeners_share_one_loop() {
    let (_server, addrs) = serve(&["echo@127.0.0.1:0", "upper@0"], 2);
    let mut echo = connect(addrs[0]);
    let mut upper = connect(addrs[1]);
    echo.write_all(b"one loop\n").unwrap();
    upper.write_all(b"two ports\n").unwrap();
    expect(&mut echo, b"one loop\n");
    expect(&mut upper, b"TWO PORTS\n");
}

#[test]
fn a_port_in_use_is_one_clear_line_and_exit_2() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = run(&["serve", &format!("echo@127.0.0.1:{port}")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is in use")) && stderr.contains("echo@127.0.0.1:0"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_services_and_bad_addresses_exit_2_without_a_backtrace() {
    for (arg, says) in [
        ("ech@0", "unknown service 'ech'"),
        ("echo@nowhere:x", "bad address"),
        ("echo@99999", "bad address"),
    ] {
        let output = run(&["serve", arg]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arg}: {stderr}");
        assert!(
            stderr.contains(says) && !stderr.contains("panicked"),
            "{arg}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{arg}: {stderr}");
    }
}
