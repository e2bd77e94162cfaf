//! Dialogue tests for [`Http`]: bytes in, in every split, bytes out. Kept
//! apart from `mod.rs` only for length; `request.rs` and `response.rs` test
//! their own parts in place.

use super::*;
use crate::service::testing::{run, splits};

fn http() -> Box<dyn Service> {
    Box::new(Http::new(Arc::new(Stats::default()), DEFAULT_MAX_BODY))
}

/// The first lines of every response head, with the date as [`undated`] puts it.
macro_rules! head {
    ($status:literal) => {
        concat!(
            "HTTP/1.1 ",
            $status,
            "\r\nServer: readyloop\r\nDate: <date>\r\n"
        )
    };
}

const OK: &str = concat!(
    head!("200 OK"),
    "Content-Type: text/plain\r\nContent-Length: 12\r\n\r\n"
);
const OK_CLOSE: &str = concat!(
    head!("200 OK"),
    "Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
);
const OK_KEEP_10: &str = concat!(
    head!("200 OK"),
    "Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n"
);
const BAD: &str = concat!(
    head!("400 Bad Request"),
    "Content-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\n400 Bad Request\n"
);
const TOO_LARGE: &str = concat!(
    head!("431 Request Header Fields Too Large"),
    "Content-Type: text/plain\r\nContent-Length: 36\r\nConnection: close\r\n\r\n",
    "431 Request Header Fields Too Large\n"
);
const NOT_ALLOWED: &str = concat!(
    head!("405 Method Not Allowed"),
    "Content-Type: text/plain\r\nContent-Length: 40\r\nAllow: GET, HEAD\r\n"
);
const NOT_ALLOWED_BODY: &str = "405 Method Not Allowed: use GET or HEAD\n";
const NOT_FOUND: &str = concat!(
    head!("404 Not Found"),
    "Content-Type: text/plain\r\nContent-Length: 14\r\n\r\n404 Not Found\n"
);
const BODY_TOO_LARGE: &str = concat!(
    head!("413 Content Too Large"),
    "Content-Type: text/plain\r\nContent-Length: 22\r\nConnection: close\r\n\r\n",
    "413 Content Too Large\n"
);
const CONTINUE: &str = "HTTP/1.1 100 Continue\r\n\r\n";

/// `out` as text with every `Date` value written `<date>`: the wall clock
/// may pass a second between two runs of a dialogue. (`date.rs` tests the
/// values.)
fn undated(out: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(out).into_owned();
    let mut from = 0;
    while let Some(at) = text[from..].find("\r\nDate: ") {
        let value = from + at + "\r\nDate: ".len();
        let end = value + date::LEN;
        assert!(text[value..end].ends_with(" GMT"), "{text:?}");
        text.replace_range(value..end, "<date>");
        from = value;
    }
    text
}

/// Asserts the dialogue of `make()` in every split, and whether it closed.
#[track_caller]
fn dialogue_of(make: impl Fn() -> Box<dyn Service>, input: &str, expected: &str, closes: bool) {
    for chunks in splits(input.as_bytes()) {
        let outcome = run(make(), &chunks);
        assert_eq!(undated(&outcome.out), expected, "input split as {chunks:?}");
        assert_eq!(outcome.closed, closes, "input split as {chunks:?}");
    }
}

/// [`dialogue_of`] a fresh [`Http`] with the default body limit.
#[track_caller]
fn dialogue(input: &str, expected: &str, closes: bool) {
    dialogue_of(http, input, expected, closes);
}

#[test]
fn pipelined_requests_are_answered_in_order_and_the_connection_kept() {
    dialogue(
        "GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n\
         GET /?z HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\nHEAD /x HTTP/1.1\r\nHost: a\r\n\r\n",
        &format!(
            "{OK}Hello, World{OK}{OK}Hello, World{}",
            &NOT_FOUND[..NOT_FOUND.len() - 14]
        ),
        false,
    );
}

#[test]
fn one_input_call_answers_one_request_and_each_is_counted() {
    let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\n\
                  Content-Length: 1\r\n\r\nxGET /nope HTTP/1.1\r\nHost: a\r\n\r\nGET /";
    for chunks in splits(input) {
        assert_eq!(run(http(), &chunks).answered, 3, "{chunks:?}");
    }
    let mut service = http();
    let mut out = Vec::new();
    let mut cx = crate::service::testing::cx(&mut out);
    let one = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let input = [&one[..], one, b"GET /"].concat();
    assert_eq!(service.input(&input, &mut cx), (one.len(), Next::Answered));
    assert_eq!(
        service.input(&input[one.len()..], &mut cx),
        (one.len(), Next::Answered)
    );
    assert_eq!(service.input(b"GET /", &mut cx), (0, Next::Wait));
}

