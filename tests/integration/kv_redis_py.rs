//! kv through redis-py with its defaults (RESP3 handshake), and with
//! `protocol=2`: every type, a 1,000-command pipeline, transactions
//! (atomic EXEC, EXECABORT, WATCH), a 1 s TTL, and every type and TTL
//! after a restart. The checks are `kv_redis_py/checks.py`; the same
//! script passes against a real redis-server.
//!
//! The interpreter is `$READYLOOP_PYTHON`, default
//! `/tmp/readyloop-venv/bin/python` (`.ci/run` makes it with
//! `python3 -m venv /tmp/readyloop-venv && /tmp/readyloop-venv/bin/pip
//! install redis`). Without it, or without redis-py in it, the test fails
//! saying so.
//!
//! Modes: the checks that need two connections at once (WATCH from
//! another client) or data shared between connections cannot hold in
//! `blocking` (one client at a time) or `forking` (each child has its own
//! copy of the store), so those two modes run the single-connection ones.

use std::process::Command;

use readyloop::server::Mode;

use crate::util::{BinServer, TempDir, per_mode};

/// The interpreter that has redis-py.
pub(crate) fn python() -> String {
    let python = std::env::var("READYLOOP_PYTHON")
        .unwrap_or_else(|_| "/tmp/readyloop-venv/bin/python".to_owned());
    let probe = Command::new(&python).args(["-c", "import redis"]).output();
    match probe {
        Ok(output) if output.status.success() => python,
        Ok(output) => panic!(
            "{python} cannot import redis ({}): install redis-py with \
             `python3 -m venv /tmp/readyloop-venv && /tmp/readyloop-venv/bin/pip install redis` \
             or point READYLOOP_PYTHON at an interpreter that has it",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => panic!(
            "cannot run {python} ({e}): make a venv with redis-py: \
             `python3 -m venv /tmp/readyloop-venv && /tmp/readyloop-venv/bin/pip install redis`, \
             or set READYLOOP_PYTHON"
        ),
    }
}

/// Runs one phase of the checks against `port`, in RESP `protocol`.
#[track_caller]
fn check(python: &str, port: u16, protocol: u8, phase: &str) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/kv_redis_py/checks.py"
    );
    let output = Command::new(python)
        .args([script, &port.to_string(), &protocol.to_string(), phase])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "redis-py {phase} (protocol {protocol}) failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// kv in `mode`; `fsync` is `always` only where it is tested: a forked
/// child cannot fsync the parent's log (its store is a copy).
fn serve(dir: &TempDir, fsync: &str, mode: &[&str]) -> BinServer {
    let mut args = vec!["--fsync", fsync, "--data-dir", dir.path().to_str().unwrap()];
    args.extend_from_slice(mode);
    args.push("kv@127.0.0.1:0");
    BinServer::start(&args, &["kv"])
}

fn run_in(mode: &[&str], phases: &[&str]) {
    let python = python();
    let dir = TempDir::new("redis-py");
    let server = serve(&dir, "everysec", mode);
    let port = server.addr("kv").port();
    for protocol in [3, 2] {
        for phase in phases {
            check(&python, port, protocol, phase);
        }
    }
}

const ALL: &[&str] = &["types", "pipeline", "transactions", "ttl"];
const ONE_CONNECTION: &[&str] = &["types", "pipeline"];

per_mode!(redis_py, |case| {
    let phases = match case.mode {
        Mode::Blocking | Mode::Forking => ONE_CONNECTION,
        _ => ALL,
    };
    run_in(case.flags, phases);
});

#[test]
fn every_type_and_ttl_survive_a_restart() {
    let python = python();
    let dir = TempDir::new("redis-py-restart");
    for protocol in [3, 2] {
        let mut server = serve(&dir, "always", &[]);
        check(&python, server.addr("kv").port(), protocol, "write");
        server.sigkill(); // --fsync always: every acknowledged write is on disk
        let server = serve(&dir, "always", &[]);
        check(&python, server.addr("kv").port(), protocol, "read");
    }
}
