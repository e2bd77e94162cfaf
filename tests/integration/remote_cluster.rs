//! The store on a Redis Cluster (`--store redis-cluster://`, issue 13 item
//! 4), against a real three-master cluster per test (`redis_cluster.rs`):
//! kv and todo keys spread over every master and read back, from
//! readyloop and straight from the owning node; a slot moved by hand
//! while it is read (`-ASK` during the migration, `-MOVED` after it); a
//! master killed; the start-up check's errors.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use readyloop::remote::cluster::slot;

use crate::kv_util::{Client, RedisServer, Value, free_port};
use crate::redis_cluster::{RedisCluster, text};
use crate::remote_store::wait_with_timeout;
use crate::util::{BinServer, connect, per_mode};

/// `readyloop serve FLAGS` with todo and kv over the cluster at `url`.
fn serve(flags: &[&str], url: &str) -> BinServer {
    let mut args = vec!["--store", url];
    args.extend_from_slice(flags);
    args.extend(["todo@127.0.0.1:0", "kv@127.0.0.1:0"]);
    BinServer::start(&args, &["todo", "kv"])
}

/// One todo command on a connection of its own: the reply, without CRLF.
#[track_caller]
fn todo(addr: SocketAddr, line: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).unwrap();
    reply.trim_end().to_owned()
}

/// Sends `words` on `client`; the reply's exact bytes, as text.
#[track_caller]
fn kv(client: &mut Client, words: &[&str]) -> String {
    let words: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
    client.send(&words);
    String::from_utf8_lossy(&client.reply().0).into_owned()
}

/// `$LEN\r\nVALUE\r\n`.
fn bulk(value: &str) -> String {
    format!("${}\r\n{value}\r\n", value.len())
}

/// The number of keys on master `index`.
fn dbsize(cluster: &RedisCluster, index: usize) -> i64 {
    text(&cluster.direct(cluster.addrs[index], &["DBSIZE"]))
        .parse()
        .unwrap()
}

per_mode!(kv_and_todo_keys_spread_over_every_master, |mode| {
    let cluster = RedisCluster::start();
    let server = serve(mode.flags, &cluster.url());
    let mut client = Client::connect(server.addr("kv"));
    const KEYS: usize = 300;
    for i in 0..KEYS {
        let (key, value) = (format!("key:{i}"), format!("value-{i}"));
        assert_eq!(kv(&mut client, &["SET", &key, &value]), "+OK\r\n", "{key}");
    }
    for i in 0..KEYS {
        let key = format!("key:{i}");
        assert_eq!(kv(&mut client, &["GET", &key]), bulk(&format!("value-{i}")));
    }
    // A pipeline over every master: each reply in its place.
    for i in 0..KEYS {
        client.send(&[b"GET".to_vec(), format!("key:{i}").into_bytes()]);
    }
    for i in 0..KEYS {
        let value = format!("value-{i}");
        assert_eq!(
            client.reply().1,
            Value::Bulk(Some(value.into_bytes())),
            "pipelined"
        );
    }
    // Each master holds its share: the keys and todo's three seed tasks.
    let sizes: Vec<i64> = (0..3).map(|i| dbsize(&cluster, i)).collect();
    assert!(sizes.iter().all(|&n| n > KEYS as i64 / 6), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<i64>(), KEYS as i64 + 3, "{sizes:?}");
    // Read back by the Redis tools' own cluster routing.
    for i in (0..KEYS).step_by(41) {
        assert_eq!(cluster.cli_get(&format!("key:{i}")), format!("value-{i}"));
    }
    for (words, reply) in [
        (&["PING"][..], "+PONG\r\n".to_owned()),
        (&["MSET", "{t}a", "1", "{t}b", "2"], "+OK\r\n".to_owned()),
        (
            &["MGET", "{t}a", "{t}b"],
            "*2\r\n$1\r\n1\r\n$1\r\n2\r\n".to_owned(),
        ),
        (
            &["EVAL", "return redis.call('GET', KEYS[1])", "1", "key:7"],
            bulk("value-7"),
        ),
        (
            &["INCR", "key:8"],
            "-ERR value is not an integer or out of range\r\n".to_owned(),
        ),
    ] {
        assert_eq!(kv(&mut client, words), reply, "{words:?}");
    }
    // Keys on two slots: Redis' own refusal, passed through.
    assert_ne!(slot(b"a"), slot(b"b"));
    let reply = kv(&mut client, &["MSET", "a", "1", "b", "2"]);
    assert!(reply.starts_with("-CROSSSLOT "), "{reply:?}");
    drop(client); // the blocking mode serves one connection at a time

    let todo_addr = server.addr("todo");
    assert_eq!(todo(todo_addr, "GET/task_01/x"), "see someone", "seeded");
    assert_eq!(
        todo(todo_addr, "POST/task_c=over the cluster/x"),
        "submit success"
    );
    assert_eq!(todo(todo_addr, "GET/task_c/x"), "over the cluster");
    assert_eq!(cluster.cli_get("task_c"), "over the cluster");
    let mut client = Client::connect(server.addr("kv"));
    assert_eq!(
        kv(&mut client, &["GET", "task_c"]),
        bulk("over the cluster")
    );
});

