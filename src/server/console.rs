//! The console: stdin as one more source in the event loop, as seed 002's
//! `select` watches `sys.stdin` beside its sockets. Type `stats`, `conns`,
//! `quit` (or `help`) and the loop answers between two events.
//!
//! The console never blocks the loop. Reading: the terminal stays in
//! blocking mode (we must not leave the user's shell non-blocking), so after
//! a readable event we ask the kernel how many bytes wait (`FIONREAD`) and
//! read exactly that. Writing: a terminal can stop taking output (Ctrl-S, a
//! full pipe), so answers go to a printer thread that may block instead.
//! When the loop is done, what was said is printed before it returns (up
//! to [`PRINT_GRACE`]): `quit`'s answer is not lost to the process's exit.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::Shutdown;
use super::connection::Conn;
use crate::stats::Stats;

/// What the loop should do after a console line.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// Print the counters.
    Stats,
    /// List the connections.
    Conns,
    /// Start a graceful shutdown.
    Quit,
    /// Print the commands (also for anything unknown).
    Help,
}

/// The console's partial line, and the way to its printer.
#[derive(Debug)]
pub(crate) struct Console {
    line: Vec<u8>,
    /// Stdin reached its end (and was deregistered).
    closed: bool,
    /// `None` once dropped: the printer then prints what is left and ends.
    printer: Option<mpsc::Sender<String>>,
    /// Says (by closing) that the printer printed everything.
    printed: mpsc::Receiver<()>,
    /// What the commands read and do.
    stats: Arc<Stats>,
    shutdown: Shutdown,
}

/// Standard input's file descriptor.
const STDIN: i32 = 0;

/// The help text.
const HELP: &str = "commands: stats, conns, quit";

/// How long a console being dropped waits for its printer: a terminal that
/// takes no output (Ctrl-S) must not hold the server's exit for good.
const PRINT_GRACE: Duration = Duration::from_secs(1);

impl Console {
    /// Registers stdin in the poll under `token`, starts the printer and
    /// prints the help line.
    pub(crate) fn start(
        registry: &Registry,
        token: Token,
        stats: &Arc<Stats>,
        shutdown: &Shutdown,
    ) -> io::Result<Console> {
        registry.register(&mut SourceFd(&STDIN), token, Interest::READABLE)?;
        let (printer, lines) = mpsc::channel::<String>();
        let (done, printed) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                for line in lines {
                    // Gone stdout (a closed pipe): nothing to tell anyone.
                    let _ = writeln!(io::stdout().lock(), "{line}");
                }
                drop(done);
            })?;
        let console = Console {
            line: Vec::new(),
            closed: false,
            printer: Some(printer),
            printed,
            stats: Arc::clone(stats),
            shutdown: shutdown.clone(),
        };
        console.say(format!("console: {HELP}"));
        Ok(console)
    }

    /// Prints `text` from the printer thread.
    fn say(&self, text: String) {
        if let Some(printer) = &self.printer {
            let _ = printer.send(text); // the printer ends only after the console
        }
    }

    /// Reads what stdin holds now and answers each complete command. At
    /// end of input, stdin leaves the poll.
    pub(crate) fn serve(&mut self, registry: &Registry, conns: &Slab<Conn>) {
        if self.closed {
            return;
        }
        for command in self.read_commands() {
            let text = match command {
                Command::Stats => self.stats.summary(),
                Command::Conns => list(conns),
                Command::Quit => {
                    self.shutdown.trigger();
                    format!("quitting: finishing {} connections", conns.len())
                }
                Command::Help => HELP.to_owned(),
            };
            self.say(text);
        }
        if self.closed {
            let _ = registry.deregister(&mut SourceFd(&STDIN));
        }
    }

    fn read_commands(&mut self) -> Vec<Command> {
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer we pass.
        if unsafe { libc::ioctl(STDIN, libc::FIONREAD, &mut waiting) } < 0 {
            waiting = 1; // not supported: one byte surely does not block
        }
        let mut buf = vec![0; usize::try_from(waiting).unwrap_or(1).max(1)];
        match io::stdin().lock().read(&mut buf) {
            Ok(0) => self.closed = true,
            Ok(n) => self.line.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("console: {e}: no longer reading stdin");
                self.closed = true;
            }
        }
        let mut commands = Vec::new();
        while let Some(end) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=end).collect();
            let word = String::from_utf8_lossy(&line).trim().to_ascii_lowercase();
            if !word.is_empty() {
                commands.push(parse(&word));
            }
        }
        commands
    }
}

impl Drop for Console {
    /// Lets the printer finish what it was given, for up to [`PRINT_GRACE`].
    fn drop(&mut self) {
        self.printer = None;
        // Closed (an error) once the printer ended; a timeout: it is stuck.
        let _ = self.printed.recv_timeout(PRINT_GRACE);
    }
}

/// The `conns` answer: one line per connection.
fn list(conns: &Slab<Conn>) -> String {
    let mut text = format!("{} connections", conns.len());
    for (_, conn) in conns {
        let _ = write!(text, "\n{} {conn:?}", conn.tag());
    }
    text
}

fn parse(word: &str) -> Command {
    match word {
        "stats" => Command::Stats,
        "conns" => Command::Conns,
        "quit" | "exit" => Command::Quit,
        _ => Command::Help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_become_commands() {
        assert_eq!(parse("stats"), Command::Stats);
        assert_eq!(parse("conns"), Command::Conns);
        assert_eq!(parse("exit"), Command::Quit);
        assert_eq!(parse("what"), Command::Help);
    }
}
