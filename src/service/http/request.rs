//! Request heads: `httparse` over `&[u8]`, reduced to the few facts the
//! service acts on ([`Head`]), or a verdict that the head is unacceptable.
//!
//! Pure and allocation-free: headers are parsed into a stack array and only
//! copied facts (no borrows) leave this module. It decides what a head *is*,
//! not what to answer; that is `mod.rs`'s job.

/// The longest request head accepted (request line and headers), in bytes:
/// nginx's 8 KiB. A longer one, complete or not, is answered `431` and the
/// connection closed, so a client cannot make us buffer more than this.
pub(super) const MAX_HEAD: usize = 8 * 1024;

/// How many header fields a head may have; more is answered `431`.
/// Browsers send about 20.
pub(super) const MAX_HEADERS: usize = 32;

/// The request method, as far as we care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    /// `GET`.
    Get,
    /// `HEAD`: a `GET` without the body in the reply.
    Head,
    /// Any other method: answered `405`.
    Other,
}

/// The resource asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    /// `/`: `Hello, World`.
    Hello,
    /// `/metrics`: the server's counters.
    Metrics,
    /// Anything else: `404`.
    Unknown,
}

/// How the request's body is framed (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body (no `Content-Length`, or `Content-Length: 0`).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the client said it expects before it sends its body (RFC 9110 10.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// Nothing: the body (if any) is on its way.
    Nothing,
    /// `100-continue`: the client waits for `100 Continue` (or a final
    /// answer) before it sends the body.
    Continue,
    /// An expectation this server cannot meet: `417`.
    Unknown,
}

/// What a complete, well-formed request head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    /// Bytes of the head, its final empty line included.
    pub(super) len: usize,
    /// The method.
    pub(super) method: Method,
    /// The path, its query ignored.
    pub(super) target: Target,
    /// `HTTP/1.0` rather than `HTTP/1.1`.
    pub(super) http10: bool,
    /// The client wants the connection kept: the version's default (1.1
    /// yes, 1.0 no) as changed by its `Connection` header.
    pub(super) keep_alive: bool,
    /// The body's framing.
    pub(super) framing: Framing,
    /// Its `Expect` (always [`Expect::Nothing`] for HTTP/1.0, which has none).
    pub(super) expect: Expect,
}

/// Why a head is refused. Either way the connection is closed after the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reject {
    /// `400`: not HTTP/1.x, bad syntax, `Host` missing or repeated, or a
    /// body whose length is ambiguous (request smuggling, RFC 9112 6.3):
    /// a bad or conflicting `Content-Length`, one together with
    /// `Transfer-Encoding`, a coding other than `chunked` last.
    BadRequest,
    /// `431`: the head is over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields.
    TooLarge,
}

/// The outcome of looking at the start of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parsed {
    /// The head is not complete yet: wait for more bytes.
    Partial,
    /// A whole head.
    Complete(Head),
    /// An unacceptable head.
    Reject(Reject),
}

