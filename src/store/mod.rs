//! The key-value store shared by every connection of every mode (`todo`,
//! `kv`), and its durability: an append-only log in `--data-dir`, replayed
//! at start ([`log`] has the format and the recovery rules).
//!
//! # Locks and threads
//!
//! - The *state* mutex guards the map and the *pending* buffer of encoded
//!   records not yet written. Critical sections are a hash lookup and a
//!   `memcpy`; they never do I/O, so a plain `std::sync::Mutex` is the
//!   fastest correct choice (mini-redis `db.rs` argues the same). This is
//!   the only lock the event-loop thread ever takes.
//! - The *writer* mutex guards the log file. Whoever holds it takes the
//!   pending bytes (swapping buffers under the state lock), writes them,
//!   and maybe fsyncs. Holding it keeps writes in sequence order.
//! - A background *flusher* thread writes pending bytes as they come
//!   (`--fsync everysec|no`), fsyncs once a second (`everysec`), and
//!   rewrites the log when it has grown to over [`COMPACT_RATIO`] times its
//!   size after the last rewrite and over [`COMPACT_MIN_SIZE`].
//!
//! # `--fsync always`: group commit, off the loop thread
//!
//! Every change gets a sequence number ([`Seq`]). A service that must not
//! answer before its change is on disk asks [`Store::sync_work`] for a
//! [`Work::Sync`] and returns it as `Next::Offload(Job::Store(..))`; the
//! driver runs it on a worker ([`run`]) and resumes the service with
//! [`Done`]. The first waiter takes the writer lock, writes *all* pending
//! records and fsyncs once; waiters queued behind it find their sequence
//! number already durable and return without touching the disk, so one
//! fsync acknowledges every change that arrived meanwhile.
//!
//! # Data
//!
//! Keys and values are bytes (`Vec<u8>`): `kv` is binary-safe like Redis;
//! `todo` only ever stores UTF-8 (its lines are checked) and writes values
//! back byte for byte, so a value set through `kv` with a newline in it
//! shows up in `todo` as two lines. Values are typed ([`Value`]): `todo`
//! sees string keys only; every key may carry an absolute deadline (ms
//! since the Unix epoch), so expiry means the same after a restart.
//!
//! # Files
//!
//! This file is the API (what services call) and the in-memory state;
//! [`db`] holds the typed keyspace and the one function that changes it
//! (a log record applied), with [`zset`]; [`tx`] the transaction a
//! command runs in (lazy expiry, writing records); [`durability`] the log
//! writer, group commit and the flusher thread; [`compact`] the log
//! rewrite; [`log`] the record format and replay; [`error`] the
//! [`StoreError`] that opening can fail with; `testing` replay on bytes
//! for `fuzz/` (hidden, not an API).
//!
//! This module must not know services, sockets or the application around
//! it: services call it, the drivers run its [`Work`], and `main` prints
//! its errors through `StartupError`.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod compact;
mod db;
mod durability;
mod error;
mod log;
#[doc(hidden)] // for fuzz/, not an API
pub mod testing;
mod tx;
mod zset;

pub use self::db::{Applied, Db, Entry, Score, Value, ZSet};
pub use self::error::StoreError;
pub use self::log::code;
pub use self::tx::{Tx, Write};

use self::durability::{Log, Writer};

/// When the log is fsynced (`--fsync`), as Redis' `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Answer a change only once it is fsynced (group commit, on the
    /// offload pool). Nothing acknowledged is lost, even by power loss.
    Always,
    /// Write at once from a background thread, fsync once a second. A
    /// `kill -9` loses nothing written; power loss loses up to a second.
    Everysec,
    /// Write at once from a background thread; the OS decides when the
    /// data reaches the disk.
    No,
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
            Fsync::No => "no",
        })
    }
}

/// The default `--data-dir`, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./readyloop-data";

