//! The store's append-only log on disk: the record format, replay at start
//! (with torn-tail repair), and the file the writer appends to. (A little
//! over 500 lines: the format and the replay that must read it stay together.)
//!
//! This file knows bytes and files, not policies: *when* to write and fsync
//! is decided in [`super::durability`] (the flusher thread and group commit). It never
//! runs on the event-loop thread except through [`super::Store::open`]
//! before any listener is bound.
//!
//! # Format
//!
//! ```text
//! file    = MAGIC record*
//! MAGIC   = "RDYLOG1\n"                      8 bytes
//! record  = len:u32le crc:u32le body         8 + len bytes
//! body    = op:u8 key_len:u32le key payload  op: see [`code`]
//! crc     = CRC-32 (IEEE) of the 4 len bytes followed by the body
//! item    = len:u32le bytes                  payloads of many values are items
//! ```
//!
//! Ops 1 (SET key value) and 2 (DEL key) are the first version's; the
//! typed ops (lists, hashes, sets, sorted sets, deadlines) came after, with
//! new codes, so a log written before them replays unchanged.
//!
//! # Recovery
//!
//! Replay reads records until the end of the file. At the first record that
//! does not check out (short header, absurd length, past the end of the
//! file, wrong checksum), it looks for any good record further on:
//! - none: the record is a torn write from a crash; it is dropped with a
//!   warning naming the file and offset, and the file is truncated there;
//! - one: the damage is in the middle, and truncating would silently lose
//!   the good records after it, so start-up fails naming file and offset,
//!   with the command that cuts out only the damaged bytes.
//!
//! A record whose checksum is good but whose op is unknown (a newer format)
//! is always an error, never dropped.
//!
//! # The search past damage is linear
//!
//! The format has no sync marker, so a good record could start at any byte.
//! Checksumming a candidate costs its claimed length, and in random bytes
//! about one offset in 700 claims a length that fits in a 6 MB file: trying
//! each offset cost O(n²) (a 6 MB torn tail took 23 s to replay). Instead:
//!
//! 1. A candidate is checksummed only if its header and the first five bytes
//!    of its body are *plausible*, tested in O(1): a length that fits in the
//!    file, op SET with a key length inside the body, or op DEL with a key
//!    length equal to the body's rest (a record with an unknown op never
//!    counts as good here either). In random bytes this leaves about one
//!    candidate per 10⁸ offsets, so the search is one linear pass.
//! 2. The bytes checksummed in the search are bounded by
//!    [`SEARCH_BUDGET_FACTOR`] times the bytes after the damage. Bytes made
//!    to look like records (a value holding copies of record headers) can
//!    exhaust it; the search then gives up and the log counts as *corrupt*
//!    (start-up fails, nothing dropped), never as torn: a bound on the
//!    time must not cost data.
//!
//! Old logs need no conversion: the format is unchanged.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;
use super::error::{bad_magic, corrupt_error};

/// The first bytes of every log file, so a stray file is never replayed.
pub const MAGIC: &[u8; 8] = b"RDYLOG1\n";
/// Bytes before a record's body: its length and checksum.
pub const RECORD_HEADER: usize = 8;
/// The shortest body: an op and a key length.
const MIN_BODY: usize = 5;
/// The search for a good record after a damaged one checksums at most this
/// many times the bytes after the damage (module docs: linear time).
pub(crate) const SEARCH_BUDGET_FACTOR: usize = 2;
/// The longest body replay accepts: a 512 MiB key plus a 512 MiB value
/// (Redis' `proto-max-bulk-len` each). A longer length field is damage.
pub(crate) const MAX_BODY: usize = (1 << 30) + MIN_BODY;
/// The log's file name inside `--data-dir`.
pub(crate) const LOG_NAME: &str = "store.log";
/// Where a rewrite (compaction) writes before it renames over [`LOG_NAME`].
pub(crate) const REWRITE_NAME: &str = "store.log.rewrite";
/// The lock file inside `--data-dir`: one server per directory.
pub(crate) const LOCK_NAME: &str = "lock";