/// Looks at the request head at the start of `input`.
///
/// Only the first [`MAX_HEAD`] bytes are parsed, so the verdict on a head
/// does not depend on how much of what follows has arrived: the same for
/// every split of the stream.
pub(super) fn parse(input: &[u8]) -> Parsed {
    let window = input.get(..MAX_HEAD).unwrap_or(input);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if window.len() >= MAX_HEAD => {
            return Parsed::Reject(Reject::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Reject(Reject::TooLarge),
        Err(_) => return Parsed::Reject(Reject::BadRequest),
    };
    match facts(&request, len) {
        Some(head) => Parsed::Complete(head),
        None => Parsed::Reject(Reject::BadRequest),
    }
}

/// The [`Head`] of a request httparse accepted; `None` when its headers
/// make it a bad request.
fn facts(request: &httparse::Request<'_, '_>, len: usize) -> Option<Head> {
    let http10 = request.version? == 0;
    let method = match request.method? {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let target = route(request.path?);
    let (mut close, mut keep) = (false, false);
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut codings = Codings::default();
    let mut expect = Expect::Nothing;
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in tokens(header.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(header.value)?;
            // Repeated lengths must agree (RFC 9112 6.3): else request smuggling.
            if length.is_some_and(|old| old != n) {
                return None;
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            codings.present = true;
            for token in tokens(header.value) {
                codings.add(token);
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("expect") && !http10 {
            // RFC 9110 10.1.1: an HTTP/1.0 server knows no expectations.
            expect = if header
                .value
                .trim_ascii()
                .eq_ignore_ascii_case(b"100-continue")
            {
                Expect::Continue
            } else {
                Expect::Unknown
            };
        }
    }
    // RFC 9112 3.2: an HTTP/1.1 request needs exactly one Host; never two.
    if hosts > 1 || (hosts == 0 && !http10) {
        return None;
    }
    let framing = match (length, codings.present) {
        (None | Some(0), false) => Framing::None,
        (Some(n), false) => Framing::Length(n),
        // Both framings at once is the classic smuggling vector (RFC 9112
        // 6.1); an HTTP/1.0 request's framing is faulty with any coding
        // (6.1); a body not chunked last has no knowable end (6.3).
        (None, true) if codings.just_chunked() && !http10 => Framing::Chunked,
        _ => return None,
    };
    let keep_alive = !close && (keep || !http10);
    Some(Head {
        len,
        method,
        target,
        http10,
        keep_alive,
        framing,
        expect,
    })
}

/// The transfer codings of a request, as far as framing needs them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Codings {
    /// A `Transfer-Encoding` field was there, even an empty one.
    present: bool,
    /// How many of them were `chunked` (RFC 9112 6.1 allows one).
    chunked: u32,
    /// The last one is `chunked`: the body ends where the chunks do.
    chunked_last: bool,
}

impl Codings {
    /// Adds the next coding named in a `Transfer-Encoding` field.
    fn add(&mut self, coding: &[u8]) {
        self.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
        self.chunked = self.chunked.saturating_add(u32::from(self.chunked_last));
    }

    /// The body is framed by chunks and by nothing else.
    fn just_chunked(self) -> bool {
        self.chunked == 1 && self.chunked_last
    }
}

/// The comma-separated, trimmed, non-empty elements of a field value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// The [`Target`] of a request target: origin form (`/metrics?x=1`) or
/// absolute form (`http://host/metrics`, RFC 9112 3.2.2), query ignored.
fn route(target: &str) -> Target {
    // Origin form, nearly every request: no scheme to look for.
    let path = match target.starts_with('/') {
        true => target,
        false => match target.split_once("://") {
            Some((scheme, rest)) if !scheme.contains('/') => {
                rest.find('/').map_or("/", |at| &rest[at..])
            }
            _ => target,
        },
    };
    let end = path.bytes().position(|b| b == b'?').unwrap_or(path.len());
    let path = &path[..end];
    match path {
        "/" => Target::Hello,
        "/metrics" => Target::Metrics,
        _ => Target::Unknown,
    }
}

/// A `Content-Length` value: one or more digits, nothing else, fitting a u64.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = u64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        n.checked_mul(10)?.checked_add(digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(input: &[u8]) -> Head {
        match parse(input) {
            Parsed::Complete(head) => head,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn reads_the_facts_of_a_head() {
        let h = head(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            (h.len, h.method, h.target),
            (53, Method::Get, Target::Metrics)
        );
        assert_eq!(
            (h.http10, h.keep_alive, h.framing),
            (false, true, Framing::Length(5))
        );
        let h = head(b"HEAD / HTTP/1.0\r\nConnection: Upgrade, Keep-Alive\r\n\r\n");
        assert_eq!(
            (h.method, h.http10, h.keep_alive),
            (Method::Head, true, true)
        );
        let h = head(b"DELETE /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        assert_eq!(
            (h.method, h.keep_alive, h.framing),
            (Method::Other, false, Framing::None)
        );
    }

    #[test]
    fn routes_by_path_with_the_query_ignored() {
        for (target, expected) in [
            ("/", Target::Hello),
            ("/?x=1", Target::Hello),
            ("/metrics", Target::Metrics),
            ("/metrics?x=1", Target::Metrics),
            ("http://example.com/metrics?x", Target::Metrics),
            ("http://example.com", Target::Hello),
            ("/metrics/", Target::Unknown),
            ("/favicon.ico", Target::Unknown),
            ("/nope", Target::Unknown),
            ("//metrics", Target::Unknown),
            ("*", Target::Unknown),
        ] {
            let request = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(head(request.as_bytes()).target, expected, "{target}");
        }
    }

    #[test]
    fn reads_body_framing_and_expectations() {
        let h = head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        assert_eq!((h.framing, h.expect), (Framing::Chunked, Expect::Nothing));
        let h =
            head(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nExpect: 100-Continue\r\n\r\n");
        assert_eq!((h.framing, h.expect), (Framing::None, Expect::Continue));
        let h = head(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\ncontent-length: 7\r\nExpect: x\r\n\r\n");
        assert_eq!((h.framing, h.expect), (Framing::Length(7), Expect::Unknown));
        // HTTP/1.0 has no expectations: ignored.
        let h = head(b"POST / HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!((h.framing, h.expect), (Framing::Length(2), Expect::Nothing));
    }

    #[test]
    fn refuses_bad_framing() {
        for input in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET\x00/ HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse(input),
                Parsed::Reject(Reject::BadRequest),
                "{input:?}"
            );
        }
    }

    #[test]
    fn limits_head_size_and_header_count() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD, b'a');
        assert_eq!(parse(&long), Parsed::Reject(Reject::TooLarge));
        assert_eq!(parse(&long[..MAX_HEAD - 1]), Parsed::Partial);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"Host: a\r\n");
        }
        assert_eq!(parse(&many), Parsed::Reject(Reject::TooLarge));
    }
}
