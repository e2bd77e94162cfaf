//! Rung 2: one thread per client.
//!
//! Teaches: the simplest way to serve many clients at once. The blocking code
//! of rung 1 is unchanged; each accepted socket just gets its own
//! `std::thread`. This is Python's `socketserver.ThreadingTCPServer` and the
//! `server_thread1.py` of the seeds.
//!
//! Run:  `cargo run --example 02_thread_per_client -- 9000`
//!
//! Try:  two or three `nc 127.0.0.1 9000` side by side: each is echoed at once.
//!       Or the interactive client: `cargo run --example client -- 127.0.0.1:9000`.
//!       Watch the threads: `ps -o nlwp= -p $(pgrep -f 02_thread)`.
//!
//! Limitation: a thread per connection costs a stack (8 MiB reserved, some of
//! it touched) and a scheduler entry, even for a client that says nothing for
//! hours. Ten thousand idle clients are ten thousand threads. Next rung,
//! `03_select.rs`, serves every client from ONE thread by asking the kernel
//! which sockets are ready.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

fn main() -> io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .map_or(Ok(9000), |p| p.parse())
        .expect("usage: 02_thread_per_client PORT");
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            // e.g. EMFILE: out of file descriptors. Say so and go on; the
            // client stays in the backlog and is retried on the next accept.
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        // The only new line compared with rung 1: `serve` runs on its own
        // thread, so `accept` comes round again immediately.
        thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string());
            eprintln!("{peer}: connected");
            match serve(stream) {
                Ok(()) => eprintln!("{peer}: closed"),
                Err(e) => eprintln!("{peer}: error: {e}"),
            }
        });
    }
    Ok(())
}

/// The same blocking echo as rung 1; it only blocks its own thread now.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}
