//! Fuzzes the `http` service: request heads, body framing
//! (`Content-Length`, `chunked`, `Expect`, the smuggling cases) and
//! keep-alive, through the service as a client reaches it, with a small
//! body limit. Checks, besides "no panic":
//! - every cutting of the input gives the same responses (readyloop_fuzz),
//!   compared with each `Date` value blanked (a run may tick over a second);
//! - the output is a sequence of well-formed HTTP/1.1 responses: a known
//!   status line, `Server`, a well-formed `Date`, `Content-Type` and one
//!   `Content-Length` matching the body, `Allow` on a `405`; a body left
//!   out only where a `HEAD` could have asked for it; each response short;
//! - one final response per request the dialogue counted, plus at most one
//!   refusal (`400`, `431`) that counts none: never more responses than
//!   requests;
//! - a `400`, `431` or `413`, and any `Connection: close`, is the last
//!   response, and the connection is closed after it; a closed connection
//!   said `Connection: close`.

#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use readyloop::service::{self, Backend, Limits, Service, Shared};
use readyloop::stats::Stats;
use readyloop::store::Store;
use readyloop_fuzz::{End, same_for_every_cutting_as};

/// Small, so both sides of the body limit (`413`) are reached.
const MAX_BODY: u64 = 100;
/// The longest response: a head and a status text, or `/metrics`.
const MAX_RESPONSE: usize = 4096;
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;
const DATE_FIELD: &[u8] = b"\r\nDate: ";

fn http() -> Box<dyn Service> {
    let shared = Shared {
        backend: Backend::File(Store::in_memory()),
        stats: Arc::new(Stats::default()),
        broker: Default::default(),
        limits: Limits {
            max_body: MAX_BODY,
            ..Limits::default()
        },
    };
    service::http::factory(&shared).make()
}

