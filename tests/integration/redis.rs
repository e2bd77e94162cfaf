//! `kv` against the real Redis tools: `redis-cli` and `redis-benchmark`
//! (Debian/Ubuntu package `redis-tools`). Missing tools fail the test with
//! the command that installs them: a silent pass would hide a broken `kv`.

use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{BinServer, TempDir};

/// How long one tool may run before the test fails.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn kv_server(dir: &TempDir) -> BinServer {
    let data_dir = dir.path().to_str().unwrap();
    BinServer::start(&["--data-dir", data_dir, "kv@127.0.0.1:0"], &["kv"])
}

/// Runs `tool ARGS` with a time limit; fails clearly if it is not installed.
#[track_caller]
fn tool(tool: &str, args: &[&str]) -> Output {
    let mut child = match Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!(
            "cannot run {tool} ({e}): this test needs the Redis command-line tools; \
             install them with `apt-get install redis-tools`"
        ),
    };
    let deadline = Instant::now() + TOOL_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{tool} {args:?} ran over {TOOL_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[track_caller]
fn cli(port: &str, args: &[&str]) -> String {
    let mut all = vec!["-h", "127.0.0.1", "-p", port];
    all.extend_from_slice(args);
    let output = tool("redis-cli", &all);
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn redis_cli_speaks_to_kv() {
    let dir = TempDir::new("redis-cli");
    let server = kv_server(&dir);
    let port = server.addr("kv").port().to_string();
    assert_eq!(cli(&port, &["ping"]), "PONG\n");
    assert_eq!(cli(&port, &["set", "greeting", "hello world"]), "OK\n");
    assert_eq!(cli(&port, &["get", "greeting"]), "hello world\n");
    assert_eq!(cli(&port, &["incr", "counter"]), "1\n");
    assert_eq!(cli(&port, &["exists", "greeting", "nope"]), "1\n");
    assert_eq!(cli(&port, &["del", "greeting"]), "1\n");
    assert_eq!(cli(&port, &["get", "greeting"]), "\n");
    assert_eq!(
        cli(&port, &["frobnicate"]).trim_end(),
        "ERR unknown command 'frobnicate', with args beginning with:"
    );
}

#[test]
fn redis_benchmark_runs_set_and_get_against_kv() {
    let dir = TempDir::new("redis-benchmark");
    let server = kv_server(&dir);
    let port = server.addr("kv").port().to_string();
    let output = tool(
        "redis-benchmark",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "set,get",
            "-n",
            "2000",
            "-q",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("redis-benchmark printed:\n{stdout}{stderr}");
    assert!(output.status.success(), "{stdout}{stderr}");
    for test in ["SET: ", "GET: "] {
        assert!(
            stdout.contains(test) && stdout.contains("requests per second"),
            "{stdout}{stderr}"
        );
    }
    assert!(
        !stdout.contains("ERR") && !stderr.contains("ERR"),
        "{stdout}{stderr}"
    );
    assert!(!stderr.contains("WARN"), "{stderr}");
    // The benchmark's keys are there, through a fresh connection.
    assert_eq!(cli(&port, &["exists", "key:__rand_int__"]), "1\n");
}