per_mode!(
    a_slot_moved_while_it_is_read_is_followed_by_ask_then_moved,
    [threaded, evloop],
    |mode| {
        let cluster = RedisCluster::start();
        // Debug logging: the redirections followed are logged.
        let mut flags = mode.flags.to_vec();
        flags.push("-v");
        let server = serve(&flags, &cluster.url());
        let mut client = Client::connect(server.addr("kv"));
        let moving = slot(b"moving");
        let keys: Vec<String> = (0..20).map(|i| format!("{{moving}}:{i}")).collect();
        for key in &keys {
            assert_eq!(kv(&mut client, &["SET", key, key]), "+OK\r\n");
        }
        let from = cluster.owner(moving);
        let to = (from + 1) % 3;
        let (from_addr, to_addr) = (cluster.addrs[from], cluster.addrs[to]);
        let slot_text = moving.to_string();
        let setslot = |at: SocketAddr, how: &str, id: &str| {
            let reply = cluster.direct(at, &["CLUSTER", "SETSLOT", &slot_text, how, id]);
            assert_eq!(reply, Value::Line(b'+', b"OK".to_vec()), "SETSLOT {how}");
        };
        setslot(to_addr, "IMPORTING", &cluster.id(from));
        setslot(from_addr, "MIGRATING", &cluster.id(to));
        let migrate = |keys: &[String]| {
            let port = to_addr.port().to_string();
            let mut words = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            words.extend(keys.iter().map(String::as_str));
            let reply = cluster.direct(from_addr, &words);
            assert_eq!(reply, Value::Line(b'+', b"OK".to_vec()), "MIGRATE");
        };
        // Half the keys moved: those are on the node the slot is going
        // to, which the old owner answers -ASK for.
        migrate(&keys[..10]);
        for key in &keys {
            assert_eq!(
                kv(&mut client, &["GET", key]),
                bulk(key),
                "during the migration"
            );
        }
        // A RESP3 client's commands go up between HELLO 3 and HELLO 2:
        // each gets its ASKING.
        let mut resp3 = Client::connect(server.addr("kv"));
        assert!(kv(&mut resp3, &["HELLO", "3"]).starts_with('%'));
        for key in &keys {
            assert_eq!(kv(&mut resp3, &["GET", key]), bulk(key), "RESP3, mid-move");
        }
        assert_eq!(
            kv(&mut resp3, &["HGETALL", "{moving}:none"]),
            "%0\r\n",
            "RESP3's map"
        );
        drop(resp3);
        // A new key of a migrating slot is made on the node it goes to.
        assert_eq!(
            kv(&mut client, &["SET", "{moving}:new", "born mid-move"]),
            "+OK\r\n"
        );
        migrate(&keys[10..]);
        for at in &cluster.addrs {
            setslot(*at, "NODE", &cluster.id(to));
        }
        // The slot is served by its new owner: the old one answers -MOVED.
        for key in &keys {
            assert_eq!(
                kv(&mut client, &["GET", key]),
                bulk(key),
                "after the migration"
            );
        }
        assert_eq!(
            kv(&mut client, &["GET", "{moving}:new"]),
            bulk("born mid-move")
        );
        assert_eq!(cluster.cli_get("{moving}:new"), "born mid-move");
        assert_eq!(cluster.owner(moving), to);
        // Every key of the slot (the 20 and the one made mid-move) is on
        // its new owner, none is left on the old one.
        let count = |at| text(&cluster.direct(at, &["CLUSTER", "COUNTKEYSINSLOT", &slot_text]));
        assert_eq!(
            (count(to_addr), count(from_addr)),
            ("21".into(), "0".into())
        );
        let log = server.log.lock().unwrap().clone();
        for says in [
            format!(
                "slot {moving} migrating from 127.0.0.1:{}",
                from_addr.port()
            ),
            format!("slot {moving} moved from 127.0.0.1:{}", from_addr.port()),
        ] {
            assert!(log.contains(&says), "no {says:?} in:\n{log}");
        }
        // A script's error that reads as a redirection is passed on, and
        // no connection is made to the address it names.
        let bait = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        bait.set_nonblocking(true).unwrap();
        let spoof = format!(
            "return redis.error_reply('MOVED {moving} {}')",
            bait.local_addr().unwrap()
        );
        let reply = kv(&mut client, &["EVAL", &spoof, "1", &keys[0]]);
        assert_eq!(
            reply,
            format!("-MOVED {moving} {}\r\n", bait.local_addr().unwrap())
        );
        assert_eq!(kv(&mut client, &["GET", &keys[0]]), bulk(&keys[0]));
        let connected = bait.accept();
        assert!(
            matches!(&connected, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{connected:?}"
        );
        // The hash slots are the cluster's own.
        for key in keys
            .iter()
            .map(String::as_str)
            .chain(["", "a", "foo{}{bar}", "{a}{b}", "x{y"])
        {
            let asked = cluster.direct(from_addr, &["CLUSTER", "KEYSLOT", key]);
            assert_eq!(text(&asked), slot(key.as_bytes()).to_string(), "{key:?}");
        }
    }
);

per_mode!(
    a_master_down_fails_its_keys_only,
    [threaded, evloop],
    |mode| {
        let mut cluster = RedisCluster::start();
        let server = serve(mode.flags, &cluster.url());
        let mut client = Client::connect(server.addr("kv"));
        let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
        for key in &keys {
            assert_eq!(kv(&mut client, &["SET", key, key]), "+OK\r\n");
        }
        let owners: Vec<usize> = keys
            .iter()
            .map(|k| cluster.owner(slot(k.as_bytes())))
            .collect();
        let victim = owners[0];
        cluster.kill(victim);
        for (key, owner) in keys.iter().zip(&owners) {
            let expected = match *owner == victim {
                true => "-ERR store unavailable\r\n".to_owned(),
                false => bulk(key),
            };
            assert_eq!(
                kv(&mut client, &["GET", key]),
                expected,
                "{key} on master {owner}"
            );
        }
        drop(client);
        let lost = keys
            .iter()
            .zip(&owners)
            .find(|(_, o)| **o == victim)
            .unwrap()
            .0;
        assert_eq!(
            todo(server.addr("todo"), &format!("GET/{lost}/x")),
            "error: store unavailable"
        );
    }
);

/// `readyloop serve --store URL todo@...`, which must fail: its stderr.
fn start_fails(url: &str) -> String {
    let child = Command::new(env!("CARGO_BIN_EXE_readyloop"))
        .args([
            "serve",
            "--console",
            "off",
            "--store",
            url,
            "todo@127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = wait_with_timeout(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("listening"), "nothing served: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    errors[0].to_owned()
}

#[test]
fn a_cluster_that_cannot_serve_is_one_error_line_at_start() {
    let (a, b) = (free_port(), free_port());
    let url = format!("redis-cluster://127.0.0.1:{a},127.0.0.1:{b}");
    assert_eq!(
        start_fails(&url),
        format!(
            "readyloop: error: store {url} unavailable: 127.0.0.1:{a}: Connection refused \
             (os error 111); 127.0.0.1:{b}: Connection refused (os error 111)"
        )
    );
    let single = RedisServer::start();
    let error = start_fails(&format!("redis-cluster://{}", single.addr));
    assert!(
        error.contains("cluster support disabled")
            && error.contains("a single Redis is --store redis://HOST:PORT"),
        "{error}"
    );
    let cluster = RedisCluster::start();
    let owner = cluster.owner(0);
    let reply = cluster.direct(
        cluster.addrs[owner],
        &["CLUSTER", "DELSLOTSRANGE", "0", "99"],
    );
    assert_eq!(reply, Value::Line(b'+', b"OK".to_vec()));
    let error = start_fails(&format!("redis-cluster://{}", cluster.addrs[owner]));
    assert!(
        error.contains("the cluster does not serve every slot: slots 0-99 have no master"),
        "{error}"
    );
}

#[test]
fn store_wait_serves_once_the_cluster_has_formed() {
    // Masters that listen but are no cluster yet: no slot is served.
    let cluster = RedisCluster::launch();
    let mut server = Command::new(env!("CARGO_BIN_EXE_readyloop"))
        .args([
            "serve",
            "--console",
            "off",
            "--store",
            &cluster.url(),
            "--store-wait",
        ])
        .arg("todo@127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map(KilledOnDrop)
        .unwrap();
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines();
    // Each line comes within a second (the longest wait between tries);
    // readyloop exiting ends them, and fails the test.
    let mut next_line = || {
        let line = lines.next().expect("readyloop exited").unwrap();
        assert!(!line.contains("error"), "{line}");
        line
    };
    let waiting = loop {
        let line = next_line();
        if line.contains("(--store-wait)") {
            break line;
        }
    };
    assert!(
        waiting.contains("the cluster does not serve every slot: slots 0-16383 have no master")
            && waiting.ends_with("(--store-wait)"),
        "{waiting}"
    );
    cluster.join();
    let todo_addr = loop {
        if let Some((_, addr)) = next_line().split_once("todo listening on ") {
            break addr.trim().parse().unwrap();
        }
    };
    assert_eq!(todo(todo_addr, "GET/task_01/x"), "see someone");
    assert_eq!(cluster.cli_get("task_02"), "read book");
}

/// A child process killed when dropped, also when the test fails.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
