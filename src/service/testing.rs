//! A socket-free driver for unit tests of services, and for the fuzz
//! targets in `fuzz/` (hence public, and hidden from the docs).
//!
//! [`run`] drives a service through the same [`Dialogue`] as the real
//! drivers (offloaded jobs run inline; each chunk is one read, after which
//! the "socket" is drained), so a service can be tested by feeding it bytes
//! in any split and comparing what it wrote. [`run_until_job`] stops at the
//! first job instead, for parsers in front of one (no disk touched).

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::{Action, Cx, Dialogue, Job, Service};

/// The peer address tests pretend to be.
pub fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

/// What a dialogue produced: the bytes written, and whether the service
/// asked to close before the input ran out.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Everything the service wrote, in order.
    pub out: Vec<u8>,
    /// True when the dialogue closed before the input ran out.
    pub closed: bool,
    /// Requests the dialogue counted as answered.
    pub answered: u32,
}

/// A context writing to `out`, at this instant, from [`peer`]: for tests
/// that call a service directly.
pub fn cx(out: &mut Vec<u8>) -> Cx<'_> {
    Cx::new(out, Instant::now(), SystemTime::now(), peer())
}

/// Drives `service` through a [`Dialogue`]: open, each chunk as one read,
/// then end of input; jobs run inline.
pub fn run(service: impl Service, chunks: &[&[u8]]) -> Outcome {
    drive(service, chunks, true).0
}

/// Like [`run`], but stops at the first job the service asks for and
/// returns it instead of running it (with `closed` false).
pub fn run_until_job(service: impl Service, chunks: &[&[u8]]) -> (Outcome, Option<Job>) {
    drive(service, chunks, false)
}

fn drive(service: impl Service, chunks: &[&[u8]], run_jobs: bool) -> (Outcome, Option<Job>) {
    let mut out = Vec::new();
    let mut dialogue = Dialogue::new(Box::new(service), usize::MAX);
    let (now, wall) = (Instant::now(), SystemTime::now());
    let mut cx = Cx::new(&mut out, now, wall, peer());
    let mut action = dialogue.open(&mut cx);
    let mut chunks = chunks.iter();
    let mut ended = false;
    loop {
        action = match action {
            Action::Close => {
                let answered = dialogue.take_answered();
                let outcome = Outcome {
                    out,
                    closed: !ended,
                    answered,
                };
                return (outcome, None);
            }
            Action::Run(job) if !run_jobs => {
                let answered = dialogue.take_answered();
                let outcome = Outcome {
                    out,
                    closed: false,
                    answered,
                };
                return (outcome, Some(job));
            }
            // Nothing is read during a job: the last chunk is still drained.
            Action::Run(job) => dialogue.job_done(job.run(), true, &mut cx),
            Action::Flush => dialogue.proceed(&mut cx), // this client reads at once
            Action::Read => match chunks.next() {
                Some(chunk) => match dialogue.received(chunk, &mut cx) {
                    Action::Read => dialogue.drained(&mut cx),
                    other => other,
                },
                None => {
                    ended = true;
                    dialogue.ended(&mut cx)
                }
            },
        };
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
pub fn assert_dialogue<S: Service>(make: impl Fn() -> S, input: &[u8], expected: &[u8]) {
    for chunks in splits(input) {
        let outcome = run(make(), &chunks);
        assert_eq!(
            String::from_utf8_lossy(&outcome.out),
            String::from_utf8_lossy(expected),
            "input split as {chunks:?}"
        );
    }
}