/// A record's type; [`super::db`] says what each one does to the data.
pub mod code {
    /// The string `key` now holds the payload (its deadline kept).
    pub const SET: u8 = 1;
    /// `key` is gone. No payload.
    pub const DEL: u8 = 2;
    /// `key`'s deadline: u64 ms since the epoch, 0 for none.
    pub const EXPIRE: u8 = 3;
    /// Items pushed at the list's head, in order (LPUSH).
    pub const LPUSH: u8 = 4;
    /// Items pushed at the list's tail (RPUSH).
    pub const RPUSH: u8 = 5;
    /// u32 items popped from the head.
    pub const LPOP: u8 = 6;
    /// u32 items popped from the tail.
    pub const RPOP: u8 = 7;
    /// u64 index, then the new item (LSET).
    pub const LSET: u8 = 8;
    /// u64 start, u64 end: keep items `start..end` (LTRIM).
    pub const LTRIM: u8 = 9;
    /// i64 count, then the item (LREM, as Redis counts).
    pub const LREM: u8 = 10;
    /// Items: field, value, field, value... (HSET).
    pub const HSET: u8 = 11;
    /// Items: fields (HDEL).
    pub const HDEL: u8 = 12;
    /// Items: members (SADD).
    pub const SADD: u8 = 13;
    /// Items: members (SREM).
    pub const SREM: u8 = 14;
    /// Items: score (8 bytes, f64 bits), member, score, member... (ZADD).
    pub const ZADD: u8 = 15;
    /// Items: members (ZREM).
    pub const ZREM: u8 = 16;
    /// The payload is the new name: `key` moves there, over what was.
    pub const RENAME: u8 = 17;
    /// Every key is gone. Empty key, no payload.
    pub const FLUSH: u8 = 18;
    /// The payload is appended to the string (APPEND).
    pub const APPEND: u8 = 19;
    /// The highest code this version knows.
    pub const LAST: u8 = APPEND;
}

/// One record's content: what [`scan`] hands to the store to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// Its type ([`code`]).
    pub(crate) code: u8,
    /// The key it changes.
    pub(crate) key: &'a [u8],
    /// The rest of the body, as its type says.
    pub(crate) payload: &'a [u8],
}

/// Starts a record for `key` at the end of `out`; returns where it starts,
/// for [`item`]/[`finish`]. Payload bytes are appended after it.
pub(crate) fn begin(out: &mut Vec<u8>, code: u8, key: &[u8]) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER]);
    out.push(code);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    start
}

