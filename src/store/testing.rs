//! The log's replay on bytes, without a data directory: for the fuzz target
//! in `fuzz/` (hence public, and hidden from the docs). Not an API.
//!
//! [`replay`] does what opening a store does to a log's bytes (scan the
//! records, apply each to a fresh keyspace, classify the damage), and says
//! what it saw; [`encode`] writes a record as the store writes them.

use std::cell::Cell;

use super::db::Db;
use super::log::{self, Corrupt, Record, Scan};

pub use super::log::{MAGIC, RECORD_HEADER, code};

/// One record replay handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Its type.
    pub code: u8,
    /// Its key.
    pub key: Vec<u8>,
    /// The rest of its body.
    pub payload: Vec<u8>,
}

/// How the replay of a log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte was a good record.
    Clean,
    /// A torn last record at `offset`: the store drops it, truncating there.
    Torn {
        /// Where it starts.
        offset: u64,
    },
    /// Damage at `offset` that may not be dropped: the store refuses to start.
    Corrupt {
        /// Where the bad record starts.
        offset: u64,
        /// Where a good record follows it, when the search found one.
        next: Option<u64>,
    },
}

/// What [`replay`] saw.
#[derive(Debug)]
pub struct Replay {
    /// The records handed to the keyspace, in order.
    pub records: Vec<Replayed>,
    /// How it ended.
    pub end: End,
    /// Keys in the keyspace after it.
    pub keys: usize,
    /// Bytes checksummed, the search past damage included: the work that
    /// must stay linear in the log's size.
    pub checksummed: u64,
}

thread_local! {
    /// Bytes [`log::checksum`] has covered on this thread.
    static CHECKSUMMED: Cell<u64> = const { Cell::new(0) };
}

/// Counts `bytes` checksummed (called by [`log::checksum`]).
pub(super) fn count_checksummed(bytes: usize) {
    CHECKSUMMED.with(|n| n.set(n.get() + bytes as u64));
}

/// Replays `bytes`, a whole log ([`MAGIC`] included), into a fresh keyspace.
pub fn replay(bytes: &[u8]) -> Replay {
    let mut db = Db::default();
    let mut records = Vec::new();
    let before = CHECKSUMMED.with(Cell::get);
    let scan = log::scan(bytes, |record: Record<'_>| {
        records.push(Replayed {
            code: record.code,
            key: record.key.to_vec(),
            payload: record.payload.to_vec(),
        });
        db.apply(record);
    });
    let end = match scan {
        Ok(Scan::Clean) => End::Clean,
        Ok(Scan::Torn { offset, .. }) => End::Torn { offset },
        Err(Corrupt { offset, next, .. }) => End::Corrupt { offset, next },
    };
    Replay {
        records,
        end,
        keys: db.len(),
        checksummed: CHECKSUMMED.with(Cell::get) - before,
    }
}

/// Appends the record of type `code` for `key` with `payload` to `out`,
/// as the store writes it.
///
/// # Panics
///
/// If the body is over the log's record limit (1 GiB).
pub fn encode(out: &mut Vec<u8>, code: u8, key: &[u8], payload: &[u8]) {
    let start = log::begin(out, code, key);
    out.extend_from_slice(payload);
    log::finish(out, start);
}
