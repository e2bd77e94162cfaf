//! The console: stdin as one more source in the event loop, as seed 002's
//! `select` watches `sys.stdin` beside its sockets. Type `stats`, `conns`,
//! `quit` (or `help`) and the loop answers on stdout between two events.
//!
//! Reading never blocks the loop: the terminal stays in blocking mode (we
//! must not leave the user's shell non-blocking), so after a readable event
//! we ask the kernel how many bytes wait (`FIONREAD`) and read exactly that.

use std::io::{self, Read};

/// What the loop should do after a console line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Print the counters.
    Stats,
    /// List the connections.
    Conns,
    /// Start a graceful shutdown.
    Quit,
    /// Print the commands (also for anything unknown).
    Help,
}

/// The console's partial line.
#[derive(Debug, Default)]
pub(crate) struct Console {
    line: Vec<u8>,
    /// Stdin reached its end: the loop deregisters it.
    pub(crate) closed: bool,
}

/// The help text.
pub(crate) const HELP: &str = "commands: stats, conns, quit";

impl Console {
    /// Reads what stdin holds now; returns the complete commands in it.
    pub(crate) fn read(&mut self) -> Vec<Command> {
        let mut waiting: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer we pass.
        if unsafe { libc::ioctl(0, libc::FIONREAD, &mut waiting) } < 0 {
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
