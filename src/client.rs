//! `readyloop client` (and `examples/client.rs`): the interactive line
//! client of seeds 000 and 003 (`client_thread1.py`), for any line service.
//!
//! It prints the seed's banner, then alternates as the seed does: prompt
//! ` -> `, read a line, send it, wait for the reply, print it, prompt again,
//! so a reply always comes before the next prompt. What the server sends
//! on connect (menu's greeting) is printed before the first prompt. `quit`
//! sends `--quit--` (as the seed does: hello answers `Goodbye` and closes),
//! prints the answer and leaves; end of input leaves too. When the server
//! closes the connection (menu after `exit`), the client says so and exits.
//!
//! Unlike the seed it sends each line with its `\n`, since readyloop frames
//! by lines. The server's bytes are printed with control characters escaped
//! (`\u{1b}` for ESC), so a server cannot move the cursor or forge lines on
//! the user's terminal. It only talks to the one address it is given.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// The seed's banner, printed once connected.
pub const BANNER: &str = "Please enter 'quit' to exit";
/// The seed's prompt.
pub const PROMPT: &str = " -> ";
/// What `quit` sends (the seed's `soc.send(b'--quit--')`).
pub const QUIT_MESSAGE: &str = "--quit--";
/// Said when the server closes the connection.
pub const SERVER_CLOSED: &str = "the server closed the connection";

/// How long to wait for the first byte of a reply: the longest `slow`
/// job (`sleep 10000`) and a little more. A line that gets no reply in
/// that time (say, part of an upload's body) gets a note, and the prompt.
pub const REPLY_WAIT: Duration = Duration::from_secs(11);
/// How long to wait on connect for a greeting (menu sends one; most
/// services send nothing, so this is what starting costs).
pub const GREETING_WAIT: Duration = Duration::from_millis(300);
/// Once a reply has started, how long a pause means it is complete: a
/// reply of several lines, or one sent in several writes, is printed whole.
pub const MORE_WAIT: Duration = Duration::from_millis(50);

/// Talks to `addr` on stdin and stdout until the user types `quit`, stdin
/// ends, or the server closes.
pub fn run(addr: &str) -> io::Result<()> {
    let stream = TcpStream::connect(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot connect to {addr}: {e} (is `readyloop serve` running?)"),
        )
    })?;
    let stdin = io::stdin();
    dialogue(stream, stdin.lock(), io::stdout().lock())
}

/// The dialogue itself, over any input and output: unit tests type into
/// it from a byte string and read the "screen" from a `Vec`; the tmux test
/// drives the same code through the binary on a real terminal.
fn dialogue(mut stream: TcpStream, mut input: impl BufRead, mut out: impl Write) -> io::Result<()> {
    writeln!(out, "{BANNER}")?;
    if show(&mut out, read_reply(&mut stream, GREETING_WAIT)?)? {
        return Ok(());
    }
    let mut line = String::new();
    loop {
        write!(out, "{PROMPT}")?;
        out.flush()?;
        line.clear();
        if input.read_line(&mut line)? == 0 {
            // End of input: half-close, and print what the server still says.
            let _ = stream.shutdown(Shutdown::Write);
            show(&mut out, read_reply(&mut stream, GREETING_WAIT)?)?;
            return Ok(());
        }
        let typed = line.trim_end_matches(['\r', '\n']);
        let quitting = typed.trim() == "quit";
        let message = if quitting { QUIT_MESSAGE } else { typed };
        if stream.write_all(format!("{message}\n").as_bytes()).is_err() {
            writeln!(out, "{SERVER_CLOSED}")?;
            return Ok(());
        }
        let wait = if quitting { GREETING_WAIT } else { REPLY_WAIT };
        let reply = read_reply(&mut stream, wait)?;
        let silent = reply.bytes.is_empty() && !reply.closed;
        if show(&mut out, reply)? || quitting {
            return Ok(());
        }
        if silent {
            writeln!(out, "(no reply within {} s)", wait.as_secs())?;
        }
    }
}

/// What one wait for a reply brought.
#[derive(Debug, Default)]
struct Reply {
    bytes: Vec<u8>,
    /// The server closed the connection (EOF or reset).
    closed: bool,
}

