//! Responses: status line, headers and body, appended to the output buffer.
//!
//! Heads are laid out as nginx lays them: status line, `Server`, `Date`,
//! `Content-Type`, `Content-Length`, then `Allow` and `Connection` where
//! they apply. Every response carries `Content-Length` (also for `HEAD`,
//! where the body is left out), and every one that ends the connection
//! carries `Connection: close`. The `Date` value comes in formatted
//! (`date.rs`); the fixed parts are constants, so a hello response is a few
//! copies and allocates nothing.

use std::io::Write as _;

use super::date::HttpDate;

/// The body of the hello response.
pub(super) const HELLO: &[u8] = b"Hello, World";

/// `100 Continue`: the client may send the body it holds back (RFC 9110 15.2.1).
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What a client is told when the server is full, before it is closed: a
/// whole `503` it can parse (a static one, so no `Date`; RFC 9110 6.6.1
/// makes `Date` optional on 5xx).
pub(super) const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: readyloop\r\n\
    Content-Type: text/plain\r\nContent-Length: 54\r\nRetry-After: 1\r\nConnection: close\r\n\r\n\
    503 Service Unavailable: server busy, try again later\n";

/// What the response says about keeping the connection alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeepAlive {
    /// HTTP/1.1 keep-alive, the default: no header needed.
    Keep,
    /// An HTTP/1.0 client asked for keep-alive: confirm it.
    Keep10,
    /// The connection closes after this response.
    Close,
}

impl KeepAlive {
    /// The `Connection` header line for this outcome, if any.
    fn header(self) -> &'static [u8] {
        match self {
            KeepAlive::Keep => b"",
            KeepAlive::Keep10 => b"Connection: keep-alive\r\n",
            KeepAlive::Close => b"Connection: close\r\n",
        }
    }
}

/// The responses other than `200`, each with a short text body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// `400`: a malformed head or body framing.
    BadRequest,
    /// `404`: no such path.
    NotFound,
    /// `405`: a method other than `GET` and `HEAD`.
    MethodNotAllowed,
    /// `413`: a body over `max_body`.
    ContentTooLarge,
    /// `417`: an `Expect` other than `100-continue`.
    ExpectationFailed,
    /// `431`: a head over 8 KiB or 32 fields.
    HeadersTooLarge,
}

impl Status {
    /// The status line, and the body that says the same to a person.
    fn texts(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Status::BadRequest => (b"HTTP/1.1 400 Bad Request\r\n", b"400 Bad Request\n"),
            Status::NotFound => (b"HTTP/1.1 404 Not Found\r\n", b"404 Not Found\n"),
            Status::MethodNotAllowed => (
                b"HTTP/1.1 405 Method Not Allowed\r\n",
                b"405 Method Not Allowed: use GET or HEAD\n",
            ),
            Status::ContentTooLarge => (
                b"HTTP/1.1 413 Content Too Large\r\n",
                b"413 Content Too Large\n",
            ),
            Status::ExpectationFailed => (
                b"HTTP/1.1 417 Expectation Failed\r\n",
                b"417 Expectation Failed: only 100-continue is known\n",
            ),
            Status::HeadersTooLarge => (
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                b"431 Request Header Fields Too Large\n",
            ),
        }
    }
}

/// The status line and the two headers every response starts with.
fn start(out: &mut Vec<u8>, status_line: &[u8], date: &HttpDate) {
    out.extend_from_slice(status_line);
    out.extend_from_slice(b"Server: readyloop\r\nDate: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
}

/// `200 Hello, World`; `with_body` is false for `HEAD`.
pub(super) fn hello(out: &mut Vec<u8>, date: &HttpDate, conn: KeepAlive, with_body: bool) {
    start(out, b"HTTP/1.1 200 OK\r\n", date);
    out.extend_from_slice(b"Content-Type: text/plain\r\nContent-Length: 12\r\n");
    end_head(out, conn);
    if with_body {
        out.extend_from_slice(HELLO);
    }
}

/// `200` with the Prometheus text `body`; `with_body` is false for `HEAD`.
pub(super) fn metrics(
    out: &mut Vec<u8>,
    date: &HttpDate,
    conn: KeepAlive,
    with_body: bool,
    body: &str,
) {
    start(out, b"HTTP/1.1 200 OK\r\n", date);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "Content-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n",
        body.len()
    );
    end_head(out, conn);
    if with_body {
        out.extend_from_slice(body.as_bytes());
    }
}

/// A `status` response; `with_body` is false for `HEAD`. A `405` carries
/// the `Allow` header RFC 9110 15.5.6 requires.
pub(super) fn status(
    out: &mut Vec<u8>,
    date: &HttpDate,
    status: Status,
    conn: KeepAlive,
    with_body: bool,
) {
    let (line, body) = status.texts();
    start(out, line, date);
    let _ = write!(
        out,
        "Content-Type: text/plain\r\nContent-Length: {}\r\n",
        body.len()
    );
    if status == Status::MethodNotAllowed {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    end_head(out, conn);
    if with_body {
        out.extend_from_slice(body);
    }
}

/// The `Connection` header, if any, and the empty line that ends the head.
fn end_head(out: &mut Vec<u8>, conn: KeepAlive) {
    out.extend_from_slice(conn.header());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &HttpDate = b"Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn heads_are_laid_out_as_nginx_does() {
        let mut out = Vec::new();
        hello(&mut out, DATE, KeepAlive::Keep10, true);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nServer: readyloop\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n\
             Hello, World"
        );
        out.clear();
        status(
            &mut out,
            DATE,
            Status::MethodNotAllowed,
            KeepAlive::Keep,
            true,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 405 Method Not Allowed\r\nServer: readyloop\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\n\
             Content-Length: 40\r\nAllow: GET, HEAD\r\n\r\n\
             405 Method Not Allowed: use GET or HEAD\n"
        );
    }

    #[test]
    fn head_responses_keep_the_length_but_drop_the_body() {
        let mut out = Vec::new();
        hello(&mut out, DATE, KeepAlive::Keep, false);
        assert!(out.ends_with(b"Content-Length: 12\r\n\r\n"));
        out.clear();
        metrics(&mut out, DATE, KeepAlive::Close, false, "a 1\n");
        assert!(out.ends_with(b"Content-Length: 4\r\nConnection: close\r\n\r\n"));
        out.clear();
        status(&mut out, DATE, Status::NotFound, KeepAlive::Keep, false);
        assert!(out.ends_with(b"Content-Length: 14\r\n\r\n"));
    }

    #[test]
    fn the_busy_reply_is_a_whole_503() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let len = match response.parse(BUSY) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("{other:?}"),
        };
        assert_eq!((response.code, response.version), (Some(503), Some(1)));
        let length = response
            .headers
            .iter()
            .find(|h| h.name == "Content-Length")
            .map(|h| {
                std::str::from_utf8(h.value)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            });
        assert_eq!(length, Some(BUSY.len() - len));
        assert!(
            response
                .headers
                .iter()
                .any(|h| h.name == "Connection" && h.value == b"close")
        );
    }
}
