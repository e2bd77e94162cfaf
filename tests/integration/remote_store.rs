//! The store on Redis (`--store redis://`, issue 13), against a real
//! `redis-server` started on a free port per test (Debian's
//! `redis-server` package; killed on drop, also on failure): todo and kv
//! keep their data in Redis in every mode, two readyloop processes see
//! the same data, Redis going away is an error reply and coming back is
//! served again without a restart, the start-up error and `--store-wait`,
//! and the Redis tools and redis-py through kv as a proxy.
//!
//! Every case talks over one connection at a time, so it holds in the
//! blocking mode too (one client at a time there).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::kv_util::{Client, RedisServer, free_port};
use crate::redis::{cli, default_suite_against};
use crate::util::{BinServer, ModeCase, connect, per_mode};

/// How long Redis may take to be served again after it restarted: the
/// blocking clients wait up to 2 s between tries, per thread.
const RECOVERY: Duration = Duration::from_secs(20);

/// `readyloop serve FLAGS` with todo and kv over `redis`, and echo (which
/// needs no store).
fn serve(flags: &[&str], redis: SocketAddr) -> BinServer {
    let url = format!("redis://{redis}/0");
    let mut args = vec!["--store", url.as_str()];
    args.extend_from_slice(flags);
    let services = ["todo", "kv", "echo"];
    let listeners: Vec<String> = services
        .iter()
        .map(|s| format!("{s}@127.0.0.1:0"))
        .collect();
    args.extend(listeners.iter().map(String::as_str));
    BinServer::start(&args, &services)
}

/// One todo command on a connection of its own: the reply, without CRLF.
#[track_caller]
fn todo(addr: SocketAddr, line: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    assert!(
        reply.ends_with("\r\n"),
        "{line}: a reply cut short: {reply:?}"
    );
    reply.truncate(reply.len() - 2);
    reply
}

/// Sends `words` on `client` and returns the reply's exact bytes, as text.
#[track_caller]
fn kv(client: &mut Client, words: &[&str]) -> String {
    let words: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
    client.send(&words);
    String::from_utf8_lossy(&client.reply().0).into_owned()
}

per_mode!(todo_and_kv_keep_their_data_in_redis, |mode| {
    let redis = RedisServer::start();
    let server = serve(mode.flags, redis.addr);
    let todo_addr = server.addr("todo");
    assert_eq!(todo(todo_addr, "GET/task_01/x"), "see someone", "seeded");
    assert_eq!(
        todo(todo_addr, "POST/task_9=walk the dog/x"),
        "submit success"
    );
    assert_eq!(todo(todo_addr, "GET/task_9/x"), "walk the dog");
    assert_eq!(todo(todo_addr, "GET/nope/x"), "no key match");
    assert_eq!(
        todo(todo_addr, "GET"),
        "error: expected GET/<key>/<anything>"
    );
    {
        let mut client = Client::connect(server.addr("kv"));
        for (words, reply) in [
            (&["SET", "n", "41"][..], "+OK\r\n"),
            (&["INCR", "n"], ":42\r\n"),
            (&["GET", "n"], "$2\r\n42\r\n"),
            (&["LPUSH", "l", "a", "b"], ":2\r\n"),
            (&["LRANGE", "l", "0", "-1"], "*2\r\n$1\r\nb\r\n$1\r\na\r\n"),
            // todo and kv share the keyspace, as over the file store.
            (&["GET", "task_9"], "$12\r\nwalk the dog\r\n"),
            (&["PING"], "+PONG\r\n"),
            (&["CLIENT", "SETNAME", "me"], "+OK\r\n"),
            (&["SELECT", "0"], "+OK\r\n"),
        ] {
            assert_eq!(kv(&mut client, words), reply, "{words:?}");
        }
        for refused in [&["MULTI"][..], &["SUBSCRIBE", "c"], &["BLPOP", "l", "0"]] {
            let reply = kv(&mut client, refused);
            let says = format!("-ERR {} is not proxied: ", refused[0]);
            assert!(reply.starts_with(&says), "{refused:?}: {reply:?}");
        }
        // Redis' own errors come back as Redis wrote them.
        let reply = kv(&mut client, &["INCR", "l"]);
        assert!(reply.starts_with("-WRONGTYPE "), "{reply:?}");
    }
    // The data is in Redis itself, not in readyloop.
    let mut direct = Client::connect(redis.addr);
    assert_eq!(
        kv(&mut direct, &["GET", "task_9"]),
        "$12\r\nwalk the dog\r\n"
    );
    assert_eq!(kv(&mut direct, &["GET", "n"]), "$2\r\n42\r\n");
    assert_eq!(kv(&mut direct, &["LLEN", "l"]), ":2\r\n");
});

