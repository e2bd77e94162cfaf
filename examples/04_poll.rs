//! Rung 4: the same loop with `poll(2)`.
//!
//! Teaches: `poll` takes an array of `pollfd { fd, events, revents }` instead
//! of three bitmaps. The array is as long as you like, so there is no
//! FD_SETSIZE cap: fd 5000 is as welcome as fd 5. The kernel writes results
//! into `revents`, so the request (`events`) survives the call.
//!
//! Run:  `cargo run --example 04_poll -- 9000`
//!
//! Try:  several `nc 127.0.0.1 9000` at once. Raise `ulimit -n` and open
//!       thousands of connections: poll takes them all, select could not.
//!
//! Limitation: every call still hands the kernel the WHOLE array, and the
//! kernel checks every entry, then we scan every `revents`: O(n) per call
//! with n connected clients, even when only one of them is talking. With
//! 10,000 idle clients and one busy one, each wake-up pays for all 10,001
//! (`cargo run --release --example scaling` measures it). Next rung,
//! `05_epoll.rs`, keeps the interest list in the kernel and returns only the
//! ready fds.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

/// A client: its socket and the bytes to echo that it has not taken yet.
/// POLLOUT is requested exactly when the `Vec` is non-empty.
type Client = (TcpStream, Vec<u8>);

fn main() -> io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("9000")
        .parse()
        .expect("usage: 04_poll PORT");
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    let lfd = listener.as_raw_fd();
    let mut clients: HashMap<RawFd, Client> = HashMap::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();

    loop {
        // Build the request from our state: O(n), but poll is O(n) anyway.
        // POLLOUT only while output is pending: an idle socket is always
        // writable, and asking would make poll return at once, forever.
        fds.clear();
        fds.push(pollfd(lfd, libc::POLLIN));
        for (&fd, (_, out)) in &clients {
            let want_write = if out.is_empty() { 0 } else { libc::POLLOUT };
            fds.push(pollfd(fd, libc::POLLIN | want_write));
        }
        // Timeout -1: sleep until something is ready.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }

        // Scan every entry for a non-zero `revents`: another O(n) pass.
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == lfd {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        stream.set_nonblocking(true)?;
                        eprintln!("{peer}: connected as fd {}", stream.as_raw_fd());
                        // No FD_SETSIZE check: any fd number fits in a pollfd.
                        clients.insert(stream.as_raw_fd(), (stream, Vec::new()));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => eprintln!("accept: {e}"),
                }
                continue;
            }
            let client = clients.get_mut(&p.fd).expect("every polled fd is a client");
            // POLLHUP/POLLERR come without being asked for; a read then
            // returns 0 or the error, so treat them as "readable".
            let can_read = p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if !pump(client, can_read) {
                clients.remove(&p.fd); // drop closes the socket
                eprintln!("fd {}: closed", p.fd);
            }
        }
    }
}

fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// One `read` if readable (poll is level-triggered and reports the fd again
/// if bytes remain), then write as much as the socket takes; the rest waits
/// for POLLOUT. Returns false when the client is gone.
fn pump((stream, out): &mut Client, can_read: bool) -> bool {
    let mut buf = [0u8; 4096];
    if can_read {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(_) => return false,
        }
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
