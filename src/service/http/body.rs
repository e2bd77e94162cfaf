//! Request bodies, read and thrown away: `Content-Length` bytes, or a
//! `chunked` body (RFC 9112 7.1) decoded just far enough to find its end.
//!
//! The service answers no request by its body, but it must read every body
//! to find where the next request starts (keep-alive stays in step). The
//! decoder is a byte-at-a-time state machine over the framing, skipping
//! chunk data in bulk, so it consumes everything it is given, keeps no
//! bytes, and gives the same verdict for every split of the stream. Strict
//! where leniency lets two parsers disagree (request smuggling): lines end
//! in CRLF, never a bare LF; sizes are hex digits with no sign or spaces
//! before them. Pure: no I/O, no allocation.

/// Chunk extensions and trailer fields together may take this many bytes
/// (nginx's header limit); more is a `400`, so no framing is unbounded.
pub(super) const MAX_FRAMING: u64 = 8 * 1024;

/// Hex digits a chunk size may have: 15 keep it under 2^60, far above any
/// body limit, so the sum of sizes cannot overflow.
const MAX_SIZE_DIGITS: u8 = 15;

/// Where a body being skipped stands after some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// All input consumed; the body goes on.
    More,
    /// The body ended; the bytes after it are the next request.
    Done,
    /// The chunked framing is broken: `400`, then close.
    Malformed,
    /// The body passed the limit: `413`, then close.
    TooLarge,
}

/// A body being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// This many bytes of a `Content-Length` body are still to come.
    Length(u64),
    /// A chunked body, and how much of its data has passed.
    Chunked {
        at: Chunked,
        data: u64,
        framing: u64,
    },
}

/// Where in the chunked framing the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    /// In a chunk-size line's hex digits: the value so far and their count.
    Size { size: u64, digits: u8 },
    /// In a chunk extension (`;name=value`), skipped, until its CR.
    Extension { size: u64 },
    /// After a size line's CR: its LF must follow.
    SizeLf { size: u64 },
    /// In chunk data: this many bytes to skip.
    Data(u64),
    /// After chunk data: its CR.
    DataCr,
    /// After chunk data's CR: its LF.
    DataLf,
    /// After the last chunk, at the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// In a trailer field line, until its CR.
    TrailerLine,
    /// After a trailer line's CR: its LF.
    TrailerLf,
    /// After the final CR: the LF that ends the body.
    EndLf,
    /// The body has ended.
    End,
}

impl Body {
    /// A chunked body, at its start.
    pub(super) fn chunked() -> Self {
        Body::Chunked {
            at: Chunked::Size { size: 0, digits: 0 },
            data: 0,
            framing: 0,
        }
    }

    /// Skips what of `input` belongs to the body, allowing `max` bytes of
    /// body data in all. Returns the bytes consumed (all of `input` unless
    /// the body ended or failed in it) and where the body stands.
    pub(super) fn skip(&mut self, input: &[u8], max: u64) -> (usize, Progress) {
        match self {
            Body::Length(remaining) => {
                let take = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                *remaining -= take as u64;
                let progress = if *remaining == 0 {
                    Progress::Done
                } else {
                    Progress::More
                };
                (take, progress)
            }
            Body::Chunked { at, data, framing } => {
                let mut used = 0;
                while used < input.len() {
                    if let Chunked::Data(left) = at {
                        let rest = input.len() - used;
                        let take = usize::try_from(*left).map_or(rest, |left| left.min(rest));
                        *left -= take as u64;
                        used += take;
                        if *left == 0 {
                            *at = Chunked::DataCr;
                        }
                        continue;
                    }
                    let Some(next) = step(*at, input[used]) else {
                        return (used + 1, Progress::Malformed);
                    };
                    used += 1;
                    match next {
                        Chunked::End => return (used, Progress::Done),
                        Chunked::Extension { .. } | Chunked::TrailerLine => *framing += 1,
                        Chunked::Data(size) => *data += size,
                        _ => {}
                    }
                    if *framing > MAX_FRAMING {
                        return (used, Progress::Malformed);
                    }
                    if *data > max {
                        return (used, Progress::TooLarge);
                    }
                    *at = next;
                }
                (used, Progress::More)
            }
        }
    }
}

