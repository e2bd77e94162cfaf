//! Fuzzes `todo`'s command parser and its line framing, through the
//! service as a client reaches it. Checks, besides "no panic":
//! - every cutting of the input gives the same replies (readyloop_fuzz);
//! - one reply per request counted (and one per line at most), each ending
//!   in `\r\n`, none longer than the line limit: what one request can make
//!   the server send is bounded;
//! - no job is asked for (an in-memory store has nothing to sync).

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use readyloop::service::{self, Backend, Limits, Service, Shared};
use readyloop::stats::Stats;
use readyloop::store::Store;
use readyloop_fuzz::{End, same_for_every_cutting};

/// Small, so the fuzzer reaches "line too long" and values at the limit.
const MAX_LINE: usize = 200;
/// The longest fixed reply (an error text), with room to spare.
const LONGEST_FIXED_REPLY: usize = 120;

/// A fresh connection over a fresh store holding the seed's tasks.
fn todo() -> Box<dyn Service> {
    let shared = Shared {
        backend: Backend::File(Store::in_memory()),
        broker: Default::default(),
        stats: Arc::new(Stats::default()),
        limits: Limits {
            max_line: MAX_LINE,
            ..Limits::default()
        },
    };
    service::todo::factory(&shared).make()
}

fuzz_target!(|data: &[u8]| {
    let run = same_for_every_cutting(todo, data);
    assert!(!matches!(run.end, End::Job(_)), "{:?}", run.end);
    if run.out.is_empty() {
        return;
    }
    assert!(
        run.out.ends_with(b"\r\n"),
        "{:?}",
        run.out.escape_ascii().to_string()
    );
    // A value cannot hold '\n', so "\r\n" ends replies and nothing else.
    let replies: Vec<&[u8]> = run.out[..run.out.len() - 2]
        .split(|&b| b == b'\n')
        .collect();
    for reply in &replies {
        assert!(
            reply.len() <= MAX_LINE.max(LONGEST_FIXED_REPLY) + 1,
            "a {}-byte reply",
            reply.len()
        );
    }
    // One reply per request the dialogue counted, and one more for a line
    // too long (answered by closing, so not counted).
    let refused_too_long = run.out.ends_with(b"bytes)\r\n") && run.end == End::Closed;
    assert_eq!(
        replies.len(),
        run.answered as usize + usize::from(refused_too_long),
        "{:?}",
        run.out.escape_ascii().to_string()
    );
    let lines = data.split(|&b| b == b'\n').count();
    assert!(
        replies.len() <= lines,
        "{} replies to {lines} lines",
        replies.len()
    );
});
