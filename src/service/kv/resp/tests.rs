//! The RESP parser fed every split of every frame, with no socket.

use super::*;
use crate::service::testing::splits;

/// What a stream of chunks parses to: each request's words, or the error.
fn parse_all(chunks: &[&[u8]], max_bulk: usize) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let mut parser = Parser::new(max_bulk);
    let mut requests = Vec::new();
    let mut pending = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            match parser.parse(&pending) {
                Parsed::Request { consumed } => {
                    let request = parser.request(&pending);
                    requests.push(request.args_from(0).map(<[u8]>::to_vec).collect());
                    parser.done();
                    pending.drain(..consumed);
                }
                Parsed::Empty { consumed } => {
                    pending.drain(..consumed);
                }
                Parsed::Partial => {
                    pending.clear();
                    break;
                }
                Parsed::Malformed(reason) => return Err(reason),
            }
            if pending.is_empty() {
                break;
            }
        }
    }
    Ok(requests)
}

fn words(list: &[&[u8]]) -> Vec<Vec<u8>> {
    list.iter().map(|w| w.to_vec()).collect()
}

#[test]
fn every_split_of_every_frame_parses_the_same() {
    /// A frame and the words of each request in it.
    type Case<'a> = (&'a [u8], &'a [&'a [&'a [u8]]]);
    let cases: &[Case<'_>] = &[
        (b"*1\r\n$4\r\nPING\r\n", &[&[b"PING"]]),
        (
            b"*3\r\n$3\r\nSET\r\n$2\r\n\x00\xff\r\n$4\r\na\r\nb\r\n",
            &[&[b"SET", b"\x00\xff", b"a\r\nb"]],
        ),
        (b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", &[&[b"GET", b""]]),
        (b"PING\r\n", &[&[b"PING"]]),
        (b"  set  k \t v\n", &[&[b"set", b"k", b"v"]]),
        (
            b"SET \"a b\\x41\\n\" 'it\\'s'\r\n",
            &[&[b"SET", b"a bA\n", b"it's"]],
        ),
        (b"\"\"\r\n", &[&[b""]]),
        (b"*0\r\n*-1\r\n\r\n\n   \r\nPING\r\n", &[&[b"PING"]]),
        (
            b"*1\r\n$4\r\nPING\r\nECHO x\r\n*2\r\n$4\r\nECHO\r\n$1\r\ny\r\n",
            &[&[b"PING"], &[b"ECHO", b"x"], &[b"ECHO", b"y"]],
        ),
    ];
    for (input, expected) in cases {
        let expected: Vec<_> = expected.iter().map(|w| words(w)).collect();
        for chunks in splits(input) {
            assert_eq!(
                parse_all(&chunks, DEFAULT_MAX_BULK),
                Ok(expected.clone()),
                "{:?} split as {chunks:?}",
                input.escape_ascii().to_string()
            );
        }
    }
}

#[test]
fn malformed_frames_name_the_reason_in_every_split() {
    let cases: &[(&[u8], &str)] = &[
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1048577\r\n", "invalid multibulk length"),
        (b"*2\r\n$3\r\nGET\r\n+k\r\n", "expected '$', got '+'"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$101\r\n", "invalid bulk length"),
        (b"*1\r\n$4\r\nPINGxx", "expected CRLF after a bulk string"),
        (b"*1\r\n$4\nPING\r\n", "invalid bulk length"),
        (b"*1\rx", "expected LF after CR"),
        (
            b"*1\r\n$000000000000000000000000000000000004\r\n",
            "too big bulk count string",
        ),
        (b"SET \"a\r\n", "unbalanced quotes in request"),
        (b"SET \"a\"b\r\n", "unbalanced quotes in request"),
    ];
    for (input, says) in cases {
        for chunks in splits(input) {
            let got = parse_all(&chunks, 100);
            assert!(
                got.as_ref().is_err_and(|reason| reason.contains(says)),
                "{:?} split as {chunks:?}: {got:?}",
                input.escape_ascii().to_string()
            );
        }
    }
}

#[test]
fn the_argument_limit_is_redis_and_holds() {
    let mut frame = format!("*{MAX_ARGS}\r\n").into_bytes();
    for _ in 0..MAX_ARGS {
        frame.extend_from_slice(b"$1\r\nx\r\n");
    }
    let parsed = parse_all(&[&frame], DEFAULT_MAX_BULK).unwrap();
    assert_eq!(parsed[0].len(), MAX_ARGS);
}

#[test]
fn an_inline_request_over_64_kib_is_refused_without_waiting_for_its_end() {
    let long = vec![b'a'; MAX_INLINE + 2];
    assert_eq!(
        parse_all(&[&long], DEFAULT_MAX_BULK),
        Err("too big inline request".to_owned())
    );
    let mut line = vec![b'x'; MAX_INLINE];
    line.extend_from_slice(b"\r\n");
    assert_eq!(
        parse_all(&[&line], DEFAULT_MAX_BULK).unwrap()[0][0].len(),
        MAX_INLINE
    );
}

#[test]
fn a_huge_declared_bulk_allocates_only_what_arrived() {
    let mut parser = Parser::new(DEFAULT_MAX_BULK);
    assert_eq!(
        parser.parse(b"*2\r\n$3\r\nSET\r\n$536870912\r\nabc"),
        Parsed::Partial
    );
    assert!(parser.buf.capacity() < 4096, "{}", parser.buf.capacity());
}

#[test]
fn a_frame_in_many_pieces_costs_linear_time() {
    // 1,000,000 arguments in 7 MB, fed in 16 KiB reads as a socket would:
    // each byte is looked at a bounded number of times.
    let count = 1_000_000;
    let mut frame = format!("*{}\r\n$5\r\nRPUSH\r\n", count + 1).into_bytes();
    for _ in 0..count {
        frame.extend_from_slice(b"$1\r\nx\r\n");
    }
    let started = std::time::Instant::now();
    let mut parser = Parser::new(DEFAULT_MAX_BULK);
    let chunks: Vec<&[u8]> = frame.chunks(16 * 1024).collect();
    let (last, head) = chunks.split_last().unwrap();
    for chunk in head {
        assert_eq!(parser.parse(chunk), Parsed::Partial);
    }
    assert_eq!(
        parser.parse(last),
        Parsed::Request {
            consumed: last.len()
        }
    );
    assert_eq!(parser.request(last).len(), count + 1);
    // Restarting at byte 0 each read took 3.5 s in a release build.
    assert!(started.elapsed().as_secs() < 3, "{:?}", started.elapsed());
}

#[test]
fn integers_parse_as_redis_string2ll() {
    for (text, n) in [
        (&b"0"[..], Some(0)),
        (b"-1", Some(-1)),
        (b"9223372036854775807", Some(i64::MAX)),
        (b"-9223372036854775808", Some(i64::MIN)),
        (b"9223372036854775808", None),
        (b"-0", None),
        (b"01", None),
        (b"+1", None),
        (b" 1", None),
        (b"", None),
        (b"-", None),
        (b"99999999999999999999", None),
    ] {
        assert_eq!(parse_i64(text), n, "{text:?}");
    }
}
