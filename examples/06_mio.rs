//! Rung 6: the same server on mio + slab, in as few lines as stay correct.
//!
//! Teaches: mio is epoll (kqueue, IOCP) behind a safe, portable API, and it is
//! always edge-triggered. So: drain reads and accepts until `WouldBlock`,
//! expect partial writes, register READABLE|WRITABLE once and simply try to
//! write whenever there is output (a `WouldBlock` means a WRITABLE event will
//! come), keep connections in a `Slab` whose key IS the `Token`, keep the
//! listener's token outside the slab's range, and remove closed connections
//! after the batch of events, not in the middle of it.
//!
//! Run:  `cargo run --example 06_mio -- 9000`
//!
//! Try:  several `nc 127.0.0.1 9000` at once; `cargo run --example client --
//!       127.0.0.1:9000`; paste a large text and get all of it back.
//!
//! Limitation: echo only, no limits (a client that never reads grows `out`
//! forever), no timeouts, no shutdown, and a slow handler would stall every
//! client. The full version is readyloop's `src/server/evloop.rs`.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, ErrorKind, Read, Write};

/// Slab keys count up from 0, so the listener takes the other end.
const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet echoed; partial writes leave a tail here.
    out: Vec<u8>,
}

fn main() -> io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("9000")
        .parse()
        .expect("usage: 06_mio PORT");
    let mut listener = TcpListener::bind(([127, 0, 0, 1], port).into())?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Slab<Conn> = Slab::new();
    let mut closed: Vec<Token> = Vec::new();

    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events {
            if event.token() == LISTENER {
                // Edge-triggered: accept until WouldBlock, or the connections
                // still queued will not be announced again.
                loop {
                    match listener.accept() {
                        Ok((mut stream, peer)) => {
                            let entry = conns.vacant_entry();
                            let token = Token(entry.key()); // the token IS the slab key
                            poll.registry().register(
                                &mut stream,
                                token,
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            eprintln!("{peer}: connected as {token:?}");
                            entry.insert(Conn {
                                stream,
                                out: Vec::new(),
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => {
                            eprintln!("accept: {e}");
                            break;
                        }
                    }
                }
                continue;
            }
            // Events are hints: the token may be closed earlier in this batch.
            let Some(conn) = conns.get_mut(event.token().0) else {
                continue;
            };
            if !pump(conn) {
                closed.push(event.token());
            }
        }
        // Deferred removal: during the batch a removed key could be reused by
        // an accept and receive a later event meant for the old connection.
        for token in closed.drain(..) {
            if let Some(mut conn) = conns.try_remove(token.0) {
                poll.registry().deregister(&mut conn.stream)?;
                eprintln!("{token:?}: closed");
            }
        }
    }
}

/// Reads until WouldBlock, then writes until done or WouldBlock. Called for
/// any event: trying costs one syscall, and `WouldBlock` is what tells us to
/// wait for the next edge. Returns false when the connection should close.
fn pump(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => conn.out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while !conn.out.is_empty() {
        match conn.stream.write(&conn.out) {
            Ok(n) => drop(conn.out.drain(..n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

// The full version, with limits, back-pressure, remembered readiness,
// timers, a thread pool with (token, generation) checks and shutdown:
// src/server/evloop.rs.
