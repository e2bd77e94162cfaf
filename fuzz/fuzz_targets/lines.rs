//! Fuzzes the line framing every line service shares (`Lines`, under
//! `--framing newline` and `--framing read`), with a trivial handler that
//! writes each message back escaped. The first input byte picks the line
//! limit (0-63), the rest is what the client sends. Checks, besides "no
//! panic":
//! - the handler is never handed a message over the limit, nor (under
//!   newline framing) one holding a `\n`;
//! - every answer is one message, in order: the output is exactly what a
//!   plain model of the framing says (lines cut at `\n` with one `\r`
//!   dropped, or one message per read; an error line and a close for a
//!   message over the limit; an error line for one not UTF-8), with one
//!   answered request per message answered;
//! - under newline framing, every cutting of the input gives the same
//!   output (readyloop_fuzz); under read framing, each cutting gives its
//!   own model's output.

#![no_main]

use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use readyloop::service::framing::{Framing, LineHandler, Lines};
use readyloop::service::{Cx, Next};
use readyloop_fuzz::{End, Run, cuttings, drive, same_for_every_cutting};

/// A message that makes the handler answer and close (`Next::Last`), as
/// hello's `--quit--` does.
const QUIT: &str = "quit";

/// Writes each message back as a Rust string literal (one line, escaped),
/// and checks what the framing hands it.
struct Recorder {
    max_line: usize,
    framing: Framing,
}

impl LineHandler for Recorder {
    fn line(&mut self, line: &str, cx: &mut Cx<'_>) -> Next {
        assert!(
            line.len() <= self.max_line,
            "a {}-byte message handed over with a limit of {}",
            line.len(),
            self.max_line
        );
        if self.framing == Framing::Newline {
            assert!(!line.contains('\n'), "{line:?} holds a newline");
        }
        if line == QUIT {
            cx.out.extend_from_slice(b"bye\n");
            return Next::Last;
        }
        let _ = writeln!(cx.out, "{line:?}");
        Next::Answered
    }
}

/// What the framing should make of these messages (each without its `\n`),
/// then of what is left at the end of input (`eof`, if any).
fn model(max_line: usize, messages: &[&[u8]], eof: Option<&[u8]>) -> Run {
    let mut expected = Run {
        out: Vec::new(),
        answered: 0,
        end: End::Eof,
    };
    let all = messages
        .iter()
        .map(|m| (*m, false))
        .chain(eof.map(|m| (m, true)));
    for (message, at_eof) in all {
        let closed = if at_eof { End::Eof } else { End::Closed };
        if message.len() > max_line {
            let _ = writeln!(
                expected.out,
                "error: line too long (the limit is {max_line} bytes)"
            );
            expected.end = closed;
            return expected;
        }
        let line = message.strip_suffix(b"\r").unwrap_or(message);
        expected.answered += 1;
        match std::str::from_utf8(line) {
            Err(_) => expected
                .out
                .extend_from_slice(b"error: input is not valid UTF-8\n"),
            Ok(QUIT) => {
                expected.out.extend_from_slice(b"bye\n");
                expected.end = closed;
                return expected;
            }
            Ok(line) => {
                let _ = writeln!(expected.out, "{line:?}");
            }
        }
    }
    expected
}

/// Newline framing: lines end at `\n`; an unterminated last one is answered
/// at the end of input, unless it is already over the limit when it comes.
fn newline_model(max_line: usize, data: &[u8]) -> Run {
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let last = lines.pop().filter(|last| !last.is_empty());
    match last {
        Some(last) if last.len() > max_line => {
            lines.push(last);
            model(max_line, &lines, None)
        }
        last => model(max_line, &lines, last),
    }
}

/// Read framing: each read is one message, one trailing `\n` dropped (an
/// empty "read" is none: a socket reads 0 bytes only at its end).
fn read_model(max_line: usize, reads: &[&[u8]]) -> Run {
    let messages: Vec<&[u8]> = reads
        .iter()
        .filter(|read| !read.is_empty())
        .map(|read| read.strip_suffix(b"\n").unwrap_or(read))
        .collect();
    model(max_line, &messages, None)
}

#[track_caller]
fn assert_run(got: &Run, expected: &Run, what: &str) {
    assert!(
        got == expected,
        "{what}: got\n  {:?} ({} answered) ending {:?}\nbut the model says\n  {:?} ({} answered) ending {:?}",
        got.out.escape_ascii().to_string(),
        got.answered,
        got.end,
        expected.out.escape_ascii().to_string(),
        expected.answered,
        expected.end,
    );
}

fuzz_target!(|input: &[u8]| {
    let Some((&limit, data)) = input.split_first() else {
        return;
    };
    let max_line = usize::from(limit % 64);
    let lines = |framing| {
        move || {
            let recorder = Recorder { max_line, framing };
            Lines::framed(recorder, max_line, framing)
        }
    };

    let run = same_for_every_cutting(lines(Framing::Newline), data);
    assert_run(&run, &newline_model(max_line, data), "newline framing");

    for reads in cuttings(data) {
        let run = drive(lines(Framing::Read)(), &reads);
        let lengths: Vec<usize> = reads.iter().map(|r| r.len()).collect();
        let what = format!(
            "read framing, reads of {:?}...",
            &lengths[..lengths.len().min(16)]
        );
        assert_run(&run, &read_model(max_line, &reads), &what);
    }
});