/// Waits up to `first` for the reply to start, then reads until the
/// server pauses for [`MORE_WAIT`] or closes.
fn read_reply(stream: &mut TcpStream, first: Duration) -> io::Result<Reply> {
    let mut reply = Reply::default();
    let mut buf = [0u8; 4096];
    stream.set_read_timeout(Some(first))?;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                reply.closed = true;
                return Ok(reply);
            }
            Ok(n) => {
                reply.bytes.extend_from_slice(&buf[..n]);
                stream.set_read_timeout(Some(MORE_WAIT))?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(reply);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                reply.closed = true;
                return Ok(reply);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Prints a reply (ending it with a newline if it had none); says so if
/// the server closed. Returns true when it did.
fn show(out: &mut impl Write, reply: Reply) -> io::Result<bool> {
    if !reply.bytes.is_empty() {
        let text = printable(&reply.bytes);
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
    }
    if reply.closed {
        writeln!(out, "{SERVER_CLOSED}")?;
    }
    out.flush()?;
    Ok(reply.closed)
}

/// The server's bytes as text for a terminal: UTF-8 (invalid bytes become
/// U+FFFD), `\r\n` as `\n`, and every other control character escaped.
fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;
    use std::net::{SocketAddr, TcpListener};
    use std::thread::{self, JoinHandle};

    /// A server for one connection on a loopback port: sends `greeting`,
    /// then answers each line with `answer(line)` in two writes 10 ms
    /// apart (a reply split on the wire); `None` closes without a reply.
    fn serve_one(
        greeting: &'static str,
        answer: fn(&str) -> Option<String>,
    ) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream.write_all(greeting.as_bytes()).unwrap();
            let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
            while let Some(Ok(line)) = lines.next() {
                let Some(reply) = answer(&line) else { return };
                let (head, tail) = reply.split_at(reply.len() / 2);
                stream.write_all(head.as_bytes()).unwrap();
                thread::sleep(Duration::from_millis(10));
                stream.write_all(tail.as_bytes()).unwrap();
            }
        });
        (addr, server)
    }

    fn talk(addr: SocketAddr, typed: &str) -> String {
        let mut out = Vec::new();
        let stream = TcpStream::connect(addr).unwrap();
        dialogue(stream, typed.as_bytes(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_greeting_and_each_reply_come_before_the_next_prompt() {
        let (addr, server) = serve_one("welcome\n", |line| {
            Some(match line {
                "--quit--" => "Goodbye\n".into(),
                _ => format!("Hello {}\n", line.to_uppercase()),
            })
        });
        let screen = talk(addr, "zack\nworld!\nquit\nnot sent\n");
        assert_eq!(
            screen,
            "Please enter 'quit' to exit\nwelcome\n -> Hello ZACK\n -> Hello WORLD!\n -> Goodbye\n"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_server_that_closes_ends_the_client_with_a_note() {
        let (addr, server) = serve_one("menu\n", |line| (line != "exit").then(|| "again\n".into()));
        let screen = talk(addr, "1\nexit\n0\n");
        assert_eq!(
            screen,
            format!("{BANNER}\nmenu\n -> again\n -> {SERVER_CLOSED}\n")
        );
        server.join().unwrap();
    }

    #[test]
    fn end_of_input_half_closes_and_prints_the_rest() {
        let (addr, server) = serve_one("", |line| Some(format!("{line}\n")));
        let screen = talk(addr, "one\n");
        assert_eq!(screen, format!("{BANNER}\n -> one\n -> {SERVER_CLOSED}\n"));
        server.join().unwrap();
    }

    #[test]
    fn control_characters_from_the_server_are_escaped() {
        assert_eq!(printable(b"ok\r\nnext\n"), "ok\nnext\n");
        assert_eq!(
            printable(b"\x1b[2K\rERROR fake\n"),
            "\\u{1b}[2K\\rERROR fake\n"
        );
        assert_eq!(printable("欢迎\t\u{7f}".as_bytes()), "欢迎\t\\u{7f}");
        assert_eq!(printable(b"\xffx"), "\u{fffd}x");
    }
}
