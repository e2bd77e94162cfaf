//! A transaction: the keyspace under the store's lock, for as long as one
//! command (or one `EXEC`) runs, with the time it runs at.
//!
//! Reads through [`Tx::get`] expire keys lazily: a key past its deadline
//! is deleted (and a DEL logged) the moment anyone looks at it, as Redis'
//! `expireIfNeeded` does. Writes are records: [`Tx::write`] starts one in
//! the log's pending buffer, the caller adds its payload, and
//! [`Write::apply`] runs it on the keyspace ([`super::db`]); a record that
//! changed nothing is dropped again, so no-ops do not grow the log.

use super::db::{Applied, Db, Entry};
use super::log::{self, Record, code};
use super::{Core, Seq, State};

/// The keyspace, locked, at time `now`.
pub struct Tx<'a> {
    core: &'a Core,
    state: &'a mut State,
    now: u64,
    /// The change number when the transaction began.
    began: u64,
}

/// One record being written; dropped without [`apply`](Write::apply), it
/// is discarded.
#[derive(Debug)]
pub struct Write<'t, 'a> {
    tx: &'t mut Tx<'a>,
    start: usize,
    applied: bool,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<'a> Tx<'a> {
    pub(super) fn new(core: &'a Core, state: &'a mut State, now: u64) -> Tx<'a> {
        let began = state.seq;
        Tx {
            core,
            state,
            now,
            began,
        }
    }

    /// The time the transaction runs at, in ms since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The keyspace as it is, deadlines not checked (`DBSIZE`, `SCAN`
    /// candidates, watch versions).
    pub fn db(&self) -> &Db {
        &self.state.db
    }

    /// Watch bookkeeping (not logged: it is per connection, not data).
    pub fn db_watch(&mut self) -> &mut Db {
        &mut self.state.db
    }

    /// The entry of `key`, deleting it first if its deadline has passed.
    pub fn get(&mut self, key: &[u8]) -> Option<&Entry> {
        let expired = self
            .state
            .db
            .entry(key)?
            .deadline
            .is_some_and(|at| at <= self.now);
        if expired {
            self.del(key);
            return None;
        }
        self.state.db.entry(key)
    }

    /// True when `key` exists (one lookup; an expired key is deleted).
    pub fn exists(&mut self, key: &[u8]) -> bool {
        let now = self.now;
        let expired = match self.state.db.entry(key) {
            None => return false,
            Some(entry) => entry.deadline.is_some_and(|at| at <= now),
        };
        if expired {
            self.del(key);
        }
        !expired
    }

    /// Deletes `key`; true when it existed.
    pub fn del(&mut self, key: &[u8]) -> bool {
        self.write(code::DEL, key).apply().changed
    }

    /// Starts a record of type `code` for `key`.
    pub fn write<'t>(&'t mut self, code: u8, key: &[u8]) -> Write<'t, 'a> {
        let start = log::begin(&mut self.state.pending, code, key);
        Write {
            tx: self,
            start,
            applied: false,
        }
    }

    /// The number of the last change made in this transaction, if any.
    pub fn changed(&self) -> Option<Seq> {
        (self.state.seq > self.began).then_some(Seq(self.state.seq))
    }

    /// Deletes up to `max` keys whose deadline has passed, soonest first;
    /// returns how many.
    pub fn expire_due(&mut self, max: usize) -> usize {
        let mut removed = 0;
        while removed < max {
            let Some((at, key)) = self.state.db.first_deadline() else {
                break;
            };
            if at > self.now {
                break;
            }
            let key = key.to_vec();
            self.del(&key);
            removed += 1;
        }
        removed
    }
}

impl Write<'_, '_> {
    /// Appends a length-prefixed item to the payload.
    pub fn item(self, bytes: &[u8]) -> Self {
        log::item(&mut self.tx.state.pending, bytes);
        self
    }

    /// Appends length-prefixed items to the payload.
    pub fn items<'i>(self, items: impl IntoIterator<Item = &'i [u8]>) -> Self {
        for item in items {
            log::item(&mut self.tx.state.pending, item);
        }
        self
    }

    /// Appends raw payload bytes.
    pub fn bytes(self, bytes: &[u8]) -> Self {
        self.tx.state.pending.extend_from_slice(bytes);
        self
    }

    /// Appends a little-endian u64 to the payload.
    pub fn u64(self, n: u64) -> Self {
        self.bytes(&n.to_le_bytes())
    }

    /// Runs the record on the keyspace; keeps it for the log if it changed
    /// something.
    pub fn apply(mut self) -> Applied {
        self.applied = true;
        let core = self.tx.core;
        let State {
            db,
            pending,
            seq,
            rewrite,
            ..
        } = &mut *self.tx.state;
        log::finish(pending, self.start);
        let applied = db.apply(record_at(pending, self.start));
        if core.log.is_none() {
            pending.truncate(self.start);
            *seq += u64::from(applied.changed);
            return applied;
        }
        if !applied.changed {
            pending.truncate(self.start);
            return applied;
        }
        *seq += 1;
        if let Some(rewrite) = rewrite {
            rewrite.extend_from_slice(&pending[self.start..]);
        }
        applied
    }
}

impl Drop for Write<'_, '_> {
    fn drop(&mut self) {
        if !self.applied {
            self.tx.state.pending.truncate(self.start);
        }
    }
}

/// The record just encoded at `start` of `bytes` (its checksum is ours).
fn record_at(bytes: &[u8], start: usize) -> Record<'_> {
    let body = &bytes[start + log::RECORD_HEADER..];
    let key_len = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes")) as usize;
    Record {
        code: body[0],
        key: &body[5..5 + key_len],
        payload: &body[5 + key_len..],
    }
}
