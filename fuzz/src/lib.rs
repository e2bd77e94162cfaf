//! What the fuzz targets share: drive a fresh service over one input, whole
//! and cut into pieces, and check that every cutting gives the same result
//! (a service must not care how TCP split the stream).
//!
//! The driving is `readyloop::service::testing::run_until_job`: the same
//! `Dialogue` every real driver uses, each piece one read. It stops at the
//! first job a service asks for instead of running it: jobs touch the disk,
//! and the parsers fuzzed here are all in front of the first job.
//!
//! Not part of the main build: `fuzz/` is its own workspace (see
//! `fuzz/README.md`).

use readyloop::service::testing::run_until_job;
use readyloop::service::{Job, Service};

/// How one run of a service ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The dialogue closed before the input ran out.
    Closed,
    /// The service asked for this job; the run stopped there.
    Job(Job),
    /// The input ran out, and the dialogue closed after the end of input.
    Eof,
}

/// Everything a run produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Run {
    /// The bytes the service wrote, in order.
    pub out: Vec<u8>,
    /// Requests the dialogue counted as answered.
    pub answered: u32,
    /// How it ended.
    pub end: End,
}

/// Feeds `chunks` to `service`, one read each, then the end of input.
pub fn drive(service: impl Service, chunks: &[&[u8]]) -> Run {
    let (outcome, job) = run_until_job(service, chunks);
    let end = match job {
        Some(job) => End::Job(job),
        None if outcome.closed => End::Closed,
        None => End::Eof,
    };
    Run {
        out: outcome.out,
        answered: outcome.answered,
        end,
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
pub fn same_for_every_cutting<S: Service>(make: impl Fn() -> S, data: &[u8]) -> Run {
    same_for_every_cutting_as(make, data, <[u8]>::to_vec)
}

/// Like [`same_for_every_cutting`], but compares the outputs as
/// `normalize` makes them, for output that may rightly differ between two
/// runs (an HTTP `Date` that ticked over). Returns the whole input's run,
/// its output as it was.
pub fn same_for_every_cutting_as<S: Service>(
    make: impl Fn() -> S,
    data: &[u8],
    normalize: impl Fn(&[u8]) -> Vec<u8>,
) -> Run {
    let whole = drive(make(), &[data]);
    let whole_out = normalize(&whole.out);
    for pieces in cuttings(data).iter().skip(1) {
        let cut = drive(make(), pieces);
        let cut_out = normalize(&cut.out);
        let lengths: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert!(
            (&cut_out, cut.answered, &cut.end) == (&whole_out, whole.answered, &whole.end),
            "the input cut into {} pieces (lengths {:?}...) gave\n  {:?} ({} answered) ending {:?}\nbut whole it gave\n  {:?} ({} answered) ending {:?}",
            pieces.len(),
            &lengths[..lengths.len().min(16)],
            cut_out.escape_ascii().to_string(),
            cut.answered,
            cut.end,
            whole_out.escape_ascii().to_string(),
            whole.answered,
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
