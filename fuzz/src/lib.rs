//! What the fuzz targets share: drive a fresh service over one input, whole
//! and cut into pieces, and check that every cut gives the same result (a
//! service must not care how TCP split the stream).
//!
//! The driving follows the driver contract of `readyloop::service::Service`
//! with the same `service::feed` every real driver calls. It stops at the
//! first job a service asks for instead of running it: jobs touch the disk,
//! and the parsers fuzzed here are all in front of the first job.
//!
//! Not part of the main build: `fuzz/` is its own workspace (see
//! `fuzz/README.md`).

use std::net::SocketAddr;
use std::time::Instant;

use readyloop::service::{self, Cx, Job, Next, Service};

/// How one run of a service ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The service returned `Close` (its input was not all consumed, maybe).
    Closed,
    /// The service asked for this job; the run stopped there.
    Job(Job),
    /// The input ran out and `eof` was called.
    Eof,
}

/// Everything a run produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    /// The bytes the service wrote, in order.
    pub out: Vec<u8>,
    /// How it ended.
    pub end: End,
}

/// Feeds `chunks` to `service` one after the other, as a driver would
/// after each read, then `eof`.
pub fn drive(service: &mut dyn Service, chunks: &[&[u8]]) -> Run {
    let mut out = Vec::new();
    let end = drive_into(service, chunks, &mut out);
    Run { out, end }
}

fn drive_into(service: &mut dyn Service, chunks: &[&[u8]], out: &mut Vec<u8>) -> End {
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let mut cx = Cx::new(out, Instant::now(), peer);
    match service.open(&mut cx) {
        Next::Continue => {}
        Next::Close => return End::Closed,
        Next::Offload(job) => return End::Job(job),
    }
    let mut pending = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let (consumed, next) = service::feed(service, &pending, &mut cx);
        assert!(consumed <= pending.len(), "consumed more than it was given");
        pending.drain(..consumed);
        match next {
            Next::Continue => {}
            Next::Close => return End::Closed,
            Next::Offload(job) => return End::Job(job),
        }
    }
    match service.eof(&pending, &mut cx) {
        Next::Offload(job) => End::Job(job),
        Next::Continue | Next::Close => End::Eof,
    }
}

/// Inputs up to this long are also fed one byte at a time (longer ones
/// would make each run quadratic in the framing's rescans).
const BYTEWISE_UP_TO: usize = 512;

/// How many pseudo-random cuttings each input gets, besides whole and bytewise.
const RANDOM_CUTTINGS: usize = 4;

/// The cuttings of `data` to compare: whole, byte by byte (when short), and
/// [`RANDOM_CUTTINGS`] random ones seeded by the input's own hash, so a
/// crash reproduces from its input file alone.
pub fn cuttings(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![data]];
    if data.len() <= BYTEWISE_UP_TO {
        all.push(data.chunks(1).collect());
    }
    let mut state = fnv1a(data) | 1;
    for _ in 0..RANDOM_CUTTINGS {
        let mut pieces = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            state = xorshift(state);
            // Mostly short pieces, sometimes long ones.
            let limit = if state.is_multiple_of(4) { 64 } else { 8 };
            let len = 1 + (state >> 8) as usize % limit;
            let (piece, after) = rest.split_at(len.min(rest.len()));
            pieces.push(piece);
            rest = after;
        }
        all.push(pieces);
    }
    all
}

/// Runs a fresh service from `make` over every cutting of `data`, asserts
/// that they all give the same [`Run`], and returns it.
pub fn same_for_every_cutting(make: impl Fn() -> Box<dyn Service>, data: &[u8]) -> Run {
    let whole = drive(make().as_mut(), &[data]);
    for pieces in cuttings(data).iter().skip(1) {
        let cut = drive(make().as_mut(), pieces);
        let lengths: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert!(
            cut == whole,
            "the input cut into {} pieces (lengths {:?}...) gave\n  {:?} ending {:?}\nbut whole it gave\n  {:?} ending {:?}",
            pieces.len(),
            &lengths[..lengths.len().min(16)],
            cut.out.escape_ascii().to_string(),
            cut.end,
            whole.out.escape_ascii().to_string(),
            whole.end,
        );
    }
    whole
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
