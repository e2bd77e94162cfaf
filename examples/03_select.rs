//! Rung 3: one thread, many clients, with `select(2)`.
//!
//! Teaches: readiness. Instead of blocking in `read` on one socket, block in
//! `select` on ALL of them; the kernel says which can make progress, and the
//! calls after that never block. This is the seed's Python loop
//! `select.select(inputs, [], inputs, 1)` in the C API it wraps: `fd_set`
//! bitmaps built with FD_ZERO/FD_SET/FD_CLR and tested with FD_ISSET.
//!
//! Run:  `cargo run --example 03_select -- 9000`
//!       `cargo run --example 03_select -- 9000 --fd-floor 1022` (see below)
//!
//! Try:  several `nc 127.0.0.1 9000` at once: all echoed by one thread
//!       (`ps -o nlwp= -p $(pgrep -f 03_select)` prints 1).
//!       With `--fd-floor 1022` each accepted socket is renumbered to the
//!       lowest free fd >= 1022, as if 1022 files were open already: two `nc`
//!       are served, the third is refused with a log line.
//!
//! Limitation: an `fd_set` is a fixed bitmap of FD_SETSIZE = 1024 bits, so
//! select cannot watch fd 1024 or above, whatever `ulimit -n` says. And every
//! call copies and scans the bitmaps up to the highest fd: O(n) even when one
//! client is active. Next rung, `04_poll.rs`, removes the cap.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

/// A client: its socket and the bytes to echo that it has not taken yet.
/// Invariant: `out` is non-empty exactly when the fd is in `outputs`.
type Client = (TcpStream, Vec<u8>);

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args
        .get(1)
        .map_or("9000", |s| s)
        .parse()
        .expect("usage: PORT [--fd-floor N]");
    let floor = args
        .iter()
        .position(|a| a == "--fd-floor")
        .map(|i| args[i + 1].parse().unwrap());

    let listener = TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?; // sk1.setblocking(0)
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    let lfd = listener.as_raw_fd();

    // The watch lists: `inputs = [sk1,]` of the seed, plus `outputs`, the
    // clients with pending output. FD_ZERO clears a bitmap, FD_SET adds a bit.
    let (mut inputs, mut outputs) = (empty_set(), empty_set());
    unsafe { libc::FD_SET(lfd, &mut inputs) };
    let mut clients: BTreeMap<RawFd, Client> = BTreeMap::new();

    loop {
        // select overwrites its arguments with the ready subset: pass copies.
        // nfds is "highest fd + 1": the kernel scans bits 0..nfds.
        let (mut readable, mut writable) = (inputs, outputs);
        let nfds = clients.keys().next_back().map_or(lfd, |&fd| fd.max(lfd)) + 1;
        let (no_errorfds, no_timeout) = (std::ptr::null_mut(), std::ptr::null_mut());
        let ready =
            unsafe { libc::select(nfds, &mut readable, &mut writable, no_errorfds, no_timeout) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue; // a signal arrived; wait again
            }
            return Err(e);
        }

        // `if sk1 == r:` a client is waiting to be accepted.
        if unsafe { libc::FD_ISSET(lfd, &readable) } {
            match listener
                .accept()
                .and_then(|(s, peer)| Ok((move_fd_up(s, floor)?, peer)))
            {
                Ok((stream, peer)) => {
                    let fd = stream.as_raw_fd();
                    // FD_SET(fd >= FD_SETSIZE) writes past the end of the
                    // bitmap: in C, silent memory corruption; in Rust's libc,
                    // a panic that drops every client. So refuse, and say so.
                    if fd as usize >= libc::FD_SETSIZE {
                        eprintln!(
                            "{peer}: refused: fd {fd} >= FD_SETSIZE (1024), select cannot watch it"
                        );
                        continue; // dropping `stream` closes the connection
                    }
                    eprintln!("{peer}: connected as fd {fd}");
                    stream.set_nonblocking(true)?; // request.setblocking(0)
                    unsafe { libc::FD_SET(fd, &mut inputs) }; // inputs.append(request)
                    clients.insert(fd, (stream, Vec::new()));
                }
                // The client left before we got to it: nothing to do.
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => eprintln!("accept: {e}"),
            }
        }

        // `for r in readable_list:` select returned a count, not a list, so
        // we test every client's bit: another O(n) pass.
        let fds: Vec<RawFd> = clients.keys().copied().collect();
        for fd in fds {
            let client = clients.get_mut(&fd).expect("fds were just listed");
            let can_read = unsafe { libc::FD_ISSET(fd, &readable) };
            if !pump(client, can_read) {
                unsafe { libc::FD_CLR(fd, &mut inputs) }; // inputs.remove(r)
                unsafe { libc::FD_CLR(fd, &mut outputs) };
                clients.remove(&fd); // dropping the stream closes the socket
                eprintln!("fd {fd}: closed");
            } else if client.1.is_empty() {
                // Nothing to send: do NOT watch for writability. A socket with
                // room in its buffer is always writable, so select would
                // return at once, every time: a busy loop at 100% CPU.
                unsafe { libc::FD_CLR(fd, &mut outputs) };
            } else {
                unsafe { libc::FD_SET(fd, &mut outputs) };
            }
        }
    }
}

fn empty_set() -> libc::fd_set {
    let mut set = std::mem::MaybeUninit::uninit();
    unsafe { libc::FD_ZERO(set.as_mut_ptr()) };
    unsafe { set.assume_init() }
}

/// One `read` if readable (select is level-triggered: if bytes remain, the
/// next select reports the fd again), then echo straight away: write as much
/// as the socket takes. A partial write is normal; the rest waits in `out`
/// for the fd to show up in `writable`. Returns false when the client is gone.
fn pump((stream, out): &mut Client, can_read: bool) -> bool {
    let mut buf = [0u8; 4096];
    if can_read {
        match stream.read(&mut buf) {
            Ok(0) => return false, // `if received: ... else: inputs.remove(r)`
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

/// `--fd-floor N`: renumber the socket to the lowest free fd >= N with
/// `fcntl(F_DUPFD)`, to show the FD_SETSIZE refusal without a thousand clients.
fn move_fd_up(stream: TcpStream, floor: Option<RawFd>) -> io::Result<TcpStream> {
    let Some(floor) = floor else {
        return Ok(stream);
    };
    let new = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(stream); // closes the old number; the connection lives on as `new`
    Ok(unsafe { TcpStream::from_raw_fd(new) })
}
