//! Responses: status line, headers and body, appended to the output buffer.
//!
//! The `Hello, World` responses are whole precomputed byte strings, one per
//! connection outcome, so the hot path is a single copy and allocates
//! nothing. Every response carries `Content-Length`, and every one that ends
//! the connection carries `Connection: close`. No `Date` header: services
//! never read the clock (RFC 9110 6.6.1 allows this for a server without one).

use std::io::Write as _;

use super::request::Reject;

/// The body of the hello response.
pub(super) const HELLO: &[u8] = b"Hello, World";

/// What the response says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Conn {
    /// HTTP/1.1 keep-alive, the default: no header needed.
    Keep,
    /// An HTTP/1.0 client asked for keep-alive: confirm it.
    Keep10,
    /// The connection closes after this response.
    Close,
}

impl Conn {
    /// The `Connection` header line for this outcome, if any.
    fn header(self) -> &'static [u8] {
        match self {
            Conn::Keep => b"",
            Conn::Keep10 => b"Connection: keep-alive\r\n",
            Conn::Close => b"Connection: close\r\n",
        }
    }
}

/// Builds a whole hello response head at compile time.
macro_rules! hello_head {
    ($connection:literal) => {
        concat!(
            "HTTP/1.1 200 OK\r\n",
            "Content-Type: text/plain\r\n",
            "Content-Length: 12\r\n",
            $connection,
            "\r\n"
        )
        .as_bytes()
    };
}

const HELLO_KEEP: &[u8] = hello_head!("");
const HELLO_KEEP_10: &[u8] = hello_head!("Connection: keep-alive\r\n");
const HELLO_CLOSE: &[u8] = hello_head!("Connection: close\r\n");

/// `200 Hello, World`; `with_body` is false for `HEAD`.
pub(super) fn hello(out: &mut Vec<u8>, conn: Conn, with_body: bool) {
    out.extend_from_slice(match conn {
        Conn::Keep => HELLO_KEEP,
        Conn::Keep10 => HELLO_KEEP_10,
        Conn::Close => HELLO_CLOSE,
    });
    if with_body {
        out.extend_from_slice(HELLO);
    }
}

/// `200` with the Prometheus text `body`; `with_body` is false for `HEAD`.
pub(super) fn metrics(out: &mut Vec<u8>, conn: Conn, with_body: bool, body: &str) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n",
        body.len()
    );
    end_head(out, conn);
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Body of the `405` response.
pub(super) const NOT_ALLOWED_BODY: &[u8] = b"405 Method Not Allowed: use GET or HEAD\n";

/// `405`, with the `Allow` header RFC 9110 15.5.6 requires.
pub(super) fn method_not_allowed(out: &mut Vec<u8>, conn: Conn) {
    let _ = write!(
        out,
        "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n",
        NOT_ALLOWED_BODY.len()
    );
    end_head(out, conn);
    out.extend_from_slice(NOT_ALLOWED_BODY);
}

/// Body of the `400` response.
pub(super) const BAD_REQUEST_BODY: &[u8] = b"400 Bad Request\n";
/// Body of the `431` response.
pub(super) const TOO_LARGE_BODY: &[u8] = b"431 Request Header Fields Too Large\n";

/// The response to a refused head; the connection always closes after it.
pub(super) fn reject(out: &mut Vec<u8>, why: Reject) {
    let (status, body) = match why {
        Reject::BadRequest => ("400 Bad Request", BAD_REQUEST_BODY),
        Reject::TooLarge => ("431 Request Header Fields Too Large", TOO_LARGE_BODY),
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        body.len()
    );
    end_head(out, Conn::Close);
    out.extend_from_slice(body);
}

/// The `Connection` header, if any, and the empty line that ends the head.
fn end_head(out: &mut Vec<u8>, conn: Conn) {
    out.extend_from_slice(conn.header());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precomputed_heads_match_the_general_shape() {
        for (conn, head) in [
            (Conn::Keep, HELLO_KEEP),
            (Conn::Keep10, HELLO_KEEP_10),
            (Conn::Close, HELLO_CLOSE),
        ] {
            let mut built = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
                HELLO.len()
            )
            .into_bytes();
            end_head(&mut built, conn);
            assert_eq!(
                String::from_utf8_lossy(head),
                String::from_utf8_lossy(&built)
            );
        }
    }

    #[test]
    fn head_responses_keep_the_length_but_drop_the_body() {
        let mut out = Vec::new();
        hello(&mut out, Conn::Keep, false);
        assert_eq!(out, HELLO_KEEP);
        out.clear();
        metrics(&mut out, Conn::Close, false, "a 1\n");
        assert!(out.ends_with(b"Content-Length: 4\r\nConnection: close\r\n\r\n"));
    }
}