/// `out` with every `Date` value replaced by `<date>`.
fn undated(out: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(out.len());
    let mut rest = out;
    while let Some(at) = find(rest, DATE_FIELD) {
        let value = at + DATE_FIELD.len();
        text.extend_from_slice(&rest[..value]);
        text.extend_from_slice(b"<date>");
        rest = &rest[(value + DATE_LEN).min(rest.len())..];
    }
    text.extend_from_slice(rest);
    text
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One response as it was checked.
#[derive(Debug)]
struct Response {
    status: u16,
    closes: bool,
    /// The `Content-Length` was given, but no body followed (`HEAD`).
    bodiless: bool,
}

/// The status lines this server sends, and how each body starts.
const STATUSES: &[(u16, &str, &[u8])] = &[
    (200, "OK", b""),
    (400, "Bad Request", b"400 "),
    (404, "Not Found", b"404 "),
    (405, "Method Not Allowed", b"405 "),
    (413, "Content Too Large", b"413 "),
    (417, "Expectation Failed", b"417 "),
    (431, "Request Header Fields Too Large", b"431 "),
];

/// Splits `out` into responses, asserting that each is well-formed.
fn responses(out: &[u8]) -> Vec<Response> {
    let shown = || out.escape_ascii().to_string();
    let mut all = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(b"HTTP/1.1 100 Continue\r\n\r\n") {
            all.push(Response {
                status: 100,
                closes: false,
                bodiless: true,
            });
            rest = after;
            continue;
        }
        let end =
            find(rest, b"\r\n\r\n").unwrap_or_else(|| panic!("a head cut short in {}", shown()));
        let head = std::str::from_utf8(&rest[..end]).expect("a head not UTF-8");
        assert!(
            head.bytes()
                .all(|b| (b' '..=b'~').contains(&b) || b == b'\r' || b == b'\n'),
            "{}",
            shown()
        );
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let (status, reason, body_start) = STATUSES
            .iter()
            .find(|(code, reason, _)| status_line == format!("HTTP/1.1 {code} {reason}"))
            .copied()
            .unwrap_or_else(|| panic!("status line {status_line:?} in {}", shown()));
        let fields: Vec<(&str, &str)> = lines
            .map(|line| {
                line.split_once(": ")
                    .unwrap_or_else(|| panic!("field {line:?} in {}", shown()))
            })
            .collect();
        let values = |name: &str| -> Vec<&str> {
            fields
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .collect()
        };
        assert_eq!(values("Server"), ["readyloop"], "{}", shown());
        let date = values("Date");
        assert!(
            date.len() == 1 && date[0].len() == DATE_LEN && date[0].ends_with(" GMT"),
            "Date {date:?} in {}",
            shown()
        );
        assert_eq!(values("Content-Type").len(), 1, "{}", shown());
        let length = values("Content-Length");
        assert_eq!(length.len(), 1, "{}", shown());
        let length: usize = length[0].parse().expect("a Content-Length of digits");
        assert_eq!(
            !values("Allow").is_empty(),
            status == 405,
            "Allow on a {status} {reason}: {}",
            shown()
        );
        let connection = values("Connection");
        assert!(
            matches!(connection[..], [] | ["close"] | ["keep-alive"]),
            "{}",
            shown()
        );
        let closes = connection == ["close"];
        let after_head = &rest[end + 4..];
        // Our bodies never start like a response: a response right after
        // the head (or nothing) means its body was left out.
        let bodiless = length > 0 && (after_head.is_empty() || after_head.starts_with(b"HTTP/"));
        let body_len = if bodiless { 0 } else { length };
        let body = after_head
            .get(..body_len)
            .unwrap_or_else(|| panic!("a body shorter than its Content-Length in {}", shown()));
        if !bodiless {
            let fits = match status {
                200 => body == b"Hello, World" || body.starts_with(b"# HELP"),
                _ => body.starts_with(body_start),
            };
            assert!(
                fits,
                "a {status} with body {:?}",
                body.escape_ascii().to_string()
            );
        }
        let len = end + 4 + body_len;
        assert!(len <= MAX_RESPONSE, "a {len}-byte response");
        all.push(Response {
            status,
            closes,
            bodiless,
        });
        rest = &after_head[body_len..];
    }
    all
}

fuzz_target!(|data: &[u8]| {
    let run = same_for_every_cutting_as(http, data, undated);
    let all = responses(&run.out);
    let finals: Vec<&Response> = all.iter().filter(|r| r.status != 100).collect();

    // Bodies are left out for `HEAD` only.
    let bodiless = finals.iter().filter(|r| r.bodiless).count();
    let heads = data.windows(4).filter(|w| *w == b"HEAD").count();
    assert!(
        bodiless <= heads,
        "{bodiless} bodiless responses, {heads} HEADs"
    );

    // A refusal counts no request; every other final response one.
    let refused = finals
        .last()
        .is_some_and(|last| matches!(last.status, 400 | 431));
    assert_eq!(
        finals.len(),
        run.answered as usize + usize::from(refused),
        "{all:?} for {} answered",
        run.answered
    );

    // What ends the connection is last, and ends it.
    for (i, response) in finals.iter().enumerate() {
        let last = i + 1 == finals.len();
        if matches!(response.status, 400 | 413 | 431) {
            assert!(response.closes, "{all:?}");
        }
        if response.closes {
            assert!(last, "a response after one that closed: {all:?}");
            assert!(
                matches!(all.last(), Some(r) if r.status != 100),
                "more output after the last response: {all:?}"
            );
            assert_eq!(run.end, End::Closed, "{all:?}");
        }
    }
    if run.end == End::Closed {
        assert!(
            finals.last().is_some_and(|r| r.closes),
            "closed without Connection: close: {all:?}"
        );
    }
    // A `100 Continue` is followed by its final response, or the input ran out.
    let continues = all.len() - finals.len();
    assert!(continues <= finals.len() + 1, "{all:?}");
    assert!(!matches!(run.end, End::Job(_)), "{:?}", run.end);
});
