//! The interactive line client of the seeds (`client_thread1.py`).
//!
//! Connects, prompts ` -> `, sends each line you type, prints the reply.
//! `quit` (or end of input) sends `--quit--` and leaves, as the seed does.
//!
//! Run:  `cargo run --example 02_thread_per_client -- 9000` in one terminal,
//!       `cargo run --example client -- 127.0.0.1:9000` in two others.
//! Try:  type in both clients at once against each rung; against
//!       `01_blocking` the second client gets no reply until the first quits.
//!       Piped: `printf 'hello\nquit\n' | cargo run --example client -- 127.0.0.1:9000`

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let stream = TcpStream::connect(&addr)
        .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
    let mut replies = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    println!("Please enter 'quit' to exit");

    let mut stdin = io::stdin().lock();
    let mut line = String::new();
    let mut reply = String::new();
    loop {
        print!(" -> ");
        io::stdout().flush()?;
        line.clear();
        if stdin.read_line(&mut line)? == 0 || line.trim_end() == "quit" {
            break;
        }
        // Lines go out with their '\n': readyloop's services are line based.
        stream.write_all(line.trim_end_matches(['\r', '\n']).as_bytes())?;
        stream.write_all(b"\n")?;
        reply.clear();
        if replies.read_line(&mut reply)? == 0 {
            println!("\nserver closed the connection");
            return Ok(());
        }
        println!("{}", reply.trim_end_matches(['\r', '\n']));
    }
    stream.write_all(b"--quit--\n")?;
    Ok(())
}
