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
//!   rewrites the log when it has grown to over [`COMPACT_RATIO`] times the
//!   live data and over [`COMPACT_MIN_SIZE`].
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
//! shows up in `todo` as two lines.
//!
//! # Files
//!
//! This file is the API (what services call) and the in-memory state;
//! [`durability`] holds the log writer, group commit and the flusher
//! thread; [`compact`] the log rewrite; [`log`] the record format and
//! replay; [`error`] the [`StoreError`] that opening can fail with.
//!
//! This module must not know services, sockets or the application around
//! it: services call it, the drivers run its [`Work`], and `main` prints
//! its errors through `StartupError`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

mod compact;
mod durability;
mod error;
mod log;

pub use self::error::StoreError;

use self::durability::{Log, Writer};
use self::log::Op;

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

/// The log is rewritten when it is over this many times the live data...
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

/// `INCR` on a value that is not a 64-bit integer, or would overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrError {
    /// The value is not the decimal form of an `i64`.
    NotAnInteger,
    /// The result would not fit in an `i64`.
    Overflow,
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

struct State {
    map: HashMap<Vec<u8>, Vec<u8>>,
    /// Records not yet written, in sequence order, ending at `seq`.
    pending: Vec<u8>,
    /// The last change's number.
    seq: u64,
    /// Bytes the live data takes as SET records plus the magic: what a
    /// rewritten log would weigh.
    live: u64,
    /// During a rewrite: every record since its snapshot, to append to the
    /// new file before it replaces the old one.
    rewrite: Option<Vec<u8>>,
    /// The flusher must stop.
    closing: bool,
}

impl Store {
    /// An empty store held in memory only (tests, and nothing else).
    pub fn in_memory() -> Store {
        Store::new(HashMap::new(), None)
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
        let opened = log::open(dir)?;
        ::log::info!(
            "store: {} keys from {} ({} bytes), fsync {policy}",
            opened.map.len(),
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
        Ok(Store::new(opened.map, Some(log)))
    }

    fn new(map: HashMap<Vec<u8>, Vec<u8>>, log: Option<Log>) -> Store {
        let live = log::MAGIC.len() as u64
            + map
                .iter()
                .map(|(key, value)| log::set_len(key, value))
                .sum::<u64>();
        let state = State {
            map,
            pending: Vec::new(),
            seq: 0,
            live,
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

    /// Appends the value of `key` to `out`; false when there is none.
    /// Writes into the caller's buffer so a read allocates nothing.
    pub fn get_into(&self, key: impl AsRef<[u8]>, out: &mut Vec<u8>) -> bool {
        self.get_with(key, |value| match value {
            Some(value) => {
                out.extend_from_slice(value);
                true
            }
            None => false,
        })
    }

    /// Calls `f` with the value of `key`, under the store's lock: keep `f`
    /// short (copy into an output buffer, no I/O).
    pub fn get_with<R>(&self, key: impl AsRef<[u8]>, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        f(self
            .handle
            .core
            .lock()
            .map
            .get(key.as_ref())
            .map(Vec::as_slice))
    }

    /// True when `key` has a value.
    pub fn contains(&self, key: impl AsRef<[u8]>) -> bool {
        self.handle.core.lock().map.contains_key(key.as_ref())
    }

    /// Stores `value` under `key`, replacing any previous value. Returns
    /// the change's number, for [`sync_work`](Store::sync_work).
    pub fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Seq {
        let (key, value) = (key.as_ref(), value.as_ref());
        let core = &self.handle.core;
        let mut state = core.lock();
        state.put(key, value);
        core.append(&mut state, Op::Set(key, value))
    }

    /// Removes each of `keys` that exists. Returns how many did, and the
    /// number of the last change (nothing to wait for when the count is 0).
    pub fn del<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) -> (usize, Seq) {
        let core = &self.handle.core;
        let mut state = core.lock();
        let mut removed = 0;
        let mut seq = Seq(state.seq);
        for key in keys {
            if let Some(value) = state.map.remove(key) {
                state.live -= log::set_len(key, &value);
                removed += 1;
                seq = core.append(&mut state, Op::Del(key));
            }
        }
        (removed, seq)
    }

    /// Adds one to the integer in `key` (missing counts as 0), atomically.
    /// Returns the new value and the change's number.
    pub fn incr(&self, key: impl AsRef<[u8]>) -> Result<(i64, Seq), IncrError> {
        let key = key.as_ref();
        let core = &self.handle.core;
        let mut state = core.lock();
        let old = match state.map.get(key) {
            Some(value) => parse_i64(value).ok_or(IncrError::NotAnInteger)?,
            None => 0,
        };
        let new = old.checked_add(1).ok_or(IncrError::Overflow)?;
        let mut digits = itoa::Buffer::new();
        let text = digits.format(new).as_bytes();
        state.put(key, text);
        Ok((new, core.append(&mut state, Op::Set(key, text))))
    }

    /// Stores each pair whose key is not there yet (initial data). New
    /// pairs are logged like any change, so the log alone holds everything
    /// a client could have read; existing keys are left alone and not
    /// logged again, so restarts do not grow the log.
    pub fn insert_missing(&self, pairs: &[(&str, &str)]) {
        let core = &self.handle.core;
        let mut state = core.lock();
        for (key, value) in pairs {
            if !state.map.contains_key(key.as_bytes()) {
                state.put(key.as_bytes(), value.as_bytes());
                core.append(&mut state, Op::Set(key.as_bytes(), value.as_bytes()));
            }
        }
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.handle.core.lock().map.len()
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

impl State {
    /// Sets `key` in the map, keeping `live` right; reuses the old value's
    /// buffer, so overwriting allocates nothing in the steady state.
    fn put(&mut self, key: &[u8], value: &[u8]) {
        match self.map.get_mut(key) {
            Some(old) => {
                self.live -= log::set_len(key, old);
                old.clear();
                old.extend_from_slice(value);
            }
            None => {
                self.map.insert(key.to_vec(), value.to_vec());
            }
        }
        self.live += log::set_len(key, value);
    }
}

impl Core {
    /// The state, even if a thread panicked while holding it: every update
    /// is a map change plus an append, never left half-done by a panic in
    /// between (nothing in between can panic).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Parses a value as Redis' `string2ll` does: optional `-`, digits, no
/// `+`, no spaces, no leading zeros, no `-0`.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let canonical = match digits {
        [] => false,
        [b'0'] => digits.len() == text.len(),
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
