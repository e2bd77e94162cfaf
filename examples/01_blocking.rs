//! Rung 1: a blocking echo server that serves one client at a time.
//!
//! Teaches: the socket calls every later rung still makes (`bind`, `listen`,
//! `accept`, `read`, `write`), with no concurrency at all. This is Python's
//! `socketserver.TCPServer` and the first server of the seeds.
//!
//! Run:  `cargo run --example 01_blocking -- 9000`   (port 0 picks a free port)
//!
//! Try:  `nc 127.0.0.1 9000` in one terminal and type; every line comes back.
//!       Then `nc 127.0.0.1 9000` in a second terminal and type there: nothing
//!       comes back. The kernel completed the second handshake (the listen
//!       backlog), but this process is stuck in `read` on the first client.
//!       Leave the first `nc` (Ctrl-D) and the second one's lines arrive at once.
//!
//! Limitation: one slow or idle client blocks everyone else. Next rung,
//! `02_thread_per_client.rs`, gives each client its own thread.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .map_or(Ok(9000), |p| p.parse())
        .expect("usage: 01_blocking PORT");
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    // Exactly one line on stdout, flushed, so tests and scripts can read the port.
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    // `incoming()` is `accept()` in a loop. The next client is not accepted
    // until `serve` returns, so it waits in the kernel's backlog.
    for stream in listener.incoming() {
        let stream = stream?;
        let peer = stream.peer_addr()?;
        eprintln!("{peer}: connected");
        match serve(stream) {
            Ok(()) => eprintln!("{peer}: closed"),
            // One client's error ends that client, never the server.
            Err(e) => eprintln!("{peer}: error: {e}"),
        }
    }
    Ok(())
}

/// Echoes until the client closes its side. `read` blocks the whole process.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(()); // end of stream: the client is gone
        }
        // `write_all` loops over partial writes; blocking makes that easy.
        stream.write_all(&buf[..n])?;
    }
}
