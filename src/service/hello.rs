//! `hello` (seeds 000 and 003, `server_thread1.py`): each line back as
//! `Hello <LINE UPPER-CASED>`.
//!
//! The seed server `rstrip()`s the line, computes `"Hello " + line.upper()`,
//! prints it and answers a bare `-`; we send the processed result itself (so
//! the client sees it) and log it at debug (`-v`), escaped: it is the
//! client's text, and a raw ESC or CR in it could forge a line on the
//! operator's terminal. Like the seed, the quit check runs
//! on the *processed* text: a line whose upper-cased form contains `--QUIT--`
//! (so `--quit--` in any case) gets [`GOODBYE`] and the connection closes.
//!
//! Framing, length limits and UTF-8 checks are [`Lines`]'s job, not this
//! file's. No I/O here: the log line is the only side effect.

use std::sync::Arc;

use super::framing::{LineHandler, Lines};
use super::{Cx, Factory, FnFactory, Next, Shared};

/// The reply to a quit line, sent just before the connection closes.
pub const GOODBYE: &[u8] = b"Goodbye\n";

/// What the upper-cased line must contain for the client to be leaving
/// (the seed's `"--QUIT--" in client_input`).
const QUIT: &[u8] = b"--QUIT--";

/// The greeting line handler. Stateless.
#[derive(Debug, Default)]
pub struct Hello;

impl LineHandler for Hello {
    fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next {
        // Build the processed text straight into `out`: no allocation per line,
        // and if it turns out to be a quit line we cut it off again.
        let start = cx.out.len();
        cx.out.extend_from_slice(b"Hello ");
        for c in line.trim_end().chars() {
            // `to_uppercase` yields more than one char for some letters (ß → SS).
            for upper in c.to_uppercase() {
                let mut utf8 = [0; 4];
                cx.out
                    .extend_from_slice(upper.encode_utf8(&mut utf8).as_bytes());
            }
        }
        let processed = cx.out.get(start..).unwrap_or_default();
        if processed.windows(QUIT.len()).any(|w| w == QUIT) {
            cx.out.truncate(start);
            cx.out.extend_from_slice(GOODBYE);
            log::debug!("peer={} client is requesting to quit", cx.peer);
            return Next::Last;
        }
        // Valid UTF-8 by construction (built from `char`s); lossy costs nothing then.
        log::debug!(
            "peer={} processed: {:?}",
            cx.peer,
            String::from_utf8_lossy(processed)
        );
        cx.out.push(b'\n');
        Next::Answered
    }
}

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    let (max_line, framing) = (shared.limits.max_line, shared.limits.framing);
    FnFactory::new("hello", move || {
        Box::new(Lines::framed(Hello, max_line, framing))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;
    use crate::service::testing::{assert_dialogue, run};

    fn hello() -> Box<dyn Service> {
        Box::new(Lines::new(Hello, 32))
    }

    #[test]
    fn greets_each_line_upper_cased_and_right_stripped() {
        assert_dialogue(
            hello,
            "Zack\n  world! \t\r\nstra\u{df}e\n\n".as_bytes(),
            "Hello ZACK\nHello   WORLD!\nHello STRASSE\nHello \n".as_bytes(),
        );
    }

    #[test]
    fn quit_in_any_case_says_goodbye_and_closes() {
        for quit in ["--quit--", "--QuIt--", "x --quit-- y"] {
            let input = format!("Zack\n{quit}\nnot served\n");
            assert_dialogue(hello, input.as_bytes(), b"Hello ZACK\nGoodbye\n");
            let outcome = run(hello(), &[input.as_bytes()]);
            assert!(outcome.closed, "{quit}");
        }
    }

    #[test]
    fn an_unterminated_last_line_is_answered_at_eof() {
        assert_dialogue(hello, b"a\nb", b"Hello A\nHello B\n");
    }

    #[test]
    fn bad_input_gets_an_error_reply() {
        assert_dialogue(
            hello,
            b"\xff\nok\n",
            b"error: input is not valid UTF-8\nHello OK\n",
        );
        let outcome = run(hello(), &[&[b'a'; 40]]);
        assert_eq!(
            outcome.out,
            b"error: line too long (the limit is 32 bytes)\n"
        );
        assert!(outcome.closed);
    }
}
