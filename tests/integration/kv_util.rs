//! Helpers for the kv tests that need the real Redis: a `redis-server`
//! child on a free port (Debian's `redis-server` package), and a RESP
//! reply reader that keeps each reply's exact bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{TempDir, connect};

/// A `redis-server` in a child process, killed on drop.
pub struct RedisServer {
    child: Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port, with no persistence.
    /// Fails the test, naming the package, when it is not installed.
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    /// Starts `redis-server` on `port` (a restart on the port a killed one
    /// had), with no persistence.
    pub fn start_on(port: u16) -> RedisServer {
        let dir = TempDir::new("redis-server");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--databases", "1"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): this test compares kv with the real \
                     Redis; install it with `apt-get install redis-server`"
                )
            });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let server = RedisServer {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {addr}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

/// A loopback port nobody listens on now: bound, read back, released.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed reply: enough structure to compare replies by content when
/// their order or exact value may differ.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Value {
    /// `+`, `-`, `:`, `,`, `_`, `#`, `(`: the type byte and the line.
    Line(u8, Vec<u8>),
    /// `$`, `=`: the bytes, or `None` for `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*`, `%` (pairs flattened), `~`, `>`: the items, or `None` for `*-1`.
    Many(u8, Option<Vec<Value>>),
}

/// One client connection that reads whole replies.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client {
            reader: BufReader::new(connect(addr)),
        }
    }

    /// Sends `words` as one multibulk request.
    pub fn send(&mut self, words: &[Vec<u8>]) {
        let mut request = format!("*{}\r\n", words.len()).into_bytes();
        for word in words {
            request.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
            request.extend_from_slice(word);
            request.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&request).unwrap();
    }

    /// Reads one reply: its exact bytes and its parse.
    #[track_caller]
    pub fn reply(&mut self) -> (Vec<u8>, Value) {
        let mut raw = Vec::new();
        let value = self.value(&mut raw);
        (raw, value)
    }

    fn line(&mut self, raw: &mut Vec<u8>) -> Vec<u8> {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .unwrap_or_else(|e| panic!("reading a reply: {e}"));
        assert!(line.ends_with(b"\r\n"), "a reply line cut short: {line:?}");
        raw.extend_from_slice(&line);
        line.truncate(line.len() - 2);
        line
    }

    fn value(&mut self, raw: &mut Vec<u8>) -> Value {
        let line = self.line(raw);
        let (kind, rest) = (line[0], line[1..].to_vec());
        let number = || -> i64 { String::from_utf8_lossy(&rest).parse().unwrap() };
        match kind {
            b'$' | b'=' => {
                let len = number();
                if len < 0 {
                    return Value::Bulk(None);
                }
                let mut bytes = vec![0; len as usize + 2];
                self.reader.read_exact(&mut bytes).unwrap();
                raw.extend_from_slice(&bytes);
                bytes.truncate(len as usize);
                Value::Bulk(Some(bytes))
            }
            b'*' | b'%' | b'~' | b'>' => {
                let count = number();
                if count < 0 {
                    return Value::Many(kind, None);
                }
                let items = if kind == b'%' { 2 * count } else { count };
                let items = (0..items).map(|_| self.value(raw)).collect();
                Value::Many(kind, Some(items))
            }
            _ => Value::Line(kind, rest),
        }
    }
}