#[test]
fn unknown_paths_get_404_and_the_query_is_ignored() {
    for path in ["/favicon.ico", "/nope", "/metrics/", "/index.html"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        dialogue(&request, &format!("{NOT_FOUND}{OK}Hello, World"), false);
    }
    let outcome = run(http(), &[b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"]);
    let text = undated(&outcome.out);
    assert!(
        text.contains("version=0.0.4") && text.contains("readyloop_accepted_total"),
        "{text}"
    );
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
    // A refusal answers no request: the dialogue counts none.
    assert_eq!(run(http(), &[b"GARBAGE\r\n\r\n"]).answered, 0);
    for input in [
        "GARBAGE\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/3\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
        // A broken chunked body: after the 400 nothing more is read.
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n",
    ] {
        dialogue(input, BAD, true);
    }
}

#[test]
fn ambiguous_body_lengths_are_refused_as_smuggling() {
    for input in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
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
        (undated(&outcome.out), outcome.closed),
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
        (8192, Next::Close)
    );
}

#[test]
fn other_methods_get_405_after_their_body_and_keep_the_connection() {
    dialogue(
        "DELETE / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &format!("{NOT_ALLOWED}\r\n{NOT_ALLOWED_BODY}{OK}Hello, World"),
        false,
    );
    dialogue(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &format!("{NOT_ALLOWED}\r\n{NOT_ALLOWED_BODY}{OK}Hello, World"),
        false,
    );
    dialogue(
        "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
         3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n\
         GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &format!("{NOT_ALLOWED}\r\n{NOT_ALLOWED_BODY}{OK}Hello, World"),
        false,
    );
}

#[test]
fn a_get_body_is_skipped_before_the_answer() {
    dialogue(
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nGET /GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &format!("{OK}Hello, World{OK}Hello, World"),
        false,
    );
    dialogue(
        "HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        OK,
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
fn the_service_says_when_it_is_in_a_body() {
    let mut service = Http::new(Arc::new(Stats::default()), DEFAULT_MAX_BODY);
    let mut out = Vec::new();
    let mut cx = crate::service::testing::cx(&mut out);
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab";
    assert!(!service.in_body());
    assert_eq!(service.input(head, &mut cx), (head.len(), Next::Wait));
    assert!(service.in_body());
    assert_eq!(service.input(b"cdGET", &mut cx), (2, Next::Answered));
    assert!(!service.in_body());
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    dialogue(
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi\
         GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        &format!("{CONTINUE}{NOT_ALLOWED}\r\n{NOT_ALLOWED_BODY}{OK}Hello, World"),
        false,
    );
    // The 100 goes out with the head alone: the client waits for it.
    let outcome = run(
        http(),
        &[b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"],
    );
    assert_eq!(undated(&outcome.out), CONTINUE);
    // No body, no 100; an unknown expectation: 417, and close.
    dialogue(
        "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        &format!("{OK}Hello, World"),
        false,
    );
    dialogue(
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\nhi",
        concat!(
            head!("417 Expectation Failed"),
            "Content-Type: text/plain\r\nContent-Length: 51\r\nConnection: close\r\n\r\n",
            "417 Expectation Failed: only 100-continue is known\n"
        ),
        true,
    );
}

#[test]
fn bodies_over_the_limit_get_413_and_close() {
    let small = || -> Box<dyn Service> { Box::new(Http::new(Arc::new(Stats::default()), 10)) };
    // Refused on its Content-Length, before any body byte (and without a 100).
    dialogue_of(
        small,
        "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
        BODY_TOO_LARGE,
        true,
    );
    // Refused when a chunk size takes the body over.
    dialogue_of(
        small,
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n3\r\nabc\r\n0\r\n\r\n",
        BODY_TOO_LARGE,
        true,
    );
    // At the limit is fine.
    dialogue_of(
        small,
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
        &format!("{OK}Hello, World"),
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
        assert!(undated(&outcome.out) == expected && outcome.closed);
    }
}

#[test]
fn metrics_serves_the_counters() {
    let stats = Arc::new(Stats::default());
    crate::stats::add(&stats.accepted, 7);
    let service = Http::new(Arc::clone(&stats), DEFAULT_MAX_BODY);
    let outcome = run(
        service,
        &[b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nHEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n"],
    );
    let text = undated(&outcome.out);
    let mut body = String::new();
    stats.render_prometheus(&mut body);
    let head = format!(
        "{}Content-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
        head!("200 OK"),
        body.len()
    );
    assert!(body.contains("readyloop_accepted_total 7\n"));
    assert_eq!(text, format!("{head}{body}{head}"));
}

#[test]
fn nothing_panics_and_every_split_agrees_on_arbitrary_input() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let alphabet = b"GET HEAD POST / HTTP/1.01\r\n:Host Content-Length Transfer-Encoding chunked \
                     Connection close keep-alive Expect 100-continue 9a;\x00\xff";
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
            assert_eq!(
                (undated(&whole.out), whole.closed),
                (undated(&split.out), split.closed),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

/// Counts the allocations of the thread that makes them, so a test can see
/// what one request costs on its own thread whatever other tests do.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter is a const-initialised thread-local with no destructor, so it is
// usable at any point of a thread's life and allocates nothing itself.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller keeps `alloc`'s contract; we forward it.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from `System` through `alloc` or `realloc`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as for `dealloc`, and the caller keeps `realloc`'s contract.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_steady_state_allocates_nothing_per_request() {
    let mut service = http();
    let mut out = Vec::with_capacity(64 * 1024);
    let requests = b"GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: wrk\r\n\r\n\
        GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nHEAD /nope HTTP/1.1\r\nHost: a\r\n\r\n\
        POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let mut round = |out: &mut Vec<u8>| {
        out.clear();
        let mut cx = crate::service::testing::cx(out);
        let mut at = 0;
        while at < requests.len() {
            let (used, next) = service.input(&requests[at..], &mut cx);
            assert_eq!(next, Next::Answered);
            at += used;
        }
    };
    round(&mut out); // the metrics buffer grows once
    let count = || ALLOCATIONS.with(std::cell::Cell::get);
    let probe = count();
    drop(std::hint::black_box(Box::new(1)));
    assert_eq!(count() - probe, 1, "the counter counts");
    let before = count();
    for _ in 0..100 {
        round(&mut out);
    }
    assert_eq!(count() - before, 0, "allocations in 400 requests");
}
