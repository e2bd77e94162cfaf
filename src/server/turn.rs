//! What one turn of the event loop lends the connection it pumps: the
//! loop's scratch buffers and tally, the settings and counters, and the
//! time of the wake-up. Owned by the loop, so that per-request bytes pass
//! through memory that already exists (rules 11 and 12), not through each
//! connection's own, and per-request counts through plain integers, not
//! the shared atomic counters.

use std::time::{Instant, SystemTime};

use std::sync::Arc;

use super::Options;
use super::mail::MailQueue;
use crate::stats::{self, Stats};

/// Bytes asked for per `read` call: 16 KiB, as Redis reads.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Bytes one connection may read per turn of the loop before others get
/// theirs. A connection that spends it with data still waiting goes on the
/// loop's "still ready" list (edge-triggered: no new event will remind us).
pub(crate) const READ_BUDGET: usize = 4 * READ_CHUNK;

/// The loop's write buffer is given back after a turn that grew it past
/// this (one large reply), so a burst does not pin memory (rule 12).
const SCRATCH_KEEP: usize = 4 * READ_CHUNK;

/// Buffers owned by the loop and lent to whichever connection is pumped.
///
/// In the steady state (a request arrives whole, its reply is written whole)
/// bytes pass through these and the connection's own buffers stay empty and
/// unallocated: no allocation per request (rule 11) and no buffer memory per
/// idle connection (rule 12).
#[derive(Debug)]
pub(crate) struct Scratch {
    pub(crate) read: Box<[u8]>,
    pub(crate) sink: Sink,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            read: vec![0; READ_CHUNK].into_boxed_slice(),
            sink: Sink {
                write: Vec::with_capacity(READ_CHUNK),
                tally: Tally::default(),
            },
        }
    }
}

/// Where what a dialogue produces goes: the bytes of its replies, sent
/// from here at once in the steady state, and the turn's counts.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) write: Vec<u8>,
    pub(crate) tally: Tally,
}

/// The traffic of one turn, counted in plain integers and added to the
/// shared [`Stats`] once, before the loop sleeps ([`Tally::publish`]). The
/// counters are atomics (`--loops N` share them, the console reads them)
/// and a locked add costs far more than an add; an echo request made three
/// of them (bytes in, requests, bytes out). A scrape may now lag behind by
/// what the current turn has done so far, which the counters allow.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) requests: u64,
}

impl Tally {
    /// Adds what was counted to `stats`, and starts again from zero.
    pub(crate) fn publish(&mut self, stats: &Stats) {
        let Tally {
            bytes_in,
            bytes_out,
            requests,
        } = std::mem::take(self);
        for (counter, n) in [
            (&stats.bytes_in, bytes_in),
            (&stats.bytes_out, bytes_out),
            (&stats.requests, requests),
        ] {
            if n > 0 {
                stats::add(counter, n);
            }
        }
    }
}

/// What one pump may look at besides the connection: settings, counters
/// and the time of this wake-up (read once by the loop).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Turn<'a> {
    pub(crate) options: &'a Options,
    pub(crate) stats: &'a Stats,
    pub(crate) now: Instant,
    pub(crate) wall: SystemTime,
    /// Where this loop's doorbells queue connections with pub/sub mail.
    pub(crate) mail: &'a Arc<MailQueue>,
}

/// Gives the loop's write buffer back after a turn that grew it past
/// [`SCRATCH_KEEP`]: one large reply must not pin its size for good.
pub(crate) fn shrink(write: &mut Vec<u8>) {
    if write.capacity() > SCRATCH_KEEP {
        *write = Vec::with_capacity(READ_CHUNK);
    }
}