/// Appends one length-prefixed item to a record's payload.
pub(crate) fn item(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Fills in the length and checksum of the record begun at `start`.
///
/// # Panics
///
/// If the body is over [`MAX_BODY`]: kv bounds a request at 1 GiB, its
/// bulks at 512 MiB, and compaction splits big values over records.
pub(crate) fn finish(out: &mut [u8], start: usize) {
    let body_len = out.len() - start - RECORD_HEADER;
    assert!(body_len <= MAX_BODY, "a store record over 1 GiB");
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    let crc = checksum(&out[start..start + 4], &out[start + RECORD_HEADER..]);
    out[start + 4..start + RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a whole SET record (tests, compaction).
pub(crate) fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let start = begin(out, code::SET, key);
    out.extend_from_slice(value);
    finish(out, start);
}

/// Splits a payload of length-prefixed items; `None` if it is malformed.
pub(crate) fn items(mut payload: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    std::iter::from_fn(move || {
        if payload.is_empty() {
            return None;
        }
        let Some((len, rest)) = payload.split_first_chunk::<4>() else {
            payload = &[];
            return Some(None);
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some((item, rest)) = rest.split_at_checked(len) else {
            payload = &[];
            return Some(None);
        };
        payload = rest;
        Some(Some(item))
    })
}

/// Why a record does not check out.
#[derive(Debug, PartialEq, Eq)]
enum Bad {
    /// Damaged or torn: may be dropped if nothing good follows it.
    Damaged(String),
    /// The checksum is right but the content is not understood: never dropped.
    Unknown(String),
}

/// The length field of the record at the start of `bytes`, if its header
/// is there and the length is possible (not yet that it fits the file).
fn body_len(bytes: &[u8]) -> Result<usize, Bad> {
    let damaged = |reason: String| Err(Bad::Damaged(reason));
    if bytes.len() < RECORD_HEADER {
        return damaged(format!("a header cut short ({} of 8 bytes)", bytes.len()));
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&len) {
        return damaged(format!("an impossible record length {len}"));
    }
    Ok(len)
}

/// Parses the record at the start of `bytes`: the op and its total length.
fn parse(bytes: &[u8]) -> Result<(Record<'_>, usize), Bad> {
    let len = body_len(bytes)?;
    let Some(body) = bytes.get(RECORD_HEADER..RECORD_HEADER + len) else {
        let missing = RECORD_HEADER + len - bytes.len();
        return Err(Bad::Damaged(format!(
            "a record cut short ({missing} bytes missing)"
        )));
    };
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if checksum(&bytes[..4], body) != crc {
        return Err(Bad::Damaged("a checksum mismatch".to_owned()));
    }
    let key_len = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes")) as usize;
    let Some(key) = body.get(MIN_BODY..MIN_BODY + key_len) else {
        return Err(Bad::Unknown(format!(
            "a key length {key_len} over its record"
        )));
    };
    let payload = &body[MIN_BODY + key_len..];
    match body[0] {
        code::DEL if !payload.is_empty() => {
            Err(Bad::Unknown("a DEL record with a payload".to_owned()))
        }
        code @ code::SET..=code::LAST => Ok((Record { code, key, payload }, RECORD_HEADER + len)),
        code => Err(Bad::Unknown(format!(
            "an unknown record type {code} (written by a newer readyloop?)"
        ))),
    }
}

/// The body length of the record at the start of `bytes` if it could be a
/// good one, judged in O(1) without its checksum (module docs, step 1).
fn plausible(bytes: &[u8]) -> Option<usize> {
    let len = body_len(bytes).ok()?;
    let body = bytes.get(RECORD_HEADER..RECORD_HEADER + len)?;
    let key_len = u32::from_le_bytes(body[1..5].try_into().expect("4 bytes")) as usize;
    let fits = match body[0] {
        code::DEL => key_len == len - MIN_BODY,
        code::SET..=code::LAST => key_len <= len - MIN_BODY,
        _ => false,
    };
    fits.then_some(len)
}

/// True when a good record starts `bytes` (the damaged-magic advice).
pub(crate) fn starts_with_a_record(bytes: &[u8]) -> bool {
    parse(bytes).is_ok()
}

/// What the search past a damaged record found.
#[derive(Debug, PartialEq, Eq)]
enum Search {
    /// A good record starts here.
    Found(usize),
    /// None: the damage runs to the end of the file.
    Nothing,
    /// The checksum budget ran out at this offset, undecided.
    GaveUp(usize),
}

/// Looks for a good record in `bytes` after offset `from`, in time linear
/// in the bytes after it (module docs).
fn search(bytes: &[u8], from: usize) -> Search {
    let mut budget = SEARCH_BUDGET_FACTOR.saturating_mul(bytes.len() - from);
    // A length that fits in the file has a small top byte: offsets whose
    // 4th byte is bigger are skipped eight at a time.
    let top = ((bytes.len() - from).min(MAX_BODY) >> 24) as u8;
    let mut at = from + 1;
    while let Some(found) = next_byte_at_most(bytes, at + 3, top) {
        at = found - 3;
        if let Some(len) = plausible(&bytes[at..]) {
            let Some(left) = budget.checked_sub(len) else {
                return Search::GaveUp(at);
            };
            budget = left;
            if parse(&bytes[at..]).is_ok() {
                return Search::Found(at);
            }
        }
        at += 1;
    }
    Search::Nothing
}

/// The first index from `from` on whose byte is at most `top` (< 128),
/// testing a word of eight bytes at a time (the "has less than" bit trick):
/// the search's inner loop, fast even in a debug build.
fn next_byte_at_most(bytes: &[u8], from: usize, top: u8) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    debug_assert!(top < 128);
    let below = ONES * (u64::from(top) + 1);
    let mut at = from;
    while at + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if word.wrapping_sub(below) & !word & (ONES << 7) != 0 {
            break; // one of these eight bytes is at most `top`
        }
        at += 8;
    }
    (at..bytes.len()).find(|&i| bytes[i] <= top)
}

/// How a replay ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Every byte was a good record.
    Clean,
    /// The records end with a torn one at `offset`: drop from there.
    Torn {
        /// Where the torn record starts (the good length of the file).
        offset: u64,
        /// What was wrong with it.
        reason: String,
    },
}

/// A record that cannot be dropped: the file and offset for the error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Corrupt {
    /// Where the bad record starts.
    pub(crate) offset: u64,
    /// What was wrong, and what follows it.
    pub(crate) reason: String,
    /// Where the next good record starts, when the search found one: the
    /// bytes in between are all that must go.
    pub(crate) next: Option<u64>,
}