/// The framing state after `byte` in state `at`; `None` when `byte` breaks
/// the grammar. Never given `Data` (the caller skips data in bulk) nor
/// `End` (the caller stops there).
fn step(at: Chunked, byte: u8) -> Option<Chunked> {
    Some(match (at, byte) {
        (Chunked::Size { size, digits }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
            if digits < MAX_SIZE_DIGITS =>
        {
            let digit = char::from(byte).to_digit(16)?;
            Chunked::Size {
                size: size * 16 + u64::from(digit),
                digits: digits + 1,
            }
        }
        (Chunked::Size { size, digits }, b';' | b' ' | b'\t') if digits > 0 => {
            Chunked::Extension { size }
        }
        (Chunked::Size { size, digits }, b'\r') if digits > 0 => Chunked::SizeLf { size },
        (Chunked::Extension { size }, b'\r') => Chunked::SizeLf { size },
        (Chunked::Extension { size }, byte) if byte != b'\n' => Chunked::Extension { size },
        (Chunked::SizeLf { size: 0 }, b'\n') => Chunked::TrailerStart,
        (Chunked::SizeLf { size }, b'\n') => Chunked::Data(size),
        (Chunked::DataCr, b'\r') => Chunked::DataLf,
        (Chunked::DataLf, b'\n') => Chunked::Size { size: 0, digits: 0 },
        (Chunked::TrailerStart, b'\r') => Chunked::EndLf,
        (Chunked::TrailerLine, b'\r') => Chunked::TrailerLf,
        (Chunked::TrailerStart | Chunked::TrailerLine, byte) if byte != b'\n' => {
            Chunked::TrailerLine
        }
        (Chunked::TrailerLf, b'\n') => Chunked::TrailerStart,
        (Chunked::EndLf, b'\n') => Chunked::End,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::splits;

    /// Feeds `input` to a fresh `body` in `chunks`, as the service does: each
    /// call gets the unconsumed bytes of what arrived so far. Returns the
    /// bytes consumed when it stopped, and why it stopped.
    fn feed(body: Body, chunks: &[&[u8]], max: u64) -> (usize, Progress) {
        let (mut body, mut used, mut arrived) = (body, 0, 0);
        let whole: Vec<u8> = chunks.concat();
        for chunk in chunks {
            arrived += chunk.len();
            let (n, progress) = body.skip(&whole[used..arrived], max);
            used += n;
            if progress != Progress::More {
                return (used, progress);
            }
        }
        (used, Progress::More)
    }

    /// Asserts the verdict on `input` for every split.
    #[track_caller]
    fn verdict(body: Body, input: &[u8], max: u64, expected: (usize, Progress)) {
        for chunks in splits(input) {
            assert_eq!(feed(body, &chunks, max), expected, "{chunks:?}");
        }
    }

    #[test]
    fn a_length_body_ends_after_its_bytes() {
        verdict(Body::Length(5), b"hello", 10, (5, Progress::Done));
        verdict(Body::Length(5), b"helloGET /", 10, (5, Progress::Done));
        verdict(Body::Length(5), b"hel", 10, (3, Progress::More));
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers() {
        let next = b"GET / HTTP/1.1\r\n";
        for body in [
            &b"0\r\n\r\n"[..],
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5;name=value\r\nhello\r\nA\r\n0123456789\r\n000\r\n\r\n",
            b"1 ; x\r\n!\r\n0\r\nTrailer: yes\r\nMore: x\r\n\r\n",
            b"fF\r\n",
        ] {
            let mut input = body.to_vec();
            let expected = if body.ends_with(b"\r\n\r\n") {
                input.extend_from_slice(next);
                (body.len(), Progress::Done)
            } else {
                (body.len(), Progress::More)
            };
            verdict(Body::chunked(), &input, 1000, expected);
        }
    }

    #[test]
    fn broken_chunked_framing_is_malformed() {
        for (input, at) in [
            (&b"\r\n"[..], 1),
            (b"x\r\n", 1),
            (b"-1\r\n", 1),
            (b" 1\r\n", 1),
            (b"5\nhello\r\n", 2),    // a bare LF
            (b"5\r\nhelloX\r\n", 9), // data longer than its size
            (b"5\r\nhello\r\r", 10),
            (b"1;a\nb\r\n", 4),
            (b"0\r\nTrailer\n", 11),
            (b"0\r\n\r\r", 5),
            (b"1000000000000000\r\n", 16), // 16 hex digits
        ] {
            verdict(Body::chunked(), input, u64::MAX, (at, Progress::Malformed));
        }
        let mut long = b"1;".to_vec();
        long.resize(2 + MAX_FRAMING as usize, b'x');
        let at = long.len();
        long.extend_from_slice(b"\r\n!\r\n0\r\n\r\n");
        let body = Body::chunked().skip(&long, 10);
        assert_eq!(body, (at, Progress::Malformed));
    }

    #[test]
    fn chunked_data_over_the_limit_is_too_large_when_its_size_is_read() {
        verdict(
            Body::chunked(),
            b"4\r\nabcd\r\n3\r\nefg",
            6,
            (12, Progress::TooLarge),
        );
        verdict(
            Body::chunked(),
            b"6\r\nabcdef\r\n0\r\n\r\n",
            6,
            (16, Progress::Done),
        );
    }
}