/// How often `everysec` fsyncs, and how often the flusher looks at the log
/// size for a rewrite (and, under `always`, writes what nobody waited for).
pub const FSYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The log is rewritten when it has grown to this many times its size
/// after the last rewrite (or at start), as Redis'
/// `auto-aof-rewrite-percentage 100`...
pub const COMPACT_RATIO: u64 = 2;
/// ...and over this size (1 MiB), so small logs are never rewritten.
/// Redis' `auto-aof-rewrite-percentage 100` / `-min-size` (64 MiB) likewise.
pub const COMPACT_MIN_SIZE: u64 = 1 << 20;

/// The number of a change, in the order they were made. A change is on
/// disk once the log's durable number is at least its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(u64);

/// Store work to run off the event-loop thread (`Job::Store`).
#[derive(Debug, PartialEq, Eq)]
pub enum Work {
    /// Block until every change up to `seq` is written and fsynced.
    Sync {
        /// The store.
        store: Store,
        /// The change that must be durable.
        seq: Seq,
    },
}

/// The result of a [`Work`] (`JobOutput::Store`).
#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    /// Every change up to this one is on disk.
    Synced(Seq),
    /// The log could not be written; the change is in memory only. The
    /// message names the file and the system's error.
    Failed(String),
}

/// Runs `work`, blocking: call it on a worker thread, never the loop's.
pub fn run(work: Work) -> Done {
    match work {
        Work::Sync { store, seq } => match store.handle.core.sync(seq) {
            Ok(()) => Done::Synced(seq),
            Err(e) => Done::Failed(e.to_string()),
        },
    }
}

/// A handle to the shared store. Cheap to clone; handles compare equal when
/// they share the same data. When the last handle is dropped the log is
/// flushed and fsynced (call [`close`](Store::close) to see errors).
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

/// Owned by the handles only (not the flusher), so dropping the last
/// handle stops the flusher.
struct Handle {
    core: Arc<Core>,
    /// The flusher thread, until [`Store::close`] joins it.
    flusher: Mutex<Option<JoinHandle<()>>>,
}

struct Core {
    state: Mutex<State>,
    /// Wakes the flusher: pending bytes to write, or closing.
    wake: Condvar,
    /// None for [`Store::in_memory`].
    log: Option<Log>,
}

#[derive(Debug)]
struct State {
    db: Db,
    /// Records not yet written, in sequence order, ending at `seq`.
    pending: Vec<u8>,
    /// The last change's number.
    seq: u64,
    /// The log's size after the last rewrite, or at start: a rewrite is
    /// due at [`COMPACT_RATIO`] times this.
    base: u64,
    /// During a rewrite: every record since its snapshot, to append to the
    /// new file before it replaces the old one.
    rewrite: Option<Vec<u8>>,
    /// The flusher must stop.
    closing: bool,
}

impl Store {
    /// An empty store held in memory only: tests, and a server serving
    /// nothing that keeps data (no directory, no flusher thread).
    pub fn in_memory() -> Store {
        Store::new(Db::default(), 0, None)
    }

    /// Opens the store in `dir` (created if missing, locked, its log
    /// replayed and a torn last record truncated) and starts its flusher.
    pub fn open(dir: &Path, policy: Fsync) -> Result<Store, StoreError> {
        let store = Store::open_with(dir, policy, COMPACT_MIN_SIZE)?;
        store.start_flusher()?;
        Ok(store)
    }

    /// Like [`open`](Self::open), without starting the flusher thread: a
    /// server that will fork into a daemon opens the store first (so a
    /// damaged log is reported on the terminal) and starts the thread after
    /// the fork, which a thread would not survive.
    pub fn open_unstarted(dir: &Path, policy: Fsync) -> Result<Store, StoreError> {
        Store::open_with(dir, policy, COMPACT_MIN_SIZE)
    }