per_mode!(
    redis_down_is_an_error_reply_and_back_is_served_again,
    |mode| {
        let redis = RedisServer::start();
        let redis_addr = redis.addr;
        let server = serve(mode.flags, redis_addr);
        let (todo_addr, kv_addr) = (server.addr("todo"), server.addr("kv"));
        assert_eq!(todo(todo_addr, "POST/a=1/x"), "submit success");
        drop(redis); // killed, and waited for
        for _ in 0..3 {
            assert_eq!(todo(todo_addr, "POST/b=2/x"), "error: store unavailable");
            assert_eq!(todo(todo_addr, "GET/a/x"), "error: store unavailable");
            let mut client = Client::connect(kv_addr);
            assert_eq!(kv(&mut client, &["GET", "a"]), "-ERR store unavailable\r\n");
            // What needs no Redis is still answered, on the same connection.
            let refused = kv(&mut client, &["MULTI"]);
            assert!(
                refused.starts_with("-ERR MULTI is not proxied"),
                "{refused}"
            );
        }
        // Redis back on the same port, empty (no persistence): the same
        // readyloop serves again, without a restart.
        let redis = RedisServer::start_on(redis_addr.port());
        let deadline = Instant::now() + RECOVERY;
        loop {
            match todo(todo_addr, "POST/c=3/x").as_str() {
                "submit success" => break,
                "error: store unavailable" if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100))
                }
                other => panic!("not served again within {RECOVERY:?}: {other:?}"),
            }
        }
        let deadline = Instant::now() + RECOVERY;
        loop {
            let mut client = Client::connect(kv_addr);
            match kv(&mut client, &["SET", "d", "4"]).as_str() {
                "+OK\r\n" => break,
                "-ERR store unavailable\r\n" if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100))
                }
                other => panic!("kv not served again within {RECOVERY:?}: {other:?}"),
            }
        }
        let mut direct = Client::connect(redis.addr);
        assert_eq!(
            kv(&mut direct, &["MGET", "c", "d", "b"]),
            "*3\r\n$1\r\n3\r\n$1\r\n4\r\n$-1\r\n"
        );
    }
);

// The modes whose threads keep their Redis connection across client
// connections (threaded and forking make a thread or process per client).
per_mode!(
    a_redis_restarted_while_idle_costs_no_request,
    [evloop, threaded_pool, blocking, uring],
    |mode| {
        let redis = RedisServer::start();
        let port = redis.addr.port();
        let server = serve(mode.flags, redis.addr);
        for _ in 0..8 {
            assert_eq!(todo(server.addr("todo"), "POST/a=1/x"), "submit success");
        }
        drop(redis);
        let redis = RedisServer::start_on(port);
        // Longer than remote::blocking::IDLE_CHECK (the blocking clients'
        // connections are checked, found closed and made again before the
        // request is sent), and than the evloop's reconnect attempts at
        // 0.1, 0.3, 0.7 and 1.5 s after the loss (a slow Redis start under
        // load may miss the first ones).
        thread::sleep(Duration::from_millis(2000));
        for _ in 0..8 {
            assert_eq!(todo(server.addr("todo"), "POST/b=2/x"), "submit success");
        }
        let mut direct = Client::connect(redis.addr);
        assert_eq!(kv(&mut direct, &["GET", "b"]), "$1\r\n2\r\n");
    }
);

#[test]
fn a_post_through_one_process_is_read_through_another() {
    let redis = RedisServer::start();
    let first = serve(ModeCase::evloop().flags, redis.addr);
    let second = serve(ModeCase::forking().flags, redis.addr);
    assert_eq!(
        todo(first.addr("todo"), "POST/shared=yes/x"),
        "submit success"
    );
    assert_eq!(todo(second.addr("todo"), "GET/shared/x"), "yes");
    let mut client = Client::connect(second.addr("kv"));
    assert_eq!(kv(&mut client, &["APPEND", "shared", "!"]), ":4\r\n");
    assert_eq!(todo(first.addr("todo"), "GET/shared/x"), "yes!");
}

#[test]
fn an_unreachable_store_at_start_is_one_error_line() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_readyloop"))
        .args(["serve", "--console", "off", "--store"])
        .arg(format!("redis://127.0.0.1:{port}/0"))
        .arg("todo@127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = wait_with_timeout(child, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(
        errors,
        [format!(
            "readyloop: error: store redis://127.0.0.1:{port}/0 unavailable: Connection refused \
             (os error 111) (start Redis there, or pass --store-wait)"
        )],
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "nothing served: {stderr}");
}

#[test]
fn store_wait_serves_once_redis_appears() {
    let port = free_port();
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(2500));
        RedisServer::start_on(port)
    });
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let url = format!("redis://{addr}/0");
    let started = Instant::now();
    // Returns once it listens: after Redis appeared.
    let server = BinServer::start(
        &["--store", &url, "--store-wait", "todo@127.0.0.1:0"],
        &["todo"],
    );
    let redis = late.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it did not wait"
    );
    let log = server.log.lock().unwrap().clone();
    let retries = log.matches("trying again").count();
    assert!(
        (2..=8).contains(&retries),
        "about one retry a second:\n{log}"
    );
    assert!(
        log.contains(&format!("store {url} unavailable: Connection refused")),
        "{log}"
    );
    assert_eq!(todo(server.addr("todo"), "GET/task_02/x"), "read book");
    drop(redis);
}

