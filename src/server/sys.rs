//! The two system calls every request costs the event loop, `recv` and
//! `send` on a connection's socket, made directly instead of through
//! glibc's wrappers of the same name. Same calls, same flags, same results
//! as `Read::read` and `Write::write` on a `mio::net::TcpStream`.
//!
//! Why: glibc's `recv` and `send` are thread-cancellation points. In a
//! process with more than one thread (the offload pool once a job started
//! it, `--loops N`, a store's flusher) each call brackets the system call
//! with two atomic compare-and-swaps on the calling thread's cancellation
//! state, in case another thread cancels it meanwhile. readyloop never cancels a thread,
//! so that is pure cost, and an echo request paid it twice: 62 of its 832
//! user-space instructions and four locked operations. Calling `syscall(2)`,
//! which is no cancellation point, from here (skipping std's and mio's
//! layers too) took the request to 699 (`benches/callgrind.sh`, echo at 50
//! connections). A single-threaded process, like tokio's current-thread
//! echo, takes glibc's fast path and never pays it.
//!
//! The kernel makes the same distinction: in a process whose threads share
//! one descriptor table, each call on a socket takes and drops a reference
//! on its file (`fdget`/`fput`, two more atomics), where a single-threaded
//! process borrows it. So the single event loop stays one thread until a
//! job starts the pool (no signal thread, no flusher without todo or kv):
//! `perf record -e cpu-clock` under echo at 50 connections put `fput` at
//! 44-52 ns a request with the seven threads it had, 11-20 ns with one
//! (tokio's current-thread echo: 11-15), and `fdget` at 77-92 ns against
//! 73-84 (tokio: 50-78).
//!
//! What this file may not do: anything but these two calls.

use std::io;
use std::os::fd::AsRawFd;

/// Reads into `buf` (`recv(fd, buf, len, 0)`): what `Read::read` does.
pub(crate) fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call,
    // and the borrowed socket keeps its descriptor open; no address is
    // asked for (both address pointers null).
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            socket.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    result(n)
}

/// Writes from `bytes` (`send(fd, bytes, len, MSG_NOSIGNAL)`): what
/// `Write::write` does, a closed peer an `EPIPE` error, not a `SIGPIPE`.
pub(crate) fn send(socket: &impl AsRawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is readable for `bytes.len()` bytes for the whole
    // call, and the borrowed socket keeps its descriptor open; no address
    // is given (null, length 0: the connected peer).
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            socket.as_raw_fd(),
            bytes.as_ptr(),
            bytes.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    };
    result(n)
}

/// A system call's return: a byte count, or -1 and `errno`.
fn result(n: libc::c_long) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sends_and_receives_like_read_and_write() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(send(&client, b"hello").unwrap(), 5);
        let mut buf = [0; 16];
        assert_eq!(recv(&server, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        server.set_nonblocking(true).unwrap();
        let err = recv(&server, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "errno comes back");
        drop(client);
        assert_eq!(recv(&server, &mut buf).unwrap(), 0, "EOF");
    }
}
