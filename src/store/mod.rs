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
//! This module must not know services or sockets: services call it, the
//! drivers run its [`Work`].

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::StartupError;

mod log;

use self::log::Op;

/// When the log is fsynced (`--fsync`), as Redis' `appendfsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// The open log file and what is known to be in it.
struct Log {
    dir: PathBuf,
    path: PathBuf,
    policy: Fsync,
    /// Size above which a rewrite is considered ([`COMPACT_MIN_SIZE`]).
    compact_min: u64,
    writer: Mutex<Writer>,
    /// Changes up to this number are written to the file.
    written: AtomicU64,
    /// Changes up to this number are fsynced.
    durable: AtomicU64,
    /// Held for the store's life: one server per data directory.
    _lock: File,
}

struct Writer {
    file: File,
    /// Bytes in the file.
    size: u64,
    /// The buffer swapped with `pending`, so flushing allocates nothing.
    spare: Vec<u8>,
    /// After a write or fsync failed, nothing more is written: what is in
    /// the file may end in a partial record, and an fsync error may have
    /// dropped dirty pages (so a later "success" would lie).
    failed: Option<String>,
}

impl Store {
    /// An empty store held in memory only (tests, and nothing else).
    pub fn in_memory() -> Store {
        Store::new(HashMap::new(), None)
    }

    /// Opens the store in `dir` (created if missing, locked, its log
    /// replayed and a torn last record truncated) and starts its flusher.
    pub fn open(dir: &Path, policy: Fsync) -> Result<Store, StartupError> {
        let store = Store::open_with(dir, policy, COMPACT_MIN_SIZE)?;
        store.start_flusher()?;
        Ok(store)
    }

    /// Like [`open`](Self::open), without starting the flusher thread: a
    /// server that will fork into a daemon opens the store first (so a
    /// damaged log is reported on the terminal) and starts the thread after
    /// the fork, which a thread would not survive.
    pub fn open_unstarted(dir: &Path, policy: Fsync) -> Result<Store, StartupError> {
        Store::open_with(dir, policy, COMPACT_MIN_SIZE)
    }

    /// Starts the thread that writes (and fsyncs) changes in the background.
    pub fn start_flusher(&self) -> Result<(), StartupError> {
        let Some(log) = &self.handle.core.log else {
            return Ok(());
        };
        let core = Arc::clone(&self.handle.core);
        let flusher = std::thread::Builder::new()
            .name("store-flusher".to_owned())
            .spawn(move || core.flusher())
            .map_err(|source| StartupError::Store {
                path: log.dir.clone(),
                action: "start the store's flusher thread",
                source,
            })?;
        *self
            .handle
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(flusher);
        Ok(())
    }

    fn open_with(dir: &Path, policy: Fsync, compact_min: u64) -> Result<Store, StartupError> {
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
        let mut digits = [0u8; 20];
        let text = format_i64(new, &mut digits);
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
    pub fn close(&self) -> io::Result<()> {
        self.handle.stop_flusher();
        self.flush()
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

    /// Numbers the change `op` and queues its record for the log.
    fn append(&self, state: &mut State, op: Op<'_>) -> Seq {
        state.seq += 1;
        let Some(log) = &self.log else {
            return Seq(state.seq);
        };
        let was_empty = state.pending.is_empty();
        let start = state.pending.len();
        log::encode(op, &mut state.pending);
        if let Some(rewrite) = &mut state.rewrite {
            rewrite.extend_from_slice(&state.pending[start..]);
        }
        // Under `always` the waiters write; the flusher is only a backstop.
        if was_empty && log.policy != Fsync::Always {
            self.wake.notify_one();
        }
        Seq(state.seq)
    }

    /// Group commit: returns once change `seq` is fsynced, by this thread
    /// or (more often, under load) by another waiter's fsync.
    fn sync(&self, seq: Seq) -> io::Result<()> {
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
    fn write_pending(&self, fsync: bool) -> io::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        let mut writer = log.lock_writer();
        self.write_locked(log, &mut writer, fsync)
    }

    fn write_locked(&self, log: &Log, writer: &mut Writer, fsync: bool) -> io::Result<()> {
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
    fn flusher(&self) {
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

    fn maybe_compact(&self, log: &Log) {
        let size = log.lock_writer().size;
        let live = self.lock().live;
        if size > log.compact_min && size > COMPACT_RATIO * live {
            ::log::info!(
                "store: rewriting {} ({size} bytes, {live} live)",
                log.path.display()
            );
            if let Err(e) = self.compact(|| {}) {
                ::log::error!("store: rewriting {} failed: {e}", log.path.display());
            }
        }
    }

    /// Rewrites the log as one SET per live key. The snapshot is taken
    /// under the state lock; it is written and fsynced with no lock held;
    /// then, under the writer lock, the changes made meanwhile are
    /// appended, the new file is fsynced and renamed over the old, and the
    /// directory fsynced. If anything fails before the rename, the old log
    /// is still whole and still in use.
    fn compact(&self, between: impl FnOnce()) -> io::Result<()> {
        let Some(log) = &self.log else { return Ok(()) };
        let temp = log.dir.join(log::REWRITE_NAME);
        let mut snapshot = log::MAGIC.to_vec();
        {
            let mut state = self.lock();
            snapshot.reserve(state.live as usize);
            for (key, value) in &state.map {
                log::encode(Op::Set(key, value), &mut snapshot);
            }
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
        self.lock().pending.drain(..cut);
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

impl Log {
    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
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

/// Writes `n` in decimal into `buf`, returning the digits (no allocation).
pub(crate) fn format_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

#[cfg(test)]
mod tests;