    /// Starts the thread that writes (and fsyncs) changes in the background.
    pub fn start_flusher(&self) -> Result<(), StoreError> {
        let Some(log) = &self.handle.core.log else {
            return Ok(());
        };
        let core = Arc::clone(&self.handle.core);
        let flusher = std::thread::Builder::new()
            .name("store-flusher".to_owned())
            .spawn(move || core.flusher())
            .map_err(StoreError::io(&log.dir, "start the store's flusher thread"))?;
        *self
            .handle
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(flusher);
        Ok(())
    }

    fn open_with(dir: &Path, policy: Fsync, compact_min: u64) -> Result<Store, StoreError> {
        let mut db = Db::default();
        let opened = log::open(dir, |record| {
            db.apply(record);
        })?;
        ::log::info!(
            "store: {} keys from {} ({} bytes), fsync {policy}",
            db.len(),
            opened.path.display(),
            opened.size
        );
        let log = Log {
            dir: opened.dir,
            path: opened.path,
            policy,
            compact_min,
            writer: Mutex::new(Writer {
                file: opened.file,
                size: opened.size,
                spare: Vec::new(),
                failed: None,
            }),
            written: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            _lock: opened.lock,
        };
        Ok(Store::new(db, opened.size, Some(log)))
    }

    fn new(db: Db, base: u64, log: Option<Log>) -> Store {
        let state = State {
            db,
            pending: Vec::new(),
            seq: 0,
            base,
            rewrite: None,
            closing: false,
        };
        let core = Core {
            state: Mutex::new(state),
            wake: Condvar::new(),
            log,
        };
        Store {
            handle: Arc::new(Handle {
                core: Arc::new(core),
                flusher: Mutex::new(None),
            }),
        }
    }

    /// The fsync policy; `None` for a store in memory only.
    pub fn policy(&self) -> Option<Fsync> {
        self.handle.core.log.as_ref().map(|log| log.policy)
    }

