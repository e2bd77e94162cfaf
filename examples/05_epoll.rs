//! Rung 5: `epoll(7)`, level-triggered by default, edge-triggered with `--edge`.
//!
//! Teaches: the interest list lives in the kernel. `epoll_ctl` adds, changes
//! or removes ONE fd (O(1)); `epoll_wait` returns only the fds that are ready,
//! so a wake-up costs O(ready), not O(connected). Each registration carries
//! 64 bits of user data: here the fd; in mio, a `Token`.
//!
//! Run:  `cargo run --example 05_epoll -- 9000`          (level-triggered)
//!       `cargo run --example 05_epoll -- 9000 --edge`   (EPOLLET)
//!
//! Try:  several `nc 127.0.0.1 9000` at once, in both modes. Paste a long text
//!       into one: with `--edge` it only comes back whole because reads drain
//!       until EAGAIN (delete the drain loop and watch it stall).
//!
//! Limitation: Linux-only, raw `unsafe` calls, a fd-keyed map kept by hand,
//! and in edge mode one forgotten drain loop hangs a client. Next rung,
//! `06_mio.rs`, wraps epoll (kqueue, IOCP elsewhere) safely with mio.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

/// A client: its socket and the bytes to echo that it has not taken yet.
/// EPOLLOUT is in its interest set exactly when the `Vec` is non-empty.
type Client = (TcpStream, Vec<u8>);

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .map_or("9000", |s| s)
        .parse()
        .expect("usage: 05_epoll PORT [--edge]");
    let edge = args.iter().any(|a| a == "--edge");
    // Level-triggered (the default): epoll_wait reports an fd for as long as
    // it IS ready, like select and poll. Edge-triggered: only when it BECOMES
    // ready (new bytes arrive, buffer space frees up).
    let et = if edge { libc::EPOLLET as u32 } else { 0 };

    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    let lfd = listener.as_raw_fd();

    let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    ctl(ep, libc::EPOLL_CTL_ADD, lfd, IN | et)?;
    let mut clients: HashMap<RawFd, Client> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];

    loop {
        // Timeout -1: sleep until something is ready. Returns how many of
        // `events` it filled: the ready fds only, however many are watched.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        let n = match cvt(n) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for ev in &events[..n] {
            let (fd, bits) = (ev.u64 as RawFd, ev.events);
            if fd == lfd {
                // Edge: one event may stand for many queued connections and
                // no new edge comes for those, so accept until EAGAIN.
                // Level: one accept is enough; epoll reports the rest again.
                loop {
                    let (stream, peer) = match listener.accept() {
                        Ok(accepted) => accepted,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => break eprintln!("accept: {e}"),
                    };
                    stream.set_nonblocking(true)?;
                    eprintln!("{peer}: connected as fd {}", stream.as_raw_fd());
                    ctl(ep, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), IN | et)?;
                    clients.insert(stream.as_raw_fd(), (stream, Vec::new()));
                    if !edge {
                        break;
                    }
                }
                continue;
            }
            // The fd was closed earlier in this batch: a stale event. Ignore.
            let Some(client) = clients.get_mut(&fd) else {
                continue;
            };
            let had_output = !client.1.is_empty();
            let can_read = bits & (IN | (libc::EPOLLHUP | libc::EPOLLERR) as u32) != 0;
            if !pump(client, can_read, edge) {
                // close() alone would remove it from the epoll set too (if the
                // fd was never dup()ed); DEL says so explicitly.
                let _ = ctl(ep, libc::EPOLL_CTL_DEL, fd, 0);
                clients.remove(&fd);
                eprintln!("fd {fd}: closed");
            } else if had_output == client.1.is_empty() {
                // The level-triggered idiom (Redis, select): ask for EPOLLOUT
                // only while output is pending, or an always-writable socket
                // wakes us on every call. One epoll_ctl syscall per change.
                // readyloop's mio loop (src/server/evloop.rs) registers
                // READABLE|WRITABLE once, edge-triggered, and remembers
                // "writable" until a write returns WouldBlock instead.
                let out = if client.1.is_empty() { 0 } else { OUT };
                ctl(ep, libc::EPOLL_CTL_MOD, fd, IN | out | et)?;
            }
        }
    }
}

const IN: u32 = libc::EPOLLIN as u32;
const OUT: u32 = libc::EPOLLOUT as u32;

/// Adds, changes or removes one fd: O(1), the interest list stays in the
/// kernel. The 64-bit user data is the fd itself; mio puts a Token there.
fn ctl(ep: RawFd, op: i32, fd: RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    cvt(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }).map(drop)
}

fn cvt(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Reads, then writes as much as the socket takes (the rest waits for
/// EPOLLOUT). Level: one read; epoll reports the fd again if bytes remain.
/// Edge: read until EAGAIN, because no new edge comes for data already in the
/// socket buffer; stopping early leaves it there until the client happens to
/// send more. Returns false when the client is gone. A client that never
/// reads grows `out` without bound here; readyloop caps it (DESIGN rule 6).
fn pump((stream, out): &mut Client, can_read: bool, edge: bool) -> bool {
    let mut buf = [0u8; 4096];
    let mut read_more = can_read;
    while read_more {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
        read_more = edge; // level: one read per event is enough
    }
    while !out.is_empty() {
        match stream.write(out) {
            Ok(n) => drop(out.drain(..n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
