//! Rung 7: the same echo server on io_uring: completion, not readiness.
//!
//! Teaches: rungs 3 to 6 ask the kernel which sockets *may* be read or
//! written, then do the I/O themselves, one system call each. io_uring turns
//! that around: we *submit* operations ("accept on this socket", "receive
//! into this buffer", "send these bytes") into a queue shared with the
//! kernel, and later *reap* completions ("that receive got 12 bytes") from a
//! second queue. One `io_uring_enter` (`submit_and_wait`) hands over all
//! submissions and sleeps until something completes, however many clients
//! that is. Three consequences:
//! - a buffer handed to the kernel is the kernel's until its completion: do
//!   not touch, move or free it before (here: each connection owns one
//!   buffer and has one operation in flight, receive or send, never both);
//! - `user_data` is how a completion finds its connection (the slab key, as
//!   mio's `Token`);
//! - one *multishot* accept completes once per client, for as long as it
//!   stays armed (`cqueue::more`).
//!
//! Run:  `cargo run --example 07_io_uring -- 9000` (Linux 5.19 or later)
//!
//! Try:  several `nc 127.0.0.1 9000` at once; `strace -c -f` it under load
//!       and count `io_uring_enter` against 06_mio's `epoll_wait`, `read`,
//!       `write`.
//!
//! Limitation: echo only, and each connection holds its 4 KiB buffer even
//! when idle. readyloop's `src/server/uring.rs` receives into a ring of
//! buffers shared by all connections instead ("provided buffers"), and adds
//! limits, timers, jobs and shutdown.

use io_uring::{IoUring, cqueue, opcode, squeue, types::Fd};
use slab::Slab;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

/// Slab keys count up from 0: the listener's accept takes the other end.
const ACCEPT: u64 = u64::MAX;

struct Conn {
    stream: TcpStream,
    /// The kernel's while an operation is in flight; ours in between.
    buf: Box<[u8; 4096]>,
    /// Bytes received and not yet sent back: `buf[sent..filled]`.
    filled: usize,
    sent: usize,
}

fn main() -> io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("9000")
        .parse()
        .expect("usage: 07_io_uring PORT");
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let mut ring = IoUring::new(256)?; // fails where the kernel refuses io_uring
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd())).build();
    push(&mut ring, accept.user_data(ACCEPT));
    let mut conns: Slab<Conn> = Slab::new();
    loop {
        // Submit everything queued, sleep until at least one completion.
        match ring.submit_and_wait(1) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            other => other?,
        };
        // Copy the completions out: handling them queues new submissions.
        let done: Vec<cqueue::Entry> = ring.completion().collect();
        for completion in done {
            let result = completion.result();
            if completion.user_data() == ACCEPT {
                if !cqueue::more(completion.flags()) {
                    // The kernel ended the multishot accept: arm it again.
                    let accept = opcode::AcceptMulti::new(Fd(listener.as_raw_fd())).build();
                    push(&mut ring, accept.user_data(ACCEPT));
                }
                if result < 0 {
                    eprintln!("accept: {}", io::Error::from_raw_os_error(-result));
                    continue;
                }
                // SAFETY: a successful accept completion is a new descriptor, ours.
                let stream = unsafe { TcpStream::from_raw_fd(result) };
                let entry = conns.vacant_entry();
                let key = entry.key();
                eprintln!("{:?}: connected as {key}", stream.peer_addr());
                let conn = entry.insert(Conn {
                    stream,
                    buf: Box::new([0; 4096]),
                    filled: 0,
                    sent: 0,
                });
                push(&mut ring, receive(conn, key));
                continue;
            }
            let key = completion.user_data() as usize;
            let conn = &mut conns[key];
            // One operation in flight per connection: which one just
            // completed follows from what is left to send.
            let sending = conn.sent < conn.filled;
            match (sending, result) {
                (_, ..0) | (false, 0) => {
                    // An error, or a receive of 0 bytes: the client closed.
                    // Nothing of this connection is in flight: drop it.
                    conns.remove(key);
                    eprintln!("{key}: closed");
                    continue;
                }
                (false, n) => conn.filled = n as usize, // received: echo it
                (true, n) => conn.sent += n as usize,   // sent (maybe only part)
            }
            if conn.sent < conn.filled {
                let rest = &conn.buf[conn.sent..conn.filled];
                let send = opcode::Send::new(
                    Fd(conn.stream.as_raw_fd()),
                    rest.as_ptr(),
                    rest.len() as u32,
                );
                push(&mut ring, send.build().user_data(key as u64));
            } else {
                (conn.filled, conn.sent) = (0, 0);
                push(&mut ring, receive(conn, key));
            }
        }
    }
}

/// A receive into the connection's whole buffer, for completion `key`.
fn receive(conn: &mut Conn, key: usize) -> squeue::Entry {
    let fd = Fd(conn.stream.as_raw_fd());
    let recv = opcode::Recv::new(fd, conn.buf.as_mut_ptr(), conn.buf.len() as u32);
    recv.build().user_data(key as u64)
}

/// Queues a submission, handing the queue to the kernel first if it is full.
fn push(ring: &mut IoUring, entry: squeue::Entry) {
    // SAFETY: every buffer an entry names is a `Conn`'s boxed buffer, which
    // is neither touched nor dropped until that entry's completion.
    while unsafe { ring.submission().push(&entry) }.is_err() {
        ring.submit().expect("submit");
    }
}

// The full version, with shared provided buffers, back-pressure, batched
// sends, timers, a thread pool woken through an eventfd and shutdown:
// src/server/uring.rs.
