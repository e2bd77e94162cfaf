//! `menu` (seed 002, the "10086" phone-menu robot): a greeting on connect,
//! then one reply line per input line.
//!
//! The dialogue is the seed's, texts unchanged (UTF-8):
//! - on connect: [`GREETING`];
//! - `exit`: the session ends; like the seed, nothing is sent, the
//!   connection just closes;
//! - `0`: [`OPERATOR`];
//! - anything else: [`RETRY`].
//!
//! The seed compared whole `recv()` results; we compare whole lines (framed
//! by [`Lines`], which strips the `\n` and a trailing `\r`), so `exit` and
//! `0` must be the entire line. No I/O and no state beyond that.

use std::sync::Arc;

use super::framing::{LineHandler, Lines};
use super::{Cx, Factory, FnFactory, Next, Shared};

/// Sent once, right after the connection is accepted.
pub const GREETING: &str = "欢迎致电 10086,请输入1xxx,0转人工服务.\n";
/// The reply to `0` ("transferring to an operator").
pub const OPERATOR: &str = "通过可能会被录音.balabala一大推\n";
/// The reply to anything that is neither `0` nor `exit`.
pub const RETRY: &str = "请重新输入.\n";

/// The menu line handler. Stateless.
#[derive(Debug, Default)]
pub struct Menu;

impl LineHandler for Menu {
    fn open(&mut self, cx: &mut Cx<'_>) -> Next {
        cx.out.extend_from_slice(GREETING.as_bytes());
        Next::Answered
    }

    fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next {
        let reply = match line {
            "exit" => return Next::Close,
            "0" => OPERATOR,
            _ => RETRY,
        };
        cx.out.extend_from_slice(reply.as_bytes());
        Next::Answered
    }
}

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    let (max_line, framing) = (shared.limits.max_line, shared.limits.framing);
    FnFactory::new("menu", move || {
        Box::new(Lines::framed(Menu, max_line, framing))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;
    use crate::service::testing::{assert_dialogue, run};

    fn menu() -> Box<dyn Service> {
        Box::new(Lines::new(Menu, 64))
    }

    #[test]
    fn greets_then_answers_each_line() {
        let expected = [GREETING, OPERATOR, RETRY, RETRY, RETRY].concat();
        assert_dialogue(menu, b"0\n1234\r\n exit\n\n", expected.as_bytes());
    }

    #[test]
    fn exit_closes_without_a_reply() {
        let expected = [GREETING, OPERATOR].concat();
        assert_dialogue(menu, b"0\nexit\r\n0\n", expected.as_bytes());
        let outcome = run(menu(), &[b"exit\n0\n"]);
        assert_eq!(outcome.out, GREETING.as_bytes());
        assert!(outcome.closed);
    }

    #[test]
    fn the_greeting_comes_even_with_no_input() {
        assert_dialogue(menu, b"", GREETING.as_bytes());
    }

    #[test]
    fn bad_input_gets_an_error_reply() {
        let expected = [GREETING, "error: input is not valid UTF-8\n", OPERATOR].concat();
        assert_dialogue(menu, b"\xe6\xac\n0\n", expected.as_bytes());
    }
}
