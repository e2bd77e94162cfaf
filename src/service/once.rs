//! `once` (seed 002's first program): read one message, answer a fixed
//! text, close.
//!
//! The seed's server accepts, does one `conn.recv(1024)`, prints it, sends
//! `不要回答,不要回答,不要回答` and closes: one request per connection,
//! the simplest server there is, and the one the seed starts from. Here the
//! message is one line, or with `--framing read` what arrived together as
//! the seed's `recv` has it (framed by [`Lines`], so the line limit and the
//! UTF-8 check apply as for every line service, and an unterminated last
//! message is answered at EOF); the answer is [`ANSWER`], the one request
//! of the connection ([`Next::Last`]); whatever the client sends after its
//! first message is never read. A client that sends nothing gets nothing.
//!
//! The message is logged at debug, escaped (it is the client's text). No
//! I/O here.

use std::sync::Arc;

use super::framing::{LineHandler, Lines};
use super::{Cx, Factory, FnFactory, Next, Shared};

/// The seed's fixed reply ("don't answer" three times), with a `\n` so a
/// terminal client shows it on a line of its own.
pub const ANSWER: &str = "不要回答,不要回答,不要回答\n";

/// The one-message line handler. Stateless: the connection ends after its
/// first line.
#[derive(Debug, Default)]
pub struct Once;

impl LineHandler for Once {
    fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next {
        log::debug!("peer={} said {line:?}", cx.peer);
        cx.out.extend_from_slice(ANSWER.as_bytes());
        Next::Last
    }
}

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    let (max_line, framing) = (shared.limits.max_line, shared.limits.framing);
    FnFactory::new("once", move || {
        Box::new(Lines::framed(Once, max_line, framing))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;
    use crate::service::framing::Framing;
    use crate::service::testing::{assert_dialogue, run};

    fn once() -> Box<dyn Service> {
        Box::new(Lines::new(Once, 32))
    }

    #[test]
    fn one_message_gets_the_answer_and_the_connection_closes() {
        assert_dialogue(once, "请求占领地球\n".as_bytes(), ANSWER.as_bytes());
        let outcome = run(once().as_mut(), &[b"first\r\nsecond\nthird\n"]);
        assert_eq!(outcome.out, ANSWER.as_bytes());
        assert!(outcome.closed, "closed after the first message");
        assert_eq!(outcome.answered, 1, "one request, counted by the Dialogue");
    }

    #[test]
    fn under_read_framing_one_read_without_newline_is_the_message() {
        let seed_client = Lines::framed(Once, 32, Framing::Read);
        let outcome = run(seed_client, &["请求占领地球".as_bytes(), b"again"]);
        assert_eq!(outcome.out, ANSWER.as_bytes());
        assert!(outcome.closed, "closed after the first read");
        assert_eq!(outcome.answered, 1);
    }

    #[test]
    fn an_unterminated_message_is_answered_at_eof_and_nothing_gets_nothing() {
        assert_dialogue(once, b"no newline", ANSWER.as_bytes());
        assert_dialogue(once, b"", b"");
    }

    #[test]
    fn bad_input_gets_an_error_reply() {
        assert_dialogue(
            once,
            b"\xff\nok\n",
            [&b"error: input is not valid UTF-8\n"[..], ANSWER.as_bytes()]
                .concat()
                .as_slice(),
        );
        let outcome = run(once().as_mut(), &[&[b'a'; 40]]);
        assert_eq!(
            outcome.out,
            b"error: line too long (the limit is 32 bytes)\n"
        );
        assert!(outcome.closed);
    }
}
