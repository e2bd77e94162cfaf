//! Dialogue tests for [`Http`]: bytes in, in every split, bytes out. Kept
//! apart from `mod.rs` only for length; `request.rs` and `response.rs` test
//! their own parts in place.

use super::*;
use crate::service::testing::{assert_dialogue, run, splits};

fn http() -> Box<dyn Service> {
    Box::new(Http::new(Arc::new(Stats::default())))
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n";
const OK_CLOSE: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\
                        Connection: close\r\n\r\n";
const OK_KEEP_10: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\
                          Connection: keep-alive\r\n\r\n";
const BAD: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\
                   Connection: close\r\n\r\n400 Bad Request\n";
const TOO_LARGE: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\n\
                         Content-Type: text/plain\r\nContent-Length: 36\r\n\
                         Connection: close\r\n\r\n431 Request Header Fields Too Large\n";
const NOT_ALLOWED: &str = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n\
                           Content-Type: text/plain\r\nContent-Length: 40\r\n";
const NOT_ALLOWED_BODY: &str = "405 Method Not Allowed: use GET or HEAD\n";

/// Asserts the dialogue in every split, and whether the service closed.
#[track_caller]
fn dialogue(input: &str, expected: &str, closes: bool) {
    assert_dialogue(http, input.as_bytes(), expected.as_bytes());
    assert_eq!(run(http(), &[input.as_bytes()]).closed, closes);
}

#[test]
fn pipelined_requests_are_answered_in_order_and_the_connection_kept() {
    dialogue(
        "GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /x HTTP/1.1\r\nHost: a\r\n\r\n\
         GET /y?z HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n",
        &format!("{OK}Hello, World{OK}{OK}Hello, World"),
        false,
    );
}

#[test]
fn pipelined_requests_are_counted_once_each_and_a_partial_one_waits() {
    let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nGET /";
    for chunks in splits(input) {
        let outcome = run(http(), &chunks);
        let text = String::from_utf8(outcome.out).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{chunks:?}");
        assert_eq!(outcome.answered, 2, "{chunks:?}");
    }
}

#[test]
fn connection_close_is_honoured() {
    dialogue(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        &format!("{OK_CLOSE}Hello, World"),
        true,
    );
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    dialogue(
        "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        &format!("{OK_CLOSE}Hello, World"),
        true,
    );
    dialogue(
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nHEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        &format!("{OK_KEEP_10}Hello, World{OK_KEEP_10}"),
        false,
    );
}

#[test]
fn malformed_requests_get_400_and_close() {
    for input in [
        "GARBAGE\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/3\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        dialogue(input, BAD, true);
    }
}

#[test]
fn oversized_heads_get_431_and_close() {
    let long = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let outcome = run(http(), &[long.as_bytes()]);
    assert_eq!(
        (String::from_utf8_lossy(&outcome.out), outcome.closed),
        (TOO_LARGE.into(), true)
    );
    let many = format!("GET / HTTP/1.1\r\n{}\r\n", "Host: a\r\n".repeat(33));
    dialogue(&many, TOO_LARGE, true);
    // An unterminated head is refused as soon as it passes the limit.
    let mut service = http();
    let mut out = Vec::new();
    let mut cx = crate::service::testing::cx(&mut out);
    assert_eq!(
        service.input(&long.as_bytes()[..8191], &mut cx),
        (0, Next::Wait)
    );
    assert_eq!(
        service.input(&long.as_bytes()[..8192], &mut cx),
        (8192, Next::Last)
    );
}

#[test]
fn other_methods_get_405_and_keep_the_connection_only_without_a_body() {
    dialogue(
        "DELETE / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &format!("{NOT_ALLOWED}\r\n{NOT_ALLOWED_BODY}{OK}Hello, World"),
        false,
    );
    dialogue(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
        &format!("{NOT_ALLOWED}Connection: close\r\n\r\n{NOT_ALLOWED_BODY}"),
        true,
    );
}

#[test]
fn a_get_body_is_skipped_before_the_answer() {
    dialogue(
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nGET /GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &format!("{OK}Hello, World{OK}Hello, World"),
        false,
    );
    // The answer waits for the whole body.
    dialogue(
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcd",
        "",
        false,
    );
}

#[test]
fn the_thousandth_response_closes() {
    let one = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let input = one.repeat(MAX_REQUESTS as usize + 1);
    let mut expected = format!("{OK}Hello, World").repeat(MAX_REQUESTS as usize - 1);
    expected.push_str(&format!("{OK_CLOSE}Hello, World"));
    let (a, b) = input.as_bytes().split_at(12345);
    for chunks in [&[input.as_bytes()][..], &[a, b]] {
        let outcome = run(http(), chunks);
        assert!(outcome.out == expected.as_bytes() && outcome.closed);
    }
}

#[test]
fn metrics_serves_the_counters() {
    let stats = Arc::new(Stats::default());
    crate::stats::add(&stats.accepted, 7);
    let mut service = Http::new(Arc::clone(&stats));
    let outcome = run(
        &mut service,
        &[b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n"],
    );
    let text = String::from_utf8(outcome.out).unwrap();
    let mut body = String::new();
    stats.render_prometheus(&mut body);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    assert!(body.contains("readyloop_accepted_total 7\n"));
    assert_eq!(text, format!("{head}{body}{head}"));
}

#[test]
fn nothing_panics_and_every_split_agrees_on_arbitrary_input() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let alphabet =
        b"GET HEAD / HTTP/1.01\r\n:Host Content-Length Connection close keep-alive 9\x00\xff";
    for _ in 0..300 {
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..(seed % 400) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            input.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        let whole = run(http(), &[&input]);
        let (a, b) = input.split_at(input.len() / 3);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        for chunks in [&[a, b][..], &bytes] {
            let split = run(http(), chunks);
            assert_eq!(whole, split, "{:?}", String::from_utf8_lossy(&input));
        }
    }
}
