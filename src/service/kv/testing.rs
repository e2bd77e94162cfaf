//! The RESP request parser on its own, fed reads as the `kv` service feeds
//! it: for the fuzz target in `fuzz/` (hence public, and hidden from the
//! docs). Not an API.

use super::resp::{Parsed, Parser};

/// What the parser made of the front of the input, one call at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole request: its words.
    Request(Vec<Vec<u8>>),
    /// Nothing to run (`*0`, a blank line).
    Empty,
    /// A protocol error: the reason `-ERR Protocol error: ` gives. The
    /// service closes here.
    Malformed(String),
}

/// Everything the parser said over one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    /// In order; a [`Frame::Malformed`] is last.
    pub frames: Vec<Frame>,
    /// A frame was partly received when the input ended.
    pub in_frame: bool,
}

/// Feeds `reads` to a fresh parser refusing bulks over `max_bulk`, as
/// `Kv::input` does under the dialogue: each call gets every byte not yet
/// consumed, and a frame not whole in it is consumed into the parser.
pub fn frames(max_bulk: usize, reads: &[&[u8]]) -> Frames {
    let mut parser = Parser::new(max_bulk);
    let mut frames = Vec::new();
    let mut pending = Vec::new();
    for read in reads {
        pending.extend_from_slice(read);
        while !pending.is_empty() {
            let consumed = match parser.parse(&pending) {
                Parsed::Partial => pending.len(),
                Parsed::Empty { consumed } => {
                    frames.push(Frame::Empty);
                    consumed
                }
                Parsed::Request { consumed } => {
                    let request = parser.request(&pending);
                    frames.push(Frame::Request(
                        request.args_from(0).map(<[u8]>::to_vec).collect(),
                    ));
                    parser.done();
                    consumed
                }
                Parsed::Malformed(reason) => {
                    frames.push(Frame::Malformed(reason));
                    return Frames {
                        frames,
                        in_frame: false,
                    };
                }
            };
            pending.drain(..consumed);
        }
    }
    Frames {
        frames,
        in_frame: parser.in_frame(),
    }
}
