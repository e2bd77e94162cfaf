//! The store's log with the real binary: nothing acknowledged under
//! `--fsync always` is lost to `kill -9`, a torn last record is dropped at
//! restart, and damage in the middle stops the start with the offset.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{BinServer, TempDir, connect, per_mode};

/// Writers of each kind hammering the server while it is killed.
const WRITERS: usize = 4;
/// Acknowledged writes to wait for before the kill.
const ACKED_BEFORE_KILL: usize = 200;

fn serve(dir: &TempDir, fsync: &str) -> BinServer {
    let data_dir = dir.path().to_str().unwrap();
    BinServer::start(
        &[
            "--fsync",
            fsync,
            "--data-dir",
            data_dir,
            "todo@127.0.0.1:0",
            "kv@127.0.0.1:0",
        ],
        &["todo", "kv"],
    )
}

/// One request line, one reply line; `None` once the server is gone.
fn ask(reader: &mut BufReader<TcpStream>, request: &[u8]) -> Option<String> {
    reader.get_mut().write_all(request).ok()?;
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(n) if n > 0 => Some(line),
        _ => None,
    }
}

/// Reads `key` through kv (`GET`), as bytes of the value.
fn kv_get(reader: &mut BufReader<TcpStream>, key: &str) -> Option<String> {
    let header = ask(reader, format!("GET {key}\r\n").as_bytes()).expect("kv answers");
    if header == "$-1\r\n" {
        return None;
    }
    let mut value = String::new();
    reader.read_line(&mut value).unwrap();
    Some(value.trim_end_matches("\r\n").to_owned())
}

#[test]
fn every_acknowledged_write_survives_kill_9() {
    let dir = TempDir::new("kill9");
    let mut server = serve(&dir, "always");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (kind, addr) in [("todo", server.addr("todo")), ("kv", server.addr("kv"))] {
        for w in 0..WRITERS {
            let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
            clients.push(thread::spawn(move || {
                write_until_gone(kind, w, addr, &acked, &stop)
            }));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < ACKED_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged:\n{}",
            acked.lock().unwrap().len(),
            server.log.lock().unwrap()
        );
        thread::sleep(Duration::from_millis(5));
    }
    server.sigkill(); // mid-load: writers are still sending
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let server = serve(&dir, "everysec");
    let mut kv = BufReader::new(connect(server.addr("kv")));
    for (key, value) in &acked {
        assert_eq!(
            kv_get(&mut kv, key).as_deref(),
            Some(value.as_str()),
            "acknowledged {key} lost after kill -9 ({} acknowledged)",
            acked.len()
        );
    }
    // todo sees the same data, and the seed tasks were logged.
    let mut todo = BufReader::new(connect(server.addr("todo")));
    let (key, value) = &acked[0];
    assert_eq!(
        ask(&mut todo, format!("GET/{key}/x\n").as_bytes()).unwrap(),
        format!("{value}\r\n")
    );
    assert_eq!(ask(&mut todo, b"GET/task_02/x\n").unwrap(), "read book\r\n");
}

/// Writes `w`'s keys one by one, remembering each acknowledged one, until
/// the server dies or `stop` (bounded: at most 100,000 writes).
fn write_until_gone(
    kind: &str,
    w: usize,
    addr: SocketAddr,
    acked: &Mutex<Vec<(String, String)>>,
    stop: &AtomicBool,
) {
    let mut reader = BufReader::new(connect(addr));
    for i in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let (key, value) = (format!("{kind}-{w}-{i}"), format!("value-{i}"));
        let (request, ok) = match kind {
            "todo" => (format!("POST/{key}={value}/x\n"), "submit success\r\n"),
            _ => (format!("SET {key} {value}\r\n"), "+OK\r\n"),
        };
        match ask(&mut reader, request.as_bytes()) {
            Some(reply) => {
                assert_eq!(reply, ok, "{key}");
                acked.lock().unwrap().push((key, value));
            }
            None => return, // killed
        }
    }
}

#[test]
fn a_log_cut_mid_record_restarts_with_the_records_before_it() {
    let dir = TempDir::new("cut");
    let mut server = serve(&dir, "always");
    let mut todo = BufReader::new(connect(server.addr("todo")));
    for i in 0..5 {
        let reply = ask(&mut todo, format!("POST/k{i}=v{i}/x\n").as_bytes());
        assert_eq!(reply.as_deref(), Some("submit success\r\n"));
    }
    server.sigkill();
    let log = dir.path().join("store.log");
    let size = std::fs::metadata(&log).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(size - 4).unwrap(); // into the last record (k4's)
    drop(file);

    let server = serve(&dir, "always");
    let mut todo = BufReader::new(connect(server.addr("todo")));
    for i in 0..4 {
        let reply = ask(&mut todo, format!("GET/k{i}/x\n").as_bytes());
        assert_eq!(reply, Some(format!("v{i}\r\n")));
    }
    assert_eq!(
        ask(&mut todo, b"GET/k4/x\n").as_deref(),
        Some("no key match\r\n")
    );
    let logged = server.log.lock().unwrap().clone();
    assert!(
        logged.contains("WARN") && logged.contains("store.log") && logged.contains("torn"),
        "{logged}"
    );
    // It goes on writing after the repair.
    let reply = ask(&mut todo, b"POST/k4=again/x\n");
    assert_eq!(reply.as_deref(), Some("submit success\r\n"));
}

#[test]
fn a_corrupt_record_in_the_middle_stops_the_start_naming_the_offset() {
    let dir = TempDir::new("corrupt");
    let mut server = serve(&dir, "always");
    let mut kv = BufReader::new(connect(server.addr("kv")));
    for i in 0..5 {
        assert_eq!(
            ask(&mut kv, format!("SET key{i} value{i}\r\n").as_bytes()).as_deref(),
            Some("+OK\r\n")
        );
    }
    server.sigkill();
    let log = dir.path().join("store.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.windows(6).position(|w| w == b"value2").unwrap();
    bytes[at] = b'V';
    std::fs::write(&log, &bytes).unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_readyloop"))
        .args([
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "kv@127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&log.display().to_string())
            && stderr.contains("corrupt record at byte offset")
            && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "the log was left alone"
    );
}

// Not forking: a forked child has no store flusher (threads do not survive
// fork), so under `--fsync always` it refuses the writes ("stored in memory
// but not on disk"); and each child would have its own copy of the store.
per_mode!(
    a_pipeline_behind_a_durable_write_is_answered,
    [evloop, threaded, threaded_pool, blocking, uring],
    |mode| {
        let dir = TempDir::new("pipeline");
        let data_dir = dir.path().to_str().unwrap();
        let server = BinServer::start(
            &[
                mode.flags,
                &[
                    "--fsync",
                    "always",
                    "--data-dir",
                    data_dir,
                    "todo@127.0.0.1:0",
                    "kv@127.0.0.1:0",
                ],
            ]
            .concat(),
            &["todo", "kv"],
        );
        // Everything in one write: the replies must not wait for more input.
        let mut todo = connect(server.addr("todo"));
        todo.write_all(b"POST/a=1/x\nPOST/b=2/x\nGET/a/x\nGET/b/x\n")
            .unwrap();
        crate::util::expect(&mut todo, b"submit success\r\nsubmit success\r\n1\r\n2\r\n");
        drop(todo); // the blocking mode serves one client at a time
        let mut kv = connect(server.addr("kv"));
        kv.write_all(b"SET c 3\r\nINCR n\r\nDEL c\r\nGET a\r\n")
            .unwrap();
        crate::util::expect(&mut kv, b"+OK\r\n:1\r\n:1\r\n$1\r\n1\r\n");
    }
);
