//! What one turn of the event loop lends the connection it pumps: the
//! loop's scratch buffers, the settings and counters, and the time of the
//! wake-up. Owned by the loop, so that per-request bytes pass through memory
//! that already exists (rules 11 and 12), not through each connection's own.

use std::time::{Instant, SystemTime};

use std::sync::Arc;

use super::Options;
use super::mail::MailQueue;
use crate::stats::Stats;

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
    pub(crate) write: Vec<u8>,
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            read: vec![0; READ_CHUNK].into_boxed_slice(),
            write: Vec::with_capacity(READ_CHUNK),
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