    /// Runs `f` on the keyspace under the store's lock, at `now` (for
    /// deadlines). Returns its result and the number of the last change it
    /// made, for [`sync_work`](Store::sync_work). Keep `f` short: it holds
    /// every other connection's commands (one command, or one `EXEC`).
    pub fn tx<R>(&self, now: SystemTime, f: impl FnOnce(&mut Tx<'_>) -> R) -> (R, Option<Seq>) {
        let core = &self.handle.core;
        let mut state = core.lock();
        let had_pending = !state.pending.is_empty();
        let mut tx = Tx::new(core, &mut state, millis(now));
        let result = f(&mut tx);
        let changed = tx.changed();
        let wake = !had_pending && !state.pending.is_empty();
        drop(state);
        // After unlocking: a flusher woken while the lock is still held
        // would only block on it again (two more futex calls and a context
        // switch per wake-up). Under `always` the waiters write; the
        // flusher is only a backstop.
        if wake
            && core
                .log
                .as_ref()
                .is_some_and(|log| log.policy != Fsync::Always)
        {
            core.wake.notify_one();
        }
        (result, changed)
    }

    /// Active expiry, for the event loop's timer: deletes up to `max_keys`
    /// keys whose deadline is before `now`, soonest first (an ordered
    /// index, so no sampling is needed and none is missed). Returns how
    /// many; when it is `max_keys` more may be due, so call again soon.
    pub fn expire_cycle(&self, now: SystemTime, max_keys: usize) -> usize {
        self.tx(now, |tx| tx.expire_due(max_keys)).0
    }

    /// Appends the string value of `key` to `out`; false when there is
    /// none (or it is not a string). Writes into the caller's buffer so a
    /// read allocates nothing.
    pub fn get_into(&self, key: impl AsRef<[u8]>, out: &mut Vec<u8>) -> bool {
        self.tx(SystemTime::now(), |tx| match tx.get(key.as_ref()) {
            Some(Entry {
                value: Value::Str(value),
                ..
            }) => {
                out.extend_from_slice(value);
                true
            }
            _ => false,
        })
        .0
    }

    /// Stores the string `value` under `key`, replacing any previous value
    /// and its deadline. Returns the change's number, for
    /// [`sync_work`](Store::sync_work).
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Seq {
        let (key, value) = (key.as_ref(), value.as_ref());
        let (seq, _) = self.tx(SystemTime::now(), |tx| {
            tx.write(code::SET, key).bytes(value).apply();
            tx.write(code::EXPIRE, key).u64(0).apply();
            tx.changed()
        });
        seq.unwrap_or(Seq(0))
    }

    /// Stores each pair whose key is not there yet (initial data). New
    /// pairs are logged like any change, so the log alone holds everything
    /// a client could have read; existing keys are left alone and not
    /// logged again, so restarts do not grow the log.
    pub fn insert_missing(&self, pairs: &[(&str, &str)]) {
        self.tx(SystemTime::now(), |tx| {
            for (key, value) in pairs {
                if tx.get(key.as_bytes()).is_none() {
                    tx.write(code::SET, key.as_bytes())
                        .bytes(value.as_bytes())
                        .apply();
                }
            }
        });
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.handle.core.lock().db.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a service must offload before it acknowledges change `seq`:
    /// `Some` under `--fsync always` while `seq` is not yet durable, `None`
    /// when the reply may go at once (other policies, memory only).
    pub fn sync_work(&self, seq: Seq) -> Option<Work> {
        let log = self.handle.core.log.as_ref()?;
        (log.policy == Fsync::Always && log.durable.load(Ordering::Acquire) < seq.0).then(|| {
            Work::Sync {
                store: self.clone(),
                seq,
            }
        })
    }

    /// Writes and fsyncs every change made so far (blocking).
    pub fn flush(&self) -> io::Result<()> {
        self.handle.core.write_pending(true)
    }

    /// Stops the flusher, then writes and fsyncs everything pending. The
    /// server calls this after its listeners stop; changes made after it
    /// are written only by another `flush` or `close`.
    pub fn close(&self) -> Result<(), StoreError> {
        self.handle.stop_flusher();
        self.flush().map_err(|source| {
            let path = self.handle.core.log.as_ref().map(|log| log.path.clone());
            StoreError::Io {
                path: path.unwrap_or_default(),
                action: "write the last changes to the log",
                source,
            }
        })
    }

    /// Rewrites the log now (normally the flusher decides; see the module
    /// docs). `between` runs after the snapshot is on disk, before the
    /// changes made meanwhile are appended: tests make changes there.
    #[cfg(test)]
    fn compact_with(&self, between: impl FnOnce()) -> io::Result<()> {
        self.handle.core.compact(between)
    }
}

impl PartialEq for Store {
    /// Two handles are equal when they share the same data.
    fn eq(&self, other: &Store) -> bool {
        Arc::ptr_eq(&self.handle, &other.handle)
    }
}
impl Eq for Store {}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let log = self.handle.core.log.as_ref();
        f.debug_struct("Store")
            .field("log", &log.map(|log| &log.path))
            .field("policy", &log.map(|log| log.policy))
            .finish_non_exhaustive()
    }
}

impl Handle {
    fn stop_flusher(&self) {
        let thread = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = thread {
            self.core.lock().closing = true;
            self.core.wake.notify_all();
            if thread.join().is_err() {
                ::log::error!("the store's flusher thread panicked");
            }
        }
    }
}

impl Drop for Handle {
    /// The last handle is gone: write and fsync what is pending.
    fn drop(&mut self) {
        self.stop_flusher();
        if let Err(e) = self.core.write_pending(true) {
            ::log::error!("store: the last changes may be lost: {e}");
        }
    }
}

impl Core {
    /// The state, even if a thread panicked while holding it: every update
    /// is a map change plus an append, never left half-done by a panic in
    /// between (nothing in between can panic).
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }
}

/// `t` in ms since the Unix epoch (0 before it).
pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