/// Waits for `child` to exit, killing it (and failing) after `limit`.
pub(crate) fn wait_with_timeout(
    mut child: std::process::Child,
    limit: Duration,
) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("readyloop did not exit within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn redis_cli_through_the_proxy() {
    let redis = RedisServer::start();
    let server = serve(&[], redis.addr);
    let port = server.addr("kv").port().to_string();
    assert_eq!(cli(&port, &["ping"]), "PONG\n");
    assert_eq!(cli(&port, &["set", "greeting", "hello world"]), "OK\n");
    assert_eq!(cli(&port, &["get", "greeting"]), "hello world\n");
    assert_eq!(cli(&port, &["rpush", "l", "x", "y"]), "2\n");
    assert_eq!(cli(&port, &["lrange", "l", "0", "-1"]), "x\ny\n");
    assert!(cli(&port, &["info", "server"]).contains("redis_version:"));
    assert!(cli(&port, &["monitor"]).starts_with("ERR MONITOR is not proxied"));
}

#[test]
fn redis_benchmark_default_suite_through_the_proxy() {
    let redis = RedisServer::start();
    let server = serve(&[], redis.addr);
    default_suite_against(&server.addr("kv").port().to_string(), "1");
}

#[test]
fn redis_benchmark_default_suite_pipelined_through_the_proxy() {
    let redis = RedisServer::start();
    let server = serve(&[], redis.addr);
    default_suite_against(&server.addr("kv").port().to_string(), "16");
}

/// A RESP3 client (`HELLO 3`) gets Redis' own RESP3 replies byte for
/// byte, and RESP2 again after `HELLO 2`.
#[test]
fn resp3_through_the_proxy_is_redis_own_resp3() {
    let redis = RedisServer::start();
    let server = serve(&[], redis.addr);
    let mut direct = Client::connect(redis.addr);
    for setup in [
        &["HSET", "h", "a", "1", "b", "2"][..],
        &["SADD", "s", "x"],
        &["ZADD", "z", "1.5", "m", "2", "n"],
        &["SET", "f", "3.25"],
    ] {
        kv(&mut direct, setup);
    }
    let reads: &[&[&str]] = &[
        &["HGETALL", "h"],
        &["SMEMBERS", "s"],
        &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
        &["ZSCORE", "z", "m"],
        &["ZPOPMIN", "nothing"],
        &["GET", "missing"],
        &["LPOP", "missing", "2"],
        &["CONFIG", "GET", "maxmemory"],
        &["GET", "f"],
    ];
    let mut proxied = Client::connect(server.addr("kv"));
    for protocol in ["3", "2"] {
        kv(&mut direct, &["HELLO", protocol]);
        let hello = kv(&mut proxied, &["HELLO", protocol]);
        assert!(
            hello.starts_with(if protocol == "3" { "%7" } else { "*14" }),
            "{hello}"
        );
        for words in reads {
            assert_eq!(
                kv(&mut proxied, words),
                kv(&mut direct, words),
                "RESP{protocol} {words:?}"
            );
        }
    }
}

/// redis-py with its defaults (RESP3 since redis-py 8: `HELLO 3`, then
/// CLIENT SETINFO) and with `protocol=2`: a connection pool, pipelines,
/// hashes, sets and scores in their Python shapes.
#[test]
fn redis_py_through_the_proxy() {
    let python = crate::kv_redis_py::python();
    let redis = RedisServer::start();
    let server = serve(&[], redis.addr);
    let script = "import redis, sys\n\
        proto = None if sys.argv[2] == 'default' else int(sys.argv[2])\n\
        r = redis.Redis(port=int(sys.argv[1]), protocol=proto)\n\
        r.flushdb()\n\
        assert r.ping()\n\
        assert r.set('k', 'v') and r.get('k') == b'v' and r.get('nope') is None\n\
        assert r.incr('n') == 1\n\
        assert r.hset('h', mapping={'a': 1, 'b': 2}) == 2 and r.hgetall('h') == {b'a': b'1', b'b': b'2'}\n\
        assert r.sadd('s', 'x', 'y') == 2 and r.smembers('s') == {b'x', b'y'}\n\
        assert r.zadd('z', {'m': 1.5}) == 1 and r.zrange('z', 0, -1, withscores=True) == [(b'm', 1.5)]\n\
        p = r.pipeline(transaction=False)\n\
        for i in range(100): p.rpush('l', i)\n\
        assert p.execute()[-1] == 100\n\
        assert r.lrange('l', 0, 2) == [b'0', b'1', b'2']\n\
        try:\n    r.pipeline().set('a', 1).execute()\n    sys.exit('MULTI was proxied')\n\
        except redis.ResponseError as e:\n    assert 'not proxied' in str(e), e\n\
        print('ok')\n";
    let port = server.addr("kv").port().to_string();
    for protocol in ["default", "2"] {
        let output = Command::new(&python)
            .args(["-c", script, &port, protocol])
            .output()
            .unwrap();
        assert!(
            output.status.success() && output.stdout == b"ok\n",
            "protocol {protocol}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