/// Replays `bytes` (a whole log, [`MAGIC`] included), calling `apply` for
/// each good record in order. See the module docs for torn vs corrupt.
pub(crate) fn scan(bytes: &[u8], mut apply: impl FnMut(Record<'_>)) -> Result<Scan, Corrupt> {
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match parse(&bytes[at..]) {
            Ok((record, len)) => {
                apply(record);
                at += len;
            }
            Err(Bad::Unknown(reason)) => {
                return Err(Corrupt {
                    offset: at as u64,
                    reason,
                    next: None,
                });
            }
            Err(Bad::Damaged(reason)) => {
                // Torn only if nothing good follows.
                return match search(bytes, at) {
                    Search::Nothing => Ok(Scan::Torn {
                        offset: at as u64,
                        reason,
                    }),
                    Search::Found(next) => Err(Corrupt {
                        offset: at as u64,
                        reason: format!("{reason}, and a good record follows at byte {next}"),
                        next: Some(next as u64),
                    }),
                    Search::GaveUp(stop) => Err(Corrupt {
                        offset: at as u64,
                        reason: format!(
                            "{reason}; the bytes after it look like records up to byte \
                             {stop} at least, so they may hold good ones"
                        ),
                        next: None,
                    }),
                };
            }
        }
    }
    Ok(Scan::Clean)
}

/// The data directory, opened: its lock held, the log replayed and repaired.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The directory.
    pub(crate) dir: PathBuf,
    /// The log file's path.
    pub(crate) path: PathBuf,
    /// The log, positioned at its (good) end, for appending.
    pub(crate) file: File,
    /// Its length in bytes.
    pub(crate) size: u64,
    /// The lock file; the lock lasts as long as this handle.
    pub(crate) lock: File,
}

/// Creates `dir` if needed, takes its lock, replays its log (`apply` gets
/// each good record, in order) and truncates a torn tail.
pub(crate) fn open(dir: &Path, mut apply: impl FnMut(Record<'_>)) -> Result<Opened, StoreError> {
    let io_error = StoreError::io;
    fs::create_dir_all(dir).map_err(io_error(dir, "create the data directory"))?;
    let lock_path = dir.join(LOCK_NAME);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_error(&lock_path, "create the lock file"))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Locked {
                dir: dir.to_owned(),
            });
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(io_error(&lock_path, "lock the data directory")(e));
        }
    }
    // A rewrite that crashed before its rename: the log is still whole.
    let _ = fs::remove_file(dir.join(REWRITE_NAME));

    let path = dir.join(LOG_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path, "open the log"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(io_error(&path, "read the log"))?;

    let mut size = bytes.len() as u64;
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(&bytes) {
        // New, or torn while being created: start it over.
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(MAGIC))
            .and_then(|()| file.sync_all())
            .and_then(|()| sync_dir(dir))
            .map_err(io_error(&path, "create the log"))?;
        size = MAGIC.len() as u64;
    } else if !bytes.starts_with(MAGIC) {
        return Err(bad_magic(path, &bytes));
    } else {
        let scan = scan(&bytes, &mut apply).map_err(|corrupt| corrupt_error(&path, corrupt))?;
        if let Scan::Torn { offset, reason } = scan {
            log::warn!(
                "{}: dropping a torn last record at byte offset {offset} ({reason}; {} bytes), \
                 probably cut by a crash: truncating the log to {offset} bytes",
                path.display(),
                size - offset
            );
            file.set_len(offset)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&path, "truncate the torn record off the log"))?;
            size = offset;
        }
    }
    file.seek(SeekFrom::Start(size))
        .map_err(io_error(&path, "seek to the end of the log"))?;
    Ok(Opened {
        dir: dir.to_owned(),
        path,
        file,
        size,
        lock,
    })
}

/// Fsyncs a directory, so a file created or renamed in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// CRC-32 (IEEE 802.3, the zlib/PNG one) of `a` followed by `b`.
///
/// `crc32fast` computes the same CRC as the table this log started with
/// (so every log written since still replays), with SIMD where the CPU has
/// it: replay checksums every byte of the log, and so does the search past
/// a damaged record. It counts the bytes it covers (a thread-local add),
/// so `fuzz/` can check that replay's work stays linear.
pub(crate) fn checksum(a: &[u8], b: &[u8]) -> u32 {
    super::testing::count_checksummed(a.len() + b.len());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(a);
    hasher.update(b);
    hasher.finalize()
}

#[cfg(test)]
mod tests;
