//! The single event loop is one thread until something needs another
//! (issue 14): no offload worker before the first job, no store flusher
//! without todo or kv, no signal thread (the signals are a source in the
//! loop's poll). A second thread makes every socket call dearer in the
//! kernel: `fdget`/`fput` count references once the file table is shared.
//! Each test starts the real binary and reads `/proc/PID/task`.

use std::fs;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use readyloop::server::DEFAULT_OFFLOAD_WORKERS;

use crate::util::{BinServer, connect, expect};

/// slow's answer to a line that is no command.
const NOT_A_COMMAND: &[u8] =
    b"error: unknown command: the commands are 'sleep <ms>' (0 to 10000) and 'hash <rounds>' (1 to 10000000)\n";

/// The longest a server may take to exit after SIGTERM here.
const LIMIT: Duration = Duration::from_secs(10);

/// The names of the server's threads, sorted (the main thread is named
/// after the binary).
fn threads(server: &BinServer) -> Vec<String> {
    let tasks = format!("/proc/{}/task", server.child.id());
    let mut names: Vec<String> = fs::read_dir(&tasks)
        .unwrap_or_else(|e| panic!("{tasks}: {e}"))
        .map(|task| {
            let comm = task.unwrap().path().join("comm");
            fs::read_to_string(&comm).map_or_else(|_| "(gone)".into(), |n| n.trim().to_owned())
        })
        .collect();
    names.sort();
    names
}

/// Sends SIGTERM; the server must exit 0 within [`LIMIT`].
#[track_caller]
fn stops_cleanly_on_sigterm(mut server: BinServer) {
    let pid = server.child.id() as libc::pid_t;
    // SAFETY: kill(2) with the pid of our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < LIMIT, "still running after {LIMIT:?}");
        thread::sleep(Duration::from_millis(20));
    };
    let log = server.log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("SIGTERM: shutting down gracefully"), "{log}");
}

#[test]
fn echo_is_served_by_one_thread_that_stops_on_sigterm() {
    let server = BinServer::start(&["--mode", "evloop", "echo@127.0.0.1:0"], &["echo"]);
    let mut clients: Vec<_> = (0..3).map(|_| connect(server.addr("echo"))).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        let line = format!("ping {i}\n");
        client.write_all(line.as_bytes()).unwrap();
        expect(client, line.as_bytes());
    }
    // Serving, with clients connected and lines logged.
    assert_eq!(threads(&server), ["readyloop"]);
    assert!(
        !server.cwd().join("readyloop-data").exists(),
        "echo keeps no data: no store directory"
    );
    drop(clients);
    stops_cleanly_on_sigterm(server);
}

#[test]
fn the_first_slow_job_starts_the_offload_pool() {
    let server = BinServer::start(&["--mode", "evloop", "slow@127.0.0.1:0"], &["slow"]);
    let mut client = connect(server.addr("slow"));
    client.write_all(b"nap\n").unwrap();
    expect(&mut client, NOT_A_COMMAND);
    // A refused line is answered on the loop: no job, no worker yet.
    assert_eq!(threads(&server), ["readyloop"]);
    client.write_all(b"sleep 20\n").unwrap();
    expect(&mut client, b"slept 20\n");
    let mut expected: Vec<String> = (0..DEFAULT_OFFLOAD_WORKERS)
        .map(|i| format!("offload-{i}"))
        .collect();
    expected.push("readyloop".into());
    assert_eq!(threads(&server), expected);
    // The pool goes on answering, with no more threads.
    client.write_all(b"sleep 1\n").unwrap();
    expect(&mut client, b"slept 1\n");
    assert_eq!(threads(&server), expected);
    drop(client);
    stops_cleanly_on_sigterm(server);
}

#[test]
fn kv_opens_its_store_with_the_flusher_thread() {
    let server = BinServer::start(&["--mode", "evloop", "kv@127.0.0.1:0"], &["kv"]);
    let mut client = connect(server.addr("kv"));
    client.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    expect(&mut client, b"+PONG\r\n");
    assert_eq!(threads(&server), ["readyloop", "store-flusher"]);
    assert!(server.cwd().join("readyloop-data/store.log").exists());
    drop(client);
    stops_cleanly_on_sigterm(server);
}

#[test]
fn with_two_loops_a_thread_reads_the_signals() {
    let args = ["--mode", "evloop", "--loops", "2", "echo@127.0.0.1:0"];
    let server = BinServer::start(&args, &["echo"]);
    let mut client = connect(server.addr("echo"));
    client.write_all(b"ping\n").unwrap();
    expect(&mut client, b"ping\n");
    assert_eq!(
        threads(&server),
        ["loop-0", "loop-1", "readyloop", "signals"]
    );
    drop(client);
    stops_cleanly_on_sigterm(server);
}
