//! Durability: the open log file, the writer that appends pending records
//! to it, group commit for `--fsync always`, and the background flusher
//! thread (`everysec`, `no`). The policies are described in [`super`]'s
//! docs; the record format is [`super::log`]'s.
//!
//! Nothing here runs on the event-loop thread except [`Core::append`],
//! which only encodes into a buffer under the state lock: every write and
//! fsync happens on the flusher or on an offload worker.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::{Core, FSYNC_INTERVAL, Fsync, Seq};

/// The open log file and what is known to be in it.
pub(super) struct Log {
    pub(super) dir: PathBuf,
    pub(super) path: PathBuf,
    pub(super) policy: Fsync,
    /// Size above which a rewrite is considered ([`COMPACT_MIN_SIZE`]).
    pub(super) compact_min: u64,
    pub(super) writer: Mutex<Writer>,
    /// Changes up to this number are written to the file.
    pub(super) written: AtomicU64,
    /// Changes up to this number are fsynced.
    pub(super) durable: AtomicU64,
    /// Held for the store's life: one server per data directory.
    pub(super) _lock: File,
}

pub(super) struct Writer {
    pub(super) file: File,
    /// Bytes in the file.
    pub(super) size: u64,
    /// The buffer swapped with `pending`, so flushing allocates nothing.
    pub(super) spare: Vec<u8>,
    /// After a write or fsync failed, nothing more is written: what is in
    /// the file may end in a partial record, and an fsync error may have
    /// dropped dirty pages (so a later "success" would lie).
    pub(super) failed: Option<String>,
}

impl Log {
    pub(super) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        crate::sync::lock(&self.writer)
    }
}

impl Core {
    /// Group commit: returns once change `seq` is fsynced, by this thread
    /// or (more often, under load) by another waiter's fsync.
    pub(super) fn sync(&self, seq: Seq) -> io::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        if log.durable.load(Ordering::Acquire) >= seq.0 {
            return Ok(());
        }
        let mut writer = log.lock_writer();
        if log.durable.load(Ordering::Acquire) >= seq.0 {
            return Ok(()); // the waiter before us wrote and fsynced ours too
        }
        self.write_locked(log, &mut writer, true)
    }

    /// Writes every pending record; fsyncs too when `fsync`.
    pub(super) fn write_pending(&self, fsync: bool) -> io::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        let mut writer = log.lock_writer();
        self.write_locked(log, &mut writer, fsync)
    }

    pub(super) fn write_locked(
        &self,
        log: &Log,
        writer: &mut Writer,
        fsync: bool,
    ) -> io::Result<()> {
        if let Some(failed) = &writer.failed {
            return Err(io::Error::other(failed.clone()));
        }
        let seq = {
            let mut state = self.lock();
            std::mem::swap(&mut state.pending, &mut writer.spare);
            state.seq
        };
        let mut result = Ok(());
        if !writer.spare.is_empty() {
            result = writer.file.write_all(&writer.spare);
            writer.size += writer.spare.len() as u64;
            writer.spare.clear();
            if result.is_ok() {
                log.written.store(seq, Ordering::Release);
            }
        }
        let written = log.written.load(Ordering::Acquire);
        if result.is_ok() && fsync && log.durable.load(Ordering::Acquire) < written {
            result = writer.file.sync_data();
            if result.is_ok() {
                log.durable.store(written, Ordering::Release);
            }
        }
        if let Err(e) = &result {
            let failed = format!("cannot write the log {}: {e}", log.path.display());
            ::log::error!("store: {failed}; changes from now on are kept in memory only");
            writer.failed = Some(failed);
        }
        result
    }

    /// The flusher thread's loop: write pending bytes as they come, fsync
    /// and consider a rewrite once per [`FSYNC_INTERVAL`], stop on close.
    pub(super) fn flusher(&self) {
        let log = self
            .log
            .as_ref()
            .expect("only a logged store has a flusher");
        let mut last_tick = Instant::now();
        loop {
            let mut state = self.lock();
            loop {
                let has_work = log.policy != Fsync::Always && !state.pending.is_empty();
                let left = FSYNC_INTERVAL.saturating_sub(last_tick.elapsed());
                if state.closing || has_work || left.is_zero() {
                    break;
                }
                state = self
                    .wake
                    .wait_timeout(state, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            if state.closing {
                return; // `close` writes and fsyncs the rest
            }
            drop(state);
            let tick = last_tick.elapsed() >= FSYNC_INTERVAL;
            // A failure is logged once inside, and sticks.
            let _ = self.write_pending(tick && log.policy != Fsync::No);
            if tick {
                last_tick = Instant::now();
                self.maybe_compact(log);
            }
        }
    }
}
