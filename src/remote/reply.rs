//! Where a RESP reply from Redis ends, so a client can cut the byte stream
//! into replies and hand each to the request that is owed it (replies come
//! back in the order the commands went out: first in, first out).
//!
//! Only framing: the reply's bytes are passed on to the client untouched,
//! so nothing here decodes a value. The walk keeps a count of the elements
//! still owed instead of recursing, so a deeply nested reply costs no stack.
//! RESP2's five types and RESP3's are known (Redis speaks RESP2 on a new
//! connection, and nothing here sends `HELLO 3`, but a proxy should not
//! choke on a type it did not ask for).

use std::fmt;

/// The upstream sent something that is not RESP: the connection cannot be
/// trusted to stay in step, and is dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed reply from the store: {}", self.0)
    }
}

/// The largest bulk string accepted (Redis's own `proto-max-bulk-len`).
pub const MAX_BULK: i64 = 512 * 1024 * 1024;

/// The length of the first `count` whole replies at the front of `buf`, or
/// `None` while they have not all arrived.
pub fn len(buf: &[u8], count: usize) -> Result<Option<usize>, Malformed> {
    let mut at = 0;
    let mut owed = count;
    while owed > 0 {
        owed -= 1;
        let Some(line_end) = find_crlf(&buf[at..]) else {
            return Ok(None);
        };
        let line = &buf[at..at + line_end];
        at += line_end + 2;
        let (&kind, value) = line
            .split_first()
            .ok_or_else(|| Malformed("an empty line".into()))?;
        match kind {
            // Simple string, error, integer, null, boolean, double, big number.
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {}
            // Bulk string, bulk error, verbatim string: a length, then bytes.
            b'$' | b'!' | b'=' => {
                let size = number(value)?;
                if !(-1..=MAX_BULK).contains(&size) {
                    return Err(Malformed(format!("a bulk of {size} bytes")));
                }
                if size >= 0 {
                    let end = at + size as usize + 2;
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(Malformed("a bulk string not ended by CRLF".into()));
                    }
                    at = end;
                }
            }
            // Array, set, push, map (two elements an entry), attribute
            // (which comes before the reply it annotates: owed one more).
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let elements = number(value)?;
                if elements < -1 {
                    return Err(Malformed(format!("an aggregate of {elements} elements")));
                }
                let per_entry = if matches!(kind, b'%' | b'|') { 2 } else { 1 };
                let extra = usize::from(kind == b'|');
                owed = (elements.max(0) as usize)
                    .checked_mul(per_entry)
                    .and_then(|more| owed.checked_add(more + extra))
                    .ok_or_else(|| Malformed(format!("an aggregate of {elements} elements")))?;
            }
            other => {
                return Err(Malformed(format!(
                    "unknown type byte {:?}",
                    char::from(other).escape_default().to_string()
                )));
            }
        }
    }
    Ok(Some(at))
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(cr) = buf[from..].iter().position(|&b| b == b'\r') {
        if buf.get(from + cr + 1) == Some(&b'\n') {
            return Some(from + cr);
        }
        from += cr + 1;
    }
    None
}

fn number(text: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            Malformed(format!(
                "{:?} is not a length",
                text.escape_ascii().to_string()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_replies_are_measured() {
        for reply in [
            &b"+OK\r\n"[..],
            b"-ERR wrong\r\n",
            b":42\r\n",
            b"$3\r\nfoo\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"$4\r\na\r\nb\r\n",
            b"%1\r\n+k\r\n:1\r\n",
            b"|1\r\n+ttl\r\n:3\r\n+OK\r\n",
        ] {
            assert_eq!(
                len(reply, 1),
                Ok(Some(reply.len())),
                "{:?}",
                reply.escape_ascii()
            );
            let mut two = reply.to_vec();
            two.extend_from_slice(b":7\r\n");
            assert_eq!(len(&two, 1), Ok(Some(reply.len())));
            assert_eq!(len(&two, 2), Ok(Some(two.len())));
            // Every proper prefix is incomplete, never an error.
            for cut in 0..reply.len() {
                assert_eq!(len(&reply[..cut], 1), Ok(None), "cut at {cut}");
            }
        }
    }

    #[test]
    fn deep_nesting_costs_no_stack() {
        let mut reply = b"*1\r\n".repeat(1_000_000);
        reply.extend_from_slice(b":1\r\n");
        assert_eq!(len(&reply, 1), Ok(Some(reply.len())));
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            &b"\r\n"[..],
            b"hello\r\n",
            b"$x\r\n",
            b"$-2\r\n",
            b"$1\r\nab\r\n",
            b"*-5\r\n",
        ] {
            assert!(len(bad, 1).is_err(), "{:?}", bad.escape_ascii());
        }
        assert!(len(b"$999999999999\r\n", 1).is_err());
        assert!(
            len(b"*9223372036854775807\r\n", 1).is_err()
                || len(b"*9223372036854775807\r\n", 1) == Ok(None)
        );
    }
}
