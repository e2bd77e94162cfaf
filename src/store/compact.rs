//! Compaction: rewriting the log as the records of the live keys, while
//! changes go on, and swapping it in atomically (write, fsync, rename,
//! fsync the directory). The flusher decides when ([`Core::maybe_compact`]).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use super::db::{Db, Value};
use super::durability::Log;
use super::log::{self, code};
use super::{COMPACT_RATIO, Core};

impl Core {
    pub(super) fn maybe_compact(&self, log: &Log) {
        let size = log.lock_writer().size;
        let base = self.lock().base;
        if size > log.compact_min && size > COMPACT_RATIO * base {
            ::log::info!(
                "store: rewriting {} ({size} bytes, {base} after the last rewrite)",
                log.path.display()
            );
            if let Err(e) = self.compact(|| {}) {
                ::log::error!("store: rewriting {} failed: {e}", log.path.display());
            }
        }
    }

    /// Rewrites the log as the records of each live key (its value, in
    /// chunks for big collections, and its deadline). The snapshot is taken
    /// under the state lock; it is written and fsynced with no lock held;
    /// then, under the writer lock, the changes made meanwhile are
    /// appended, the new file is fsynced and renamed over the old, and the
    /// directory fsynced. If anything fails before the rename, the old log
    /// is still whole and still in use.
    pub(super) fn compact(&self, between: impl FnOnce()) -> io::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        let temp = log.dir.join(log::REWRITE_NAME);
        let mut snapshot = log::MAGIC.to_vec();
        {
            let mut state = self.lock();
            snapshot_of(&state.db, &mut snapshot);
            state.rewrite = Some(Vec::new());
        }
        let result = self.rewrite(log, &temp, &snapshot, between);
        if result.is_err() {
            self.lock().rewrite = None;
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn rewrite(
        &self,
        log: &Log,
        temp: &Path,
        snapshot: &[u8],
        between: impl FnOnce(),
    ) -> io::Result<()> {
        let mut file = File::create(temp)?;
        file.write_all(snapshot)?;
        file.sync_data()?;
        between();
        let mut writer = log.lock_writer();
        if let Some(failed) = &writer.failed {
            return Err(io::Error::other(failed.clone()));
        }
        // With the writer locked nobody drains `pending`: its first `cut`
        // bytes are all in the snapshot or the tail, the rest come later.
        let (tail, cut, seq) = {
            let mut state = self.lock();
            let tail = state.rewrite.take().unwrap_or_default();
            (tail, state.pending.len(), state.seq)
        };
        file.write_all(&tail)?;
        file.sync_data()?;
        std::fs::rename(temp, &log.path)?;
        // The new file is the log now, whatever happens next.
        writer.file = file;
        writer.size = (snapshot.len() + tail.len()) as u64;
        {
            let mut state = self.lock();
            state.pending.drain(..cut);
            state.base = writer.size;
        }
        log.written.store(seq, Ordering::Release);
        if let Err(e) = log::sync_dir(&log.dir) {
            writer.failed = Some(format!(
                "cannot fsync {} after a rewrite: {e}",
                log.dir.display()
            ));
            return Err(e);
        }
        log.durable.store(seq, Ordering::Release);
        ::log::info!(
            "store: rewrote {} to {} bytes",
            log.path.display(),
            writer.size
        );
        Ok(())
    }
}

/// Encodes the whole keyspace as records (compaction): for each key its
/// value, in records of at most about [`CHUNK`] bytes, then its deadline.
fn snapshot_of(db: &Db, out: &mut Vec<u8>) {
    for (key, entry) in db.iter() {
        match &entry.value {
            Value::Str(value) => log::encode_set(out, key, value),
            Value::List(list) => {
                chunked(out, code::RPUSH, key, list.iter().map(|i| [i.as_slice()]))
            }
            Value::Hash(hash) => chunked(
                out,
                code::HSET,
                key,
                hash.iter().map(|(f, v)| [f.as_slice(), v.as_slice()]),
            ),
            Value::Set(set) => chunked(out, code::SADD, key, set.iter().map(|m| [m.as_slice()])),
            Value::ZSet(zset) => {
                let mut start = None;
                for (member, score) in zset.iter() {
                    let at = *start.get_or_insert_with(|| log::begin(out, code::ZADD, key));
                    log::item(out, &score.to_bits().to_le_bytes());
                    log::item(out, member);
                    if out.len() - at > CHUNK {
                        log::finish(out, at);
                        start = None;
                    }
                }
                if let Some(at) = start {
                    log::finish(out, at);
                }
            }
        }
        if let Some(at) = entry.deadline {
            let start = log::begin(out, code::EXPIRE, key);
            out.extend_from_slice(&at.to_le_bytes());
            log::finish(out, start);
        }
    }
}

/// The payload size after which a compaction record is closed.
const CHUNK: usize = 1 << 20;

fn chunked<'a, const N: usize>(
    out: &mut Vec<u8>,
    code: u8,
    key: &[u8],
    groups: impl Iterator<Item = [&'a [u8]; N]>,
) {
    let mut start = None;
    for group in groups {
        let at = *start.get_or_insert_with(|| log::begin(out, code, key));
        for item in group {
            log::item(out, item);
        }
        if out.len() - at > CHUNK {
            log::finish(out, at);
            start = None;
        }
    }
    if let Some(at) = start {
        log::finish(out, at);
    }
}
