//! The seeds' interactive client (seeds 000-003): prompt ` -> `, send each
//! line, print what comes back; `quit` sends `--quit--` (as seed 003 does)
//! and leaves. Works with every line service.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

/// Talks to `addr` until the user types `quit`, stdin ends, or the server closes.
pub fn run(addr: &str) -> io::Result<()> {
    let stream = TcpStream::connect(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot connect to {addr}: {e} (is `readyloop serve` running?)"),
        )
    })?;
    let mut reader = stream.try_clone()?;
    // Replies are printed as they arrive, so greetings and late replies show too.
    let printer = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdout = io::stdout();
        while let Ok(n @ 1..) = reader.read(&mut buf) {
            let _ = stdout.write_all(&buf[..n]);
            let _ = stdout.flush();
        }
    });
    let mut writer = stream;
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!(" -> ");
        io::stdout().flush()?;
        let Some(line) = lines.next().transpose()? else {
            break;
        };
        let message = if line.trim() == "quit" {
            "--quit--"
        } else {
            line.as_str()
        };
        if writer.write_all(format!("{message}\n").as_bytes()).is_err() {
            break; // the server closed
        }
        if message == "--quit--" {
            break;
        }
    }
    // Half-close: the server sees EOF, answers what it has, then closes.
    let _ = writer.shutdown(Shutdown::Write);
    let _ = printer.join();
    Ok(())
}
