//! A socket-free driver for unit tests of services.
//!
//! [`run`] follows the driver contract of [`Service`] exactly as the real
//! drivers do (offloaded jobs run inline), so a service can be tested by
//! feeding it bytes in any split and comparing what it wrote.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Cx, Next, Service};

/// The peer address tests pretend to be.
pub fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

/// What a dialogue produced: the bytes written, and whether the service
/// asked to close (and after how many input bytes it stopped reading).
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Everything the service wrote, in order.
    pub out: Vec<u8>,
    /// True when the service returned `Close` before the input ran out.
    pub closed: bool,
}

/// Drives `service` through `open`, `input` for each chunk, then `eof`,
/// following the driver contract: unconsumed bytes are kept and given again
/// with the next chunk; offloaded jobs run inline, then `resume`.
pub fn run(service: &mut dyn Service, chunks: &[&[u8]]) -> Outcome {
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let now = Instant::now();
    let mut cx = Cx::new(&mut out, now, peer());
    let mut next = service.open(&mut cx);
    let mut chunks = chunks.iter();
    loop {
        match next {
            Next::Close => return Outcome { out, closed: true },
            Next::Offload(job) => {
                let mut cx = Cx::new(&mut out, now, peer());
                next = service.resume(job.run(), &mut cx);
                continue;
            }
            Next::Continue => {}
        }
        let mut cx = Cx::new(&mut out, now, peer());
        let (consumed, after) = service.input(&pending, &mut cx);
        assert!(consumed <= pending.len(), "consumed more than given");
        pending.drain(..consumed);
        next = after;
        if next != Next::Continue || consumed > 0 {
            continue;
        }
        match chunks.next() {
            Some(chunk) => pending.extend_from_slice(chunk),
            None => {
                let mut cx = Cx::new(&mut out, now, peer());
                let mut last = service.eof(&pending, &mut cx);
                // The last request may need a job; its reply comes before the close.
                while let Next::Offload(job) = last {
                    let mut cx = Cx::new(&mut out, now, peer());
                    last = service.resume(job.run(), &mut cx);
                }
                return Outcome { out, closed: false };
            }
        }
    }
}

/// Every way of cutting `input` that tests care about: whole, one byte at a
/// time, and every cut into two pieces.
pub fn splits(input: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![input], input.chunks(1).collect()];
    for cut in 1..input.len() {
        all.push(vec![&input[..cut], &input[cut..]]);
    }
    all
}

/// Asserts that a fresh service from `make` answers `input` with `expected`
/// for every split of the input.
#[track_caller]
pub fn assert_dialogue(make: impl Fn() -> Box<dyn Service>, input: &[u8], expected: &[u8]) {
    for chunks in splits(input) {
        let mut service = make();
        let outcome = run(service.as_mut(), &chunks);
        assert_eq!(
            String::from_utf8_lossy(&outcome.out),
            String::from_utf8_lossy(expected),
            "input split as {chunks:?}"
        );
    }
}
