//! `upper` (seed 001, `socketserver`'s `MyTCPHandler`): each line back,
//! stripped of surrounding white space and upper-cased (Unicode rules, so
//! `straße` becomes `STRASSE`). An empty line gets an empty reply line.

use std::sync::Arc;

use super::framing::{LineHandler, Lines};
use super::{Cx, Factory, FnFactory, Next, Shared};

/// The upper-casing line handler.
#[derive(Debug, Default)]
pub struct Upper;

impl LineHandler for Upper {
    fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next {
        for c in line.trim().chars() {
            // `to_uppercase` yields more than one char for some letters (ß → SS).
            for upper in c.to_uppercase() {
                let mut utf8 = [0; 4];
                cx.out
                    .extend_from_slice(upper.encode_utf8(&mut utf8).as_bytes());
            }
        }
        cx.out.push(b'\n');
        Next::Answered
    }
}

/// The factory the registry uses.
pub fn factory(shared: &Shared) -> Arc<dyn Factory> {
    let (max_line, framing) = (shared.limits.max_line, shared.limits.framing);
    FnFactory::new("upper", move || {
        Box::new(Lines::framed(Upper, max_line, framing))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::{assert_dialogue, run, splits};

    fn upper() -> Box<dyn crate::service::Service> {
        Box::new(Lines::new(Upper, 16))
    }

    #[test]
    fn upper_cases_each_stripped_line() {
        assert_dialogue(
            upper,
            b"  hi there \r\nstra\xc3\x9fe\n\n",
            "HI THERE\nSTRASSE\n\n".as_bytes(),
        );
    }

    #[test]
    fn answers_an_unterminated_last_line_at_eof() {
        assert_dialogue(upper, b"a\nb", b"A\nB\n");
    }

    #[test]
    fn invalid_utf8_gets_an_error_and_the_next_line_is_served() {
        assert_dialogue(
            upper,
            b"\xff\xfe\nok\n",
            b"error: input is not valid UTF-8\nOK\n",
        );
    }

    #[test]
    fn an_over_long_line_is_refused_and_closes() {
        let outcome = run(upper(), &[b"0123456789abcdefXYZ"]);
        assert_eq!(
            outcome.out,
            b"error: line too long (the limit is 16 bytes)\n"
        );
        assert!(outcome.closed);
    }

    #[test]
    fn an_over_long_line_is_refused_even_with_its_newline_in_the_same_read() {
        // Found by fuzz/fuzz_targets/todo.rs: whole, this line used to be
        // answered; cut in two, refused.
        for chunks in splits(b"0123456789abcdefX\nok\n") {
            let outcome = run(upper().as_mut(), &chunks);
            assert_eq!(
                outcome.out, b"error: line too long (the limit is 16 bytes)\n",
                "{chunks:?}"
            );
            assert!(outcome.closed);
        }
        // At the limit exactly, it is a line.
        assert_dialogue(upper, b"0123456789abcdef\n", b"0123456789ABCDEF\n");
    }
}
