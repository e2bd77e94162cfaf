//! What the hostile tests measure of a server under attack, from outside:
//! its resident memory and CPU time (from `/proc`), and the reply times a
//! bystander client sees. Also a strict reader of one HTTP response.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::util::connect;

/// The process' resident memory, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("no VmRSS in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A thread sampling a process' RSS every 50 ms, keeping the peak.
pub struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssWatch {
    pub fn start(pid: u32) -> RssWatch {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (stopped, highest) = (Arc::clone(&stop), Arc::clone(&peak));
        let thread = thread::spawn(move || {
            while !stopped.load(Relaxed) {
                highest.fetch_max(rss(pid), Relaxed);
                thread::sleep(Duration::from_millis(50));
            }
        });
        RssWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The highest RSS seen so far.
    pub fn peak(&self) -> u64 {
        self.peak.load(Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Waits (up to `limit`) for the process' RSS to fall under `bound`, and
/// returns the last reading.
pub fn rss_settles_under(pid: u32, bound: u64, limit: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let now = rss(pid);
        if now < bound || start.elapsed() > limit {
            return now;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A client on a thread making one request every `every` on one
/// connection, and timing each reply, until stopped.
pub struct Bystander {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Duration>>>,
}

/// Reads one whole reply from a bystander's connection, checking it.
pub type ReadReply = fn(&mut TcpStream);

impl Bystander {
    pub fn start(
        addr: SocketAddr,
        request: &'static [u8],
        read: ReadReply,
        every: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let mut stream = connect(addr);
        stream.set_nodelay(true).unwrap();
        // The first exchange, untimed: the connection is accepted and warm.
        stream.write_all(request).unwrap();
        read(&mut stream);
        let thread = thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut next = Instant::now();
            while !stopped.load(Relaxed) {
                let start = Instant::now();
                stream.write_all(request).unwrap();
                read(&mut stream);
                latencies.push(start.elapsed());
                next += every;
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            latencies
        });
        Bystander {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it and returns what it measured.
    pub fn finish(mut self) -> Latencies {
        self.stop.store(true, Relaxed);
        let thread = self.thread.take().unwrap();
        let mut latencies = thread.join().expect("the bystander failed");
        latencies.sort();
        assert!(!latencies.is_empty(), "the bystander made no request");
        Latencies(latencies)
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A bystander's reply times, sorted.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn quantile(&self, q: f64) -> Duration {
        let last = self.0.len() - 1;
        self.0[((last as f64) * q).round() as usize]
    }

    pub fn max(&self) -> Duration {
        *self.0.last().unwrap()
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests, p50 {:?}, p99 {:?}, max {:?}",
            self.0.len(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.max()
        )
    }
}

/// Reads one HTTP response (head, then `Content-Length` bytes of body, or
/// without one, everything until the server closes: RFC 9112 6.3) and
/// returns its status and its bytes. Panics on anything that does not parse.
#[track_caller]
pub fn read_http_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut chunk = [0; 4096];
    let mut closed = false;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let parsed = response.parse(&bytes).unwrap_or_else(|e| {
            panic!(
                "not an HTTP response ({e}): {:?}",
                bytes.escape_ascii().to_string()
            )
        });
        if let httparse::Status::Complete(head) = parsed {
            let length: Option<usize> = response
                .headers
                .iter()
                .find(|header| header.name.eq_ignore_ascii_case("content-length"))
                .map(|header| std::str::from_utf8(header.value).unwrap().parse().unwrap());
            match length {
                Some(length) if bytes.len() >= head + length => {
                    assert_eq!(bytes.len(), head + length, "bytes after the response");
                    return (response.code.unwrap(), bytes);
                }
                None if closed => return (response.code.unwrap(), bytes),
                _ => {}
            }
        }
        assert!(
            !closed,
            "the connection closed inside a response: {:?}",
            bytes.escape_ascii().to_string()
        );
        match stream.read(&mut chunk) {
            Ok(0) => closed = true,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading a response: {e}"),
        }
    }
}
