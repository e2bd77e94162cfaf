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
pub(crate) fn tool(tool: &str, args: &[&str]) -> Output {
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
pub(crate) fn cli(port: &str, args: &[&str]) -> String {
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

/// The 20 tests `redis-benchmark -q` runs by default, as it names them.
const DEFAULT_SUITE: &[&str] = &[
    "PING_INLINE",
    "PING_MBULK",
    "SET",
    "GET",
    "INCR",
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "SADD",
    "HSET",
    "SPOP",
    "ZADD",
    "ZPOPMIN",
    "LPUSH (needed to benchmark LRANGE)",
    "LRANGE_100 (first 100 elements)",
    "LRANGE_300 (first 300 elements)",
    "LRANGE_500 (first 500 elements)",
    "LRANGE_600 (first 600 elements)",
    "MSET (10 keys)",
];

/// The whole default suite, `-n 2000`, plain or pipelined (`-P 16`):
/// exit 0, every test reported, no error line.
fn default_suite(pipeline: &str) {
    let dir = TempDir::new("redis-benchmark-suite");
    let server = kv_server(&dir);
    default_suite_against(&server.addr("kv").port().to_string(), pipeline);
}

/// [`default_suite`] against the server on `port` (`-c 10`).
pub(crate) fn default_suite_against(port: &str, pipeline: &str) {
    let output = tool(
        "redis-benchmark",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-n",
            "2000",
            "-c",
            "10",
            "-q",
            "-P",
            pipeline,
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}:\n{stdout}{stderr}",
        output.status
    );
    // -q rewrites a progress line in place with \r; the last one counts.
    let reported: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.rsplit('\r').next())
        .filter_map(|line| line.trim().split_once(": "))
        .filter(|(_, rest)| rest.contains("requests per second"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(reported, DEFAULT_SUITE, "{stdout}");
    assert!(
        !stdout.contains("ERR") && !stderr.contains("ERR"),
        "{stdout}{stderr}"
    );
}

#[test]
fn redis_benchmark_default_suite_passes_against_kv() {
    default_suite("1");
}

#[test]
fn redis_benchmark_default_suite_passes_pipelined_against_kv() {
    default_suite("16");
}
